"""The ingress's side of the result cache: an L1 LRU in front of the L2 actor (serve/cache_store.py)
and in-flight deduplication. It never fails a request: a call that errs or takes longer than
`timeout_s` is a miss, and the actor is looked up (or created) again a moment later."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger("whisperx_serve")
RECONNECT_AFTER_S = 1.0  # the first pause after a failure; doubled per failure up to 30 s
MAX_RECONNECT_S = 30.0


class CacheSettings(BaseModel):
    """The result cache: config.yaml's `args.cache`."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    max_bytes: int = Field(256 << 20, gt=0)  # L2: entries the cache actor keeps in the object store
    directory: str | None = None  # persist entries here (checksummed JSON), so a restart starts warm
    l1_entries: int = Field(128, ge=0)  # per ingress replica, in front of the actor
    l1_bytes: int = Field(32 << 20, ge=0)
    timeout_s: float = Field(0.5, gt=0)  # a cache call slower than this is a miss, never a failure


async def _value(answer) -> bytes:
    """The actor answers a small entry with its bytes, a large one with [ref]."""
    return answer if isinstance(answer, bytes) else await answer[0]


class LocalLru:
    """L1: a bounded LRU of entry bytes by key."""

    def __init__(self, max_entries: int, max_bytes: int):
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self.bytes = 0

    def get(self, key: str) -> bytes | None:
        data = self._items.get(key)
        if data is not None:
            self._items.move_to_end(key)
        return data

    def put(self, key: str, data: bytes) -> None:
        if len(data) > self.max_bytes:
            return
        old = self._items.pop(key, None)
        self.bytes -= len(old) if old is not None else 0
        self._items[key] = data
        self.bytes += len(data)
        while len(self._items) > self.max_entries or self.bytes > self.max_bytes:
            _, evicted = self._items.popitem(last=False)
            self.bytes -= len(evicted)

    def __len__(self) -> int:
        return len(self._items)


class CacheClient:
    def __init__(self, settings: CacheSettings, connect: Callable[[], Any] | None = None):
        from ray.serve.metrics import Counter

        from serve.cache_store import cache_actor

        self.settings = settings
        self._connect = connect or (lambda: cache_actor(settings.max_bytes, settings.directory))
        self._actor = None
        self._connecting: asyncio.Task | None = None
        self._down_until = 0.0
        self._pause = RECONNECT_AFTER_S
        self.l1 = LocalLru(settings.l1_entries, settings.l1_bytes)
        self._inflight: dict[str, asyncio.Future] = {}
        self._stores: set[asyncio.Task] = set()
        self.errors = 0
        self._l1_hits = Counter("whisperx_cache_l1_hits", description="lookups answered by the ingress's L1")
        self._failures = Counter("whisperx_cache_failures", description="cache calls that failed or timed out")
        self._requests = Counter(
            "whisperx_cache_requests", description="requests by what the cache answered", tag_keys=("state",)
        )

    async def connect(self) -> None:
        """Find or create the actor now (the ingress calls it at start: persisted entries load
        before the first request)."""
        self._handle()
        if self._connecting is not None:
            await asyncio.shield(self._connecting)

    def count(self, state: str) -> None:
        """One request's X-Cache state (hit, partial, miss, off), as a metric."""
        self._requests.inc(tags={"state": state})

    # --- lookups and stores --------------------------------------------------------------

    async def get(self, keys: list[str]) -> dict[str, bytes]:
        """The entries found among `keys`: L1 first, then the actor for the rest."""
        found = {k: data for k in keys if (data := self.l1.get(k)) is not None}
        if found:
            self._l1_hits.inc(len(found))
        missing = [k for k in keys if k not in found]
        if not missing:
            return found
        actor = self._handle()
        if actor is None:
            return found
        try:
            async with asyncio.timeout(self.settings.timeout_s):  # one deadline for lookup and bytes
                answers = await actor.get.remote(missing)
                values = await asyncio.gather(*(_value(answer) for answer in answers.values()))
        except Exception as exc:  # noqa: BLE001 - dead, restarting or slow: a miss, never a failure
            self._failed("lookup", exc)
            return found
        self._pause = RECONNECT_AFTER_S
        for key, data in zip(answers, values):
            self.l1.put(key, data)
            found[key] = data
        return found

    def store(self, key: str, data: bytes) -> None:
        """Into L1 now (a repeat arriving next finds it), into the actor in the background (a
        response never waits for the cache)."""
        self.l1.put(key, data)
        task = asyncio.get_running_loop().create_task(self._put(key, data))
        self._stores.add(task)
        task.add_done_callback(self._stores.discard)

    async def _put(self, key: str, data: bytes) -> None:
        actor = self._handle()
        if actor is None:
            return
        try:
            await asyncio.wait_for(actor.put.remote(key, data), self.settings.timeout_s)
            self._pause = RECONNECT_AFTER_S
        except Exception as exc:  # noqa: BLE001 - the result is served anyway
            self._failed("store", exc)

    # --- in-flight deduplication ---------------------------------------------------------

    async def once(self, key: str, compute: Callable[[], Awaitable[Any]]) -> tuple[Any, bool]:
        """(result, shared): the first caller with `key` computes; callers that arrive while
        it runs wait for its result (or its error) instead of computing it again."""
        running = self._inflight.get(key)
        if running is not None:
            try:
                return await asyncio.shield(running), True
            except asyncio.CancelledError:
                if not running.cancelled():  # this request was cancelled, not the first one
                    raise
                return await self.once(key, compute)  # the first one's client left: compute
        future = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            result = await compute()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody waited
            raise
        else:
            future.set_result(result)
            return result, False
        finally:
            self._inflight.pop(key, None)

    # --- the actor -------------------------------------------------------------------------

    def _handle(self):
        """The actor, or None while it is being found or after a failure (then a miss). The
        lookup (a GCS call, maybe creating the actor) runs in a thread, never on the loop."""
        if self._actor is None and self._connecting is None and time.monotonic() >= self._down_until:
            self._connecting = asyncio.get_running_loop().create_task(self._reconnect())
        return self._actor

    async def _reconnect(self) -> None:
        try:
            actor = await asyncio.to_thread(self._connect)
            # It may predate this config (a detached actor outlives deployments).
            await asyncio.wait_for(
                actor.configure.remote(self.settings.max_bytes, self.settings.directory), self.settings.timeout_s * 20
            )
            self._actor = actor
        except Exception as exc:  # noqa: BLE001 - stays uncached until the next try
            self._failed("connect", exc)
        finally:
            self._connecting = None

    def _failed(self, what: str, exc: BaseException) -> None:
        self.errors += 1
        self._failures.inc()
        log.warning("result cache %s failed (%s); running uncached", what, type(exc).__name__)
        # Look the actor up again after a pause (Ray restarts it, or get_if_exists makes a new
        # one), doubling while it keeps failing.
        self._actor = None
        self._down_until = time.monotonic() + self._pause
        self._pause = min(MAX_RECONNECT_S, self._pause * 2)

    def status(self) -> dict:
        return {
            "l1_entries": len(self.l1),
            "l1_bytes": self.l1.bytes,
            "l1_max_entries": self.settings.l1_entries,
            "errors": self.errors,
        }
