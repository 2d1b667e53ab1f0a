"""Admission: whether a request may start, decided before any work is done for it.

The ingress counts the chunks its admitted requests hold in the Transcriber's queue and the
requests still being decoded (each counted as one chunk until its VAD says how many it has).
A request that would start while that count is at `max_chunks_in_flight` is refused with 503
at once: before decode, VAD, `ray.put` or any diarization call, so nothing is left running.
A request once admitted keeps all its chunks, however many.
"""

from __future__ import annotations

from serve.errors import Overloaded


class Admission:
    def __init__(self, max_chunks_in_flight: int):
        self.max_chunks_in_flight = max_chunks_in_flight
        self.chunks_in_flight = 0
        self.preparing = 0

    def admit(self) -> Ticket:
        if self.chunks_in_flight + self.preparing >= self.max_chunks_in_flight:
            raise Overloaded()
        self.preparing += 1
        return Ticket(self)


class Ticket:
    """One admitted request's hold on the ingress; a context manager that releases it."""

    def __init__(self, admission: Admission):
        self._admission = admission
        self._chunks = 0
        self._preparing = True

    def hold(self, chunks: int) -> None:
        """The request's chunk count is known (after VAD): count them instead of the placeholder."""
        if self._preparing:
            self._admission.preparing -= 1
            self._preparing = False
        self._admission.chunks_in_flight += chunks - self._chunks
        self._chunks = chunks

    def release(self) -> None:
        self.hold(0)

    def __enter__(self) -> Ticket:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
