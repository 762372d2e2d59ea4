"""Judging one step of the capacity ramp and finding the knee (load/capacity.py), without Locust."""

from __future__ import annotations

from pytest_vramcap.load.capacity import CapacityResult, StepTally, format_capacity, judge_step
from pytest_vramcap.load.measure.stream import RequestRecord


def record(t_send: float, t_first: float | None, t_last: float | None, n_out: int = 8,
           error: str | None = None) -> RequestRecord:
    return RequestRecord(label="work.agent", t_send=t_send, t_first=t_first, t_last=t_last, n_out=n_out, error=error,
                         error_kind="connection" if error else None)


def tally(start: float, *finished: RequestRecord) -> StepTally:
    """A step's tally fed as the ramp feeds it: each request as it ends."""
    step = StepTally(start=start)
    for one in finished:
        step.add(one)
    return step


def test_open_requests_count_and_a_waiting_one_counts_with_its_wait_so_far() -> None:
    finished = [record(10.0, 10.1, 11.0), record(9.0, 9.1, 10.5)]  # the second was sent before the step
    streaming, waiting = record(11.0, 11.2, None), record(12.0, None, None)
    step = judge_step(3, tally(10.0, *finished), [streaming, waiting], end=15.0, ttft_p95_s=2.0)
    assert (step.requests, step.waiting, step.failed) == (3, 1, 0)
    assert step.ttft is not None and step.ttft.max == 3.0  # 15 - 12: still waiting for a first token
    assert not step.met  # p95 of (0.1, 0.2, 3.0) is over 2 s
    assert step.output_tps == (8 + 8) / 5.0  # both ended inside the step


def test_a_request_that_ended_before_the_step_adds_nothing_to_it() -> None:
    step = judge_step(1, tally(10.0, record(5.0, 5.1, 9.0)), [], end=15.0, ttft_p95_s=2.0)
    assert (step.requests, step.output_tps, step.ttft) == (0, 0.0, None)


def test_a_failure_fails_the_step_and_the_knee_is_the_last_step_before_the_first_miss() -> None:
    good = judge_step(1, tally(0.0, record(0.0, 0.1, 1.0)), [], end=5.0, ttft_p95_s=2.0)
    failed = judge_step(2, tally(5.0, record(5.0, None, 5.1, n_out=0, error="closed")), [], end=10.0,
                        ttft_p95_s=2.0)
    assert good.met and not failed.met and failed.failures == {"connection": "closed"}
    result = CapacityResult(scenario="capacity-agent", ttft_p95_s=2.0, max_users=4, steps=[good, failed, good],
                            planned_slots=4, profile="16gb")
    assert result.knee == 1 and result.broke
    assert format_capacity(result).splitlines()[-1] == ("knee: 1 concurrent agents meet TTFT p95 <= 2 s on 16gb; "
                                                        "the plan has 4 slots")
