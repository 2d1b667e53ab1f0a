"""serve.admission: the wait-to-start estimate, the byte budget and the chunk cap (no Ray)."""

from __future__ import annotations

import pytest

from serve.admission import Admission, AdmissionLimits, StageLoad, TicketReleased
from serve.errors import Overloaded


def test_prior_until_enough_saturated_time_is_measured():
    load = StageLoad(prior_speed=10.0, min_busy_s=5.0, saturated_s=60.0)
    load.add(100.0, now=0.0)
    load.submit(100.0, 100.0, now=0.0)
    load.done(20.0, now=2.0)  # 2 s of saturated time: too little to trust
    assert load.speed_per_replica() == 10.0
    load.done(40.0, now=6.0)  # 60 s in 6 s -> 10 s/s... then 20 + 40 over 6 s of busy time
    assert load.speed_per_replica() == pytest.approx(10.0)
    load.add(400.0, now=6.0)
    load.submit(400.0, 400.0, now=6.0)
    load.done(200.0, now=16.0)  # 200 s in 10 s
    assert load.speed_per_replica() == pytest.approx(260.0 / 16.0)


def test_light_load_does_not_count_as_speed():
    """A lone short request leaves the replica idle between batches: not a speed sample."""
    load = StageLoad(prior_speed=10.0, min_busy_s=1.0, saturated_s=60.0)
    for t in range(0, 100, 10):
        load.add(30.0, now=t)
        load.submit(30.0, 30.0, now=t)
        load.done(30.0, now=t + 9)  # 30 s of audio in 9 s: far below capacity, queue never saturated
    assert load.speed_per_replica() == 10.0


def test_speed_is_per_replica_and_the_wait_uses_replicas_now():
    load = StageLoad(prior_speed=1.0, min_busy_s=1.0, saturated_s=0.0, replicas=2)
    load.add(1000.0, now=0.0)
    load.submit(1000.0, 1000.0, now=0.0)
    load.done(200.0, now=10.0)  # 2 replicas, 20 s/s together -> 10 s/s each
    assert load.speed_per_replica() == pytest.approx(10.0)
    assert load.start_wait_s() == pytest.approx(800.0 / 20.0)
    load.set_replicas(4, now=10.0)  # autoscaled up: the same queue drains twice as fast
    assert load.start_wait_s() == pytest.approx(800.0 / 40.0)


def test_window_forgets_old_speed():
    load = StageLoad(prior_speed=1.0, window_s=20.0, min_busy_s=1.0, saturated_s=0.0)
    load.add(10_000.0, now=0.0)
    load.submit(10_000.0, 10_000.0, now=0.0)
    for t in range(1, 31):  # 100 s/s for 30 s
        load.done(100.0, now=float(t))
    for t in range(31, 61):  # then 10 s/s
        load.done(10.0, now=float(t))
    assert load.speed_per_replica() == pytest.approx(10.0, rel=0.1)


def _admission(**limits) -> Admission:
    return Admission(AdmissionLimits(**limits), {"Transcriber": StageLoad(prior_speed=10.0)})


def test_wait_to_start_refuses_with_an_honest_retry_after():
    admission = _admission(max_queue_wait_s=20.0)
    first = admission.admit()
    first.expect({"Transcriber": 250.0})  # nothing ahead: admitted even though 25 s alone
    second = admission.admit()
    with pytest.raises(Overloaded) as refused:
        second.expect({"Transcriber": 10.0})  # 250 s ahead / 10 s/s = 25 s > 20 s
    assert refused.value.retry_after_s == 5  # after 5 s the queue ahead is 200 s: 20 s, fits
    assert "to start" in str(refused.value)
    second.release()
    first.submit("Transcriber", 100.0)  # VAD found 100 s of speech, not 250 s
    third = admission.admit()
    third.expect({"Transcriber": 100.0})  # 100 s ahead: 10 s: admitted
    first.release()
    third.release()
    assert admission.stages["Transcriber"].queued == 0.0


