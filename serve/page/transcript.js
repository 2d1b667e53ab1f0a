// The transcript on the page: drafts while chunks are decoded, then segments with their words
// (each word plays the recording from its start), speakers in colours with editable names, and
// the word being played highlighted and kept in view.

export class TranscriptView {
  constructor(container, speakersPanel, player) {
    this.container = container;
    this.speakersPanel = speakersPanel;
    this.player = player;
    this.segments = [];
    this.names = new Map(); // diarizer's label -> name shown
    this.words = []; // [{start, end, el}] in time order
    this.current = null;
    player.addEventListener("timeupdate", () => this.follow(player.currentTime));
    container.addEventListener("click", (event) => {
      const word = event.target.closest(".word");
      if (word) this.play(Number(word.dataset.start));
    });
    container.addEventListener("keydown", (event) => {
      const segment = event.target.closest(".segment");
      if (segment && (event.key === "Enter" || event.key === " ")) {
        event.preventDefault();
        this.play(Number(segment.dataset.start));
      }
    });
  }

  clear() {
    this.segments = [];
    this.names.clear();
    this.words = [];
    this.current = null;
    this.container.replaceChildren();
    this.speakersPanel.replaceChildren();
  }

  // A decoded chunk's text while speakers or alignment are still to come.
  draft(line) {
    const p = document.createElement("p");
    p.className = "segment draft";
    p.textContent = line.text;
    this.container.append(p);
  }

  // A final segment (streamed, or all of them once diarization is done).
  add(segment) {
    this.container.querySelectorAll(".draft").forEach((d) => d.remove());
    this.segments.push(segment);
    if (segment.speaker && !this.names.has(segment.speaker)) {
      this.names.set(segment.speaker, this.defaultName(segment.speaker));
      this.renderSpeakers();
    }
    this.container.append(this.segmentElement(segment));
  }

  defaultName(label) {
    const match = /^SPEAKER_(\d+)$/.exec(label);
    return match ? `Speaker ${Number(match[1]) + 1}` : label;
  }

  colour(label) {
    return `s${[...this.names.keys()].indexOf(label) % 6}`;
  }

  segmentElement(segment) {
    const p = document.createElement("p");
    p.className = `segment ${segment.speaker ? this.colour(segment.speaker) : ""}`;
    p.dataset.start = segment.start;
    p.tabIndex = 0; // Enter plays the segment
    const when = document.createElement("span");
    when.className = "when";
    when.textContent = clock(segment.start);
    p.append(when);
    if (segment.speaker) {
      const who = document.createElement("span");
      who.className = "who";
      who.dataset.speaker = segment.speaker;
      who.textContent = `${this.names.get(segment.speaker)}:`;
      p.append(who);
    }
    const words = segment.words?.length ? segment.words : null;
    if (!words) {
      p.append(document.createTextNode(segment.text.trim()));
      return p;
    }
    for (const word of words) {
      const span = document.createElement("span");
      span.className = "word";
      span.textContent = word.word.trim();
      if (word.start !== undefined) {
        span.dataset.start = word.start;
        span.dataset.end = word.end;
        this.words.push({ start: word.start, end: word.end, el: span });
      }
      p.append(span, document.createTextNode(" "));
    }
    return p;
  }

  renderSpeakers() {
    this.speakersPanel.replaceChildren();
    for (const [label, name] of this.names) {
      const field = document.createElement("label");
      field.className = this.colour(label);
      field.append(`${label} `);
      const input = document.createElement("input");
      input.value = name;
      input.dataset.speaker = label;
      input.setAttribute("aria-label", `Name of ${label}`);
      input.addEventListener("input", () => this.rename(label, input.value));
      field.append(input);
      this.speakersPanel.append(field);
    }
  }

  // A new name shows everywhere the speaker does (and in the downloads).
  rename(label, name) {
    this.names.set(label, name.trim() || this.defaultName(label));
    for (const who of this.container.querySelectorAll(".who")) {
      if (who.dataset.speaker === label) who.textContent = `${this.names.get(label)}:`;
    }
  }

  play(seconds) {
    this.player.currentTime = seconds;
    this.player.play().catch(() => {}); // a browser may refuse to start playback: the position is set
    this.follow(seconds);
  }

  follow(seconds) {
    // the last word started at or before now (words are in time order)
    let lo = 0;
    let hi = this.words.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.words[mid].start <= seconds + 0.01) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    const word = found >= 0 && seconds <= this.words[found].end + 0.5 ? this.words[found] : null;
    if (word === this.current) return;
    this.current?.el.classList.remove("now");
    this.current = word;
    if (word) {
      word.el.classList.add("now");
      word.el.scrollIntoView({ block: "nearest" });
    }
  }

  // Downloads: the service's rendering with the names given.
  named(text, format) {
    let out = text;
    for (const [label, name] of this.names) {
      const shown = format === "rttm" ? name.split(/\s+/).join("_") : name;
      out = out.split(label).join(shown);
    }
    return out;
  }

  plainText() {
    return this.segments
      .map((s) => (s.speaker ? `${this.names.get(s.speaker)}: ${s.text.trim()}` : s.text.trim()))
      .join("\n");
  }
}

function clock(seconds) {
  const whole = Math.floor(seconds);
  const m = Math.floor(whole / 60);
  const s = String(whole % 60).padStart(2, "0");
  return `${m}:${s}`;
}
