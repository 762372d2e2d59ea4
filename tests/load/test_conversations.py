"""Agents that talk for many turns: the YAML runner's conversations on a real llama-server (the tiny model, 3 slots
of 256 tokens), the prompt cache on and off, a pass marker of each pass's own, the turn numbers, the context each
agent needs (predicted, and as the engine counted it) and the cache reuse the verdicts judge."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from pytest_vramcap.errors import ScenarioError
from pytest_vramcap.load.measure.record import RequestRecord, number_turns
from pytest_vramcap.load.run.apps import run_on_process_loop
from pytest_vramcap.load.run.rounds import ModeResult, ModeRuns, ScenarioRun
from pytest_vramcap.load.run.steps import run_both
from pytest_vramcap.load.scenario.context import agent_contexts
from pytest_vramcap.load.scenario.schema import Scenario, load_scenario, validated_scenario
from pytest_vramcap.load.scenario.text import WORDS, synthetic_text
from pytest_vramcap.report.conversation import context_verdict, prompt_cache_verdict, turn_rows
from tests.helpers import needs_llama_server


def loop(turns: int = 3, system_tokens: int = 60, turn_tokens: int = 20, **expect: float) -> Scenario:
    return validated_scenario({
        "name": "loop", "system_tokens": system_tokens, "expect": expect,
        "steps": [{"name": "work", "agents": [
            {"role": role, "prompt": f"{role}: go", "turns": turns, "turn_tokens": turn_tokens, "max_tokens": 4}
            for role in ("coder", "critic")]}]}, Path.cwd(), "test")


@pytest.mark.parametrize(("text", "message"), [
    ("turns: 0", "turns: Input should be greater than or equal to 1"),
    ("turn_tokens: -5", "turn_tokens: Input should be greater than or equal to 1"),
    ("turns: many", "turns: Input should be a valid integer"),
])
def test_a_bad_conversation_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(f"steps:\n  - name: s\n    agents:\n      - {{role: a, prompt: x, {text}}}\n")
    with pytest.raises(ScenarioError, match=message) as caught:
        load_scenario(path)
    assert "\n" not in str(caught.value)


def test_a_shared_system_prompt_is_for_scenarios_of_steps(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("system_tokens: -1\nsteps:\n  - {name: s, agents: [{role: a, prompt: x}]}\n")
    with pytest.raises(ScenarioError, match="system_tokens: Input should be greater than or equal to 0"):
        load_scenario(path)
    (tmp_path / "g.py").write_text("graph = None\n")
    path.write_text("graph: g.py:graph\nsystem_tokens: 100\n")
    with pytest.raises(ScenarioError, match="system_tokens: not used by a scenario of graph"):
        load_scenario(path)


def test_synthetic_text_is_the_same_every_time_and_as_long_as_asked() -> None:
    text = synthetic_text(200, "a.b.2")
    assert text == synthetic_text(200, "a.b.2") != synthetic_text(200, "a.b.3")
    assert len(text.split()) == 200 and set(text.split()) <= set(WORDS)


def test_the_context_an_agent_needs_grows_by_each_turn() -> None:
    needs = agent_contexts(loop(turns=4))[0].needs
    step = needs[1] - needs[0]
    assert [b - a for a, b in itertools.pairwise(needs)] == [step] * 3
    assert step == 4 + 20 + 16  # the answer kept, the tool result, two messages' framing


def test_a_conversation_that_outgrows_its_slot_fails_before_it_runs_naming_agent_and_turn() -> None:
    scenario = loop(turns=6)
    needs = agent_contexts(scenario)[0].needs
    slot = needs[2]  # turn 3 just fits, turn 4 does not
    empty = ScenarioRun(scenario, ModeRuns("sequential", [ModeResult("sequential", 0.0, {}, [])]),
                        ModeRuns("parallel", [ModeResult("parallel", 0.0, {}, [])]))
    verdict = context_verdict(slot, empty)
    assert verdict.outcome == "fail"
    assert verdict.summary == f"agent work.coder would overflow its {slot:,}-token slot at turn 4 (about " \
                              f"{needs[3]:,} tokens)"


def test_turns_are_numbered_per_agent_by_send_time() -> None:
    records = [RequestRecord("b", 3.0), RequestRecord("a", 2.0), RequestRecord("a", 1.0), RequestRecord("b", 0.5)]
    number_turns(records)
    assert [(r.label, r.t_send, r.turn) for r in records] == [("b", 3.0, 2), ("a", 2.0, 2), ("a", 1.0, 1),
                                                              ("b", 0.5, 1)]


@needs_llama_server
def test_conversations_with_the_prompt_cache_reuse_each_turn(tiny_server: str) -> None:
    scenario = loop()
    run = run_on_process_loop(run_both(tiny_server, scenario, rounds=1, prompt_cache=True))
    assert run.sequential.ok and run.parallel.ok, run.sequential.errors + run.parallel.errors
    for mode in (run.sequential, run.parallel):
        records = mode.passes[0].records
        assert sorted((r.label, r.turn) for r in records) == [(label, turn) for label in ("work.coder", "work.critic")
                                                              for turn in (1, 2, 3)]
        by_turn = {(r.label, r.turn): r for r in records}
        for label in ("work.coder", "work.critic"):
            first, second, third = (by_turn[label, turn] for turn in (1, 2, 3))
            assert first.prompt_tokens < second.prompt_tokens < third.prompt_tokens
            assert second.cached_tokens >= first.prompt_tokens - 1  # the whole conversation so far
            assert third.cached_tokens >= second.prompt_tokens - 1
    # each pass leads with a marker of its own: the second pass finds nothing of the first's in the cache
    first_turns = [r for p in (*run.sequential.passes, *run.parallel.passes) for r in p.records if r.turn == 1]
    assert min(r.cached_tokens for r in first_turns) < 60
    assert prompt_cache_verdict(run, scenario.expect.prompt_cache_min).outcome == "pass"
    verdict = context_verdict(256, run)
    assert verdict.outcome == "pass" and verdict.summary.endswith("turn 3)")
    rows = turn_rows(run)
    assert {(row["mode"], row["turn"]) for row in rows} == {(m, t) for m in ("sequential", "parallel")
                                                            for t in (1, 2, 3)}
    assert all(row["cached_tokens"] is not None and row["ttft_s"] > 0 for row in rows)


@needs_llama_server
def test_with_the_prompt_cache_off_nothing_is_reused_and_the_verdict_says_why(tiny_server: str) -> None:
    run = run_on_process_loop(run_both(tiny_server, loop(turns=2), rounds=1, prompt_cache=False))
    records = run.parallel.passes[0].records
    assert all(record.cached_tokens == 0 for record in records)
    verdict = prompt_cache_verdict(run, 0.5)
    assert verdict.outcome == "n/a" and "off" in verdict.summary


@needs_llama_server
def test_four_agents_on_three_slots_thrash_and_the_verdict_catches_it(tiny_server: str) -> None:
    # The fourth agent waits for a slot and takes the first one freed: the agent that held it comes back for its
    # second turn to find its conversation gone (the server hands a freed slot to a queued request before the
    # finished agent's next turn can arrive) and reuses only the prefix all agents share from another slot
    # (measured: 42 of 63 tokens, 67%).
    scenario = validated_scenario({
        "name": "thrash", "steps": [{"name": "work", "agents": [
            {"role": f"agent{i}", "prompt": f"agent {i}: go", "turns": 2, "turn_tokens": 20, "max_tokens": 8}
            for i in range(4)]}]}, Path.cwd(), "test")
    run = run_on_process_loop(run_both(tiny_server, scenario, rounds=1, prompt_cache=True))
    assert run.parallel.ok, run.parallel.errors
    verdict = prompt_cache_verdict(run, scenario.expect.prompt_cache_min)
    assert verdict.outcome == "fail" and "another request took the agent's slot" in verdict.summary
    assert all(line.startswith("parallel work.agent") for line in verdict.evidence)  # in sequence, nobody waits


def test_requests_under_one_label_are_a_conversation_only_when_each_carries_the_last() -> None:
    def record(t_send: float, prompt: int, cached: int) -> RequestRecord:
        return RequestRecord("agent", t_send, t_first=t_send + 0.1, t_last=t_send + 1.0, n_out=8, prompt_tokens=prompt,
                             cached_tokens=cached)

    def judged(*records: RequestRecord) -> tuple[str, str]:
        run = ScenarioRun(loop(), ModeRuns("sequential", [ModeResult("sequential", 1.0, {}, list(records))]),
                          ModeRuns("parallel", []), prompt_cache=True)
        verdict = prompt_cache_verdict(run, 0.9)
        return verdict.outcome, verdict.summary

    # a fan-out: at once, or one after another with prompts of the same size
    assert judged(record(0.0, 40, 0), record(0.0, 41, 0))[1] == "no agent held a conversation"
    assert judged(record(0.0, 40, 0), record(2.0, 41, 0))[1] == "no agent held a conversation"
    # a conversation: the next prompt carries the last one and its answer
    assert judged(record(0.0, 40, 0), record(2.0, 70, 44))[0] == "pass"
    assert judged(record(0.0, 40, 0), record(2.0, 70, 10))[0] == "fail"


@needs_llama_server
def test_an_answer_cut_at_the_end_of_its_slot_fails_the_context_verdict(tiny_server: str) -> None:
    from pytest_vramcap.load.measure.client import ChatClient, ChatRequest

    async def long_answer() -> RequestRecord:
        async with ChatClient(tiny_server) as client:
            return await client.chat(ChatRequest([{"role": "user", "content": "write on"}], 400, label="work.coder"))

    record = run_on_process_loop(long_answer())
    # llama-server without context shift stops the answer when the 256-token slot is full
    assert record.finish_reason == "length" and record.n_out < 400 and record.prompt_tokens + record.n_out >= 255
    record.turn = 1
    run = ScenarioRun(loop(turns=1), ModeRuns("sequential", [ModeResult("sequential", 1.0, {}, [record])]),
                      ModeRuns("parallel", []))
    verdict = context_verdict(256, run)
    assert verdict.outcome == "fail"
    assert verdict.summary == "agent work.coder filled its 256-token slot at turn 1: its answer was cut at the end " \
                              "of the context"
