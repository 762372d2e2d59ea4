"""The client_options verdict: an app's Ollama options and keep_alive against the plan, priced by the planner."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from pytest_vramcap.load.measure.record import RequestRecord
from pytest_vramcap.load.proxy.ollama import keep_alive_s
from pytest_vramcap.model import spec_from_shape
from pytest_vramcap.planner import PlanRequest, make_plan, resolve_profile
from pytest_vramcap.planner.memory import estimate_memory
from pytest_vramcap.planner.plan import fits_budget
from pytest_vramcap.report.client_options import client_options_verdict
from tests.factories import record

PLAN = make_plan(spec_from_shape("qwen2.5-14b", "Q4_K_M"), resolve_profile("16gb", {}),
                 PlanRequest(agents=2, ctx_per_agent=4096))


def asked(label: str, options: dict[str, Any], *, t_send: float = 0.0, e2e: float = 1.0,
          load_s: float | None = None) -> RequestRecord:
    made = record(label, 0.1, e2e, t_send=t_send)
    made.client_options = options
    if load_s is not None:
        made.engine_metrics = {"load_duration": int(load_s * 1e9)}
    return made


def test_requests_that_ask_for_the_plans_config_pass() -> None:
    verdict = client_options_verdict(PLAN, [[asked("coder", {"num_ctx": 4096, "num_predict": 512,
                                                             "num_gpu": -1, "keep_alive": -1}),
                                             asked("writer", {"temperature": 0.2, "keep_alive": "1h"})]])
    assert verdict.outcome == "pass" and "coder, writer" in verdict.summary


def test_a_larger_num_ctx_fails_with_what_the_reload_would_cost() -> None:
    verdict = client_options_verdict(PLAN, [[asked("coder", {"num_ctx": 32768}), asked("coder", {"num_ctx": 32768},
                                                                                       t_send=2.0)]])
    reloaded = replace(PLAN.config, ctx_per_agent=32768)
    memory = estimate_memory(PLAN.spec, reloaded, PLAN.profile)
    assert not fits_budget(memory, PLAN.profile, PLAN.fit_margin_mib)  # the premise: 2 x 32k does not fit 16 GB
    assert verdict.outcome == "fail"
    first, price = verdict.evidence  # the second request with the same value adds nothing
    assert first == "coder (request #1): num_ctx 32768, the plan sets 4096"
    assert "2 x 32768 = 65,536 tokens of KV" in price and f"{memory.gpu.total / 2**20:,.0f} MiB" in price
    assert "does NOT fit 16gb" in price


def test_a_smaller_num_ctx_fails_too_and_says_it_fits() -> None:
    verdict = client_options_verdict(PLAN, [[asked("critic", {"num_ctx": 2048})]])
    assert verdict.outcome == "fail" and verdict.evidence[1].endswith("MiB margin)")
    assert ": fits 16gb" in verdict.evidence[1]


@pytest.mark.parametrize("option, value", [("num_batch", 2048), ("num_gpu", 20), ("main_gpu", 0),
                                           ("use_mmap", False), ("num_thread", 8), ("draft_num_predict", 8)])
def test_every_runner_option_that_reloads_is_named(option: str, value: Any) -> None:
    verdict = client_options_verdict(PLAN, [[asked("coder", {option: value})]])
    assert verdict.outcome == "fail" and verdict.evidence[0].startswith(f"coder (request #1): {option} {value!r}")


@pytest.mark.parametrize("keep_alive, gap_s, fails", [(0, 0.5, True), ("0s", 0.5, True), ("2s", 5.0, True),
                                                      ("2s", 1.0, False), (-1, 1e6, False), ("5m", 60.0, False)])
def test_keep_alive_shorter_than_an_agents_gap_unloads_between_turns(keep_alive: Any, gap_s: float,
                                                                      fails: bool) -> None:
    first = asked("coder", {"keep_alive": keep_alive}, t_send=0.0, e2e=1.0)
    second = asked("coder", {"keep_alive": keep_alive}, t_send=1.0 + gap_s)
    verdict = client_options_verdict(PLAN, [[first, second]])
    assert (verdict.outcome == "fail") is fails
    if fails:
        assert verdict.evidence[0].startswith(f"coder (request #1): keep_alive {keep_alive!r}")


def test_an_idle_agent_while_others_keep_the_model_busy_does_not_unload_it() -> None:
    # Ollama unloads only when nobody used the model for keep_alive: the writer is busy during the coder's gap
    coder = [asked("coder", {"keep_alive": "2s"}, t_send=0.0, e2e=1.0),
             asked("coder", {"keep_alive": "2s"}, t_send=10.0)]
    writer = asked("writer", {}, t_send=0.5, e2e=9.8)
    assert client_options_verdict(PLAN, [[*coder, writer]]).outcome == "pass"


def test_the_keep_alive_in_force_is_the_last_one_given() -> None:
    # a long keep_alive set before the gap covers it, whoever asks for a short one afterwards
    records = [asked("coder", {"keep_alive": "1h"}, t_send=0.0, e2e=1.0),
               asked("writer", {"keep_alive": "2s"}, t_send=30.0, e2e=1.0),
               asked("writer", {"keep_alive": "2s"}, t_send=40.0)]
    verdict = client_options_verdict(PLAN, [records])
    assert verdict.outcome == "fail" and len(verdict.evidence) == 1
    assert verdict.evidence[0].startswith("writer (request #2): keep_alive '2s': the model unloads in an idle time")


def test_ollamas_own_defaults_and_a_num_ctx_past_the_training_context_reload_nothing() -> None:
    train = PLAN.spec.n_ctx_train
    trained = make_plan(PLAN.spec, PLAN.profile, PlanRequest(agents=2, ctx_per_agent=train))
    asks = {"num_thread": 0, "num_gpu": -1, "draft_num_predict": 4, "num_ctx": train * 4}
    assert client_options_verdict(trained, [[asked("coder", asks)]]).outcome == "pass"


def test_the_time_between_passes_is_not_an_agents_gap() -> None:
    passes = [[asked("coder", {"keep_alive": "2s"}, t_send=0.0)], [asked("coder", {"keep_alive": "2s"}, t_send=60.0)]]
    assert client_options_verdict(PLAN, passes).outcome == "pass"


def test_a_request_that_waited_for_a_model_load_mid_pass_fails() -> None:
    # the first request of a pass may meet a load after the harness's pause between passes: not judged
    records = [asked("coder", {}, load_s=3.0), asked("coder", {}, t_send=1.0, load_s=0.003),
               asked("writer", {}, t_send=2.0, load_s=3.5)]
    verdict = client_options_verdict(PLAN, [records])
    assert verdict.outcome == "fail" and verdict.summary == "requests waited for a model load in the middle of a pass"
    assert verdict.evidence == ("writer (request #3) waited 3.50 s for a model load (Ollama's load_duration)",)


def test_openai_requests_carry_no_options_and_leave_it_not_applicable() -> None:
    assert client_options_verdict(PLAN, [[record("coder", 0.1, 1.0)]]).outcome == "n/a"


@pytest.mark.parametrize("value, seconds", [(300, 300.0), (1.5, 1.5), ("5m", 300.0), ("1h30m", 5400.0),
                                            ("250ms", 0.25), ("0", 0.0), (-1, float("inf")), ("-1m", float("inf")),
                                            ("5 minutes", None), ("300", None), (True, None), (None, None),
                                            (" 5m", None), ("+-5m", None), ("--5m", None), ("1\u03bcs", 1e-6),
                                            ("1\u00b5s", 1e-6), ("+0", 0.0), ("1.5h", 5400.0), (".5s", 0.5)])
def test_keep_alive_is_read_as_ollama_reads_it(value: Any, seconds: float | None) -> None:
    assert keep_alive_s(value) == seconds
