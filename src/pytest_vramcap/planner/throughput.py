"""Decode and prefill speed: what one step of N agents costs, and one prompt, term by term (docs/throughput.md).

One decode step serves one token for each of N agents. Measured on an H100 against llama-server's own timings
(benchmarks/gpu/throughput.py, docs/throughput.json), its time is the sum of

* **reading the weights**: every GPU-resident weight once per step, at the card's bandwidth or, for weight
  types whose dequantizing kernels cannot keep up with it (Q4_K, Q6_K and MXFP4 on an H100), at that kernel's rate,
  which scales with the card's SM count. An MoE layer reads only the experts its tokens are routed to:
  ``1 - (1 - used/n_expert)^N`` of them for N independently routed tokens;
* **a fixed cost per resident layer**: the kernels' launch and tail latency, which dominates small models;
* **batching**: each layer's matrix-vector kernels cost ``(N - 1)^2`` times a small term more with N columns;
* **attention**: per layer, proportional to ``N^2`` times the context each agent holds (llama.cpp's flash
  attention over N separate KV streams: measured, 1 to 4 agents, 32 to 6,144 tokens), more for a quantized KV;
* **the host** for layers or experts left on the CPU (``-ngl``, ``--n-cpu-moe``): their bytes at the host's
  memory bandwidth, each further agent adding a share of that for dense layers.

:func:`step_terms` gives the terms' quantities, :class:`KernelCosts` their unit costs: the benchmark fits the
costs with the same terms the estimate uses.

A prompt is prefilled in micro-batches of ``n_ubatch`` tokens; its time is the sum of

* **the matrix products**: 2 x the layers' weights x tokens (routed experts only, ``used/n_expert`` of them per
  token; the output projection runs for the last token alone), plus attention's ``2 x heads x head_dim x n^2``,
  at a rate per weight type (Q8_0's kernel runs faster than the k-quants'), which scales with the SM count;
* **a fixed cost per resident layer and micro-batch**;
* **the host's weights copied to the GPU once per micro-batch**: llama.cpp runs a large batch's matrix products
  on the GPU even for weights it keeps on the CPU (``-ngl``, ``--n-cpu-moe``), and copies them over PCIe each time.

:func:`prefill_terms` and :class:`PrefillCosts` are its quantities and unit costs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..model.spec import ModelSpec
from .memory import ServerConfig, is_expert_tensor, weight_placement
from .profiles import Profile

__all__ = ["H100_SMS", "DecodeEstimate", "KernelCosts", "PrefillCosts", "PrefillEstimate", "PrefillTerms",
           "StepTerms", "estimate_decode", "estimate_prefill", "prefill_seconds", "prefill_terms", "step_seconds",
           "step_terms"]

# The card the kernel costs were measured on: an H100 SXM (132 SMs, 3,350 GB/s).
H100_SMS = 132
H100_BANDWIDTH_GBPS = 3350.0

# Weight types whose decode kernels ran below the share of the H100's bandwidth that Q8_0 reached: their rate in
# GB/s on the H100 (docs/throughput.md). On another card the rate scales with its SM count, and the bandwidth caps
# it. Types not listed (Q8_0, Q5_K, Q4_0, F16, ...) read at the bandwidth times the profile's decode efficiency.
KERNEL_LIMITED_GBPS = {"Q4_K": 2716.4, "Q6_K": 967.9, "MXFP4": 940.6}


@dataclass(frozen=True)
class StepTerms:
    """The quantities one decode step of ``agents`` sequences works through (bytes in GB, counts as is)."""

    gpu_layers: int
    """Layers with weights on the GPU: each costs the kernels' fixed latency."""
    gpu_gb_by_type: dict[str, float]
    """Weight bytes read on the GPU, by GGML type (routed experts only)."""
    batch_layers: float
    """Dense layers on the GPU x (agents - 1)^2."""
    moe_batch_layers: float
    """MoE layers on the GPU x (agents - 1)^2: their expert products run one token per expert (``mul_mat_id``), so
    a further agent costs them less than a dense layer's N-column kernels."""
    attention: float
    """Sum over attention layers on the GPU of agents^2 x the context a layer attends to, in millions."""
    quantized_kv: bool
    host_gb: float
    """Weight bytes read on the host (routed experts only)."""
    host_batch_gb: float
    """Dense host bytes x (agents - 1): a dense layer on the CPU pays again for each further agent."""


