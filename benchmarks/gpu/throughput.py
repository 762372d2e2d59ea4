"""Decode and prefill speed on a real GPU against the planner's estimate (issue 27).

For every config: synthesize the shape, start llama-server with the config's flags, warm it up, then time
with llama-server's own timings (``/completion``'s ``timings``):

* prefill: one prompt of ``--prefill-tokens`` tokens, ``prompt_per_second``;
* decode for 1..N concurrent agents (N = the config's slots): each agent asks for ``--tokens`` tokens after a
  prompt of ``prompt`` tokens (``ignore_eos``); the aggregate is the agent count times the slowest agent's
  ``predicted_per_second`` (the batch's step rate), with every agent's rate and the wall-clock rate (all tokens
  over the burst's wall time) kept beside it.

Dense models are written sparse (a hole reads as zeros: the kernels read every byte all the same); MoE models get
random weights, because zero router weights would send every token to the same experts and hide what batching
costs an MoE layer.

Writes throughput.json (one row per config and agent count, measured fields only). ``--render FILE`` adds the
current planner's ``predicted_tps`` (and prefill) to every row of a measured FILE without a GPU, and prints the
error table: the planner can be refitted and re-checked against the same measurements.

    VRAMCAP_LLAMA_SERVER=build/bin/llama-server python benchmarks/gpu/throughput.py --out DIR [--only 0,3]
    python benchmarks/gpu/throughput.py --render docs/throughput.json
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from pytest_vramcap.engines import EngineOptions, LlamaServer
from pytest_vramcap.gpu.nvml import detect_gpus, visible_gpu
from pytest_vramcap.model import spec_from_shape
from pytest_vramcap.model.synth import write_gguf
from pytest_vramcap.planner.memory import ServerConfig
from pytest_vramcap.planner.profiles import resolve_profile
from pytest_vramcap.planner.throughput import (
    H100_BANDWIDTH_GBPS,
    PrefillTerms,
    StepTerms,
    prefill_seconds,
    prefill_terms,
    step_seconds,
    step_terms,
)

ROLE_CALIBRATE = "calibrate"
ROLE_HOLDOUT = "holdout"


@dataclass(frozen=True)
class Case:
    """One llama-server config; every agent count from 1 to ``agents`` is timed."""

    shape: str
    mix: str
    agents: int
    ctx: int = 4096
    kv: str = "f16"
    fa: bool = True
    gpu_layers: int | None = None
    n_cpu_moe: int = 0
    prompt: int = 32
    """Tokens in each agent's prompt before it decodes: the KV cache each step reads."""
    role: str = ROLE_CALIBRATE

    def config(self) -> ServerConfig:
        return ServerConfig(parallel=self.agents, ctx_per_agent=self.ctx, cache_type_k=self.kv, cache_type_v=self.kv,
                            flash_attn=self.fa, gpu_layers=self.gpu_layers, n_cpu_moe=self.n_cpu_moe)

    def key(self) -> dict[str, Any]:
        return {"shape": self.shape, "mix": self.mix, "slots": self.agents, "ctx_per_agent": self.ctx,
                "kv_cache": self.kv, "flash_attn": self.fa, "gpu_layers": self.gpu_layers,
                "n_cpu_moe": self.n_cpu_moe, "prompt_tokens": self.prompt, "role": self.role}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Case:
        return cls(row["shape"], row["mix"], row["slots"], row["ctx_per_agent"], row["kv_cache"], row["flash_attn"],
                   row.get("gpu_layers"), row.get("n_cpu_moe", 0), row["prompt_tokens"],
                   row.get("role", ROLE_CALIBRATE))


