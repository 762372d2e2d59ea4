"""What audited requests asked of their engine and got, counted as they end: the ``output_budget`` evidence.

A request through the recording proxy carries an :class:`~pytest_vramcap.engines.honoured.Audit`
(its output limit, the fields its engine dropped). :class:`BudgetTally` counts them without
keeping the requests, so that hours of Locust load cost the same memory as one pass, and it adds
up across Locust's processes (:meth:`BudgetTally.to_dict` travels in a worker's report,
:meth:`BudgetTally.merge` adds it on the master). The verdict reads a tally
(report/output_budget.py), whichever runner filled it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...engines.honoured import would_drop
from .record import RequestRecord

__all__ = ["FIXES", "BudgetTally", "fix_for"]

FIXES = {
    "max_completion_tokens": "send max_tokens, which every engine reads: ChatOpenAI(max_tokens=N, "
                             "extra_body={'max_tokens': N}), or ChatOllama(num_predict=N)",
    "n_predict": "send max_tokens (OpenAI's name, which Ollama's /v1 reads)",
}
_KEEP_OVER = 20
"""Over-budget lines kept (the first per agent and field): the rest are counted only."""
_SEP = "\x1f"  # joins a key's parts: labels are free text, JSON object keys must be strings


def fix_for(field_name: str) -> str:
    return FIXES.get(field_name, "the engine generated past the limit it reads: report it to the engine")


@dataclass
class BudgetTally:
    audited: int = 0
    judged: int = 0
    """Audited requests that finished with a limit and a token count from the engine."""
    over: int = 0
    """Judged requests that generated past their limit."""
    over_lines: dict[str, str] = field(default_factory=dict)
    """``label<SEP>field`` -> the first such request, in words."""
    dropped: dict[str, int] = field(default_factory=dict)
    """``label<SEP>engine<SEP>field`` -> requests whose engine dropped that field."""
    ollama_would: dict[str, int] = field(default_factory=dict)
    """``label<SEP>field`` -> requests to another engine whose field Ollama would drop."""

    def add(self, record: RequestRecord, number: int | None = None) -> None:
        """One request that ended (``number``: its place in the run, named in the evidence)."""
        audit = record.audit
        if audit is None:
            return
        self.audited += 1
        for name in audit.dropped:
            self._count(self.dropped, _SEP.join((record.label, audit.engine, name)))
        if audit.engine != "ollama":
            for name in would_drop("ollama", audit.route, audit.fields):
                self._count(self.ollama_would, _SEP.join((record.label, name)))
        limit = audit.limit
        if limit is None or not record.ok or record.n_out_source != "usage":
            return  # counted tokens only: a chunk count may not be one token each
        self.judged += 1
        # a limit of 0 still makes one token on llama-server, which checks the budget after a token
        if record.n_out <= max(limit[1], 1):
            return
        self.over += 1
        key = _SEP.join((record.label, limit[0]))
        if key in self.over_lines or len(self.over_lines) >= _KEEP_OVER:
            return
        name, tokens = limit
        why = (f"{audit.engine} drops {name}: {fix_for(name)}" if name in audit.dropped
               else f"{audit.engine} reads {name}: {fix_for('')}")
        which = f" (request #{number})" if number is not None else ""
        self.over_lines[key] = (f"{record.label}{which}: asked {name} {tokens}, generated {record.n_out} "
                                f"(finish: {record.finish_reason or '-'}); {why}")

    def merge(self, report: dict[str, Any]) -> None:
        """Add another process's :meth:`to_dict`."""
        for name in ("audited", "judged", "over"):
            setattr(self, name, getattr(self, name) + int(report.get(name, 0)))
        for key, line in dict(report.get("over_lines") or {}).items():
            if key not in self.over_lines and len(self.over_lines) < _KEEP_OVER:
                self.over_lines[str(key)] = str(line)
        for name in ("dropped", "ollama_would"):
            counts = getattr(self, name)
            for key, count in dict(report.get(name) or {}).items():
                counts[str(key)] = counts.get(str(key), 0) + int(count)

    def to_dict(self) -> dict[str, Any]:
        return {"audited": self.audited, "judged": self.judged, "over": self.over,
                "over_lines": dict(self.over_lines), "dropped": dict(self.dropped),
                "ollama_would": dict(self.ollama_would)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BudgetTally:
        tally = cls()
        tally.merge(data)
        return tally

    def evidence(self) -> list[str]:
        """The over-budget requests, then each agent's dropped fields, then what Ollama would drop."""
        lines = list(self.over_lines.values())
        by_agent: dict[tuple[str, str], list[str]] = {}
        for key, count in sorted(self.dropped.items()):
            label, engine, name = key.split(_SEP)
            by_agent.setdefault((label, engine), []).append(f"{name} x{count}")
        lines += [f"{label}: {engine} dropped " + ", ".join(names) for (label, engine), names in by_agent.items()]
        would: dict[str, list[str]] = {}
        for key in sorted(self.ollama_would):
            label, name = key.split(_SEP)
            would.setdefault(label, []).append(name)
        lines += [f"{label}: Ollama would drop " + ", ".join(names) for label, names in would.items()]
        return lines

    @staticmethod
    def _count(counts: dict[str, int], key: str) -> None:
        counts[key] = counts.get(key, 0) + 1
