"""Decode speed from a bandwidth roofline.

Generating one token reads every GPU-resident weight once and each active
sequence's KV cache once. Single-stream decode is memory-bound, so

    tok/s = efficiency x bandwidth / bytes read per step

With N agents decoding together one step serves N tokens and reads the weights
once; the batched kernels cost a little more per step (BATCH_STEP_COST per
extra sequence, fitted to 3.03x for 4 agents on the H100). Layers left on the
CPU are read at HOST_BANDWIDTH_GBPS.

An MoE layer reads only the experts its tokens are routed to: one token reads
``n_expert_used / n_expert`` of the expert weights, and N tokens routed
independently read ``1 - (1 - used/n_expert)^N`` of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..model.spec import ModelSpec
from .memory import MemoryBreakdown, ServerConfig, is_expert_tensor, weight_placement
from .profiles import Profile

__all__ = ["BATCH_STEP_COST", "HOST_BANDWIDTH_GBPS", "DecodeEstimate", "estimate_decode"]

# Fitted to the measured 3.03x for 4 agents on the H100 (4 / (1 + 3c) = 3.03;
# tests/fixtures/llama-server-h100/README.md holds the run).
BATCH_STEP_COST = 0.107
# Dual-channel DDR5 desktop: ~60 GB/s at the same efficiency as the GPU.
HOST_BANDWIDTH_GBPS = 60.0


@dataclass(frozen=True)
class DecodeEstimate:
    single_stream_tps: float
    aggregate_tps: float
    per_agent_tps: float
    agents: int

    @property
    def parallel_speedup(self) -> float:
        """Aggregate over single-stream tokens/s: what running agents together buys (0 when unknown)."""
        return self.aggregate_tps / self.single_stream_tps if self.single_stream_tps else 0.0


def _weight_bytes_read(spec: ModelSpec, config: ServerConfig, tokens: int) -> tuple[float, float]:
    """(GPU, CPU) weight bytes one decode step of ``tokens`` sequences streams."""
    touched = 1 - (1 - spec.n_expert_used / spec.n_expert) ** tokens if spec.n_expert else 1.0
    gpu = cpu = 0.0
    output_on_gpu = config.gpu_layers is None or config.gpu_layers >= 1
    for tensor, on_gpu in weight_placement(spec, config):
        if tensor.name == "token_embd.weight":
            if not spec.tied_embeddings:
                continue  # its rows are gathered, not streamed
            on_gpu = output_on_gpu  # tied: it is also the output projection, read every step
        size = tensor.nbytes * (touched if is_expert_tensor(tensor) else 1.0)
        if on_gpu:
            gpu += size
        else:
            cpu += size
    return gpu, cpu


def estimate_decode(
    spec: ModelSpec, config: ServerConfig, memory: MemoryBreakdown, profile: Profile, context_tokens: int
) -> DecodeEstimate:
    """Tokens/s at ``context_tokens`` of context per agent, for ``config.parallel`` agents."""
    agents = config.parallel
    kv_per_token = (memory.gpu.context + memory.cpu.context) / max(1, memory.sizing.n_ctx)
    gpu_share = memory.gpu.context / max(1, memory.gpu.context + memory.cpu.context)
    gpu_bw = profile.bandwidth_gbps * 1e9 * profile.decode_efficiency
    cpu_bw = HOST_BANDWIDTH_GBPS * 1e9 * profile.decode_efficiency

    def step_seconds(n: int) -> float:
        kv = n * context_tokens * kv_per_token
        gpu_weights, cpu_weights = _weight_bytes_read(spec, config, n)
        gpu_bytes = gpu_weights + kv * gpu_share
        cpu_bytes = cpu_weights + kv * (1 - gpu_share)
        return (gpu_bytes / gpu_bw + cpu_bytes / cpu_bw) * (1 + BATCH_STEP_COST * (n - 1))

    if step_seconds(1) <= 0:  # nothing to read per token (a metadata-only spec): no estimate
        return DecodeEstimate(0.0, 0.0, 0.0, agents)
    single = 1 / step_seconds(1)
    aggregate = agents / step_seconds(agents)
    return DecodeEstimate(single, aggregate, aggregate / agents, agents)