H = ROLE_HOLDOUT
CASES = [
    # Dense, 0.5B to 32B: the small ones pin the per-step fixed cost, the large ones the bandwidth.
    Case("qwen2.5-0.5b", "Q8_0", 4),
    Case("llama3.2-3b", "Q4_K_M", 4),
    Case("qwen2.5-7b", "Q4_K_M", 4),
    Case("llama3.1-8b", "Q4_K_M", 4, role=H),
    Case("llama3.1-8b", "Q8_0", 2),
    Case("qwen3-8b", "Q5_K_M", 3),  # the only Q5_K model: it calibrates that type's rate
    Case("gemma3-12b", "Q4_K_M", 3, 8192),
    Case("mistral-nemo-12b", "Q4_K_M", 2, role=H),
    Case("qwen2.5-14b", "Q4_K_M", 4, 8192),
    Case("qwen2.5-14b", "Q4_K_M", 4, 8192, "q8_0", prompt=4096),  # the quantized-KV attention term
    Case("qwen2.5-14b", "Q4_K_M", 2, 8192, prompt=6144),
    Case("mistral-small-24b", "Q4_K_M", 2, role=H),
    Case("qwen2.5-32b", "Q4_K_M", 4),
    Case("qwen3-32b", "Q4_K_M", 2, role=H),
    Case("gemma2-9b", "Q4_K_M", 2, 8192, fa=False, role=H),
    # MoE: routed experts only, and what each more token in the batch adds.
    Case("qwen3-30b-a3b", "Q4_K_M", 4),
    Case("gpt-oss-20b", "MXFP4_MOE", 4),
    Case("qwen3-30b-a3b", "Q4_K_M", 2, 8192, "q8_0", prompt=4096, role=H),
    # Partial offload: layers and experts on the host.
    Case("llama3.1-8b", "Q4_K_M", 2, gpu_layers=20),
    Case("qwen2.5-14b", "Q4_K_M", 2, gpu_layers=30, role=H),
    Case("qwen3-30b-a3b", "Q4_K_M", 2, n_cpu_moe=24, role=H),
    Case("llama3.2-3b", "Q4_K_M", 1, gpu_layers=0),
    # Three agents on four slots decoded slower than two (first run): the same model on three slots.
    Case("qwen2.5-7b", "Q4_K_M", 3),
    Case("qwen2.5-14b", "Q4_K_M", 3, 8192, role=H),
    # Attention's share as the context grows.
    Case("qwen2.5-7b", "Q4_K_M", 4, 8192, prompt=2048),
    Case("qwen2.5-7b", "Q4_K_M", 4, 8192, prompt=6144, role=H),
    # MoE held out with seeded sampling (the greedy rows' agents shared their experts).
    Case("gpt-oss-20b", "MXFP4_MOE", 2, 8192, prompt=4096, role=H),
    Case("qwen3-30b-a3b", "Q4_K_M", 3, role=H),
]

PROMPT_WORD = " lighthouse"
# Greedy agents with near-equal prompts emit the same tokens, so an MoE routes them to the same experts and reads
# fewer than independent agents would (the 2026-12-06 rows, docs/throughput.md); seeded sampling decorrelates them.
SAMPLING: dict[str, Callable[[int], dict[str, Any]]] = {
    "greedy": lambda agent: {"temperature": 0},
    "seeded": lambda agent: {"temperature": 1.0, "top_k": 40, "seed": 1000 + agent},
}


@functools.cache
def _tokens_per_word(url: str) -> int:
    """How many tokens PROMPT_WORD is in the vocabulary of the server at ``url`` (asked once per server)."""
    response = httpx.post(f"{url}/tokenize", json={"content": PROMPT_WORD}, timeout=60)
    response.raise_for_status()
    return max(1, len(response.json()["tokens"]))


