"""L2 of the result cache: a named, detached Ray actor that puts every entry in the object store
itself (so it outlives the replica that computed it), evicts LRU entries beyond `max_bytes`, and
may persist them: one file per entry, a JSON header (key, bytes, sha256) then the JSON bytes
(pipeline/cache_entries.py); a file that does not verify is deleted on load. Never unpickled."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections import OrderedDict
from pathlib import Path

import ray

log = logging.getLogger("whisperx_serve")

ACTOR_NAME = "whisperx-result-cache"
NAMESPACE = "whisperx-serve"
_KEY = re.compile(r"[a-z]+-[0-9a-f]{40}")
SUFFIX = ".entry"
INLINE_BYTES = 64 << 10  # below Ray's 100 KiB limit for values returned inline


class ResultCache:
    """The actor's class (`cache_actor()` makes the Ray actor of it)."""

    def __init__(self, max_bytes: int, directory: str | None = None):
        from ray.util.metrics import Counter, Gauge

        self.max_bytes = max_bytes
        self.directory: Path | None = None
        self._entries: OrderedDict[str, tuple[ray.ObjectRef, int]] = OrderedDict()
        self.bytes = 0
        self.counts = {"hits": 0, "misses": 0, "evictions": 0, "dropped": 0, "loaded": 0}
        self._hits = Counter("whisperx_cache_hits", description="result-cache lookups that found the entry")
        self._misses = Counter("whisperx_cache_misses", description="result-cache lookups that did not")
        self._evictions = Counter("whisperx_cache_evictions", description="entries evicted to stay within bytes")
        self._bytes = Gauge("whisperx_cache_bytes", description="bytes of the entries the cache holds")
        self._count = Gauge("whisperx_cache_entries", description="entries the cache holds")
        self._use_directory(directory)
        self._report()

    def ping(self) -> int:
        return os.getpid()

    def configure(self, max_bytes: int, directory: str | None) -> None:
        """Each ingress calls this on connecting: the actor outlives deployments, and a Ray
        restart re-runs __init__ with the arguments it was first created with."""
        self.max_bytes = max_bytes
        if (Path(directory).expanduser() if directory else None) != self.directory:
            self._use_directory(directory)
        self._evict()
        self._report()

    def get(self, keys: list[str]) -> dict[str, bytes | list[ray.ObjectRef]]:
        """The entries found among `keys`: a small one's bytes (inlined in the reply), a large one
        as [ref] (a bare ref Ray would resolve; the caller reads it zero-copy on its node)."""
        found = {}
        for key in keys:
            if key in self._entries:
                self._entries.move_to_end(key)
                ref, size = self._entries[key]
                found[key] = ray.get(ref) if size <= INLINE_BYTES else [ref]
        self.counts["hits"] += len(found)
        self.counts["misses"] += len(keys) - len(found)
        self._hits.inc(len(found)) if found else None
        self._misses.inc(len(keys) - len(found)) if len(keys) > len(found) else None
        return found

    def put(self, key: str, data: bytes) -> bool:
        """Store `data` under `key` (replacing it); False if it can never fit."""
        if not _KEY.fullmatch(key) or len(data) > self.max_bytes:
            return False
        self._drop(key)
        self._entries[key] = (ray.put(data), len(data))
        self.bytes += len(data)
        self._evict()  # before the write: a failing disk never leaves the store over budget
        self._report()
        if self.directory:
            try:
                _write(self.directory / f"{key}{SUFFIX}", key, data)
            except OSError as exc:  # kept in memory; only its copy on disk is missing
                log.warning("result cache: cannot persist %s: %s", key, exc)
        return True

    def stats(self) -> dict:
        return {**self.counts, "entries": len(self._entries), "bytes": self.bytes, "max_bytes": self.max_bytes}

    def clear(self) -> None:
        for key in list(self._entries):
            self._drop(key, delete_file=True)
        self._report()

    # --- internals -------------------------------------------------------------------------

    def _evict(self) -> None:
        while self.bytes > self.max_bytes and self._entries:
            oldest = next(iter(self._entries))
            self._drop(oldest, delete_file=True)
            self.counts["evictions"] += 1
            self._evictions.inc()

    def _drop(self, key: str, delete_file: bool = False) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.bytes -= entry[1]
        if delete_file and self.directory:
            (self.directory / f"{key}{SUFFIX}").unlink(missing_ok=True)

    def _use_directory(self, directory: str | None) -> None:
        self.directory = Path(directory).expanduser() if directory else None
        if self.directory is None:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._load()
        except OSError as exc:  # the cache still works, in memory
            log.warning("result cache: cannot use %s: %s; not persisting", self.directory, exc)
            self.directory = None

    def _load(self) -> None:
        """Newest first, until `max_bytes` (older files stay on disk, unloaded); what does not
        verify is deleted, and so are temporary files a crash left behind."""
        for tmp in self.directory.glob("*.tmp"):
            tmp.unlink(missing_ok=True)
        files = sorted(self.directory.glob(f"*{SUFFIX}"), key=lambda p: p.stat().st_mtime, reverse=True)
        loaded = []
        for path in files:
            key = path.name[: -len(SUFFIX)]
            if key in self._entries:
                continue
            data = _read(path, key)
            if data is None:
                log.warning("result cache: dropped damaged entry %s", path.name)
                path.unlink(missing_ok=True)
                self.counts["dropped"] += 1
                continue
            if self.bytes + len(data) > self.max_bytes:
                continue
            loaded.append((key, data))
            self.bytes += len(data)
        for key, data in reversed(loaded):  # oldest first, so the LRU order follows the files
            self._entries[key] = (ray.put(data), len(data))
        self.counts["loaded"] = len(loaded)

    def _report(self) -> None:
        self._bytes.set(self.bytes)
        self._count.set(len(self._entries))


def cache_actor(max_bytes: int, directory: str | None = None):
    """The cluster's cache actor (created if absent; Ray restarts it), on the head node: its
    persistence directory is that node's, whichever ingress made it."""
    actor = ray.remote(ResultCache).options(
        name=ACTOR_NAME,
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        max_restarts=-1,
        max_task_retries=0,  # a caller that times out runs uncached; it does not queue retries
        num_cpus=0,
        resources={"node:__internal_head__": 0.001},
    )
    return actor.remote(max_bytes, directory)


def _write(path: Path, key: str, data: bytes) -> None:
    header = {"key": key, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), "at": time.time()}
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as f:
        f.write(json.dumps(header).encode() + b"\n" + data)
    os.replace(tmp, path)  # a reader never sees half a file


def _read(path: Path, key: str) -> bytes | None:
    try:
        raw = path.read_bytes()
        head, _, data = raw.partition(b"\n")
        header = json.loads(head)
        ok = (
            _KEY.fullmatch(key)
            and header.get("key") == key
            and header.get("bytes") == len(data)
            and header.get("sha256") == hashlib.sha256(data).hexdigest()
        )
        return data if ok else None
    except (OSError, ValueError, AttributeError, RecursionError):
        return None