@dataclass(frozen=True)
class KernelCosts:
    """Unit costs of the step terms, fitted on an H100 to llama-server's timings (docs/throughput.json)."""

    layer_us: float = 71.23
    batch_layer_us: float = 10.60
    moe_batch_layer_us: float = 2.606
    attention_ms: float = 3.264
    """Per million of :attr:`StepTerms.attention`, f16 K and V."""
    attention_quant_ms: float = 1.576
    """Added per million with a quantized K/V (the kernel dequantizes as it reads)."""
    host_batch_share: float = 0.444
    """Each further agent's share of the dense host bytes' time."""


COSTS = KernelCosts()


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


def _attention_context(spec: ModelSpec, layer: int, context_tokens: int) -> int:
    cache = spec.layers[layer] if layer < len(spec.layers) else None
    if cache is None or not cache.k_width:
        return 0  # no KV in this layer (recurrent, or an encoder)
    return min(context_tokens, spec.n_swa) if cache.swa and spec.n_swa else context_tokens


def step_terms(spec: ModelSpec, config: ServerConfig, agents: int, context_tokens: int) -> StepTerms:
    """What one decode step of ``agents`` sequences, each holding ``context_tokens``, reads and runs."""
    touched = 1 - (1 - spec.n_expert_used / spec.n_expert) ** agents if spec.n_expert else 1.0
    output_on_gpu = config.gpu_layers is None or config.gpu_layers >= 1
    by_type: dict[str, float] = {}
    host = host_dense = 0.0
    resident: set[int] = set()
    for tensor, on_gpu in weight_placement(spec, config):
        if tensor.name == "token_embd.weight":
            if not spec.tied_embeddings:
                continue  # its rows are gathered, not streamed
            on_gpu = output_on_gpu  # tied: it is also the output projection, read every step
        expert = is_expert_tensor(tensor)
        gb = tensor.nbytes * (touched if expert else 1.0) / 1e9
        if on_gpu:
            by_type[tensor.ggml_type.name] = by_type.get(tensor.ggml_type.name, 0.0) + gb
            if tensor.layer is not None:
                resident.add(tensor.layer)
        else:
            host += gb
            host_dense += 0.0 if expert else gb
    attention = sum(agents * agents * _attention_context(spec, layer, context_tokens) for layer in resident) / 1e6
    batching = len(resident) * (agents - 1) ** 2
    return StepTerms(
        gpu_layers=len(resident), gpu_gb_by_type=by_type, batch_layers=0 if spec.n_expert else batching,
        moe_batch_layers=batching if spec.n_expert else 0,
        attention=attention, quantized_kv=config.cache_type_k != "f16" or config.cache_type_v != "f16",
        host_gb=host, host_batch_gb=host_dense * (agents - 1))


def weight_gbps(profile: Profile, ggml_type: str) -> float:
    """How fast this card reads weights of one type in a decode step."""
    bandwidth = profile.bandwidth_gbps * profile.decode_efficiency
    limited = KERNEL_LIMITED_GBPS.get(ggml_type)
    return min(bandwidth, limited * profile.sm_count / H100_SMS) if limited and profile.sm_count else bandwidth


def step_seconds(terms: StepTerms, profile: Profile, costs: KernelCosts = COSTS) -> float:
    weights = sum(gb / weight_gbps(profile, kind) for kind, gb in terms.gpu_gb_by_type.items())
    attention_ms = costs.attention_ms + (costs.attention_quant_ms if terms.quantized_kv else 0.0)
    host = (terms.host_gb + costs.host_batch_share * terms.host_batch_gb) / profile.host_bandwidth_gbps
    return (weights + terms.gpu_layers * costs.layer_us * 1e-6 + terms.batch_layers * costs.batch_layer_us * 1e-6
            + terms.moe_batch_layers * costs.moe_batch_layer_us * 1e-6
            + terms.attention * attention_ms * 1e-3 + host)


def estimate_decode(spec: ModelSpec, config: ServerConfig, profile: Profile, context_tokens: int) -> DecodeEstimate:
    """Tokens/s at ``context_tokens`` of context per agent, for ``config.parallel`` agents."""
    agents = config.parallel
    one = step_seconds(step_terms(spec, config, 1, context_tokens), profile)
    if one <= 0:  # nothing to read per token (a metadata-only spec): no estimate
        return DecodeEstimate(0.0, 0.0, 0.0, agents)
    single = 1 / one
    aggregate = agents / step_seconds(step_terms(spec, config, agents, context_tokens), profile)
    return DecodeEstimate(single, aggregate, aggregate / agents, agents)


