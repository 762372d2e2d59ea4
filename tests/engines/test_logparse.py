from __future__ import annotations

from pathlib import Path

from pytest_vramcap.engines.judge import judge_spill
from pytest_vramcap.engines.logparse import parse_server_log


def parse(h100_logs: Path, name: str):  # type: ignore[no-untyped-def]
    return parse_server_log((h100_logs / name).read_text().splitlines())


def test_full_offload_run(h100_logs: Path) -> None:
    log = parse(h100_logs, "m00_q14.log")
    assert log.model.by_backend == {"CPU_Mapped": 417.66, "CUDA0": 8148.38}
    assert log.kv.device() == 6144.0 and log.kv.host() == 0
    assert log.compute.by_backend == {"CUDA0": 129.01, "CUDA_Host": 48.02}
    assert log.offloaded_layers == (49, 49)
    assert log.kv_cells == 8192
    assert not judge_spill(log).cpu_offload and not log.oom and not log.load_failed
    row = log.final_breakdown
    assert row is not None
    assert (row.total, row.free, row.self_mib, row.model, row.context, row.compute, row.unaccounted) == (
        81079, 66040, 14421, 8148, 6144, 129, 617)
    assert log.host_breakdowns == [(465, 417, 0, 48)]


def test_out_of_memory_at_load(h100_logs: Path) -> None:
    log = parse(h100_logs, "x_oom_fitoff.log")
    assert log.oom and log.load_failed
    assert any("cudaMalloc failed: out of memory" in line for line in log.errors)
    assert log.offloaded_layers == (49, 49)  # the weights loaded; the KV buffer did not
    assert log.kv.by_backend == {}


def test_a_cpp_bad_alloc_is_an_out_of_memory() -> None:
    """Seen on a CPU run under a 4 GB address-space limit, before the KV buffer was reached."""
    log = parse_server_log(["0.03.283.968 E llama_init_from_model: failed to initialize the context: std::bad_alloc",
                            "0.03.284.672 E srv  llama_server: exiting due to model loading error"])
    assert log.oom and log.load_failed and len(log.oom_lines) == 1


def test_silent_cpu_offload_under_fit(h100_logs: Path) -> None:
    log = parse(h100_logs, "x_offload_fiton.log")
    assert log.fit_ran
    assert judge_spill(log).cpu_offload
    assert log.offloaded_layers == (21, 49)
    assert log.kv.by_backend == {"CPU": 14336.0, "CUDA0": 10240.0}
    # --fit printed trial breakdowns first; the last row is the one at shutdown.
    assert len(log.breakdowns) == 6
    assert log.final_breakdown.free == 1122


def test_explicit_partial_offload(h100_logs: Path) -> None:
    log = parse(h100_logs, "x_ngl30.log")
    assert judge_spill(log).cpu_offload and not log.fit_ran
    assert log.offloaded_layers == (30, 49)
    assert log.model.by_backend["CUDA0"] == 5154.74


def test_every_fixture_parses_to_a_verdict(h100_logs: Path) -> None:
    verdicts = {}
    for path in sorted(h100_logs.glob("*.log")):
        if path.name == "fitparams.log":
            continue
        log = parse_server_log(path.read_text().splitlines())
        verdicts[path.stem] = "oom" if log.oom else "offload" if judge_spill(log).cpu_offload else "ok"
    # Without a plan, --n-cpu-moe's expert weights on the host read as an offload too.
    assert verdicts == {"m00_q14": "ok", "m06_l8": "ok", "m09_q7": "ok", "x_ngl30": "offload",
                        "x_offload_fiton": "offload", "x_oom_fitoff": "oom", "iswa_gemma3_12b_nofa": "ok",
                        "moe_gptoss_20b_fit_overflow": "offload", "moe_qwen3_30b_fit_overflow": "offload",
                        "moe_qwen3_30b_ncpumoe24": "offload", "embed_qwen3_0.6b": "ok"}


def test_a_sliding_window_model_logs_one_kv_buffer_per_cache(h100_logs: Path) -> None:
    """llama-kv-cache-iswa.cpp: gemma3's global and sliding-window caches each log a buffer; they add up."""
    log = parse(h100_logs, "iswa_gemma3_12b_nofa.log")
    assert log.kv.by_backend == {"CUDA0": 1024.0 + 960.0}
    assert log.final_breakdown is not None and log.final_breakdown.context == 1984


def test_fit_decisions_are_read_from_the_last_block(h100_logs: Path) -> None:
    log = parse(h100_logs, "moe_qwen3_30b_fit_overflow.log")
    assert [(d.layers, d.overflowing, d.used_mib, d.free_mib) for d in log.fit_devices] == [(49, 34, 22976, 1075)]
    assert log.fit_reduce_mib == 11033 and not log.fit_unchanged
    assert log.model_info["n_vocab"] == 151936 and log.tensor_types == {"f32": 241, "q4_K": 289, "q6_K": 49}


def test_a_breakdown_over_two_cards_sums_the_last_block_and_keeps_each_card() -> None:
    # The format of common_memory_breakdown_print (the fixtures' one-card lines), with a second card as llama.cpp
    # prints one row per device: a --fit trial block first, then the block at shutdown.
    print_ = "I common_memory_breakdown_print: |"
    header = f"{print_} memory breakdown [MiB] | total free self model context compute unaccounted |"

    def row(device: str, free: int, model: int, context: int, compute: int) -> str:
        used = model + context + compute
        return (f"{print_}   - {device} (H100 80GB HBM3) | 81079 = {free} + ({used} =  {model}"
                f" +   {context} +     {compute}) +       {81079 - free - used} |")

    lines = [header, row("CUDA0", 15850, 9000, 5000, 300), row("CUDA1", 15850, 9100, 4900, 300),
             header, row("CUDA0", 1100, 9211, 5280, 272), row("CUDA1", 1300, 9297, 4960, 272),
             f"{print_}   - Host                   |       489 =   417 +       0 +      72                |"]
    log = parse_server_log(lines)
    assert [r.model for r in log.final_breakdowns] == [9211, 9297]
    total = log.final_breakdown
    assert total is not None and total.device == "CUDA0 (H100 80GB HBM3) + CUDA1 (H100 80GB HBM3)"
    assert (total.model, total.context, total.compute, total.free) == (9211 + 9297, 5280 + 4960, 544, 2400)
