// The service's API as the page uses it: the key (kept in this tab), requests, NDJSON streams
// and errors turned into plain sentences.

const KEY = "whisperx-serve-api-key";

export const apiKey = {
  get: () => sessionStorage.getItem(KEY) || "",
  set: (key) => sessionStorage.setItem(KEY, key),
};

export class ApiError extends Error {
  constructor(sentence, status = 0) {
    super(sentence);
    this.status = status;
  }
}

function headers() {
  const key = apiKey.get();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

// What a person reads for each failure, from the status and the service's JSON error body.
async function sentenceFor(response) {
  let message = "";
  try {
    message = (await response.json()).error?.message || "";
  } catch {
    // not JSON: the status says enough
  }
  const retry = response.headers.get("Retry-After");
  switch (response.status) {
    case 401:
      return "This service needs an API key, or the one given is wrong.";
    case 413:
      return `The file is too large or too long for this service. ${message}`;
    case 415:
      return `This file is not audio the service can read. ${message}`;
    case 503:
      return `The service is busy. Try again${retry ? ` in ${retry} seconds` : " shortly"}. ${message}`;
    default:
      return message ? `The service refused the request: ${message}` : `The service answered ${response.status}.`;
  }
}

async function send(path, form, signal) {
  let response;
  try {
    response = await fetch(path, { method: "POST", body: form, headers: headers(), signal });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError("The connection to the service was lost. Check that it is running and try again.");
  }
  if (!response.ok) throw new ApiError(await sentenceFor(response), response.status);
  return response;
}

// POST /v1/transcribe?stream=true: each NDJSON line to onLine, in order; resolves on "done".
export async function transcribeStream(form, onLine, signal) {
  form.set("stream", "true");
  const response = await send("/v1/transcribe", form, signal);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  let done = null;
  try {
    for (;;) {
      const { value, done: ended } = await reader.read();
      if (ended) break;
      buffered += value;
      let newline;
      while ((newline = buffered.indexOf("\n")) >= 0) {
        const text = buffered.slice(0, newline).trim();
        buffered = buffered.slice(newline + 1);
        if (!text) continue;
        const line = JSON.parse(text);
        if (line.type === "error") throw new ApiError(`Transcription failed: ${line.error?.message || "unknown error"}`);
        if (line.type === "done") done = line;
        onLine(line);
      }
    }
  } catch (error) {
    if (error instanceof ApiError || error.name === "AbortError") throw error;
    throw new ApiError("The connection was lost before the transcript was complete. Try again.");
  }
  if (!done) throw new ApiError("The connection was lost before the transcript was complete. Try again.");
  return done;
}

// The same request rendered in another format (the result cache answers it without recomputing).
export async function render(form, format) {
  form.delete("stream");
  form.set("response_format", format);
  return (await send("/v1/transcribe", form)).text();
}

// ws:// URL and subprotocols for /v1/realtime (browsers' WebSockets send no headers: OpenAI's
// subprotocol carries the key).
export function realtimeSocket() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const key = apiKey.get();
  const protocols = ["realtime", ...(key ? [`openai-insecure-api-key.${key}`] : [])];
  return new WebSocket(`${scheme}://${location.host}/v1/realtime?intent=transcription`, protocols);
}
