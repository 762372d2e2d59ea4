"""The planner against the GPU measurements committed in docs/validation.json (H100, 2026-11-23).

The measured fields come from benchmarks/gpu/validate_planner.py on the device; the
predictions are recomputed here with the current planner, so a change to the memory
model that breaks agreement with the real GPU fails this test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_vramcap.defaults import MIB
from pytest_vramcap.model import spec_from_shape
from pytest_vramcap.planner.memory import ServerConfig, estimate_memory
from pytest_vramcap.planner.profiles import resolve_profile

ROWS = json.loads((Path(__file__).parents[2] / "docs" / "validation.json").read_text())


def test_the_matrix_is_large_enough() -> None:
    measured = [row for row in ROWS if "error" not in row]
    assert len(measured) >= 12
    assert {row["flash_attn"] for row in measured} == {True, False}
    assert {row["kv_cache"] for row in measured} >= {"f16", "q8_0", "q4_0"}


@pytest.mark.parametrize("row", ROWS, ids=[f"{r['shape']}-{r['mix']}-{r['agents']}x{r['ctx_per_agent']}-"
                                            f"{r['kv_cache']}-fa{int(r['flash_attn'])}" for r in ROWS])
def test_prediction_matches_the_gpu(row: dict) -> None:
    config = ServerConfig(parallel=row["agents"], ctx_per_agent=row["ctx_per_agent"], cache_type_k=row["kv_cache"],
                          cache_type_v=row["kv_cache"], flash_attn=row["flash_attn"])
    gpu = estimate_memory(spec_from_shape(row["shape"], row["mix"]), config, resolve_profile("h100-80gb", {})).gpu
    assert gpu.model / MIB == pytest.approx(row["measured_model_mib"], abs=0.01)
    assert gpu.context / MIB == pytest.approx(row["measured_context_mib"], abs=0.01)
    assert gpu.compute / MIB == pytest.approx(row["measured_compute_mib"], rel=0.05)
    assert gpu.total / MIB == pytest.approx(row["measured_total_mib"], rel=0.03)
