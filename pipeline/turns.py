"""Server VAD for live streams (OpenAI's `turn_detection: {type: "server_vad"}`): where a
speaker's turn starts and ends, decided as the audio arrives, with the same segmentation model
that finds speech in files (pipeline/vad.py).

The stream's newest 5 s are scored every HOP_FRAMES frames (about a quarter second); each frame's
score is the weighted mean of the windows that covered it so far, as pyannote aggregates a file's
windows, and is decided as soon as a window has scored it. On the decided frames:
- speech is a run of frames at or above `threshold` (one threshold, as OpenAI's: WhisperX's lower
  offset, 0.363 for 0.5, held turns through pauses of 0.7-1 s on the dev set's turn-taking
  recording and added 0.17 s to the mean delay to a turn's end);
- a turn starts once a run has lasted MIN_SPEECH_S, `prefix_padding_ms` before the run began
  (never before the previous turn's end);
- it ends `silence_duration_ms` after its last speech frame, when that much silence has passed;
- a turn that reaches MAX_TURN_S is cut at its quietest frame of the last CUT_SEARCH_S and goes
  on as a new turn (a transcript arrives at least every 30 s; Whisper decodes 30 s at a time).
Times are seconds of the stream: every sample the client appended, from the session's start.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

STREAM_RATE = 24000  # OpenAI's pcm16
VAD_RATE = 16000  # the segmentation model's
MIN_SPEECH_S = 0.1  # a shorter run is a click, not a turn (the file VAD's min_duration_on)
MAX_TURN_S = 30.0
CUT_SEARCH_S = 3.0
HOP_FRAMES = 15  # 15 x 16.875 ms: a window every 0.253 s of audio
EDGE_S = 0.1  # resampling context before a window (its samples are dropped after)


@dataclass(frozen=True)
class TurnDetection:
    """OpenAI's server_vad settings, with OpenAI's defaults."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500

    def __post_init__(self):
        if not 0.0 < self.threshold < 1.0:
            raise ValueError("threshold is between 0 and 1 (exclusive)")
        if not 0 <= self.prefix_padding_ms <= 5000:
            raise ValueError("prefix_padding_ms is between 0 and 5000")
        if not 0 <= self.silence_duration_ms <= 10000:
            raise ValueError("silence_duration_ms is between 0 and 10000")


@dataclass(frozen=True)
class FrameGrid:
    """How the segmentation model scores a window (SpeechDetector.frame_grid)."""

    window_samples: int  # 16 kHz samples per window (5 s)
    frames: int  # scores per window
    step_samples: int  # 16 kHz samples between frames (270: 16.875 ms)
    first_middle: float  # seconds from a window's start to its first frame's middle

    @property
    def step(self) -> float:
        return self.step_samples / VAD_RATE


@dataclass(frozen=True)
class Window:
    """A window to score: its first frame is the stream's frame `first_frame`."""

    first_frame: int
    samples: np.ndarray  # float32, grid.window_samples at 16 kHz (zeros before the stream began)


@dataclass(frozen=True)
class TurnStarted:
    start: float  # seconds: the turn's audio begins here (prefix padding included)


@dataclass(frozen=True)
class TurnEnded:
    end: float  # seconds: the turn's audio ends here (the trailing silence included)


TurnEvent = TurnStarted | TurnEnded


