"""Agents that talk for many turns: does each conversation fit its slot (``context``), does the prompt cache
serve what it could on later turns (``prompt_cache``), and TTFT and reuse by agent and turn.

* ``context``      predicted before any request for a scenario of steps (:mod:`..load.scenario.context`: the
                   first turn an agent would overflow its slot), and observed in every run (a request the engine
                   refused as too long for the context, or an answer that filled the slot and was cut there);
                   the evidence gives each agent's largest prompt.
* ``prompt_cache`` on each agent's turns after its first, the share of its previous prompt (all of which the new
                   one repeats) that the engine served from its cache (a turn is a request that continues its
                   label's previous one: sent after it, its prompt grown by the answer), against the scenario's
                   ``expect.prompt_cache_min``: a low share means another agent's request took the slot (slot
                   thrash). n/a with the cache off, and where the engine does not say (Ollama's native API).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from ..load.measure.record import RequestRecord
from ..load.run.rounds import ModeResult, ScenarioRun
from ..load.scenario.context import agent_contexts
from ..load.scenario.schema import Scenario
from .verdict import FAIL, NA, PASS, Verdict

__all__ = ["context_verdict", "first_turn_overflow", "prompt_cache_verdict", "turn_rows"]


def _passes(run: ScenarioRun) -> list[ModeResult]:
    return [*run.sequential.passes, *run.parallel.passes]


def _overflows(slot_tokens: int, scenario: Scenario) -> list[tuple[str, int, int]]:
    """(agent, first turn that overflows, tokens it needs) for each agent of a scenario of steps that would not fit."""
    return [(context.label, turn, context.needs[turn - 1]) for context in agent_contexts(scenario)
            if (turn := context.overflow(slot_tokens)) is not None]


def _predicted_failure(slot_tokens: int, predicted: list[tuple[str, int, int]]) -> Verdict:
    label, turn, need = min(predicted, key=lambda item: item[1])
    evidence = tuple(f"{name}: about {tokens:,} tokens at turn {at} (prompt and answer)"
                     for name, at, tokens in predicted)
    return Verdict(name="context", outcome=FAIL, evidence=evidence,
                   summary=f"agent {label} would overflow its {slot_tokens:,}-token slot at turn {turn} "
                           f"(about {need:,} tokens)")


def first_turn_overflow(slot_tokens: int, scenario: Scenario) -> Verdict | None:
    """The failing ``context`` verdict of a scenario of steps in which some agent cannot fit even its first turn:
    nothing could run, so the plugin starts no server for it. None otherwise."""
    predicted = _overflows(slot_tokens, scenario)
    return _predicted_failure(slot_tokens, predicted) if any(turn == 1 for _, turn, _ in predicted) else None


def _observed_failure(slot_tokens: int, records: list[RequestRecord], what: str,
                      line: Callable[[RequestRecord], str]) -> Verdict:
    """The failing ``context`` verdict for records the engine refused or cut: the earliest turn named (``what``: how
    its agent met the slot's end), each record quoted by ``line``."""
    first = min(records, key=lambda record: (record.turn or 0, record.label))
    return Verdict(name="context", outcome=FAIL,
                   summary=what.format(agent=first.label, slot=f"{slot_tokens:,}-token slot", turn=first.turn or 1),
                   evidence=tuple(f"{record.label} turn {record.turn or 1}: {line(record)}" for record in records[:5]))


def context_verdict(slot_tokens: int, run: ScenarioRun) -> Verdict:
    """``slot_tokens``: the context of one slot (the plan's context per agent)."""
    predicted = _overflows(slot_tokens, run.scenario)
    if predicted:
        return _predicted_failure(slot_tokens, predicted)
    records = [record for mode_pass in _passes(run) for record in mode_pass.records]
    overflowed = [record for record in records if record.error_kind == "context_overflow"]
    if overflowed:
        return _observed_failure(slot_tokens, overflowed, "agent {agent} overflowed its {slot} at turn {turn}",
                                 lambda r: (r.error or "")[:160])
    used = [(record.prompt_tokens + record.n_out, record) for record in records
            if record.ok and record.prompt_tokens is not None]
    if not used:
        return Verdict(name="context", outcome=NA, summary="no request reported its prompt tokens")
    # llama-server without context shift stops an answer when the slot is full (finish_reason "length")
    filled = [record for tokens, record in used if tokens >= slot_tokens - 1]
    if filled:
        return _observed_failure(slot_tokens, filled, "agent {agent} filled its {slot} at turn {turn}: its answer "
                                 "was cut at the end of the context",
                                 lambda r: f"{r.prompt_tokens:,} prompt + {r.n_out:,} answer tokens "
                                           f"({r.finish_reason})")
    peak, record = max(used, key=lambda pair: pair[0])
    evidence = tuple(f"{label}: at most {most:,} tokens" for label, most in _peaks(used).items())
    return Verdict(name="context", outcome=PASS, evidence=evidence,
                   summary=f"at most {peak:,} of {slot_tokens:,} tokens a slot ({record.label}, turn {record.turn})")


def _peaks(used: list[tuple[int, RequestRecord]]) -> dict[str, int]:
    peaks: dict[str, int] = {}
    for tokens, record in used:
        peaks[record.label] = max(peaks.get(record.label, 0), tokens)
    return dict(sorted(peaks.items()))


def _continues(before: RequestRecord, record: RequestRecord) -> bool:
    """Whether ``record`` is the next turn of ``before``'s conversation: sent after it ended, with a prompt that
    grew by at least half of its answer (the history carried). A graph's fan-out sends several requests under one
    label: at once, or one after another with prompts of the same size; neither is a conversation."""
    if before.t_last is None or record.t_send < before.t_last or before.prompt_tokens is None:
        return False
    return record.prompt_tokens is not None and record.prompt_tokens >= before.prompt_tokens + max(1, before.n_out // 2)


def _turns(mode_pass: ModeResult) -> list[tuple[RequestRecord, RequestRecord]]:
    """(turn before, turn) for every later turn of a conversation in the pass."""
    previous: dict[str, RequestRecord] = {}
    pairs = []
    for record in sorted(mode_pass.records, key=lambda r: r.t_send):
        before = previous.get(record.label)
        previous[record.label] = record
        if before is not None and record.ok and _continues(before, record):
            pairs.append((before, record))
    return pairs


def _reuse(mode_pass: ModeResult) -> list[tuple[RequestRecord, float]]:
    """(record, share of the previous turn's prompt served from the cache) for every later turn of the pass."""
    return [(record, min(1.0, record.cached_tokens / before.prompt_tokens)) for before, record in _turns(mode_pass)
            if record.cached_tokens is not None and before.prompt_tokens]


def prompt_cache_verdict(run: ScenarioRun, minimum: float) -> Verdict:
    if not run.prompt_cache:
        return Verdict(name="prompt_cache", outcome=NA, summary="the prompt cache was off (--vramcap-prompt-cache)")
    shares = [(mode_pass.mode, record, share) for mode_pass in _passes(run) for record, share in _reuse(mode_pass)]
    if not shares:
        later = any(_turns(mode_pass) for mode_pass in _passes(run))
        why = "the engine did not report cached prompt tokens" if later else "no agent held a conversation"
        return Verdict(name="prompt_cache", outcome=NA, summary=why)
    worst = min(shares, key=lambda item: item[2])
    low = [item for item in shares if item[2] < minimum]
    evidence = tuple(f"{mode} {record.label} turn {record.turn}: {record.cached_tokens:,} cached tokens, "
                     f"{share:.0%} of the turn before" for mode, record, share in (low or [worst])[:5])
    mode, record, share = worst
    if low:
        return Verdict(name="prompt_cache", outcome=FAIL, evidence=evidence,
                       summary=f"{len(low)} of {len(shares)} later turns reused less than {minimum:.0%} of the "
                               f"conversation (worst: {mode} {record.label} turn {record.turn}, {share:.0%}): "
                               f"another request took the agent's slot")
    return Verdict(name="prompt_cache", outcome=PASS, evidence=evidence,
                   summary=f"every later turn reused at least {share:.0%} of its conversation from the cache "
                           f"({len(shares)} turns, minimum {minimum:.0%})")


def turn_rows(run: ScenarioRun) -> list[dict[str, Any]]:
    """TTFT and cache reuse by mode, agent and turn (medians over the rounds): the report's table and chart; none
    for a run in which no agent held a conversation."""
    if not any(_turns(mode_pass) for mode_pass in _passes(run)):
        return []
    groups: dict[tuple[str, str, int], list[RequestRecord]] = {}
    for mode_pass in _passes(run):
        for record in mode_pass.records:
            groups.setdefault((mode_pass.mode, record.label, record.turn or 1), []).append(record)
    def median(values: list[float]) -> float | None:
        return statistics.median(values) if values else None

    rows = []
    for (mode, label, turn), records in sorted(groups.items()):
        rows.append({
            "mode": mode, "label": label, "turn": turn, "requests": len(records),
            "ttft_s": median([r.ttft for r in records if r.ttft is not None]),
            "prompt_tokens": median([float(r.prompt_tokens) for r in records if r.prompt_tokens is not None]),
            "cached_tokens": median([float(r.cached_tokens) for r in records if r.cached_tokens is not None]),
            "prefill_s": median([r.prefill_s for r in records if r.prefill_s is not None]),
        })
    return rows
