"""Hooks a ``conftest.py`` implements to extend vramcap's run report, as pytest-benchmark's ``hookspec.py``.

    # conftest.py
    import subprocess

    def pytest_vramcap_machine_info(config, machine_info):
        machine_info["runner"] = "gpu-runner-3"                  # shown in the report, kept in baselines

    def pytest_vramcap_update_report(config, report):
        report.extra["commit"] = subprocess.check_output(["git", "rev-parse", "HEAD"], text=True).strip()

Both are called on the controller only (never on xdist workers), once per run, before anything is written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy
import pytest

if TYPE_CHECKING:
    from ..report.schema import RunReport

hookspec = pluggy.HookspecMarker("pytest")


@hookspec
def pytest_vramcap_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    """Change ``machine_info`` in place: where the run happens (host, system, cpu, cpus are vramcap's).

    It lands in the report's ``machine`` and in baselines. A baseline is compared with a warning when the
    machine differs; only ``cpu``, ``cpus`` and the GPUs decide that, so keys you add never start a new
    baseline.
    """


@hookspec
def pytest_vramcap_update_report(config: pytest.Config, report: RunReport) -> None:
    """Change the run report in place before it is written (JSON, HTML, Markdown) and saved as a baseline.

    ``report.extra`` is yours: any JSON-able values, kept under ``extra`` in the report's JSON.
    """
