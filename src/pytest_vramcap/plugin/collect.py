"""Scenario YAML files as pytest tests: ``pytest --vram-profile=16gb scenarios/``.

YAML files inside a directory named ``scenarios`` (ini ``vramcap_scenario_dirs``
to change the names) are collected; each becomes one test that runs the
scenario sequentially and in parallel against the run's server and passes
when every verdict does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..errors import EngineError, GraphError, ScenarioError, below_user_traceback
from ..load.run.apps import check_graph
from ..load.run.rounds import ScenarioRun
from ..load.scenario.schema import Scenario, load_scenario
from ..report.conversation import first_turn_overflow
from ..report.schema import ScenarioResult
from ..report.verdicts import Verdict, graph_verdict, model_set_verdicts, per_model, start_failure_verdicts
from .settings import PREFIX
from .stash import RESULT_PROPERTY, RUN_STATE_KEY

__all__ = ["ScenarioFile", "ScenarioItem", "record_result"]


def record_result(item: pytest.Item, result: ScenarioResult) -> None:
    """Hand ``result`` to the reporter (the run report, the baseline) and its key metrics to JUnit XML."""
    item.user_properties.append((RESULT_PROPERTY, result.model_dump_json()))
    item.user_properties.extend(result.junit_properties())


class ScenarioFile(pytest.File):
    def collect(self) -> Iterator[ScenarioItem]:
        """The scenario, its graph's file imported and what it names checked (as pytest imports a test module when
        it collects it): a scenario or a graph that cannot be had is a collection error, the user's traceback
        above its line when their code raised."""
        try:
            scenario = load_scenario(self.path)
            check_graph(scenario)
            self._check_models(scenario)
        except GraphError as exc:
            raise self.CollectError(exc.shown()) from None
        except ScenarioError as exc:
            raise self.CollectError(str(exc)) from None
        yield ScenarioItem.from_parent(self, name=scenario.name, scenario=scenario)

    def _check_models(self, scenario: Scenario) -> None:
        """A scenario whose agent names a model role the run has none of cannot run: one line, at collection."""
        roles = self.config.stash[RUN_STATE_KEY].plans.roles
        unknown = sorted(scenario.model_roles() - set(roles))
        if unknown:
            raise ScenarioError(f"{self.path.name}: an agent names model {unknown[0]}, which this run has not "
                                f"(models: {', '.join(roles)}; give --{PREFIX}model {unknown[0]}=SRC)")


def _by_name(verdicts: dict[str, list[Verdict]]) -> dict[str, dict[str, Verdict]]:
    """Each model's verdicts (by role) regrouped by verdict name."""
    grouped: dict[str, dict[str, Verdict]] = {}
    for role, each in verdicts.items():
        for verdict in each:
            grouped.setdefault(verdict.name, {})[role] = verdict
    return grouped


class ScenarioFailed(Exception):
    def __init__(self, verdicts: list[Verdict], user_traceback: str = "") -> None:
        super().__init__(failure_text(verdicts, user_traceback))


def failure_text(verdicts: list[Verdict], user_traceback: str = "") -> str:
    """Every verdict with its evidence; a graph's traceback first when the user's code raised (shown once)."""
    return below_user_traceback(user_traceback, "\n".join(v.describe() for v in verdicts))


class ScenarioItem(pytest.Item):
    def __init__(self, *, scenario: Scenario, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario

    def runtest(self) -> None:
        state = self.config.stash[RUN_STATE_KEY]
        minimum = state.min_speedup_for(self.scenario)
        overflow = first_turn_overflow(state.plan.config.ctx_per_agent, self.scenario)
        if overflow is not None:  # nothing could run: no server is started for it
            record_result(self, ScenarioResult.of(self.scenario.name, self.nodeid, None, minimum, [overflow]))
            raise ScenarioFailed([overflow])
        run: ScenarioRun | None
        try:
            run = state.run_scenario(self.scenario, collected=True, minimum=minimum)
        except GraphError as exc:  # its build or factory raised: in the report as failed; pytest shows the user's
            # traceback and the line
            record_result(self, ScenarioResult.of(self.scenario.name, self.nodeid, None, minimum,
                                                  [graph_verdict(exc)]))
            raise
        except EngineError as exc:
            run = None
            verdicts = [per_model(name, parts) if state.plans.several else parts[state.plans.roles[0]]
                        for name, parts in _by_name({role: start_failure_verdicts(plan, state.evidence(role), exc)
                                                     for role, plan in state.plans.plans.items()}).items()]
        else:
            verdicts = model_set_verdicts(state.plans, state.evidence_by_role(), run, minimum,
                                          self.scenario.expect.slo.items())
        result = ScenarioResult.of(self.scenario.name, self.nodeid, run, minimum, verdicts)
        record_result(self, result)
        if not result.passed:
            raise ScenarioFailed(verdicts, run.user_traceback if run is not None else "")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, GraphError):
            return f"scenario {self.scenario.name!r}:\n{excinfo.value.shown()}"
        if isinstance(excinfo.value, (ScenarioFailed, EngineError)):
            return f"scenario {self.scenario.name!r}:\n{excinfo.value}"
        return str(super().repr_failure(excinfo, style=style))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"vramcap scenario: {self.scenario.name}"
