"""The fixtures and the ``vramcap`` marker a user's own tests see."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .stash import RUN_STATE_KEY

if TYPE_CHECKING:
    from ..engines.base import Server
    from ..gpu.nvml import GpuInfo
    from ..load.run.rounds import ScenarioRun
    from ..load.scenario.graph_source import Builder
    from ..load.scenario.schema import Scenario
    from ..planner.plan import Plan
    from ..report.verdicts import Verdict
    from .load_gate import LoadRunner
    from .runstate import RunState

__all__ = ["MARKER_KWARGS", "FanoutRunner", "vramcap_fanout", "vramcap_gpu", "vramcap_load", "vramcap_plan",
           "vramcap_server"]

MARKER_KWARGS = frozenset({"min_speedup", "slo", "load_slo"})


def _state(request: pytest.FixtureRequest) -> RunState:
    state = request.config.stash.get(RUN_STATE_KEY, None)
    if state is None:
        pytest.skip("vramcap fixtures need --vram-profile (e.g. pytest --vram-profile=16gb)")
    return state


@pytest.fixture(scope="session")
def vramcap_plan(request: pytest.FixtureRequest) -> Plan:
    """The :class:`~pytest_vramcap.planner.Plan` for this run's profile, model and options."""
    return _state(request).plan


@pytest.fixture(scope="session")
def vramcap_server(request: pytest.FixtureRequest) -> Server:
    """The run's server (started once; under xdist by the controller): ``.url`` and ``.evidence()``."""
    return _state(request).ensure_server()


@pytest.fixture(scope="session")
def vramcap_gpu(request: pytest.FixtureRequest) -> list[GpuInfo]:
    """NVIDIA GPUs NVML sees (empty on machines without a driver)."""
    return _state(request).gpus


class FanoutRunner:
    """Runs scenarios against the run's server; expectations come from the ``vramcap`` marker."""

    def __init__(self, state: RunState, marker_kwargs: dict[str, Any], item: pytest.Item | None = None) -> None:
        self._state = state
        self._item = item
        """The test whose runs :meth:`check` records in the run report, the baseline and JUnit XML."""
        self.min_speedup: float | None = marker_kwargs.get("min_speedup")
        self.slo: dict[str, float] = marker_kwargs.get("slo") or {}

    def run(self, scenario: Scenario | str | Path) -> ScenarioRun:
        """Run a scenario (a loaded one, or a YAML path; of steps or naming a graph) sequentially, then in
        parallel."""
        from ..load.scenario.schema import Scenario, load_scenario

        if not isinstance(scenario, Scenario):
            scenario = load_scenario(scenario)
        return self._run(scenario)

    def run_graph(self, graph: Builder | str, input: dict[str, Any] | None = None, *,
                  name: str | None = None, config: dict[str, Any] | None = None) -> ScenarioRun:
        """Run a graph of yours sequentially (``max_concurrency=1``), then in parallel, through the recording
        proxy. ``graph`` is its builder (``build(base_url)``, or a factory taking a config or nothing), or
        ``"file.py:ATTR"`` / ``"langgraph.json:NAME"`` as a scenario's ``graph:`` takes them (a path relative to
        the test file); ``input`` and ``config`` are what each pass invokes it with."""
        from ..errors import ScenarioError
        from ..load.scenario.schema import GraphRef, validated_scenario

        build: Builder | None
        ref: GraphRef | str
        if isinstance(graph, str):
            ref, build, default_name = graph, None, Path(graph.rpartition(":")[0]).stem or "graph"
        elif callable(graph):
            ref, build = GraphRef.of(graph), graph
            default_name = ref.file.stem
        else:
            raise TypeError(f"run_graph takes build(base_url), a factory or 'file.py:ATTR', not {type(graph).__name__}")
        base = self._item.path.parent if self._item is not None else Path.cwd()
        data = {"name": name or default_name, "graph": ref, "input": input or {}, "config": config or {}}
        try:
            scenario = validated_scenario(data, base, f"run_graph({ref})")
        except ScenarioError as exc:  # no such file, not FILE.py:ATTRIBUTE...: one line (failed outside the except)
            problem = str(exc)
        else:
            return self._run(scenario, build)
        pytest.fail(problem, pytrace=False)

    def _run(self, scenario: Scenario, build: Builder | None = None) -> ScenarioRun:
        from ..errors import GraphError

        try:
            # Every round: the test may judge the run against any minimum of its own (assert_parallel_speedup).
            return self._state.run_scenario(scenario, build)
        except GraphError as exc:  # the user's traceback and one line, as for a collected scenario
            problem = exc.shown()
        pytest.fail(problem, pytrace=False)  # outside the except: no "during handling" chain after it

    def _minimum(self, run: ScenarioRun) -> float | None:
        return self._state.min_speedup_for(run.scenario, self.min_speedup)

    def verdicts(self, run: ScenarioRun) -> list[Verdict]:
        from ..report.verdicts import model_set_verdicts

        state = self._state
        slos = run.scenario.expect.slo.items() + sorted(self.slo.items())
        return model_set_verdicts(state.plans, state.evidence_by_role(), run, self._minimum(run), slos)

    def check(self, run: ScenarioRun) -> None:
        """Fail the test with every verdict's evidence unless all pass; the run joins the run report."""
        __tracebackhide__ = True
        from .collect import failure_text, record_result

        verdicts = self.verdicts(run)
        if self._item is not None:
            from ..report.schema import ScenarioResult

            record_result(self._item, ScenarioResult.of(run.scenario.name, self._item.nodeid, run,
                                                        self._minimum(run), verdicts))
        if any(v.failed for v in verdicts):
            raise AssertionError(failure_text(verdicts, run.user_traceback))


def _marker_kwargs(request: pytest.FixtureRequest) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers("vramcap"))):
        kwargs.update(marker.kwargs)  # the closest marker wins
    return kwargs


@pytest.fixture
def vramcap_fanout(request: pytest.FixtureRequest) -> FanoutRunner:
    """``vramcap_fanout.run(path_or_scenario)`` or ``.run_graph(build, input)`` -> ScenarioRun; ``.check(run)``
    applies the verdicts."""
    return FanoutRunner(_state(request), _marker_kwargs(request), request.node)


@pytest.fixture
def vramcap_load(request: pytest.FixtureRequest, tmp_path: Path) -> LoadRunner:
    """``vramcap_load.run(scenario, users=4, run_time_s=60, graphs=None, slo=None)`` -> LoadOutcome, a Locust load
    on the run's server; ``.check(outcome)`` fails on missed SLOs (``load_slo`` of the ``vramcap`` marker, and
    ``slo``): failure_ratio, ttft/tpot p50/p95, e2e_p95_s, graph_p95_s ceilings; output_tps floor."""
    from .load_gate import LoadRunner

    return LoadRunner(_state(request).ensure_server(), tmp_path, _marker_kwargs(request).get("load_slo"),
                      request.node)


def check_marker(item: pytest.Item) -> None:
    """Refuse a ``vramcap`` marker with positional or unknown arguments (a typo would silently do nothing)."""
    for marker in item.iter_markers("vramcap"):
        if marker.args:
            raise TypeError("@pytest.mark.vramcap takes keyword arguments only")
        unknown = set(marker.kwargs) - MARKER_KWARGS
        if unknown:
            raise TypeError(f"@pytest.mark.vramcap: unknown arguments {sorted(unknown)} "
                            f"(known: {sorted(MARKER_KWARGS)})")