class TurnTracker:
    """One stream's server VAD: `feed` it the client's pcm16, score each `next_window()` with
    the segmentation model and hand the scores to `scored`, which returns the turns' events."""

    def __init__(self, detection: TurnDetection, grid: FrameGrid, start: float = 0.0):
        """`start`: the stream time of the first audio fed (a session that turns server VAD on
        midway): times stay the stream's, and no turn starts before it."""
        self.detection, self.grid = detection, grid
        # 24 kHz stream audio kept for the next windows: the newest window and its edge
        self._keep = grid.window_samples * 3 // 2 + int(EDGE_S * STREAM_RATE) + 3
        self._tail = np.zeros(0, dtype=np.int16)
        self._received = round(start * STREAM_RATE)  # stream samples so far, at 24 kHz
        self._weights = np.hamming(grid.frames) + 1e-3  # the window's middle counts most
        self._sums = np.zeros(0)  # weighted score sums of frames _decided.. (undecided yet)
        self._counts = np.zeros(0)
        self._decided = max(0, int((start - grid.first_middle) / grid.step))  # frames before are decided
        self._scored_to = -(10**9)  # the last scored window's first frame
        self._recent: deque[tuple[float, float]] = deque(maxlen=int(CUT_SEARCH_S / grid.step))  # (time, score)
        self._active = False  # the last decided frame was speech
        self._run_start = 0.0  # the current speech run's first frame (middle)
        self._last_speech = 0.0
        self.reset(start)

    def reset(self, at: float) -> None:
        """No turn before `at` (a manual commit or a clear took the audio up to there); speech
        going on at `at` starts a turn from there."""
        self.floor = at
        self.pad_floor = at  # a turn's padding reaches back to here
        self.turn_start: float | None = None
        self._run_start = max(self._run_start, at)

    @property
    def received(self) -> float:
        return self._received / STREAM_RATE

    @property
    def decided_until(self) -> float:
        return self._middle(self._decided)

    def keep_from(self) -> float:
        """The earliest stream time a turn still to be announced may start at: the audio before
        it can be dropped."""
        if self.turn_start is not None:
            return self.turn_start
        run = self._run_start if self._active else self.decided_until
        return max(self.pad_floor, run - self.detection.prefix_padding_ms / 1000 - self.grid.step)

    def feed(self, pcm16: bytes) -> None:
        samples = np.frombuffer(pcm16, dtype="<i2")
        self._tail = np.concatenate([self._tail, samples])[-self._keep :]
        self._received += len(samples)

    def next_window(self) -> Window | None:
        """The newest window the audio fills, on the frame grid; None until HOP_FRAMES frames
        of new audio have come since the last one."""
        from scipy.signal import resample_poly

        g = self.grid
        received16 = self._received * 2 // 3
        first = (received16 - g.window_samples) // g.step_samples  # floor: the window ends within
        if first - self._scored_to < HOP_FRAMES:
            return None
        start16 = first * g.step_samples
        edge16 = int(EDGE_S * VAD_RATE) // 2 * 2
        # 24 kHz samples of [start16 - edge16, start16 + window): 3/2 of each 16 kHz index
        begin24, end24 = (start16 - edge16) * 3 // 2, (start16 + g.window_samples) * 3 // 2
        tail_start = self._received - len(self._tail)
        piece = np.zeros(end24 - begin24, dtype=np.float32)
        lo = max(begin24, tail_start)
        piece[lo - begin24 :] = self._tail[lo - tail_start : end24 - tail_start] / 32768.0
        samples = resample_poly(piece, 2, 3).astype(np.float32)[edge16 : edge16 + g.window_samples]
        self._scored_to = first
        return Window(first, samples)

    def scored(self, window: Window, scores: np.ndarray) -> list[TurnEvent]:
        """The window's scores (one per frame) taken in; the turns' events they decide."""
        g, start = self.grid, window.first_frame
        end = start + g.frames
        if end > self._decided + len(self._sums):  # room for the window's frames
            grow = end - self._decided - len(self._sums)
            self._sums, self._counts = np.append(self._sums, np.zeros(grow)), np.append(self._counts, np.zeros(grow))
        lo = max(start, self._decided)  # frames already decided keep their decision
        rows = slice(lo - self._decided, end - self._decided)
        self._sums[rows] += self._weights[lo - start :] * scores[lo - start :]
        self._counts[rows] += self._weights[lo - start :]
        # Every frame up to this window's end is decided now (one never scored counts as silence):
        # waiting for more windows over a frame measured later turn ends, not truer ones.
        done = end - self._decided
        with np.errstate(invalid="ignore", divide="ignore"):
            decided = np.where(self._counts[:done] > 0, self._sums[:done] / self._counts[:done], 0.0)
        events: list[TurnEvent] = []
        for k, p in enumerate(decided, start=self._decided):
            events += self._frame(self._middle(k), float(p))
        self._sums, self._counts = self._sums[done:], self._counts[done:]
        self._decided += done
        return events

    def _middle(self, frame: int) -> float:
        return frame * self.grid.step + self.grid.first_middle

    def _frame(self, t: float, p: float) -> list[TurnEvent]:
        if t < self.floor:
            return []
        self._recent.append((t, p))
        active = p >= self.detection.threshold
        if active and not self._active:
            self._run_start = t
        self._active = active
        d = self.detection
        if self.turn_start is None:
            if active and t - self._run_start >= MIN_SPEECH_S - 1e-9:
                self.turn_start = max(self.pad_floor, self._run_start - d.prefix_padding_ms / 1000)
                self._last_speech = t
                return [TurnStarted(self.turn_start)]
            return []
        if active:
            self._last_speech = t
        elif t - self._last_speech >= d.silence_duration_ms / 1000 - 1e-9:
            end = t + self.grid.step / 2
            self.reset(end)
            # The next turn's padding may take the silence this one ended with: no word is in it,
            # and Whisper hears a word's onset better after some quiet than cut at sample 0.
            self.pad_floor = self._last_speech + self.grid.step
            return [TurnEnded(end)]
        if t - self.turn_start >= MAX_TURN_S:  # cut at the quietest frame lately
            cut = min(self._recent, key=lambda frame: frame[1])[0]
            self.turn_start = cut
            return [TurnEnded(cut), TurnStarted(cut)]
        return []