def test_a_streams_chunks_replace_its_expected_work_as_they_come():
    admission = _admission()
    load = admission.stages["Transcriber"]
    with admission.admit() as ticket:
        ticket.expect({"Transcriber": 250.0})
        ticket.submit("Transcriber", 30.0, more=True)  # the VAD's first chunk
        assert (load.queued, load.submitted) == (250.0, 30.0)  # 220 s expected, 30 s sent
        ticket.submit("Transcriber", 200.0, more=True)
        ticket.submit("Transcriber", 40.0, more=True)  # more speech than expected: nothing below 0
        assert (load.queued, load.submitted) == (270.0, 270.0)
        ticket.done("Transcriber", 30.0)
        ticket.submit("Transcriber", 0.0)  # the VAD ended: no expectation left
        assert (load.queued, load.submitted) == (240.0, 240.0)
    assert (load.queued, load.submitted) == (0.0, 0.0)


def test_a_file_longer_than_the_bound_is_admitted_behind_a_short_queue():
    admission = _admission(max_queue_wait_s=30.0)
    with admission.admit() as short, admission.admit() as long:
        short.expect({"Transcriber": 50.0})
        long.expect({"Transcriber": 1800.0})  # 5 s ahead: admitted, though it takes 180 s itself
        with admission.admit() as late, pytest.raises(Overloaded) as refused:
            late.expect({"Transcriber": 10.0})  # 1850 s ahead: 185 s
        assert refused.value.retry_after_s == 155  # when 300 s are left ahead
    assert admission.stages["Transcriber"].queued == 0.0


def test_a_request_alone_is_admitted_however_long():
    admission = _admission(max_queue_wait_s=1.0)
    with admission.admit() as ticket:
        ticket.expect({"Transcriber": 14400.0})
    assert admission.stages["Transcriber"].queued == 0.0


def test_decoded_bytes_budget():
    admission = _admission(max_decoded_bytes=1000)
    with admission.admit() as a, admission.admit() as b:
        a.reserve(600)
        with pytest.raises(Overloaded):
            b.reserve(500)  # 1100 > 1000 while `a` holds 600
        b.reserve(400)
        a.settle(300)  # a's decode ended smaller than its allocations
        b.reserve(300)
        assert admission.decoded_bytes == 1000
    assert admission.decoded_bytes == 0
    with admission.admit() as alone:
        alone.reserve(5000)  # nobody else holds bytes: never refused (it could never start)
    assert admission.decoded_bytes == 0


def test_a_decode_that_outlives_its_request_holds_no_bytes():
    """A client that leaves mid-decode: the request's ticket is released while the decode's
    worker thread still runs; what that thread reserves next is refused, and nothing stays held."""
    admission = _admission()
    ticket = admission.admit()
    ticket.reserve(400)
    ticket.release()  # the request was cancelled
    assert admission.decoded_bytes == 0
    with pytest.raises(TicketReleased):
        ticket.reserve(600)  # the thread's next array
    ticket.settle(600)
    assert admission.decoded_bytes == 0


def test_chunk_cap_counts_requests_still_decoding():
    admission = _admission(max_chunks_in_flight=3)
    a = admission.admit()
    a.hold(2)
    b = admission.admit()  # 2 chunks + 1 decoding = 3
    with pytest.raises(Overloaded) as refused:
        admission.admit()
    assert refused.value.retry_after_s == 5
    b.release()
    a.release()
    assert (admission.chunks_in_flight, admission.preparing) == (0, 0)


def test_done_work_leaves_the_queue_once():
    admission = _admission()
    with admission.admit() as ticket:
        ticket.expect({"Transcriber": 80.0})
        ticket.submit("Transcriber", 60.0)
        assert admission.stages["Transcriber"].queued == 60.0
        ticket.done("Transcriber", 30.0)
        ticket.done("Transcriber", 40.0)  # more than was left: clamps
        assert admission.stages["Transcriber"].queued == 0.0
    assert admission.stages["Transcriber"].queued == 0.0


