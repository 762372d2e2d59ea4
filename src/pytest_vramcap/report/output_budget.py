"""The ``output_budget`` verdict: did each request stop at the output limit it asked for?

An engine drops a request field it does not read (:mod:`pytest_vramcap.engines.honoured`):
langchain-openai (1.x) sends ``ChatOpenAI(max_tokens=N)`` as ``max_completion_tokens``, which
Ollama's ``/v1`` does not read, so the answer runs until the context is full and the run's wall
times mean nothing. A request that generated more tokens than its limit fails the verdict, with the
field, the engine that dropped it and the fix; on an engine that honours the app's fields the
verdict passes and says which of them Ollama would drop. The requests audited are those through
the recording proxy (a graph's); the YAML runner sets its own fields. The counts come from a
:class:`~pytest_vramcap.load.measure.budget.BudgetTally`: a scenario's passes, or a Locust run's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..load.measure.budget import BudgetTally
from ..load.measure.record import RequestRecord
from .verdict import FAIL, NA, PASS, Verdict

__all__ = ["budget_verdict", "output_budget_verdict"]

_MAX_LINES = 12


def output_budget_verdict(passes: Iterable[Sequence[RequestRecord]]) -> Verdict:
    """The verdict over a scenario's passes (each request named by its number in the run)."""
    tally = BudgetTally()
    for number, record in enumerate((record for pass_records in passes for record in pass_records), 1):
        tally.add(record, number)
    return budget_verdict(tally)


def budget_verdict(tally: BudgetTally) -> Verdict:
    """Every audited request's tokens against the output limit it asked for; the fields each agent's engine dropped
    (and, on an engine that read them, the ones Ollama would drop)."""
    if not tally.audited:
        return Verdict(name="output_budget", outcome=NA,
                       summary="no request went through the recording proxy (the YAML runner sets its own limits)")
    evidence = tally.evidence()
    shown = tuple(evidence[:_MAX_LINES]) + ((f"... and {len(evidence) - _MAX_LINES} more",)
                                            if len(evidence) > _MAX_LINES else ())
    if tally.over:
        return Verdict(name="output_budget", outcome=FAIL, evidence=shown,
                       summary=f"{tally.over} request(s) generated past the output limit they asked for")
    return Verdict(name="output_budget", outcome=PASS, evidence=shown,
                   summary=f"{tally.judged} request(s) with a limit and a token count stayed within it")