def _prompt(url: str, tokens: int, salt: str) -> str:
    """About ``tokens`` tokens in the model's own vocabulary (the word may be one token or several)."""
    return salt + PROMPT_WORD * max(1, (tokens - 4) // _tokens_per_word(url))


def _completion(client: httpx.Client, url: str, prompt_tokens: int, n_predict: int, salt: str) -> dict[str, Any]:
    body = {"prompt": _prompt(url, prompt_tokens, salt), "n_predict": n_predict, "ignore_eos": True,
            "cache_prompt": False, "temperature": 0}
    response = client.post(f"{url}/completion", json=body, timeout=600)
    response.raise_for_status()
    return dict(response.json()["timings"])


def _prefill(client: httpx.Client, url: str, tokens: int, n_vocab: int) -> dict[str, Any]:
    """One prompt of ``tokens`` random token ids (llama-server takes a prompt as ids): an MoE routes them as it would
    real text, where a prompt of one repeated word sent every token to the same experts (the 2026-12-06 rows)."""
    ids = random.Random(tokens).choices(range(n_vocab), k=tokens)
    body = {"prompt": ids, "n_predict": 1, "ignore_eos": True, "cache_prompt": False, "temperature": 0}
    response = client.post(f"{url}/completion", json=body, timeout=600)
    response.raise_for_status()
    return dict(response.json()["timings"])


async def _burst(url: str, agents: int, prompt_tokens: int, n_predict: int,
                 sampling: str) -> tuple[list[dict[str, Any]], float]:
    """``agents`` completions at once; their timings and the burst's wall time."""
    prompts = [_prompt(url, prompt_tokens, f"agent {i}:") for i in range(agents)]
    async with httpx.AsyncClient(timeout=600) as client:
        async def one(i: int) -> dict[str, Any]:
            body = {"prompt": prompts[i], "n_predict": n_predict, "ignore_eos": True, "cache_prompt": False,
                    **SAMPLING[sampling](i)}
            response = await client.post(f"{url}/completion", json=body)
            response.raise_for_status()
            return dict(response.json()["timings"])

        started = time.monotonic()
        timings = await asyncio.gather(*(one(i) for i in range(agents)))
        return list(timings), time.monotonic() - started


def run_case(models: Path, logs: Path, case: Case, tokens: int, prefill_tokens: int,
             sampling: str) -> list[dict[str, Any]]:
    moe = bool(spec_from_shape(case.shape, case.mix).n_expert)
    path = models / f"{case.shape}-{case.mix}-{'random' if moe else 'sparse'}.gguf"
    if not path.exists():
        write_gguf(case.shape, case.mix, path, weights="random" if moe else "sparse")
    server = LlamaServer(case.config(), path, EngineOptions(log_dir=logs, startup_timeout_s=600))
    server.start()
    rows = []
    try:
        with httpx.Client() as client:
            _completion(client, server.url, 64, 16, "warm-up")
        for agents in range(1, case.agents + 1):
            timings, wall = asyncio.run(_burst(server.url, agents, case.prompt, tokens, sampling))
            decoded = sum(t["predicted_n"] for t in timings)
            rows.append({
                **case.key(), "agents": agents, "decoded_tokens": tokens, "sampling": sampling,
                # The slowest agent decoded with every other agent in the batch the whole time (one that started
                # or ended apart decoded part of its tokens alone, faster): the batch's step rate, times agents.
                "measured_tps": round(agents * min(t["predicted_per_second"] for t in timings), 2),
                "measured_per_agent_tps": [round(t["predicted_per_second"], 2) for t in timings],
                "measured_wall_tps": round(decoded / wall, 2),
                "prompt_n": timings[0]["prompt_n"],
                "measured_prefill_tps": None, "prefill_n": None,
            })
            print(json.dumps(rows[-1]), flush=True)
        # Prefill last: a slot left holding a long prompt makes every later batch that includes it attend over
        # that slot's length (3 agents on 4 slots decoded at 0.5x of 2 agents in the first run, 2026-12-06).
        with httpx.Client() as client:
            prefill = _prefill(client, server.url, min(prefill_tokens, case.ctx - 8),
                               spec_from_shape(case.shape, case.mix).n_vocab)
        rows[0].update(measured_prefill_tps=round(prefill["prompt_per_second"], 1), prefill_n=prefill["prompt_n"],
                       prefill_prompt="random")
    finally:
        server.stop()
        _tokens_per_word.cache_clear()  # the next case's server may get this port with another vocabulary
    return rows


def _terms(row: dict[str, Any]) -> StepTerms:
    case = Case.from_row(row)
    # The mean context over the decode: the prompt, then half the decoded tokens.
    context = row["prompt_n"] + row.get("decoded_tokens", 256) // 2
    return step_terms(spec_from_shape(case.shape, case.mix), case.config(), row["agents"], context)


def render(path: Path) -> list[dict[str, Any]]:
    """Add the current planner's estimate (the H100 profile) to every measured row; print the error table."""
    profile = resolve_profile("h100-80gb", {})
    rows = json.loads(path.read_text())
    for row in rows:
        if "error" not in row:
            row["predicted_tps"] = round(row["agents"] / step_seconds(_terms(row), profile), 2)
            row["error_pct"] = round(100 * (row["predicted_tps"] - row["measured_tps"]) / row["measured_tps"], 1)
        if row.get("measured_prefill_tps"):
            row["predicted_prefill_tps"] = round(row["prefill_n"] / prefill_seconds(_prefill_terms(row), profile), 1)
            row["prefill_error_pct"] = round(100 * (row["predicted_prefill_tps"] - row["measured_prefill_tps"])
                                             / row["measured_prefill_tps"], 1)
    path.write_text(json.dumps(rows, indent=2) + "\n")
    for row in rows:
        if "error" not in row:
            print(f"{row['shape']:>17} {row['mix']:>9} slots {row['slots']} agents {row['agents']} "
                  f"prompt {row['prompt_tokens']:>5} ngl {row['gpu_layers']!s:>4} cpu-moe {row['n_cpu_moe']:>2} "
                  f"{row['role']:>9}: predicted {row['predicted_tps']:7.1f} measured {row['measured_tps']:7.1f} "
                  f"({row['error_pct']:+.1f}%)")
    for role in (ROLE_CALIBRATE, ROLE_HOLDOUT):
        errors = [abs(r["error_pct"]) for r in rows if "error" not in r and r["role"] == role]
        print(f"{role}: {sum(e <= 15 for e in errors)} of {len(errors)} within 15%, worst {max(errors):.1f}%")
    print("prefill:")
    for row in rows:
        if row.get("measured_prefill_tps"):
            why = prefill_left_out(row)
            print(f"{row['shape']:>17} {row['mix']:>9} ngl {row['gpu_layers']!s:>4} cpu-moe {row['n_cpu_moe']:>2} "
                  f"{row['role']:>9}: predicted {row['predicted_prefill_tps']:8.0f} measured "
                  f"{row['measured_prefill_tps']:8.0f} ({row['prefill_error_pct']:+.1f}%){f'  [{why}]' if why else ''}")
    for role in (ROLE_CALIBRATE, ROLE_HOLDOUT):
        errors = [abs(r["prefill_error_pct"]) for r in rows
                  if r.get("measured_prefill_tps") and r["role"] == role and not prefill_left_out(r)]
        if errors:
            print(f"prefill {role}: {sum(e <= 15 for e in errors)} of {len(errors)} within 15%, "
                  f"worst {max(errors):.1f}%")
    return rows


def prefill_left_out(row: dict[str, Any]) -> str:
    """Why a measured prefill is not one the model prices ('' when it is): an MoE's (its expert products ran slower
    than the dense terms price them, and --n-cpu-moe much faster than copying its experts per micro-batch allows;
    the 2026-12-06 rows); Gemma prefilled at half the rate of every other family (not modelled)."""
    if spec_from_shape(row["shape"], row["mix"]).n_expert:
        return "MoE: not modelled"
    if row["shape"].startswith("gemma"):
        return "Gemma: not modelled"
    return ""


def _prefill_terms(row: dict[str, Any]) -> PrefillTerms:
    case = Case.from_row(row)
    return prefill_terms(spec_from_shape(case.shape, case.mix), case.config(), row["prefill_n"])


def fit_prefill(path: Path) -> None:
    """Least squares of the relative prefill-time error over the calibration rows the model prices: the
    PrefillCosts the planner carries."""
    rows = [r for r in json.loads(path.read_text())
            if r.get("measured_prefill_tps") and r["role"] == ROLE_CALIBRATE and not prefill_left_out(r)]
    terms = [_prefill_terms(r) for r in rows]
    kinds = sorted({k for t in terms for k in t.tflop_by_type} - {"Q8_0"})
    # one rate for the k-quants, F16 and attention (too few rows to split them), one for Q8_0
    names = ["s_per_tflop", "Q8_0_s_per_tflop", "layer_ubatch_us", "s_per_host_gb"]
    columns = np.array([[sum(t.tflop_by_type.get(k, 0.0) for k in kinds), t.tflop_by_type.get("Q8_0", 0.0),
                         t.layer_ubatches * 1e-6, t.host_copy_gb] for t in terms])
    if not rows:
        print("prefill: no calibration row the model prices")
        return
    seconds = np.array([r["prefill_n"] / r["measured_prefill_tps"] for r in rows])
    a = columns / seconds[:, None]  # relative error: every row weighs the same
    used = [i for i in range(len(names)) if a[:, i].any()]
    coef = bounded_least_squares(a, np.ones(len(rows)), np.zeros(len(names)))
    shown = {name: coef[i] if i in used else None for i, name in enumerate(names)}

    def rate(value: float | None) -> str:
        return "no calibration row" if value is None else ("unbounded" if value == 0 else f"{1 / value:.2f}")

    print(f"prefill ({len(rows)} rows): tflops {rate(shown['s_per_tflop'])}, Q8_0 tflops "
          f"{rate(shown['Q8_0_s_per_tflop'])}, layer_ubatch_us {shown['layer_ubatch_us'] or 0:.1f}, host_copy_gbps "
          f"{rate(shown['s_per_host_gb'])}")


def bounded_least_squares(a: np.ndarray, b: np.ndarray, lower: np.ndarray, sweeps: int = 20000) -> np.ndarray:
    """Least squares with each coefficient at or above its ``lower`` bound (no unit cost negative, no weight read
    faster than the bandwidth), by coordinate descent: few terms, a few thousand sweeps converge. A column no row
    uses keeps its bound."""
    coef = lower + 1e-9
    used = [i for i in range(a.shape[1]) if a[:, i].any()]
    for _ in range(sweeps):
        for i in used:
            rest = b - a @ coef + a[:, i] * coef[i]
            coef[i] = max(lower[i], float(a[:, i] @ rest) / float(a[:, i] @ a[:, i]))
    return coef


def fit(path: Path) -> None:
    """Least squares of the relative step-time error over the calibration rows, each unit cost bounded below
    (weight reads no faster than the H100's bandwidth, no cost negative): the constants the planner carries."""
    rows = [r for r in json.loads(path.read_text())
            if "error" not in r and r["role"] == ROLE_CALIBRATE]
    terms = [_terms(r) for r in rows]
    kinds = sorted({k for t in terms for k in t.gpu_gb_by_type})
    names = ["layer_us", "batch_layer_us", "moe_batch_layer_us", "attention_ms", "attention_quant_ms",
             "host_s_per_gb", "host_batch_s_per_gb", *(f"{k}_s_per_gb" for k in kinds)]
    columns = np.array([[t.gpu_layers * 1e-6, t.batch_layers * 1e-6, t.moe_batch_layers * 1e-6, t.attention * 1e-3,
                         t.attention * 1e-3 * t.quantized_kv, t.host_gb, t.host_batch_gb,
                         *(t.gpu_gb_by_type.get(k, 0.0) for k in kinds)] for t in terms])
    seconds = np.array([r["agents"] / r["measured_tps"] for r in rows])
    a = columns / seconds[:, None]  # relative error: every row weighs the same
    lower = np.array([0.0] * 7 + [1 / H100_BANDWIDTH_GBPS] * len(kinds))
    used = [i for i in range(len(names)) if a[:, i].any()]
    coef = bounded_least_squares(a, np.ones(len(rows)), lower)
    for i, name in enumerate(names):
        if name.endswith("_s_per_gb") and name not in ("host_s_per_gb", "host_batch_s_per_gb"):
            print(f"{name[:-9]:>10}: {1 / coef[i]:8.1f} GB/s" if i in used else f"{name}: no calibration row")
        else:
            print(f"{name:>20}: {coef[i]:.4g}" if i in used else f"{name}: no calibration row")
    if coef[5]:
        print(f"host bandwidth: {1 / coef[5]:.1f} GB/s, host batch share {coef[6] / coef[5]:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, help="where a GPU run writes (required without --render)")
    parser.add_argument("--models", type=Path, default=Path("/tmp/vramcap-throughput"))
    parser.add_argument("--only", default="", help="comma-separated case indices (default: all)")
    parser.add_argument("--tokens", type=int, default=256, help="tokens each agent decodes")
    parser.add_argument("--prefill-tokens", type=int, default=2048)
    parser.add_argument("--sampling", choices=sorted(SAMPLING), default="seeded")
    parser.add_argument("--render", type=Path, default=None, help="re-predict a measured throughput.json, no GPU")
    parser.add_argument("--fit", type=Path, default=None, help="fit the unit costs to a measured throughput.json")
    parser.add_argument("--cpu", action="store_true", help="smoke-run on a CPU build")
    args = parser.parse_args()
    if args.render:
        render(args.render)
        return
    if args.fit:
        fit(args.fit)
        fit_prefill(args.fit)
        return
    if args.out is None:
        parser.error("--out is required for a run")
    gpus, reason = detect_gpus()
    gpu = visible_gpu(gpus)
    if gpu is None and not args.cpu:
        sys.exit(f"throughput: no NVIDIA GPU ({reason})")
    gpu_name = gpu.name if gpu else "cpu"
    cases = [CASES[int(i)] for i in args.only.split(",")] if args.only else CASES
    args.out.mkdir(parents=True, exist_ok=True)
    args.models.mkdir(parents=True, exist_ok=True)
    out = args.out / "throughput.json"
    rows = json.loads(out.read_text()) if out.exists() else []
    for case in cases:
        try:
            new = run_case(args.models, args.out / "throughput-logs", case, args.tokens, args.prefill_tokens,
                           args.sampling)
        except Exception as exc:  # keep going: one broken config must not hide the others
            new = [{**case.key(), "error": f"{type(exc).__name__}: {exc}"[:2000]}]
            print(json.dumps(new[-1]), flush=True)
        rows.extend({**row, "gpu": gpu_name} for row in new)
        out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
