"""pytest entry point (``pytest11``): options, markers, fixtures; the logic lives elsewhere.

Loading this module imports nothing heavy: the planner, engines and NVML load
only when ``--vram-profile`` enables the plugin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .settings import add_options
from .stashkeys import SESSION_KEY

_MARKER_KWARGS = {"min_speedup", "slo"}


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)
    parser.addini("vramcap_scenario_dirs", "directory names whose YAML files are scenarios", type="args",
                  default=["scenarios"])


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "vramcap(min_speedup=None, slo=None): per-test expectations for vramcap_fanout runs")
    from .settings import Settings

    settings = Settings.from_config(config)
    if settings is None:
        return
    from .session import VramcapSession

    session = VramcapSession(config, settings)
    config.stash[SESSION_KEY] = session
    config.pluginmanager.register(session, "vramcap-session")


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(SESSION_KEY, None)
    if session is not None:
        session.stop_server()  # idempotent; sessionfinish normally did it already
        config.pluginmanager.unregister(session)
        del config.stash[SESSION_KEY]


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> Any:
    config = parent.config
    if file_path.suffix not in (".yaml", ".yml") or SESSION_KEY not in config.stash:
        return None
    if file_path.parent.name not in (config.getini("vramcap_scenario_dirs") or ["scenarios"]):
        return None
    from .collect import ScenarioFile

    return ScenarioFile.from_parent(parent, path=file_path)


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in item.iter_markers("vramcap"):
        if marker.args:
            raise TypeError("@pytest.mark.vramcap takes keyword arguments only")
        unknown = set(marker.kwargs) - _MARKER_KWARGS
        if unknown:
            raise TypeError(f"@pytest.mark.vramcap: unknown arguments {sorted(unknown)} "
                            f"(known: {sorted(_MARKER_KWARGS)})")


def _session(request: pytest.FixtureRequest) -> Any:
    session = request.config.stash.get(SESSION_KEY, None)
    if session is None:
        pytest.skip("vramcap fixtures need --vram-profile (e.g. pytest --vram-profile=16gb)")
    return session


@pytest.fixture(scope="session")
def vramcap_plan(request: pytest.FixtureRequest) -> Any:
    """The :class:`~pytest_vramcap.planner.Plan` for this run's profile, model and options."""
    return _session(request).plan


@pytest.fixture(scope="session")
def vramcap_server(request: pytest.FixtureRequest) -> Any:
    """The run's server (started once; under xdist by the controller): ``.url``, and ``.log`` when embedded."""
    return _session(request).ensure_server()


@pytest.fixture(scope="session")
def vramcap_gpu(request: pytest.FixtureRequest) -> Any:
    """NVIDIA GPUs NVML sees (empty on machines without a driver)."""
    return _session(request).gpus


class FanoutRunner:
    """Runs scenarios against the session's server; expectations come from the vramcap marker."""

    def __init__(self, session: Any, marker_kwargs: dict[str, Any]) -> None:
        self._session = session
        self.min_speedup = marker_kwargs.get("min_speedup")
        self.slo = marker_kwargs.get("slo") or {}

    def run(self, scenario: Any) -> Any:
        from .scenarios import Scenario, load_scenario

        if not isinstance(scenario, Scenario):
            scenario = load_scenario(scenario)
        return self._session.run_scenario(scenario)

    def verdicts(self, run: Any) -> list[Any]:
        minimum = self._session.min_speedup_for(run.scenario, self.min_speedup)
        slo = run.scenario.expect.slo.items() + sorted(self.slo.items())
        return self._session.verdicts_for(run, minimum, slo)

    def check(self, run: Any) -> None:
        """Fail the test with every verdict's evidence unless all pass."""
        __tracebackhide__ = True
        verdicts = self.verdicts(run)
        if any(v.failed for v in verdicts):
            raise AssertionError("\n".join(v.describe() for v in verdicts))


@pytest.fixture
def vramcap_fanout(request: pytest.FixtureRequest) -> FanoutRunner:
    """``vramcap_fanout.run(path_or_scenario)`` -> ScenarioRun; ``.check(run)`` applies the verdicts."""
    kwargs: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers("vramcap"))):
        kwargs.update(marker.kwargs)  # the closest marker wins
    return FanoutRunner(_session(request), kwargs)
