"""serve/fair_queue.py: turns go to the request served least, the queue never loses a slot."""

from __future__ import annotations

import asyncio

import pytest

from serve.fair_queue import LIVE_BURST, FairQueue


async def _run(queue: FairQueue, key: str, cost: float, order: list[str], release: asyncio.Event) -> None:
    async with queue.turn(key, cost):
        order.append(key)
        await release.wait()


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_short_request_overtakes_the_queue_of_a_long_one():
    async def scenario() -> list[str]:
        queue, order = FairQueue(slots=2), []
        gates = [asyncio.Event() for _ in range(12)]
        long_calls = [asyncio.create_task(_run(queue, "long", 30.0, order, gates[i])) for i in range(10)]
        await _settle()
        assert order == ["long", "long"] and queue.waiting == 8
        short = asyncio.create_task(_run(queue, "short", 11.0, order, gates[10]))
        await _settle()
        gates[0].set()  # the first batch slot frees: the short request, never served, goes next
        await _settle()
        assert order[:3] == ["long", "long", "short"]
        for gate in gates:
            gate.set()
        await asyncio.gather(*long_calls, short)
        assert queue.inside == 0 and queue.waiting == 0 and not queue._requests
        return order

    order = asyncio.run(scenario())
    assert order.count("long") == 10 and order.count("short") == 1


def test_two_long_requests_alternate_by_service_received():
    async def scenario() -> list[str]:
        queue, order, release = FairQueue(slots=1), [], asyncio.Event()
        tasks = [asyncio.create_task(_run(queue, "a", 10.0, order, release)) for _ in range(4)]
        tasks += [asyncio.create_task(_run(queue, "b", 5.0, order, release)) for _ in range(4)]
        await _settle()
        release.set()  # from here each call ends at once: the order is the grant order
        await asyncio.gather(*tasks)
        return order

    order = asyncio.run(scenario())
    # a goes first (it arrived first); b, served less, then goes until it has caught up
    assert order[:4] == ["a", "b", "b", "a"]
    assert sorted(order) == ["a"] * 4 + ["b"] * 4


def test_a_cancelled_waiter_gives_its_turn_to_the_next():
    async def scenario() -> None:
        queue, order = FairQueue(slots=1), []
        first_gate, never, last_gate = asyncio.Event(), asyncio.Event(), asyncio.Event()
        first = asyncio.create_task(_run(queue, "a", 1.0, order, first_gate))
        await _settle()
        cancelled = asyncio.create_task(_run(queue, "b", 1.0, order, never))
        last = asyncio.create_task(_run(queue, "c", 1.0, order, last_gate))
        await _settle()
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        first_gate.set()
        last_gate.set()
        await asyncio.gather(first, last)
        assert order == ["a", "c"]
        assert queue.inside == 0 and not queue._requests

    asyncio.run(scenario())


def test_a_failing_call_frees_its_slot_and_resize_admits_more():
    async def scenario() -> None:
        queue = FairQueue(slots=1)
        with pytest.raises(RuntimeError):
            async with queue.turn("a", 1.0):
                raise RuntimeError("decode failed")
        assert queue.inside == 0
        order, gate = [], asyncio.Event()
        tasks = [asyncio.create_task(_run(queue, "a", 1.0, order, gate)) for _ in range(3)]
        await _settle()
        assert len(order) == 1
        queue.resize(3)
        await _settle()
        assert len(order) == 3
        gate.set()
        await asyncio.gather(*tasks)

    asyncio.run(scenario())


