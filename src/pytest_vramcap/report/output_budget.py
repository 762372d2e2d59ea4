"""The ``output_budget`` verdict: did each request stop at the output limit it asked for?

An engine drops a request field it does not read (:mod:`pytest_vramcap.engines.honoured`):
langchain-openai (1.x) sends ``ChatOpenAI(max_tokens=N)`` as ``max_completion_tokens``, which
Ollama's ``/v1`` does not read, so the answer runs until the context is full and the run's wall
times mean nothing. A request that generated more tokens than its limit fails the verdict, with the
field, the engine that dropped it and the fix; on an engine that honours the app's fields the
verdict passes and says which of them Ollama would drop. The requests audited are those through
the recording proxy (a graph's); the YAML runner sets its own fields.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from ..engines.honoured import would_drop
from ..load.measure.record import RequestRecord
from .verdict import FAIL, NA, PASS, Verdict

__all__ = ["output_budget_verdict"]

_MAX_LINES = 12
_FIXES = {
    "max_completion_tokens": "send max_tokens, which every engine reads: ChatOpenAI(max_tokens=N, "
                             "extra_body={'max_tokens': N}), or ChatOllama(num_predict=N)",
    "n_predict": "send max_tokens (OpenAI's name, which Ollama's /v1 reads)",
}


def _fix(field: str) -> str:
    return _FIXES.get(field, "the engine generated past the limit it reads: report it to the engine")


def output_budget_verdict(passes: Iterable[Sequence[RequestRecord]]) -> Verdict:
    """Every audited request's tokens against the output limit it asked for; the fields each agent's engine dropped
    (and, on an engine that read them, the ones Ollama would drop)."""
    records = [record for pass_records in passes for record in pass_records]
    audited = [(index, record) for index, record in enumerate(records, 1) if record.audit is not None]
    if not audited:
        return Verdict(name="output_budget", outcome=NA,
                       summary="no request went through the recording proxy (the YAML runner sets its own limits)")
    evidence: list[str] = []
    seen: set[tuple[str, str]] = set()
    for index, record in audited:
        assert record.audit is not None
        limit = record.audit.limit
        # counted tokens only (a chunk count may not be one token each); a limit of 0 still makes one token on
        # llama-server, which checks the budget after a token (server-context.cpp)
        if limit is None or record.n_out_source != "usage" or record.n_out <= max(limit[1], 1):
            continue
        field, tokens = limit
        if (record.label, field) in seen:
            continue
        seen.add((record.label, field))
        dropped = field in record.audit.dropped
        why = (f"{record.audit.engine} drops {field}: {_fix(field)}" if dropped
               else f"{record.audit.engine} reads {field}: {_fix('')}")
        evidence.append(f"{record.label} (request #{index}): asked {field} {tokens}, generated {record.n_out} "
                        f"(finish: {record.finish_reason or '-'}); {why}")
    over = len(evidence)
    dropped_by_agent: dict[tuple[str, str], Counter[str]] = {}
    ollama_would: dict[str, Counter[str]] = {}
    for _, record in audited:
        assert record.audit is not None
        if record.audit.dropped:
            dropped_by_agent.setdefault((record.label, record.audit.engine), Counter()).update(record.audit.dropped)
        if record.audit.engine != "ollama":
            ollama_would.setdefault(record.label, Counter()).update(
                would_drop("ollama", record.audit.route, record.audit.fields))
    for (label, engine), fields in sorted(dropped_by_agent.items()):
        evidence.append(f"{label}: {engine} dropped " + ", ".join(f"{field} x{count}" for field, count in
                                                                  sorted(fields.items())))
    for label, fields in sorted(ollama_would.items()):
        if fields:
            evidence.append(f"{label}: Ollama would drop " + ", ".join(sorted(fields)))
    shown = tuple(evidence[:_MAX_LINES]) + ((f"... and {len(evidence) - _MAX_LINES} more",)
                                            if len(evidence) > _MAX_LINES else ())
    if over:
        return Verdict(name="output_budget", outcome=FAIL, evidence=shown,
                       summary=f"{over} agent(s) generated past the output limit they asked for")
    judged = sum(1 for _, record in audited if record.audit is not None and record.audit.limit is not None
                 and record.ok and record.n_out_source == "usage")
    return Verdict(name="output_budget", outcome=PASS, evidence=shown,
                   summary=f"{judged} request(s) with a limit and a token count stayed within it")
