"""Rounds that stop once the speedup verdict is settled (load/run/rounds.py): the rule against every outcome the
remaining rounds could have, and run_rounds stopping on it. Passes here are recorded walls (no engine: the rule
reads nothing else); tests/plugin/test_plugin_runs.py runs whole scenarios on a real llama-server."""

from __future__ import annotations

import asyncio
import itertools
import statistics

import pytest

from pytest_vramcap.load.measure.record import RequestRecord
from pytest_vramcap.load.run.rounds import ModeResult, run_rounds, speedup_settled
from pytest_vramcap.report.verdicts import speedup_verdict

from ..factories import PAIR, scenario_run

MINIMUM = 1.2
SPEEDUPS = (0.8, 1.1, MINIMUM, 1.3, 2.0)  # the minimum itself: the verdict passes at >=


@pytest.mark.parametrize("planned", [2, 3, 4, 5])
def test_a_settled_verdict_is_the_one_every_round_would_give(planned: int) -> None:
    settled = speedup_settled(MINIMUM, planned)
    settled_once = False
    for done in range(1, planned):
        for first in itertools.product(SPEEDUPS, repeat=done):
            if not settled(scenario_run([(ratio, 1.0) for ratio in first])):
                continue
            settled_once = True
            verdicts = {statistics.median(first + rest) >= MINIMUM
                        for rest in itertools.product(SPEEDUPS, repeat=planned - done)}
            assert len(verdicts) == 1, (first, planned)
    assert settled_once == (planned > 2)  # two rounds: one cannot be more than half


@pytest.mark.parametrize("planned", [3, 5])
def test_an_odd_count_settles_as_soon_as_every_outcome_agrees(planned: int) -> None:
    # The median of an odd count is one of the speedups: only their sides matter, so the rule misses no round it
    # could save. (An even count's median averages two, and a round still to run can pull it anywhere.)
    settled = speedup_settled(MINIMUM, planned)
    for done in range(1, planned):
        for first in itertools.product(SPEEDUPS, repeat=done):
            verdicts = {statistics.median(first + rest) >= MINIMUM
                        for rest in itertools.product(SPEEDUPS, repeat=planned - done)}
            assert settled(scenario_run([(ratio, 1.0) for ratio in first])) == (len(verdicts) == 1), first


def test_two_of_three_rounds_on_one_side_settle_and_a_split_does_not() -> None:
    settled = speedup_settled(1.4, 3)
    assert settled(scenario_run([(2.45, 1.0), (2.48, 1.0)]))
    assert settled(scenario_run([(1.0, 1.0), (1.1, 1.0)]))
    assert not settled(scenario_run([(2.0, 1.0), (1.0, 1.0)]))
    assert not settled(scenario_run([(2.0, 1.0)]))


def test_a_conversation_settles_like_any_scenario() -> None:
    # its prompt_cache verdict judges each later turn on its own: a third round would only repeat that evidence
    later_turn = RequestRecord(label="loop.a", t_send=0.0, t_first=0.1, t_last=0.5, n_out=4, turn=2)
    run = scenario_run([(2.0, 1.0), (2.0, 1.0)], records=[later_turn])
    assert speedup_settled(1.2, 3)(run)


def _passes(walls: dict[str, list[float]]):  # type: ignore[no-untyped-def]
    async def run_pass(mode: str) -> ModeResult:
        wall = walls[mode].pop(0)
        return ModeResult(mode, wall, {"work": wall}, [], [], started=0.0)  # type: ignore[arg-type]
    return run_pass


def test_run_rounds_stops_when_settled_and_the_verdict_says_why() -> None:
    walls = {"sequential": [2.0, 2.1, 2.0], "parallel": [1.0, 1.0, 1.0]}
    run = asyncio.run(run_rounds(PAIR, _passes(walls), 3, settled=speedup_settled(1.4, 3)))
    assert run.rounds == 2 and run.planned_rounds == 3 and walls == {"sequential": [2.0], "parallel": [1.0]}
    verdict = speedup_verdict(run, 1.4)
    assert verdict.outcome == "pass"
    assert any("2 of 3 rounds" in line for line in verdict.evidence)


def test_without_a_rule_every_round_runs() -> None:
    walls = {"sequential": [2.0, 2.1, 2.0], "parallel": [1.0, 1.0, 1.0]}
    run = asyncio.run(run_rounds(PAIR, _passes(walls), 3))
    assert run.rounds == 3 and not any("rounds:" in line for line in speedup_verdict(run, 1.4).evidence)
