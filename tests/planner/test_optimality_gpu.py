"""Plans against what llama.cpp really kept on an H100 emulating the card (docs/gpu/optimality-*.json, written by
benchmarks/gpu/plan_optimality.py): the current planner, re-run on the measured cases without a GPU.

* The planned context per agent is never above the largest --fit keeps on the GPU and at least 97% of it, unless
  that largest runs out of memory once its slots fill (then the plan must stay below it).
* Filled to the plan (every slot at its context, NVML's peak of the process), the memory is the plan's peak to
  within 15 MiB, and within the card.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_vramcap.defaults import MIB
from pytest_vramcap.model import spec_from_shape
from pytest_vramcap.planner.memory import ServerConfig, estimate_memory
from pytest_vramcap.planner.plan import PlanRequest
from pytest_vramcap.planner.profiles import Profile, resolve_profile
from pytest_vramcap.planner.solver import make_plan

RESULTS = Path(__file__).parents[2] / "docs" / "gpu"
ROWS = [row for name in ("optimality-2026-11-24.json", "optimality-2026-12-06.json")
        for row in json.loads((RESULTS / name).read_text())]


def _card(row: dict[str, Any]) -> Profile:
    name = row.get("profile", "24gb" if row["shape"] == "qwen3-30b-a3b" else "16gb")  # 2026-11-24 rows: 16gb
    return resolve_profile(name).with_overhead_of(resolve_profile("h100-80gb"))


def _id(row: dict[str, Any]) -> str:
    flash_attn = "on" if row.get("flash_attn", True) else "off"
    return f"{row['shape']}-{row['agents']}x-{row.get('profile', '')}-fa{flash_attn}"


@pytest.mark.parametrize("row", ROWS, ids=[_id(row) for row in ROWS])
def test_the_plan_is_the_largest_context_the_card_runs(row: dict[str, Any]) -> None:
    flash_attn = row.get("flash_attn", True)
    plan = make_plan(spec_from_shape(row["shape"], row["mix"]), _card(row),
                     PlanRequest(agents=row["agents"], flash_attn=flash_attn))
    assert plan.fits
    planned, real = plan.config.ctx_per_agent, row["real_ctx"]
    crashed_at_real = "error" in (row.get("run_at_plan") or {}) and row["run_at_plan"]["ctx"] == real
    assert planned <= real
    if not crashed_at_real:
        assert planned >= 0.97 * real


FILLED = [row for row in ROWS if "statuses" in (row.get("run_at_plan") or {})]


@pytest.mark.parametrize("row", FILLED, ids=[_id(row) for row in FILLED])
def test_slots_filled_to_the_plan_peak_where_it_says(row: dict[str, Any]) -> None:
    run = row["run_at_plan"]
    assert set(run["statuses"]) == {200} and not run["oom"]
    config = ServerConfig(parallel=row["agents"], ctx_per_agent=run["ctx"], flash_attn=row["flash_attn"])
    peak = estimate_memory(spec_from_shape(row["shape"], row["mix"]), config, _card(row)).gpu.total / MIB
    assert run["peak_process_mib"] == pytest.approx(peak, abs=15)
    assert run["peak_process_mib"] <= run["usable_mib"]


def test_a_no_flash_attention_plan_that_fit_keeps_but_cannot_run_is_refused() -> None:
    """gpt-oss-20b, 2 x 21760 without flash attention on 16 GiB: --fit kept it all on the GPU, then the CUDA pool ran
    out of memory once the prompts passed 12,288 tokens (the f16 copy of the KQ scores grows with the context)."""
    row = next(r for r in ROWS if r["shape"] == "gpt-oss-20b" and r.get("flash_attn") is False)
    assert row["run_at_plan"]["oom"] and "out of memory" in row["run_at_plan"]["oom_lines"][0]
    spec, card = spec_from_shape(row["shape"], row["mix"]), _card(row)
    crashed = estimate_memory(spec, ServerConfig(parallel=2, ctx_per_agent=row["real_ctx"], flash_attn=False), card)
    assert crashed.gpu.total / MIB > card.usable_mib
