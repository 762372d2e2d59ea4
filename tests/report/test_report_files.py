"""The HTML report and the Markdown summary rendered from hand-built runs (the browser check is
benchmarks/check_html_report.py: Chromium is not on the CI machine)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pytest_vramcap.report.html import render_html
from pytest_vramcap.report.markdown import append_step_summary, render_markdown
from pytest_vramcap.report.verdicts import Verdict
from tests.report.test_compare import BASE, report

HOSTILE = "</script><script>alert(1)</script><!--"


def _embedded(html: str) -> dict:
    match = re.search(r'<script id="vramcap-data" type="application/json">(.*?)</script>', html, re.S)
    assert match is not None
    return json.loads(match.group(1))


def test_html_embeds_the_report_and_fetches_nothing() -> None:
    data = report(BASE, verdicts=[Verdict(name="oom", outcome="fail", summary="died", evidence=(HOSTILE,))])
    html = render_html(data)
    embedded = _embedded(html)  # the hostile text did not end the data element early
    assert embedded["scenarios"][0]["verdicts"][0]["evidence"] == [HOSTILE]
    assert embedded["scenarios"][0]["parallel"]["requests"][0]["t_first_s"] == pytest.approx(0.2)
    assert "__VRAMCAP_REPORT__" not in html
    # Self-contained: no script, style or image from elsewhere.
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', html)
    assert "<link rel=\"stylesheet\"" not in html and "@import" not in html


def test_markdown_has_the_table_failures_and_comparison() -> None:
    from pytest_vramcap.report.compare import compare
    from pytest_vramcap.report.snapshot import snapshot_of

    failing = report(BASE, verdicts=[Verdict(name="oom", outcome="fail", summary="died", evidence=("log: x",))])
    comparison = compare(snapshot_of(report(BASE)), snapshot_of(failing), label="main")
    text = render_markdown(failing.model_copy(update={"comparison": comparison.to_dict(), "passed": False}))
    assert text.startswith("## vramcap: FAILED")
    assert "| pair " in text and "- **pair**: oom: died" in text and "  - `log: x`" in text
    assert "### Compared with baseline `main`: **REGRESSED**" in text
    assert "- **REGRESSED**: pair: oom passed in the baseline and fails now" in text


def test_step_summary_appends_only_under_github_actions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    assert append_step_summary("# one") is None
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    assert append_step_summary("# two") == summary
    assert summary.read_text() == "earlier step\n# two\n"


def test_load_runs_are_in_both_reports() -> None:
    load = {"nodeid": "test_load.py::test_holds", "scenario": "pair", "users": 2, "duration_s": 30.0, "graphs": 4,
            "failed_graphs": 0, "failure_ratio": 0.0, "passed": False,
            "summary": {"requests": 12, "output_tps": 98.5, "ttft_s": {"p95": 0.41}, "tpot_s": None},
            "verdicts": [{"name": "slo:output_tps", "outcome": "fail", "summary": "98.500, at least 100",
                          "evidence": []}]}
    data = report(BASE).model_copy(update={"loads": [load]})
    assert "| test_load.py::test_holds | 2 | 4 | 0.000 | 98.5 | 0.410 | **FAILED** |" in render_markdown(data)
    assert _embedded(render_html(data))["loads"][0]["nodeid"] == "test_load.py::test_holds"


def test_several_cards_are_reported_card_by_card() -> None:
    cards = [{"uuid": "GPU-a", "index": 0, "name": "NVIDIA H100 80GB HBM3", "planned_mib": 15_120.4,
              "peak_device_mib": 80_000.0, "peak_process_mib": 15_101.0, "ballast_mib": 65_175},
             {"uuid": "GPU-b", "index": 1, "name": "NVIDIA H100 80GB HBM3", "planned_mib": 11_870.2,
              "peak_device_mib": 77_030.0, "peak_process_mib": None, "ballast_mib": 65_175}]
    data = report(BASE).model_copy(update={"gpu": {"measured": {"peak_device_mib": 157_030.0, "cards": cards}}})
    text = render_markdown(data)
    assert "### GPU memory by card (MiB)" in text
    assert "| 0: NVIDIA H100 80GB HBM3 | 15,120 | 15,101 | 14,825 |" in text
    assert "| 1: NVIDIA H100 80GB HBM3 | 11,870 | - | 11,855 |" in text  # NVML did not list the process there
    assert _embedded(render_html(data))["gpu"]["measured"]["cards"][1]["planned_mib"] == 11_870.2
    assert "GPU memory by card" not in render_markdown(report(BASE))
