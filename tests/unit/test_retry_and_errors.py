"""serve.retry (resending a call whose replica died) and serve.errors (what an error response
says, and what it never echoes), without Ray: the handle is a small fake with `.remote()`."""

from __future__ import annotations

import asyncio
import json

import pytest
from ray.exceptions import ActorDiedError, ActorUnavailableError

from pipeline.errors import AudioTooLong
from serve import retry
from serve.errors import Overloaded, ReplicaUnavailable, response_for
from serve.retry import RetryPolicy


class FlakyMethod:
    """Fails with `errors` in turn, then returns "ok"; counts calls and cancellations."""

    def __init__(self, *errors: BaseException):
        self.errors, self.calls, self.cancelled = list(errors), 0, 0
        self.deployment_name = "Fake"

    def remote(self, *args):
        self.calls += 1
        error = self.errors.pop(0) if self.errors else None
        method = self

        class Response:
            def __await__(self):
                async def run():
                    await asyncio.sleep(0)
                    if error is not None:
                        raise error
                    return "ok"

                return run().__await__()

            def cancel(self):
                method.cancelled += 1

        return Response()


FAST = RetryPolicy(attempts=3, backoff_s=0.001)


def test_a_lost_replica_is_retried_until_it_answers():
    method = FlakyMethod(ActorDiedError(), ActorUnavailableError("unreachable", None))
    retried = []
    assert asyncio.run(retry.call(method, 1, policy=FAST, on_retry=lambda: retried.append(1))) == "ok"
    assert method.calls == 3 and len(retried) == 2


def test_retries_run_out_into_a_clear_503():
    method = FlakyMethod(*(ActorDiedError() for _ in range(5)))
    with pytest.raises(ReplicaUnavailable) as failed:
        asyncio.run(retry.call(method, policy=FAST, what="Transcriber"))
    assert method.calls == 3
    response = response_for(failed.value, retry_after_s=7)
    assert response.status_code == 503 and response.headers["retry-after"] == "7"
    assert json.loads(response.body)["error"]["code"] == "replica_unavailable"


def test_errors_of_the_input_are_not_retried():
    method = FlakyMethod(AudioTooLong("too long"))
    with pytest.raises(AudioTooLong):
        asyncio.run(retry.call(method, policy=FAST))
    assert method.calls == 1


def test_a_cancelled_caller_cancels_the_call():
    method = FlakyMethod()

    async def main():
        task = asyncio.create_task(retry.call(method, policy=FAST))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert method.cancelled <= method.calls  # cancelled before or during the call, never leaked


def test_overload_says_when_to_come_back():
    response = response_for(Overloaded("expected wait 80 s is over 60 s", 20), retry_after_s=5)
    assert response.status_code == 503 and response.headers["retry-after"] == "20"
    assert "expected wait" in json.loads(response.body)["error"]["message"]
    assert response_for(Overloaded("chunks in flight"), retry_after_s=5).headers["retry-after"] == "5"


def test_an_unexpected_error_never_echoes_its_message():
    """A bug's message may hold paths, options or bytes of the input: the client gets only its type."""
    response = response_for(ValueError("secret /home/u/model.bin sk-123"), retry_after_s=5)
    body = json.loads(response.body)
    assert response.status_code == 500 and body["error"]["message"] == "internal error (ValueError)"
