"""One verdict: what every judgement is (its outcome, summary and evidence), apart from the judgements."""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, ConfigDict

from ..types import Outcome

__all__ = ["FAIL", "NA", "PASS", "Verdict"]

PASS: Final = "pass"
FAIL: Final = "fail"
NA: Final = "n/a"


class Verdict(BaseModel):
    """One judgement: its outcome, a one-line summary, and the lines that decided it."""

    model_config = ConfigDict(frozen=True)

    name: str
    outcome: Outcome
    summary: str
    evidence: tuple[str, ...] = ()

    @property
    def failed(self) -> bool:
        return self.outcome == FAIL

    def describe(self) -> str:
        lines = [f"[{self.outcome.upper()}] {self.name}: {self.summary}"]
        lines += [f"    - {line}" for line in self.evidence]
        return "\n".join(lines)