def test_time_in_the_ingress_is_not_the_stages_speed():
    """Admitted but still decoding: counts ahead of new requests, not as the stage's busy time."""
    load = StageLoad(prior_speed=10.0, min_busy_s=1.0, saturated_s=0.0)
    load.add(500.0, now=0.0)  # a long decode: nothing sent yet
    assert load.start_wait_s() == 50.0
    load.submit(500.0, 400.0, now=100.0)
    load.done(400.0, now=110.0)  # 400 s in the 10 s since it was sent, not in 110 s
    assert load.speed_per_replica() == pytest.approx(40.0)


def test_failed_request_leaves_nothing_queued():
    admission = _admission()
    with pytest.raises(RuntimeError), admission.admit() as ticket:
        ticket.expect({"Transcriber": 100.0})
        ticket.submit("Transcriber", 80.0)
        ticket.done("Transcriber", 30.0)
        raise RuntimeError("a chunk failed")
    load = admission.stages["Transcriber"]
    assert (load.queued, load.submitted) == (0.0, 0.0)


def test_refused_requests_are_told_staggered_times():
    """Ten clients refused at once are not all sent back at the same second (a herd that
    would be refused again): each is told when it fits behind the queue and those before it."""
    admission = _admission(max_queue_wait_s=30.0)
    first = admission.admit()
    first.expect({"Transcriber": 400.0})  # 40 s of work at 10 s/s ahead: over the 30 s bound
    retry_after = []
    for _ in range(10):
        with pytest.raises(Overloaded) as refused, admission.admit() as ticket:
            ticket.expect({"Transcriber": 100.0})
        retry_after.append(refused.value.retry_after_s)
    assert retry_after == [10 * (k + 1) for k in range(10)]  # 10 s apart: one 100 s request each
    first.release()


# --- the chunk cap ------------------------------------------------------------------------------


def _cap(chunks: int) -> Admission:
    return Admission(AdmissionLimits(max_chunks_in_flight=chunks), {})


def test_admits_until_the_maximum_then_overloads():
    admission = _cap(3)
    tickets = [admission.admit() for _ in range(3)]
    assert admission.preparing == 3
    with pytest.raises(Overloaded):
        admission.admit()
    tickets[0].release()
    assert admission.preparing == 2
    admission.admit()
    assert admission.preparing == 3


def test_hold_swaps_the_placeholder_for_chunks():
    admission = _cap(10)
    ticket = admission.admit()
    ticket.hold(4)
    assert (admission.preparing, admission.chunks_in_flight) == (0, 4)
    ticket.hold(1)
    assert (admission.preparing, admission.chunks_in_flight) == (0, 1)
    ticket.hold(0)
    assert (admission.preparing, admission.chunks_in_flight) == (0, 0)


def test_chunks_and_preparing_count_together():
    admission = _cap(5)
    big = admission.admit()
    big.hold(4)
    admission.admit()  # preparing: 4 + 1 = 5
    with pytest.raises(Overloaded):
        admission.admit()
    big.hold(2)
    admission.admit()
    assert (admission.chunks_in_flight, admission.preparing) == (2, 2)


def test_an_admitted_request_keeps_all_its_chunks():
    admission = _cap(2)
    ticket = admission.admit()
    ticket.hold(50)
    assert admission.chunks_in_flight == 50
    with pytest.raises(Overloaded):
        admission.admit()


def test_context_exit_releases_even_on_error():
    admission = _cap(2)
    with pytest.raises(RuntimeError), admission.admit() as ticket:
        ticket.hold(7)
        raise RuntimeError("boom")
    assert (admission.chunks_in_flight, admission.preparing) == (0, 0)
    with admission.admit():
        assert admission.preparing == 1
    assert (admission.chunks_in_flight, admission.preparing) == (0, 0)


def test_release_is_idempotent():
    admission = _cap(2)
    ticket = admission.admit()
    ticket.hold(3)
    ticket.release()
    ticket.release()
    assert (admission.chunks_in_flight, admission.preparing) == (0, 0)
