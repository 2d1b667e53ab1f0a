"""Model calls that survive the loss of a replica: every call is idempotent (an object ref and
options in), so one whose replica died is resent, up to `attempts` in all (then 503
ReplicaUnavailable). Anything else it raised is not retried: the same input fails the same way."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from ray.exceptions import RayActorError

from serve.errors import ReplicaUnavailable

log = logging.getLogger("whisperx_serve")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4  # tries in all
    backoff_s: float = 0.5  # before the second try; doubles each time

    def delays(self):
        for attempt in range(1, self.attempts):
            yield self.backoff_s * 2 ** (attempt - 1)


async def call(method, *args, policy: RetryPolicy = RetryPolicy(), what: str = "model", on_retry=None):
    """`await method.remote(*args)`, resent when the replica serving it dies (`on_retry()` is
    called before each resend). A cancelled caller cancels the call in flight."""
    delays = policy.delays()
    while True:
        response = method.remote(*args)
        try:
            return await response
        except asyncio.CancelledError:
            response.cancel()
            raise
        except RayActorError as exc:
            delay = next(delays, None)
            if delay is None:
                raise ReplicaUnavailable(
                    f"the {what} replica was lost {policy.attempts} times running; the service is recovering"
                ) from exc
            log.warning("%s replica lost (%s); resending in %.1f s", what, type(exc).__name__, delay)
            if on_retry is not None:
                on_retry()
            await asyncio.sleep(delay)
