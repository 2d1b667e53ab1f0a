"""Fair turns at a batched model: who goes next is the request served least so far.

The Transcriber's `@serve.batch` queue is first come, first served by chunk, so a short request
sent during a long one would wait behind every chunk of it. `FairQueue` sits in front of that
queue: at most `slots` calls (what the concurrent batches can hold) are inside at once, and a
freed slot goes to the waiting request that has received the least audio so far, the oldest
first among equals. A request that arrives during a 30-minute one therefore waits only for a
batch to finish, batches still fill from whichever requests are waiting, and concurrent long
requests share the model evenly.

A newcomer's batch is its own: when a turn goes to a request never served while others that
have been served are waiting, those others get no turn until a batch holding the newcomer's
chunks has started (`batch_started`). On a CPU a batch costs what its chunks cost, so a short
request behind a long one then pays for one running batch and its own chunks, not for three
more chunks of the long file in its batch. Newcomers arriving meanwhile share that batch.

Live utterances (`live=True`: a Realtime session's commits) go first: a caption is late after
two seconds, a file's transcript is not. Among waiting calls a live one is granted before any
bulk one, but never more than LIVE_BURST live turns in a row while a bulk call waits: bulk work
keeps at least one slot in every LIVE_BURST + 1 granted, however much live audio comes.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

LIVE_BURST = 4  # live turns granted in a row while bulk calls wait; then one bulk turn


@dataclass
class _Request:
    arrival: int  # order of first arrival: the tie-break between equally served requests
    served: float = 0.0  # cost granted so far (audio seconds)
    holding: int = 0  # turns granted and not yet ended
    waiting: deque[tuple[asyncio.Future, float]] = field(default_factory=deque)
    live: bool = False  # a live utterance's calls: granted ahead of bulk ones


class FairQueue:
    def __init__(self, slots: int):
        self.slots = max(1, slots)
        self.inside = 0
        self._requests: dict[str, _Request] = {}
        self._arrivals = itertools.count()
        # While not None, a newcomer's batch is forming: only these requests (and other
        # never-served ones, who join) get turns until a batch holding one of them starts.
        self._newcomers: set[str] | None = None
        self._live_in_a_row = 0  # live turns granted since the last bulk one while bulk waited

    @property
    def waiting(self) -> int:
        return sum(len(r.waiting) for r in self._requests.values())

    @property
    def live_waiting(self) -> int:
        return sum(len(r.waiting) for r in self._requests.values() if r.live)

    def batch_started(self, keys: set[str]) -> None:
        """A batch holding these requests' calls began: a newcomer's batch ends the hold."""
        if self._newcomers is not None and self._newcomers & keys:
            self._newcomers = None
            self._grant()

    def resize(self, slots: int) -> None:
        self.slots = max(1, slots)
        self._grant()

    @asynccontextmanager
    async def turn(self, key: str, cost: float, live: bool = False) -> AsyncIterator[None]:
        """Wait for a turn for one call of request `key` costing `cost`, and hold it inside."""
        request = self._requests.get(key)
        if request is None:
            request = self._requests[key] = _Request(next(self._arrivals), live=live)
        granted = asyncio.get_running_loop().create_future()
        request.waiting.append((granted, cost))
        self._grant()
        try:
            await granted
        except BaseException:
            if granted.done() and not granted.cancelled():  # granted as it was cancelled: give it back
                self._end(key)
            else:
                request.waiting = deque(w for w in request.waiting if w[0] is not granted)
                self._forget_if_idle(key)
                self._release_hold_if_gone()
            raise
        try:
            yield
        finally:
            self._end(key)

    def _grant(self) -> None:
        while self.inside < self.slots:
            candidates = [
                (not r.live, r.served, r.arrival, key)
                for key, r in self._requests.items()
                if r.waiting and (self._newcomers is None or key in self._newcomers or r.served == 0)
            ]
            if not candidates:
                return
            bulk = [c for c in candidates if c[0]]
            if bulk and self._live_in_a_row >= LIVE_BURST:  # bulk's turn: live has had its run
                candidates = bulk
            bulk_first, served, _, key = min(candidates)
            request = self._requests[key]
            granted, cost = request.waiting.popleft()
            if granted.done():  # cancelled while waiting: its turn goes to the next
                continue
            self._live_in_a_row = self._live_in_a_row + 1 if not bulk_first and bulk else 0
            if served == 0 and self._newcomers is None and self._others_served_waiting(key):
                self._newcomers = set()
            if self._newcomers is not None and served == 0:
                self._newcomers.add(key)
            request.served += cost
            request.holding += 1
            self.inside += 1
            granted.set_result(None)

    def _others_served_waiting(self, key: str) -> bool:
        return any(r.waiting and r.served > 0 for k, r in self._requests.items() if k != key)

    def _release_hold_if_gone(self) -> None:
        """A hold whose newcomers left without a batch starting (cancelled, failed) ends."""
        if self._newcomers is not None and not any(
            k in self._requests and self._requests[k].holding for k in self._newcomers
        ):
            self._newcomers = None
            self._grant()

    def _end(self, key: str) -> None:
        self.inside -= 1
        self._requests[key].holding -= 1
        self._forget_if_idle(key)
        self._release_hold_if_gone()
        self._grant()

    def _forget_if_idle(self, key: str) -> None:
        request = self._requests.get(key)
        if request is not None and not request.waiting and not request.holding:
            del self._requests[key]
