"""Admission: whether a request may start, decided per ingress replica before its audio is
decoded; each bound refused with 503 + Retry-After (RELIABILITY.md, "Admission", has the whole
account): chunks in flight (checked before the header is read), the wait to start (the audio
queued ahead at each stage over its measured speed times its replicas; the request's own length
does not count, `max_audio_seconds` caps that), and decoded bytes in flight (the decoder
reserves every array first; a request alone is never refused). An admitted request keeps its place."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass

from serve.errors import Overloaded


@dataclass(frozen=True)
class AdmissionLimits:
    max_chunks_in_flight: int = 256
    max_queue_wait_s: float = 120.0
    max_decoded_bytes: int = 2 << 30
    retry_after_s: int = 5  # for the bounds that have no estimate of their own


class StageLoad:
    """One stage's queue (`queued`: audio seconds admitted, not yet returned; `submitted`: the
    part sent to its replicas) and speed, measured only while `submitted` >= `saturated_s`: a
    replica fed one short request at a time idles between batches, saying nothing of its speed."""

    def __init__(
        self,
        prior_speed: float,
        window_s: float = 60.0,
        min_busy_s: float = 5.0,
        saturated_s: float = 60.0,
        replicas: int = 1,
    ):
        self.prior_speed, self.window_s, self.min_busy_s = prior_speed, window_s, min_busy_s
        self.saturated_s = saturated_s
        self.replicas = max(1, replicas)
        self.queued = 0.0
        self.submitted = 0.0
        self._done = 0.0  # audio seconds returned while saturated, all time
        self._replica_busy = 0.0  # replica-seconds spent saturated
        self._last = time.monotonic()
        self._samples: deque[tuple[float, float]] = deque([(0.0, 0.0)])  # (replica_busy, done)

    def _advance(self, now: float | None) -> bool:
        """Account the time since the last event; True if the stage was saturated meanwhile."""
        now = time.monotonic() if now is None else now
        saturated = self.submitted > 1e-9 and self.submitted >= self.saturated_s
        if saturated:
            self._replica_busy += (now - self._last) * self.replicas
        self._last = now
        return saturated

    def set_replicas(self, replicas: int, now: float | None = None) -> None:
        self._advance(now)
        self.replicas = max(1, replicas)

    def add(self, seconds: float, now: float | None = None) -> None:
        """Admitted, not yet sent to the stage."""
        self._advance(now)
        self.queued += seconds

    def submit(self, pending: float, seconds: float, now: float | None = None) -> None:
        """`pending` admitted seconds turned out to be `seconds`, now sent to the stage."""
        self._advance(now)
        self.queued = max(0.0, self.queued - pending + seconds)
        self.submitted += seconds

    def remove(self, pending: float, submitted: float, now: float | None = None) -> None:
        """Work that leaves unfinished (its request failed or ended)."""
        self._advance(now)
        self.queued = max(0.0, self.queued - pending - submitted)
        self.submitted = max(0.0, self.submitted - submitted)

    def done(self, seconds: float, now: float | None = None) -> None:
        saturated = self._advance(now)
        self.queued = max(0.0, self.queued - seconds)
        self.submitted = max(0.0, self.submitted - seconds)
        if not saturated:
            return
        self._done += seconds
        self._samples.append((self._replica_busy, self._done))
        while len(self._samples) > 2 and self._replica_busy - self._samples[1][0] > self.window_s:
            self._samples.popleft()

    def speed_per_replica(self) -> float:
        """Audio seconds per second one replica returned while saturated (else the prior)."""
        busy0, done0 = self._samples[0]
        busy1, done1 = self._samples[-1]
        if busy1 - busy0 < self.min_busy_s:
            return self.prior_speed
        return max((done1 - done0) / (busy1 - busy0), 1e-3)

    def start_wait_s(self, deferred: float = 0.0) -> float:
        """Seconds until everything queued now is done (and `deferred` seconds that refused
        requests were told to bring back first): when a request admitted now would start."""
        return (self.queued + deferred) / (self.speed_per_replica() * self.replicas)


class Admission:
    def __init__(self, limits: AdmissionLimits, stages: dict[str, StageLoad]):
        self.limits, self.stages = limits, stages
        self.chunks_in_flight = 0
        self.preparing = 0
        self.decoded_bytes = 0
        self._lock = threading.Lock()  # the decoder reserves bytes from a worker thread
        # Requests refused and told when to come back: (when, stage, audio seconds). Each later
        # refusal is told a later time, so refused clients return staggered, not as one herd.
        self._deferred: list[tuple[float, str, float]] = []

    def admit(self) -> Ticket:
        """The chunk cap, before any work (a request being decoded counts as one chunk)."""
        if self.chunks_in_flight + self.preparing >= self.limits.max_chunks_in_flight:
            raise Overloaded("chunks in flight", self.limits.retry_after_s)
        self.preparing += 1
        return Ticket(self)

    def start_wait(self, stages) -> float:
        return max((self.stages[name].start_wait_s() for name in stages), default=0.0)

    def refuse(self, work: dict[str, float], wait: float, now: float | None = None) -> Overloaded:
        """The 503 for a request past the wait bound: Retry-After is when it would fit behind
        the queue and every request refused before it and still to come back."""
        now = time.monotonic() if now is None else now
        self._deferred = [entry for entry in self._deferred if entry[0] > now]
        deferred: dict[str, float] = {}
        for _, name, seconds in self._deferred:
            deferred[name] = deferred.get(name, 0.0) + seconds
        bound = self.limits.max_queue_wait_s
        fits_in = max(self.stages[name].start_wait_s(deferred.get(name, 0.0)) for name in work) - bound
        retry_after = max(1, math.ceil(fits_in))
        for name, seconds in work.items():
            self._deferred.append((now + retry_after, name, seconds))
        return Overloaded(f"expected wait to start {wait:.0f} s is over {bound:.0f} s", retry_after)

    def status(self) -> dict:
        return {
            "chunks_in_flight": self.chunks_in_flight,
            "requests_preparing": self.preparing,
            "decoded_bytes_in_flight": self.decoded_bytes,
            "stages": {
                name: {
                    "queued_audio_s": round(load.queued, 2),
                    "speed_per_replica": round(load.speed_per_replica(), 2),
                    "replicas": load.replicas,
                    "expected_wait_s": round(load.start_wait_s(), 2),
                }
                for name, load in self.stages.items()
            },
        }


class TicketReleased(Exception):
    """A reservation for a request that has already ended (its client left mid-decode)."""


class Ticket:
    """One admitted request's hold on the ingress; a context manager that releases it all."""

    def __init__(self, admission: Admission):
        self._admission = admission
        self._chunks = 0
        self._preparing = True
        self._released = False  # the request ended: a decode still running in its thread must not reserve
        self._bytes = 0
        self._pending: dict[str, float] = {}  # stage -> audio seconds admitted, not yet sent
        self._submitted: dict[str, float] = {}  # stage -> audio seconds sent, not yet returned

    def expect(self, work: dict[str, float], bound_wait: bool = True) -> None:
        """Admit the request's expected work per stage, or refuse it (Overloaded with the
        seconds until it would fit) when the work queued ahead of it takes longer than the bound.
        `bound_wait` False: work that goes ahead of the queue (live utterances) is only counted."""
        admission = self._admission
        wait = admission.start_wait(work)
        if bound_wait and wait > admission.limits.max_queue_wait_s:
            raise admission.refuse(work, wait)
        for name, seconds in work.items():
            admission.stages[name].add(seconds)
            self._pending[name] = self._pending.get(name, 0.0) + seconds

    def submit(self, stage: str, seconds: float, more: bool = False) -> None:
        """The request's work for `stage` is known (e.g. the speech VAD found) and sent to it.
        `more`: part of it, more to come (a stream's first chunks): what it sends takes the place
        of as much of the expected work, and the last call settles the rest."""
        pending = self._pending.pop(stage, 0.0)
        if more:
            self._pending[stage] = pending - min(pending, seconds)
            pending = min(pending, seconds)
        self._admission.stages[stage].submit(pending, seconds)
        self._submitted[stage] = self._submitted.get(stage, 0.0) + seconds

    def done(self, stage: str, seconds: float) -> None:
        """Part of the request's work came back from `stage`."""
        seconds = min(seconds, self._submitted.get(stage, 0.0))
        self._admission.stages[stage].done(seconds)
        self._submitted[stage] = self._submitted.get(stage, 0.0) - seconds

    def reserve(self, nbytes: int) -> None:
        """The decoder is about to allocate `nbytes` (pipeline.audio.DecodeBudget)."""
        admission = self._admission
        with admission._lock:
            if self._released:  # cancelled while its decode ran in a worker thread: stop that decode
                raise TicketReleased("the request ended while its audio was being decoded")
            alone = admission.decoded_bytes == self._bytes  # no other request holds decoded audio
            if not alone and admission.decoded_bytes + nbytes > admission.limits.max_decoded_bytes:
                raise Overloaded("decoded audio in flight", admission.limits.retry_after_s)
            admission.decoded_bytes += nbytes
            self._bytes += nbytes

    def settle(self, nbytes: int) -> None:
        """The decode is over: the request holds exactly `nbytes` from now on."""
        with self._admission._lock:
            if self._released and nbytes:
                return
            self._admission.decoded_bytes += nbytes - self._bytes
            self._bytes = nbytes

    def hold(self, chunks: int) -> None:
        """The request's chunk count is known (after VAD): count them instead of the placeholder."""
        if self._preparing:
            self._admission.preparing -= 1
            self._preparing = False
        self._admission.chunks_in_flight += chunks - self._chunks
        self._chunks = chunks

    def release(self) -> None:
        with self._admission._lock:
            self._released = True
        self.hold(0)
        for name in {*self._pending, *self._submitted}:
            self._admission.stages[name].remove(self._pending.get(name, 0.0), self._submitted.get(name, 0.0))
        self._pending.clear()
        self._submitted.clear()
        self.settle(0)

    def __enter__(self) -> Ticket:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
