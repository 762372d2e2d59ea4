"""Scenario YAML files as pytest tests: ``pytest --vram-profile=16gb scenarios/``.

YAML files inside a directory named ``scenarios`` (ini ``vramcap_scenario_dirs``
to change the names) are collected; each becomes one test that runs the
scenario sequentially and in parallel against the session's server and passes
when every verdict does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from .errors import EngineError
from .report import ScenarioResult
from .scenarios import Scenario, ScenarioError, load_scenario
from .stashkeys import RESULT_PROPERTY, SESSION_KEY
from .verdicts import Verdict

__all__ = ["ScenarioFile", "ScenarioItem"]


class ScenarioFile(pytest.File):
    def collect(self) -> Iterator["ScenarioItem"]:
        try:
            scenario = load_scenario(self.path)
        except ScenarioError as exc:
            raise self.CollectError(str(exc)) from None
        yield ScenarioItem.from_parent(self, name=scenario.name, scenario=scenario)


class ScenarioFailed(Exception):
    def __init__(self, verdicts: list[Verdict]) -> None:
        super().__init__("\n".join(v.describe() for v in verdicts))


class ScenarioItem(pytest.Item):
    def __init__(self, *, scenario: Scenario, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario

    def runtest(self) -> None:
        session = self.config.stash[SESSION_KEY]
        minimum = session.min_speedup_for(self.scenario)
        try:
            run = session.run_scenario(self.scenario)
        except EngineError:
            run = None
            verdicts = session.start_failure_verdicts()
        else:
            verdicts = session.verdicts_for(run, minimum, self.scenario.expect.slo.items())
        failed = [v for v in verdicts if v.failed]
        result = ScenarioResult(
            name=self.scenario.name, nodeid=self.nodeid, passed=not failed, speedup=run.speedup if run else None,
            min_speedup=minimum, sequential=run.sequential.to_dict() if run else {},
            parallel=run.parallel.to_dict() if run else {}, verdicts=[v.to_dict() for v in verdicts],
        )
        self.user_properties.append((RESULT_PROPERTY, json.dumps(result.model_dump())))
        if failed:
            raise ScenarioFailed(verdicts)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, (ScenarioFailed, EngineError)):
            return f"scenario {self.scenario.name!r}:\n{excinfo.value}"
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"vramcap scenario: {self.scenario.name}"