@dataclass(frozen=True)
class PrefillTerms:
    """The quantities one prompt's prefill works through."""

    tflop_by_type: dict[str, float]
    """Matrix-product work in TFLOP, by the GGML type of the weights it multiplies (attention under "attention")."""
    layer_ubatches: int
    """GPU-resident layers x micro-batches: each costs the kernels' fixed latency."""
    host_copy_gb: float
    """Host-resident weight bytes x micro-batches: copied to the GPU for each."""


@dataclass(frozen=True)
class PrefillCosts:
    """Unit costs of the prefill terms, fitted on an H100 to llama-server's ``prompt_per_second`` (docs/throughput.md:
    dense models with flash attention, prompts of about 2,048 tokens)."""

    tflops: float = 167.3
    """k-quants (Q4_K, Q5_K, Q6_K), F16 and attention: effective TFLOPS on the H100."""
    tflops_by_type: tuple[tuple[str, float], ...] = (("Q8_0", 217.6),)
    layer_ubatch_us: float = 356.3
    host_copy_gbps: float = 7.25
    """Host-resident weights copied to the H100 per micro-batch (its host: pageable memory over PCIe)."""

    def rate(self, ggml_type: str, profile: Profile) -> float:
        """TFLOPS for one weight type on this card: the H100's, scaled by its SM count (the planner estimates no
        prefill for a profile without one)."""
        return dict(self.tflops_by_type).get(ggml_type, self.tflops) * (profile.sm_count or H100_SMS) / H100_SMS


PREFILL_COSTS = PrefillCosts()


@dataclass(frozen=True)
class PrefillEstimate:
    prompt_tokens: int
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        return self.prompt_tokens / self.seconds if self.seconds > 0 else 0.0


def prefill_terms(spec: ModelSpec, config: ServerConfig, prompt_tokens: int) -> PrefillTerms:
    """What prefilling one prompt of ``prompt_tokens`` runs and copies."""
    ubatch = min(config.n_batch, config.n_ubatch)  # llama.cpp's own clamp (memory.context_sizing)
    ubatches = -(-prompt_tokens // ubatch)
    routed = spec.n_expert_used / spec.n_expert if spec.n_expert else 1.0
    by_type: dict[str, float] = {}
    host_gb = 0.0
    resident: set[int] = set()
    for tensor, on_gpu in weight_placement(spec, config):
        if tensor.layer is None or len(tensor.dims) < 2:
            continue  # embeddings are gathered, the output runs for the last token, norms are vectors
        params = math.prod(tensor.dims)
        share = routed if is_expert_tensor(tensor) else 1.0
        kind = tensor.ggml_type.name
        by_type[kind] = by_type.get(kind, 0.0) + 2 * params * share * prompt_tokens / 1e12
        if on_gpu:
            resident.add(tensor.layer)
        else:
            host_gb += tensor.nbytes / 1e9
    attention_layers = sum(1 for cache in spec.layers if cache.k_width)
    # causal: QK^T and PV over half the n x n square, 2 FLOP a multiply-add
    by_type["attention"] = 2 * attention_layers * spec.n_head * spec.head_dim * prompt_tokens ** 2 / 1e12
    return PrefillTerms(tflop_by_type=by_type, layer_ubatches=len(resident) * ubatches,
                        host_copy_gb=host_gb * ubatches)


def prefill_seconds(terms: PrefillTerms, profile: Profile, costs: PrefillCosts = PREFILL_COSTS) -> float:
    compute = sum(tflop / costs.rate(kind, profile) for kind, tflop in terms.tflop_by_type.items())
    return compute + terms.layer_ubatches * costs.layer_ubatch_us * 1e-6 + terms.host_copy_gb / costs.host_copy_gbps


def estimate_prefill(spec: ModelSpec, config: ServerConfig, profile: Profile, prompt_tokens: int) -> PrefillEstimate:
    """How long one agent's prompt of ``prompt_tokens`` takes to prefill, alone on the server."""
    return PrefillEstimate(prompt_tokens, prefill_seconds(prefill_terms(spec, config, prompt_tokens), profile))
