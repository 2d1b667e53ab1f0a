// Live: the microphone through /v1/realtime (OpenAI's Realtime transcription events), each
// completed utterance handed to onText. Turns are the server's (server VAD).

import { realtimeSocket } from "./api.js";

const RATE = 24000;

function base64(buffer) {
  const bytes = new Uint8Array(buffer);
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

export class LiveSession {
  constructor({ onText, onStatus, onError, language }) {
    this.onText = onText;
    this.onStatus = onStatus;
    this.onError = onError;
    this.language = language;
  }

  async start() {
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true },
    });
    this.context = new AudioContext({ sampleRate: RATE });
    await this.context.audioWorklet.addModule("/page/pcm-worklet.js");
    this.node = new AudioWorkletNode(this.context, "pcm16");
    this.socket = realtimeSocket();
    this.socket.addEventListener("open", () => {
      const transcription = { model: "whisper-1", ...(this.language ? { language: this.language } : {}) };
      this.socket.send(
        JSON.stringify({
          type: "session.update",
          session: {
            type: "transcription",
            audio: { input: { format: { type: "audio/pcm", rate: RATE }, transcription } },
          },
        }),
      );
      this.context.createMediaStreamSource(this.stream).connect(this.node);
      // a node the graph does not reach the speakers through may not be run: reach them, silently
      const silent = this.context.createGain();
      silent.gain.value = 0;
      this.node.connect(silent).connect(this.context.destination);
      this.node.port.onmessage = (event) => {
        if (this.socket.readyState === WebSocket.OPEN) {
          this.socket.send(JSON.stringify({ type: "input_audio_buffer.append", audio: base64(event.data) }));
        }
      };
      this.onStatus("Listening. Speak, then pause.");
    });
    this.socket.addEventListener("message", (event) => this.handle(JSON.parse(event.data)));
    this.socket.addEventListener("close", (event) => {
      if (!this.stopping) {
        const why = event.reason ? `: ${event.reason}` : "";
        this.onError(`The live session ended${why}. Start the microphone again to go on.`);
      }
      this.release();
    });
  }

  handle(message) {
    switch (message.type) {
      case "input_audio_buffer.speech_started":
        this.onStatus("Hearing speech…");
        break;
      case "input_audio_buffer.speech_stopped":
        this.onStatus("Transcribing what was said…");
        break;
      case "conversation.item.input_audio_transcription.completed":
        if (message.transcript.trim()) this.onText(message.transcript.trim());
        this.onStatus("Listening. Speak, then pause.");
        break;
      case "conversation.item.input_audio_transcription.failed":
        this.onError(`An utterance could not be transcribed: ${message.error?.message || "unknown error"}`);
        break;
      case "error":
        this.onError(`The live session reported a problem: ${message.error?.message || "unknown error"}`);
        break;
      default:
    }
  }

  stop() {
    this.stopping = true;
    this.socket?.close(1000, "stopped");
    this.release();
  }

  release() {
    this.stream?.getTracks().forEach((track) => track.stop());
    this.context?.close().catch(() => {});
    this.stream = this.context = null;
  }
}
