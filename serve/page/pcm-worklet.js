// The microphone's samples as 16-bit PCM, posted to the page in blocks of ~100 ms (the
// AudioContext runs at 24 kHz: OpenAI's Realtime pcm16 rate).
class Pcm16 extends AudioWorkletProcessor {
  constructor() {
    super();
    this.block = new Int16Array(2400);
    this.filled = 0;
  }

  process(inputs) {
    const channel = inputs[0]?.[0];
    if (channel) {
      for (let i = 0; i < channel.length; i++) {
        const s = Math.max(-1, Math.min(1, channel[i]));
        this.block[this.filled++] = s < 0 ? s * 0x8000 : s * 0x7fff;
        if (this.filled === this.block.length) {
          this.port.postMessage(this.block.buffer.slice(0));
          this.filled = 0;
        }
      }
    }
    return true;
  }
}

registerProcessor("pcm16", Pcm16);