def test_a_newcomers_batch_holds_no_chunk_of_a_served_request():
    async def scenario() -> None:
        queue, order = FairQueue(slots=4), []
        gates = [asyncio.Event() for _ in range(8)]
        long_calls = [asyncio.create_task(_run(queue, "long", 30.0, order, gates[i])) for i in range(8)]
        await _settle()
        assert order == ["long"] * 4
        short_gates = [asyncio.Event(), asyncio.Event()]
        short = [asyncio.create_task(_run(queue, "short", 11.0, order, g)) for g in short_gates]
        await _settle()
        for gate in gates[:4]:  # the running batch ends: four slots free
            gate.set()
        await _settle()
        # both of the newcomer's calls go in; the long request waits for that batch to start
        assert order[4:] == ["short", "short"] and queue.inside == 2
        later = asyncio.create_task(_run(queue, "later", 5.0, order, asyncio.Event()))
        await _settle()
        assert order[-1] == "later"  # another newcomer shares the newcomer's batch
        queue.batch_started({"long"})  # a batch without a newcomer changes nothing
        await _settle()
        assert order.count("long") == 4
        queue.batch_started({"short", "later"})
        await _settle()
        assert order.count("long") == 5 and queue.inside == 4
        later.cancel()
        for gate in gates + short_gates:
            gate.set()
        await asyncio.gather(*long_calls, *short, later, return_exceptions=True)
        assert queue.inside == 0 and not queue._requests and queue._newcomers is None

    asyncio.run(scenario())


def test_a_newcomer_that_leaves_before_its_batch_ends_the_hold():
    async def scenario() -> None:
        queue, order = FairQueue(slots=2), []
        gates = [asyncio.Event() for _ in range(4)]
        long_calls = [asyncio.create_task(_run(queue, "long", 30.0, order, gates[i])) for i in range(4)]
        await _settle()
        never = asyncio.Event()
        short = asyncio.create_task(_run(queue, "short", 11.0, order, never))
        await _settle()
        gates[0].set()
        await _settle()
        assert order == ["long", "long", "short"]
        gates[1].set()  # a slot frees during the hold: the long request still waits
        await _settle()
        assert order.count("long") == 2
        short.cancel()  # the newcomer leaves without its batch starting: the long one goes on
        await _settle()
        assert order.count("long") == 4
        for gate in gates:
            gate.set()
        await asyncio.gather(*long_calls, short, return_exceptions=True)
        assert queue.inside == 0 and queue._newcomers is None

    asyncio.run(scenario())


async def _run_batched(queue: FairQueue, key: str, order: list[str], release: asyncio.Event, live: bool) -> None:
    async with queue.turn(key, 1.0, live=live):
        queue.batch_started({key})  # each call is a batch of its own here
        order.append(key)
        await release.wait()


def test_a_live_utterance_goes_ahead_of_waiting_bulk_work():
    async def scenario() -> list[str]:
        queue, order = FairQueue(slots=1), []
        gates = [asyncio.Event() for _ in range(8)]
        bulk = [asyncio.create_task(_run_batched(queue, "file", order, gates[i], False)) for i in range(6)]
        early = asyncio.create_task(_run_batched(queue, "early-newcomer", order, gates[6], False))
        await _settle()
        live = asyncio.create_task(_run_batched(queue, "utterance", order, gates[7], True))
        await _settle()
        assert queue.live_waiting == 1
        gates[0].set()  # the batch being decoded ends: the live call is next, before the newcomer
        await _settle()
        assert order == ["file", "utterance"]
        for gate in gates:
            gate.set()
        await asyncio.gather(*bulk, early, live)
        assert queue.inside == 0 and not queue._requests
        return order

    asyncio.run(scenario())


def test_bulk_work_keeps_a_turn_in_every_live_burst():
    async def scenario() -> list[str]:
        queue, order, release = FairQueue(slots=1), [], asyncio.Event()
        tasks = [asyncio.create_task(_run_batched(queue, "file", order, release, False)) for _ in range(5)]
        await _settle()
        tasks += [asyncio.create_task(_run_batched(queue, f"live{i}", order, release, True)) for i in range(20)]
        await _settle()
        release.set()
        await asyncio.gather(*tasks)
        return order

    order = asyncio.run(scenario())
    kinds = "".join("b" if key == "file" else "l" for key in order)
    assert kinds.startswith("b" + "l" * LIVE_BURST + "b"), kinds
    assert "l" * (LIVE_BURST + 1) not in kinds[: kinds.rindex("b")], "never more than LIVE_BURST live in a row"
