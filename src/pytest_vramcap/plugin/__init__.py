"""Stage 7, the pytest plugin (the ``pytest11`` entry point): thin hooks over the stages above.

    settings.py    the shared option table as pytest options and ini keys
    runstate.py    the plan, the server and the GPU of a run, without hooks
    reporter.py    header, results, session verdicts, JSON report, summary (controller only)
    xdist.py       the controller starts the server; workers attach through workerinput
    collect.py     scenario YAML files as tests
    fixtures.py    vramcap_plan, vramcap_server, vramcap_gpu, vramcap_fanout, vramcap_load, the marker
    load_gate.py   vramcap_load: Locust load on the run's server in a child process, gated on SLOs
    assertions.py  assert_no_oom, assert_no_cpu_offload, assert_parallel_speedup, assert_slo
    gate.py        the regression gate: --vramcap-compare, --vramcap-save-baseline
    signals.py     SIGTERM as Ctrl-C, so a cancelled run still stops its server
    console.py     progress lines past output capture
    stash.py       config.stash keys and user_properties names (import-free)
    hooks.py       hookspecs for conftest.py: pytest_vramcap_machine_info, pytest_vramcap_update_report

Loading this module imports nothing heavy: the planner, engines and NVML load
only when ``--vram-profile`` enables the plugin.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .console import PytestConsole, is_worker
from .fixtures import check_marker, vramcap_fanout, vramcap_gpu, vramcap_load, vramcap_plan, vramcap_server
from .settings import PREFIX, Settings, add_pytest_options
from .stash import RUN_STATE_KEY

# fixtures pytest finds here
__all__ = ["vramcap_fanout", "vramcap_gpu", "vramcap_load", "vramcap_plan", "vramcap_server"]

_SCENARIO_SUFFIXES = (".yaml", ".yml")


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from . import hooks

    pluginmanager.add_hookspecs(hooks)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_pytest_options(parser)
    parser.addini("vramcap_scenario_dirs", "directory names whose YAML files are scenarios", type="args",
                  default=["scenarios"])


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "vramcap(min_speedup=None, slo=None, load_slo=None): per-test expectations for vramcap_fanout "
                   "runs (min_speedup, slo) and vramcap_load runs (load_slo)")
    settings = Settings.from_config(config)
    if settings is None:
        return
    from ..errors import VramcapError
    from ..planner.resolve import plan_set_from_options
    from .gate import RegressionGate
    from .reporter import REPORTER_KEY, Reporter
    from .runstate import RunState
    from .signals import interrupt_on_sigterm
    from .xdist import XdistBridge, is_xdist_controller, worker_servers

    gate: RegressionGate | None = None
    try:
        plans = plan_set_from_options(settings.plan_values, settings.model_sources(), prefix=PREFIX)
        state = RunState(settings, plans, PytestConsole(config), worker_servers=worker_servers(config))
        running = state.running_profile()
        if running is not None:  # workers decide the same way, so every process holds the same plan
            state.plans = plans.on_profile(plans.profile.with_overhead_of(running))
        state.check_engine_can_run_plan()
        if not is_worker(config):
            gate = RegressionGate(settings)  # reads the baseline: a missing one is a usage error before any start
            state.emulate_profile()
            state.check_gpu_room()
    except VramcapError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[RUN_STATE_KEY] = state
    if gate is None:  # an xdist worker: the controller reports and owns the server
        return
    interrupt_on_sigterm(config)
    reporter = config.stash[REPORTER_KEY] = Reporter(config, state, gate)
    config.pluginmanager.register(reporter, "vramcap-reporter")
    if is_xdist_controller(config):
        config.pluginmanager.register(XdistBridge(state), "vramcap-xdist")


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(RUN_STATE_KEY, None)
    if state is None:
        return
    state.stop()  # idempotent; the reporter's sessionfinish normally did it already
    del config.stash[RUN_STATE_KEY]
    from .reporter import REPORTER_KEY

    reporter = config.stash.get(REPORTER_KEY, None)
    if reporter is not None:
        config.pluginmanager.unregister(reporter)
        del config.stash[REPORTER_KEY]
    bridge = config.pluginmanager.get_plugin("vramcap-xdist")
    if bridge is not None:
        config.pluginmanager.unregister(bridge)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    config = parent.config
    if file_path.suffix not in _SCENARIO_SUFFIXES or RUN_STATE_KEY not in config.stash:
        return None
    if file_path.parent.name not in (config.getini("vramcap_scenario_dirs") or ["scenarios"]):
        return None
    from .collect import ScenarioFile

    return ScenarioFile.from_parent(parent, path=file_path)


def pytest_runtest_setup(item: pytest.Item) -> None:
    check_marker(item)
