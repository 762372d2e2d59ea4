"""What the VRAM tab shows (load/vram_view.py), from a plan and llama-server's /metrics text, without Locust."""

from __future__ import annotations

from dataclasses import asdict

import pytest

from pytest_vramcap.gpu.nvml import GpuMemory
from pytest_vramcap.locust.tally import LoadTally
from pytest_vramcap.locust.vram_view import as_emulated, page_html, parse_llamacpp_metrics, table_rows, vram_snapshot
from pytest_vramcap.model.loader import load_model
from pytest_vramcap.planner import PlanRequest, make_plan, resolve_profile
from pytest_vramcap.planner.output import plan_json

# The exposition llama-server --metrics serves (abridged from a real one: HELP/TYPE lines, no labels).
METRICS = """\
# HELP llamacpp:tokens_predicted_total Number of generation tokens processed
# TYPE llamacpp:tokens_predicted_total counter
llamacpp:tokens_predicted_total 11648
# HELP llamacpp:requests_processing Number of requests processing
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 4
llamacpp:requests_deferred 1
llamacpp:n_tokens_max 566
some_other_exporter_metric{label="x"} 3
"""


def test_llamacpp_counters_are_read_from_the_exposition() -> None:
    assert parse_llamacpp_metrics(METRICS) == {"tokens_predicted_total": 11648.0, "requests_processing": 4.0,
                                              "requests_deferred": 1.0, "n_tokens_max": 566.0}


def test_the_rows_show_the_plan_the_server_and_the_load() -> None:
    request = PlanRequest(agents=4, ctx_per_agent=1024)
    plan = plan_json(make_plan(load_model("tiny:Q8_0"), resolve_profile("16gb"), request))
    tally = LoadTally(started_at=0.0)
    tally.add_request(320, ok=True, now=1.0)
    snapshot = {**vram_snapshot(plan, None, tally), "server": parse_llamacpp_metrics(METRICS), "server_note": ""}
    rows = {(row["section"], row["item"]): row for row in table_rows(snapshot)}
    assert rows[("plan", "slots x context")]["value"] == "4 x 1,024 (KV f16)"
    assert rows[("plan", "context (KV cache)")]["value"] == f"{plan['memory']['gpu']['context_mib']:,.0f} MiB"
    busy = rows[("server", "requests processing")]
    assert busy["value"] == "4 of 4 slots" and busy["bar"].endswith("100%")
    assert rows[("server", "longest sequence in a slot (KV high-water mark)")]["value"] == "566 tokens of 1,024"
    assert rows[("load", "output tokens / requests / graphs")]["value"] == "320 / 1 (0 failed) / 0"


def test_without_a_plan_or_a_server_the_rows_say_why() -> None:
    snapshot = vram_snapshot(None, None, LoadTally())
    rows = {(row["section"], row["item"]): row["value"] for row in table_rows(snapshot)}
    assert "not planned" in rows[("plan", "none")]
    assert rows[("server", "counters")] == "no server yet"


@pytest.mark.parametrize("needle", ["vramcap/data", "<script>", "setInterval"])
def test_the_page_is_one_self_contained_file(needle: str) -> None:
    html = page_html()
    assert needle in html and "http" not in html.split("<script>")[0].replace("http-equiv", "")


def test_an_emulated_card_shows_the_profile_s_memory_not_the_big_card_s() -> None:
    # NVML's view (GpuMemory, as memory_in_use returns it; no GPU here) of an H100 on which 1,000 MiB were in use
    # when the ballast left the 16gb profile's 16,384 MiB free, and the server then took 9,000 of them.
    h100 = asdict(GpuMemory(0, "NVIDIA H100 80GB HBM3", 81_559 - 16_384 + 9_000, 81_559, "GPU-h100"))
    other = asdict(GpuMemory(1, "NVIDIA H100 80GB HBM3", 5.0, 81_559, "GPU-other"))
    emulated = {"profile": "16gb", "ballast_mib": 64_175,
                "cards": [{"gpu_uuid": "GPU-h100", "usable_mib": 16_384, "ballast_mib": 64_175}]}
    shown = as_emulated([h100, other], emulated)
    assert shown[0]["used_mib"] == 9_000 and shown[0]["total_mib"] == 16_384
    assert "as 16gb (emulated)" in shown[0]["name"]
    assert shown[1] == other  # the ballast is on one card
    rows = table_rows({**vram_snapshot(None, None, LoadTally()), "gpus": shown})
    assert any(row["value"] == "9,000 / 16,384 MiB" and row["bar"].endswith("55%") for row in rows)
    assert as_emulated([h100], None) == [h100]


def test_several_cards_show_each_card_s_plan_and_each_emulated_card() -> None:
    plan = plan_json(make_plan(load_model("qwen2.5-32b:Q4_K_M"), resolve_profile("2x16gb"),
                               PlanRequest(agents=4, ctx_per_agent=4096)))
    rows = {(row["section"], row["item"]): row for row in table_rows(vram_snapshot(plan, None, LoadTally()))}
    cards = [row for (section, item), row in rows.items() if section == "plan" and item.startswith("card ")]
    assert len(cards) == 2
    for row, device in zip(cards, plan["memory"]["devices"], strict=True):
        assert row["value"] == f"{device['total_mib']:,.0f} / {device['usable_mib']:,.0f} MiB"
        assert f"({device['layers']} layers)" in row["item"]
    # Both H100s emulate a 16 GB card: each shows its own card's usable memory.
    gpus = [asdict(GpuMemory(i, "NVIDIA H100 80GB HBM3", 81_559 - 16_384 + used, 81_559, f"GPU-{i}"))
            for i, used in enumerate((9_000, 8_000))]
    emulated = {"profile": "2x16gb", "ballast_mib": 2 * 65_175,
                "cards": [{"gpu_uuid": f"GPU-{i}", "usable_mib": 16_384, "ballast_mib": 65_175} for i in range(2)]}
    assert [(gpu["used_mib"], gpu["total_mib"]) for gpu in as_emulated(gpus, emulated)] == [(9_000, 16_384),
                                                                                           (8_000, 16_384)]
