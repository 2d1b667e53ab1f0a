// The page: an upload with its options, the streamed transcript, playback, renames, downloads,
// and the microphone. Every call goes to this service's own API (api.js).

import { ApiError, apiKey, render, transcribeStream } from "./api.js";
import { LiveSession } from "./live.js";
import { TranscriptView } from "./transcript.js";

const $ = (id) => document.getElementById(id);
const form = $("upload-form");
const fileInput = $("file");
const dropZone = $("drop-zone");
const view = new TranscriptView($("transcript"), $("speakers"), $("player"));
let chosen = null; // the File to transcribe
let lastForm = null; // the last request's fields (downloads ask again in other formats)
let running = null; // AbortController of the request in flight
let live = null;

function status(text) {
  $("status").textContent = text;
}

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = !text;
}

function failed(error, what = "") {
  if (error.name === "AbortError") return status("Stopped.");
  if (error instanceof ApiError && error.status === 401) askForKey();
  const message = error.message || String(error);
  showError(what ? `${what}: ${message}` : message);
  status("");
}

function askForKey() {
  $("key-panel").hidden = false;
  $("api-key").focus();
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  apiKey.set($("api-key").value.trim());
  $("key-panel").hidden = true;
  showError("");
  status("Key kept for this tab. Send the request again.");
});

function choose(file) {
  if (!file) return;
  chosen = file;
  $("file-name").textContent = `${file.name} (${(file.size / 1e6).toFixed(1)} MB)`;
}

fileInput.addEventListener("change", () => choose(fileInput.files[0]));
for (const name of ["dragenter", "dragover"]) {
  dropZone.addEventListener(name, (event) => {
    event.preventDefault();
    dropZone.classList.add("over");
  });
}
for (const name of ["dragleave", "drop"]) dropZone.addEventListener(name, () => dropZone.classList.remove("over"));
dropZone.addEventListener("drop", (event) => {
  event.preventDefault();
  choose(event.dataTransfer.files[0]);
});

$("add-known").addEventListener("click", () => {
  const row = document.createElement("div");
  row.className = "known-row";
  const n = $("known-rows").children.length + 1;
  row.innerHTML = `<label>Name <input class="known-name" required></label>
    <label>Clip <input class="known-clip" type="file" accept="audio/*" required></label>
    <button type="button" class="remove">Remove</button>`;
  row.querySelector(".known-name").setAttribute("aria-label", `Known speaker ${n}: name`);
  row.querySelector(".remove").addEventListener("click", () => row.remove());
  $("known-rows").append(row);
});

function requestFields() {
  const fields = new FormData();
  fields.set("file", chosen, chosen.name);
  if ($("language").value) fields.set("language", $("language").value);
  const diarize = $("diarize").checked;
  fields.set("diarize", diarize ? "true" : "false");
  if (diarize && $("num-speakers").value) fields.set("num_speakers", $("num-speakers").value);
  if (diarize) {
    for (const row of $("known-rows").children) {
      const name = row.querySelector(".known-name").value.trim();
      const clip = row.querySelector(".known-clip").files[0];
      if (name && clip) {
        fields.append("known_speaker_names[]", name);
        fields.append("known_speaker_references[]", clip, clip.name);
      }
    }
  }
  return fields;
}

function copy(fields) {
  const out = new FormData();
  for (const [name, value] of fields) out.append(name, value);
  return out;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!chosen) return showError("Choose or drop a recording first.");
  showError("");
  view.clear();
  const fields = requestFields();
  lastForm = copy(fields);
  const player = $("player");
  if (player.src) URL.revokeObjectURL(player.src);
  player.src = URL.createObjectURL(chosen);
  $("result").hidden = false;
  $("downloads").hidden = true;
  $("transcribe").disabled = true;
  $("cancel").hidden = false;
  running = new AbortController();
  let drafts = 0;
  let segments = 0;
  status("Sending the recording…");
  try {
    const done = await transcribeStream(
      fields,
      (line) => {
        if (line.type === "draft") {
          drafts += 1;
          view.draft(line);
          status(`Decoded up to ${Math.round(line.end)} s (${drafts} pieces); finding who spoke…`);
        } else if (line.type === "segment") {
          segments += 1;
          view.add(line.segment);
          status(`${segments} segments so far…`);
        }
      },
      running.signal,
    );
    const speakers = view.names.size;
    status(
      `Done: ${Math.round(done.duration)} s of audio in ${done.language}` +
        (speakers ? `, ${speakers} speaker${speakers === 1 ? "" : "s"}.` : "."),
    );
    $("downloads").hidden = false;
    $("download-rttm").hidden = !done.speaker_turns;
  } catch (error) {
    failed(error, chosen.name);
  } finally {
    running = null;
    $("transcribe").disabled = false;
    $("cancel").hidden = true;
  }
});

$("cancel").addEventListener("click", () => running?.abort());

const FORMATS = { txt: "text", srt: "srt", vtt: "vtt", json: "whisperx", rttm: "rttm" };
const TYPES = { txt: "text/plain", srt: "application/x-subrip", vtt: "text/vtt", json: "application/json", rttm: "text/plain" };

$("downloads").addEventListener("click", async (event) => {
  const format = event.target.dataset?.format;
  if (!format || !lastForm) return;
  showError("");
  try {
    let text;
    if (format === "txt" && view.names.size) {
      text = `${view.plainText()}\n`;
    } else if (format === "json") {
      const result = JSON.parse(await render(copy(lastForm), FORMATS.json));
      const name = (label) => view.names.get(label) ?? label;
      for (const segment of result.segments) {
        if (segment.speaker) segment.speaker = name(segment.speaker);
        for (const word of segment.words || []) if (word.speaker) word.speaker = name(word.speaker);
      }
      for (const word of result.word_segments || []) if (word.speaker) word.speaker = name(word.speaker);
      for (const turn of result.speaker_turns || []) turn.speaker = name(turn.speaker);
      text = JSON.stringify(result, null, 2);
    } else {
      text = view.named(await render(copy(lastForm), FORMATS[format]), format);
    }
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([text], { type: TYPES[format] }));
    link.download = `${chosen.name.replace(/\.[^.]*$/, "")}.${format}`;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  } catch (error) {
    failed(error);
  }
});

$("live-toggle").addEventListener("click", async () => {
  const button = $("live-toggle");
  if (live) {
    live.stop();
    live = null;
    button.textContent = "Start the microphone";
    button.setAttribute("aria-pressed", "false");
    return status("Microphone off.");
  }
  showError("");
  $("live-result").hidden = false;
  live = new LiveSession({
    language: $("language").value,
    onText: (text) => {
      const item = document.createElement("li");
      item.textContent = text;
      $("utterances").append(item);
    },
    onStatus: status,
    onError: (text) => {
      showError(text);
      if (/key/i.test(text)) askForKey();
    },
  });
  try {
    await live.start();
    button.textContent = "Stop the microphone";
    button.setAttribute("aria-pressed", "true");
  } catch (error) {
    live = null;
    showError(`The microphone could not be used: ${error.message}`);
  }
});

// A service that needs a key says so on the first call; /healthz needs none, so ask up front
// only when a request has been refused (failed() above).
