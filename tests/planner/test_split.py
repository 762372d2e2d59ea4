"""Several cards: profiles that name them, llama.cpp's layer split, each card's memory and fit, the rendering.

The placement rule is llama.cpp's (src/llama-model.cpp load_tensors, docs/sources/multi-gpu.md); what each card
then holds is checked for conservation against the one-card model, which docs/validation.md measured. The
per-card compute buffers and pipeline copies are not measured on several cards yet (no such device was lent).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from pytest_vramcap.errors import ConfigError, ProfileError
from pytest_vramcap.model import spec_from_shape
from pytest_vramcap.planner import PlanRequest, make_plan
from pytest_vramcap.planner.memory import ServerConfig, estimate_memory
from pytest_vramcap.planner.plan import fits_budget
from pytest_vramcap.planner.profiles import load_user_profiles, resolve_profile
from pytest_vramcap.planner.render import llama_server_args, ollama_env
from pytest_vramcap.planner.split import balanced_counts, blocks, proportional_counts

QWEN32 = spec_from_shape("qwen2.5-32b", "Q4_K_M")


def test_llama_cpps_rule_gives_the_first_card_the_extra_layer_and_the_last_the_output() -> None:
    # docs/sources/multi-gpu.md 1.2: 32 layers, -ngl all (33 positions), -ts 1,1: GPU0 layers 0-16, GPU1 17-31 + output
    assert proportional_counts(33, [1, 1]) == (17, 16)
    assert proportional_counts(20, [1, 1]) == (10, 10)  # -ngl 20: 13 layers stay on the CPU, 10 and 10 offloaded
    assert proportional_counts(33, [3, 1]) == (25, 8)  # proportions, not GiB
    # a -ts of whole layer counts gives each card exactly that many: what the plan renders
    assert proportional_counts(65, [33, 32]) == (33, 32) and proportional_counts(65, [0, 65]) == (0, 65)
    assert blocks((33, 32)) == [(0, 33), (33, 65)]


def test_the_balanced_split_leaves_the_most_room_on_the_tightest_card() -> None:
    budgets = [100.0, 300.0]  # a position costs 10 on either card; the second card has three times the room

    def overrun(card: int, start: int, end: int) -> float:
        return 10.0 * (end - start) - budgets[card]

    counts = balanced_counts(40, 2, overrun)
    assert sum(counts) == 40 and counts == (10, 30)  # 0 and 0 left: any other split leaves one card short
    assert balanced_counts(60, 2, overrun) == (20, 40)  # over budget either way: 100 and 100 over beats 0 and 200


@pytest.mark.parametrize(("text", "cards", "usable"), [
    ("2x16gb", ["16gb", "16gb"], 32768),
    ("rtx4080+rtx4060ti-16gb", ["rtx4080", "rtx4060ti-16gb"], 16076 + 16080),
    ("2 x 4090+16gb", ["rtx4090", "rtx4090", "16gb"], 2 * 24264 + 16384),
])
def test_profiles_name_several_cards(text: str, cards: list[str], usable: int) -> None:
    profile = resolve_profile(text, {})
    assert [card.name for card in profile.devices] == cards and profile.usable_mib == usable
    assert profile.to_dict()["devices"][0]["name"] == cards[0]


@pytest.mark.parametrize(("text", "message"), [
    ("0x16gb", "not N x CARD"), ("17x16gb", "not N x CARD"), ("2x2x16gb", "counts twice"), ("16gb+", "not N x CARD"),
    ("1x16gb", "at least two"), ("2xfoo", "unknown VRAM profile 'foo'"), ("9x16gb+9x16gb", "at most 16"),
])
def test_bad_card_lists_are_one_clear_error(text: str, message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        resolve_profile(text, {})


def test_a_user_profile_lists_its_cards(tmp_path: Path) -> None:
    toml = tmp_path / "vramcap.toml"
    toml.write_text('[profiles.workstation]\ndevices = ["rtx4090", "rtx3090"]\ndescription = "the pair"\n'
                    '[profiles.broken]\ndevices = "rtx4090"\n')
    with pytest.raises(ProfileError, match="'devices' is a list of card profiles"):
        load_user_profiles(toml)
    toml.write_text('[profiles.workstation]\ndevices = ["desk", "rtx3090"]\ndescription = "the pair"\n'
                    '[profiles.desk]\nbase = "rtx4090"\nreserved_mib = 900\n')  # the display on the first card
    profile = load_user_profiles(toml)["workstation"]
    assert [card.name for card in profile.devices] == ["desk", "rtx3090"] and profile.description == "the pair"
    assert profile.devices[0].usable_mib == 24564 - 900


def test_the_cards_hold_exactly_what_one_card_would_and_the_output_goes_last() -> None:
    config = ServerConfig(parallel=4, ctx_per_agent=8192)
    one = estimate_memory(QWEN32, config, resolve_profile("48gb", {}))
    split = estimate_memory(QWEN32, config, resolve_profile("2x24gb", {}))
    assert sum(split.layer_split) == QWEN32.n_layer + 1 == split.gpu_layers
    assert sum(card.model for card in split.devices) == one.gpu.model  # every weight on exactly one card
    assert sum(card.context for card in split.devices) == one.gpu.context  # a layer's KV on its layer's card
    first, last = (pinned := estimate_memory(QWEN32, replace(config, tensor_split=(64, 1)),
                                             resolve_profile("2x24gb", {}))).devices
    output = sum(tensor.cuda_nbytes for tensor in QWEN32.tensors if tensor.name.startswith("output"))
    assert pinned.layer_split == (64, 1) and last.model == output and last.context == 0  # the output layer alone
    assert first.model + last.model == one.gpu.model


def test_pipeline_copies_only_with_every_layer_on_the_cards() -> None:
    profile = resolve_profile("2x24gb", {})
    full = estimate_memory(QWEN32, ServerConfig(parallel=4, ctx_per_agent=8192), profile)
    partial = estimate_memory(QWEN32, ServerConfig(parallel=4, ctx_per_agent=8192, gpu_layers=60), profile)
    assert partial.devices[1].compute < full.devices[1].compute  # no copies of the inputs without a full offload


def test_a_32b_model_with_four_agents_fits_two_16gb_cards_with_a_split_and_its_flags() -> None:
    request = PlanRequest(agents=4, ctx_per_agent=8192)
    assert not make_plan(QWEN32, resolve_profile("16gb", {}), request).fits
    plan = make_plan(QWEN32, resolve_profile("2x16gb", {}), request)
    assert plan.fits and plan.config.tensor_split == plan.memory.layer_split and len(plan.memory.devices) == 2
    for card, device in zip(plan.profile.devices, plan.memory.devices, strict=True):
        assert device.total / 2**20 + plan.fit_margin_mib <= card.usable_mib  # the margin is kept on every card
    assert plan.headroom_mib == pytest.approx(min(
        card.usable_mib - device.total / 2**20 for card, device in zip(plan.profile.devices, plan.memory.devices,
                                                                       strict=True)), abs=0.01)
    args = llama_server_args(plan.config, "m.gguf", fit_margin_mib=1024)
    assert args[args.index("-ts") + 1] == ",".join(map(str, plan.memory.layer_split)) and "layer" in args
    assert "-ts" not in llama_server_args(plan.config, "m.gguf", fit_margin_mib=1024, fit=True)  # --fit decides
    env = ollama_env(plan.config, fit_margin_mib=1024)
    assert env["OLLAMA_SCHED_SPREAD"] == "1" and "CUDA_VISIBLE_DEVICES" not in env  # the user's choice of cards
    assert any(note.startswith("without -ts (Ollama) llama.cpp splits by free memory") for note in plan.notes)


def test_the_tightest_card_decides_the_fit() -> None:
    config = ServerConfig(parallel=4, ctx_per_agent=8192)
    profile = resolve_profile("2x16gb", {})
    lopsided = estimate_memory(QWEN32, replace(config, tensor_split=(60, 5)), profile)
    balanced = estimate_memory(QWEN32, config, profile)
    assert lopsided.gpu.total == pytest.approx(balanced.gpu.total, rel=0.01)  # the same bytes in all
    assert fits_budget(balanced, profile, 1024) and not fits_budget(lopsided, profile, 1024)


def test_a_model_on_one_card_holds_nothing_on_the_others_and_no_pipeline_copies() -> None:
    profile = resolve_profile("2x24gb", {})
    config = ServerConfig(parallel=4, ctx_per_agent=8192)
    alone = estimate_memory(QWEN32, replace(config, main_gpu=1), profile)
    one = estimate_memory(QWEN32, config, resolve_profile("24gb", {}))
    assert alone.layer_split == (0, 65) and alone.devices[0].total == 0
    assert alone.devices[1] == one.gpu  # -sm none: exactly the one-card model
    assert "-mg" in llama_server_args(replace(config, main_gpu=1), "m.gguf", fit_margin_mib=1024)
    with pytest.raises(ConfigError, match="card 2 of 2x24gb: it has 2 cards"):
        estimate_memory(QWEN32, replace(config, main_gpu=2), profile)


def test_several_models_on_several_cards_put_a_small_one_on_one_card() -> None:
    from pytest_vramcap.planner.modelset import make_plan_set
    from pytest_vramcap.planner.output import plan_set_json

    specs = {"chat": spec_from_shape("qwen2.5-14b", "Q4_K_M"), "embed": spec_from_shape("qwen3-embedding-0.6b", "Q8_0")}
    requests = {"chat": PlanRequest(agents=4), "embed": PlanRequest(agents=1, ctx_per_agent=8192)}
    plans = make_plan_set(specs, resolve_profile("2x16gb", {}), requests)
    embed, chat = plans.plans["embed"], plans.plans["chat"]
    assert embed.config.main_gpu is not None and chat.config.main_gpu is None and len(chat.config.tensor_split) == 2
    assert plans.fits
    data = plan_set_json(plans)
    for card, device in zip(plans.profile.devices, data["devices"], strict=True):
        assert device["total_mib"] + plans.fit_margin_mib <= card.usable_mib  # the margin is kept on every card
    assert "-sm none -mg" in " ".join(data["llama_server"]["embed"]["args"])
    embed_model = next(model for model in data["ollama"]["models"] if model["role"] == "embed")
    assert f"PARAMETER main_gpu {embed.config.main_gpu}" in embed_model["modelfile"]


@pytest.mark.parametrize("cards", ["24gb+8gb", "rtx4090+rtx4060ti-16gb", "2x16gb"])
def test_each_model_is_split_for_what_the_models_before_it_hold(cards: str) -> None:
    # Alone, each would put its layers on the same roomy card; together they must not overrun it.
    from pytest_vramcap.planner.modelset import make_plan_set

    specs = {"a": spec_from_shape("qwen2.5-14b", "Q4_K_M"), "b": spec_from_shape("qwen2.5-7b", "Q4_K_M")}
    for requests in ({"a": PlanRequest(agents=4, ctx_per_agent=8192), "b": PlanRequest(agents=2, ctx_per_agent=4096)},
                     {"a": PlanRequest(agents=4), "b": PlanRequest(agents=2, ctx_per_agent=4096)}):
        plans = make_plan_set(specs, resolve_profile(cards, {}), requests)
        assert plans.fits and plans.headroom_mib >= plans.fit_margin_mib


def test_a_card_without_layers_pays_only_its_cuda_context() -> None:
    profile = resolve_profile("2x16gb", {})
    cpu_only = estimate_memory(QWEN32, ServerConfig(parallel=1, ctx_per_agent=4096, gpu_layers=0), profile)
    assert cpu_only.layer_split == (0, 0)
    assert cpu_only.devices[1].total == profile.devices[1].overhead_mib * 2**20  # no compute, no copies, no pool
    assert cpu_only.devices[0].compute > 0  # the first card runs the CPU layers' big-batch products
    plan = make_plan(QWEN32, profile, PlanRequest(agents=1, ctx_per_agent=4096, gpu_layers=0))
    assert plan.config.tensor_split == () and "-ts" not in llama_server_args(plan.config, "m", fit_margin_mib=1024)


def test_a_plan_over_budget_names_its_tightest_card() -> None:
    from pytest_vramcap.engines.base import EngineEvidence
    from pytest_vramcap.report.verdicts import oom_verdict

    plan = make_plan(QWEN32, resolve_profile("2x16gb", {}), PlanRequest(agents=4, ctx_per_agent=32768))
    assert not plan.fits and plan.breaking_term is not None
    assert plan.breaking_term.startswith("card ") and "KV cache" in plan.breaking_term
    verdict = oom_verdict(plan, EngineEvidence(log=None))
    assert verdict.outcome == "fail" and verdict.evidence[0].startswith("plan: card ")
    assert "MiB usable (card " in verdict.evidence[0]


def test_a_bigger_gpu_emulating_several_cards_pays_its_own_overhead_on_each() -> None:
    h100, written = resolve_profile("h100-80gb"), resolve_profile("rtx4080+16gb")
    two = written.with_overhead_of(h100)
    assert [card.overhead_mib for card in two.cards] == [609, 609] and two.overhead_mib == 2 * 609
    assert [card.pool_after_load_mib for card in two.cards] == [84, 84]
    assert [card.usable_mib for card in two.cards] == [card.usable_mib for card in written.cards]
    assert resolve_profile("16gb").cards == (resolve_profile("16gb"),)


def test_what_each_card_holds_adds_up_to_the_plan() -> None:
    plan = make_plan(spec_from_shape("qwen2.5-32b", "Q4_K_M"), resolve_profile("2x16gb"), PlanRequest(agents=4))
    by_card = plan.planned_by_card_mib()
    assert len(by_card) == 2 and sum(by_card) == pytest.approx(plan.total_mib, abs=0.05)
    one = make_plan(spec_from_shape("qwen2.5-7b", "Q4_K_M"), resolve_profile("16gb"), PlanRequest(agents=2))
    assert one.planned_by_card_mib() == (one.total_mib,)
