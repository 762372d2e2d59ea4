"""The memory model of llama.cpp (which Ollama >= 0.30 runs underneath).

Pure functions from a :class:`ModelSpec`, a :class:`ServerConfig` and a
:class:`Profile` to a per-device breakdown in llama.cpp's own terms:

* model   - weight buffers: ``ggml_nbytes`` per tensor, placed by ``-ngl``;
* context - the KV cache (or recurrent state), sized as llama_context does;
* compute - the graph scratch buffer reserved at start-up;
* overhead - what llama.cpp leaves "unaccounted": CUDA context, cuBLAS, pool.

Model and context are exact (they reproduce llama.cpp's integer arithmetic).
Compute is a closed form fitted to buffers llama.cpp logged on an H100; its
known error is kept in :data:`COMPUTE_MODEL_NOTE`. Overhead is a profile value (the
CUDA context, there when --fit measures, and the pool after it) plus the pools batches
draw from the shape: :func:`runtime_pool_bytes`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..defaults import DEFAULT_BATCH, DEFAULT_UBATCH, MIB
from ..errors import ConfigError
from ..model.ggmltypes import is_quantized, row_bytes, type_by_name
from ..model.spec import ModelSpec, Tensor
from ..types import KvCacheType
from .profiles import Profile
from .split import balanced_counts, blocks

__all__ = [
    "COMPUTE_MODEL_NOTE",
    "EXPERT_TENSOR_RE",
    "KV_PAD",
    "MOE_POOL_MIB",
    "NO_FLASH_ATTN_POOL_MIB",
    "ContextSizing",
    "DeviceMemory",
    "MemoryBreakdown",
    "ServerConfig",
    "context_sizing",
    "estimate_memory",
    "is_expert_tensor",
    "kq_scores_copy_bytes",
    "kv_cache_bytes",
    "runtime_pool_bytes",
    "weight_placement",
]

KV_PAD = 256

# The CUDA pool that the expert matmuls (mul_mat_id) draw from while a batch is processed:
# the unaccounted memory at peak of MoE models, above the dense models' (H100, 16 MoE configs,
# qwen3-30b-a3b and gpt-oss-20b: 698-715 MiB against 600-632; docs/validation.md).
MOE_POOL_MIB = 96

# Without flash attention the pool holds, beside the f16 copy of the KQ scores, this much more: 7 no-FA configs
# (3B-14B, 2-4 agents, 3,840-23,552 tokens each) filled at their plan peaked 74-90 MiB above the copy (NVML, H100,
# docs/optimality.md).
NO_FLASH_ATTN_POOL_MIB = 80

# Architectures whose graph scales the query with its own ggml_scale node instead of
# passing the scale to the attention op (llama.cpp src/models/*.cpp: "Qcur = ggml_scale").
SCALES_QUERY_ARCHS = frozenset({"gemma", "gemma2", "gemma3", "gemma-embedding", "phi2", "phi3"})

COMPUTE_MODEL_NOTE = (
    "compute buffer: closed form fitted to llama.cpp's CUDA buffers on an H100 "
    "(52 configs, docs/validation.md: within 1% with every layer on the GPU and with --n-cpu-moe; "
    "an upper bound with -ngl (+2% to +25%); MoE with a quantized KV cache under flash attention "
    "5-23% under (6-32 MiB); MLA extrapolated)"
)


def _pad(value: int, to: int) -> int:
    return -(-value // to) * to


@dataclass(frozen=True)
class ServerConfig:
    """The llama-server settings that decide memory (Ollama sets the same ones)."""

    parallel: int
    """Slots, one per agent (``-np`` / OLLAMA_NUM_PARALLEL)."""
    ctx_per_agent: int
    """Context per slot (Ollama's num_ctx); llama-server gets ``-c parallel*ctx``."""
    cache_type_k: KvCacheType = "f16"
    cache_type_v: KvCacheType = "f16"
    flash_attn: bool = True
    n_ubatch: int = DEFAULT_UBATCH
    n_batch: int = DEFAULT_BATCH
    gpu_layers: int | None = None
    """``-ngl``: None offloads every layer (the output layer counts as one)."""
    n_cpu_moe: int = 0
    """``--n-cpu-moe``: the expert weights of the first N layers stay on the CPU."""
    kv_unified: bool = False
    """One shared KV pool (llama-server's default without -np; Ollama never)."""
    swa_full: bool = False
    n_ctx: int | None = None
    """An explicit ``-c`` that is not ``parallel x ctx_per_agent`` (llama-server only)."""
    embedding: bool = False
    """Serve embeddings (``--embeddings``): an embedding model's server answers /v1/embeddings, not chats."""
    tensor_split: tuple[int, ...] = ()
    """``-ts`` as layer counts per card, in device order (several cards); empty: the planner chooses."""
    main_gpu: int | None = None
    """Several cards: the one card that serves this model alone (``-sm none -mg N``); None splits it over all."""

    def __post_init__(self) -> None:
        if self.parallel < 1:
            raise ConfigError(f"agents must be at least 1, got {self.parallel}")
        if self.ctx_per_agent < 1:
            raise ConfigError(f"context per agent must be positive, got {self.ctx_per_agent}")
        if self.n_ubatch < 1 or self.n_batch < 1:
            raise ConfigError("batch sizes must be positive")
        if self.gpu_layers is not None and self.gpu_layers < 0:
            raise ConfigError(f"--gpu-layers must be >= 0, got {self.gpu_layers}")
        if self.n_cpu_moe < 0:
            raise ConfigError(f"--n-cpu-moe must be >= 0, got {self.n_cpu_moe}")
        if self.main_gpu is not None and self.main_gpu < 0:
            raise ConfigError(f"--main-gpu must be >= 0, got {self.main_gpu}")
        if any(count < 0 for count in self.tensor_split):
            raise ConfigError(f"--tensor-split counts must be >= 0, got {list(self.tensor_split)}")
        for name in (self.cache_type_k, self.cache_type_v):
            type_by_name(name)
        # The one check of this rule: llama_context throws "V cache quantization requires flash_attn".
        if is_quantized(type_by_name(self.cache_type_v)) and not self.flash_attn:
            raise ConfigError(f"a {self.cache_type_v} KV cache needs flash attention on (llama.cpp quantizes the V "
                              f"cache only with flash attention); use f16 KV or turn flash attention on")

    @property
    def ctx_total(self) -> int:
        return self.n_ctx if self.n_ctx is not None else self.parallel * self.ctx_per_agent


@dataclass(frozen=True)
class DeviceMemory:
    """Bytes on one device, in llama.cpp's memory-breakdown columns."""

    model: int
    context: int
    compute: int
    overhead: int = 0
    runtime_pool: int = 0
    """The part of ``overhead`` the CUDA pool takes while batches run, after --fit has measured."""

    @property
    def total(self) -> int:
        return self.model + self.context + self.compute + self.overhead

    def mib(self) -> dict[str, float]:
        return {
            "model_mib": round(self.model / MIB, 2),
            "context_mib": round(self.context / MIB, 2),
            "compute_mib": round(self.compute / MIB, 2),
            "overhead_mib": round(self.overhead / MIB, 2),
            "total_mib": round(self.total / MIB, 2),
        }


@dataclass(frozen=True)
class ContextSizing:
    n_ctx: int
    """Total cells after llama.cpp's padding."""
    cells_per_stream: int
    """``n_ctx_seq``: what one slot can hold."""
    n_stream: int
    n_ubatch: int


@dataclass(frozen=True)
class MemoryBreakdown:
    gpu: DeviceMemory
    cpu: DeviceMemory
    sizing: ContextSizing
    gpu_layers: int
    """Layers on the GPU, counting the output layer (llama.cpp's "offloaded N/M")."""
    total_layers: int
    devices: tuple[DeviceMemory, ...] = ()
    """Several cards: each one's share (``gpu`` is their sum), in device order."""
    layer_split: tuple[int, ...] = ()
    """Several cards: the layers (output included) each holds, what ``-ts`` says."""

    @property
    def by_card(self) -> tuple[DeviceMemory, ...]:
        """What is held on each card, in device order: each card's share on several, else the one GPU's."""
        return self.devices or (self.gpu,)

    @property
    def full_offload(self) -> bool:
        return self.gpu_layers == self.total_layers


def context_sizing(spec: ModelSpec, config: ServerConfig) -> ContextSizing:
    """Cells and streams as llama_context computes them (llama-context.cpp)."""
    n_ctx = _pad(config.ctx_total, KV_PAD)
    n_batch = min(config.ctx_total, config.n_batch)
    n_ubatch = min(n_batch, config.n_ubatch)
    if config.kv_unified or config.parallel == 1:
        return ContextSizing(n_ctx, n_ctx, 1, n_ubatch)
    cells = _pad(n_ctx // config.parallel, KV_PAD)
    return ContextSizing(cells * config.parallel, cells, config.parallel, n_ubatch)


def _layer_cells(spec: ModelSpec, config: ServerConfig, sizing: ContextSizing, swa: bool) -> int:
    if not swa or config.swa_full:
        return sizing.cells_per_stream
    # llama-kv-cache-iswa.cpp: the SWA cache is always padded to 256.
    window = spec.n_swa * (config.parallel if config.kv_unified else 1) + sizing.n_ubatch
    return _pad(min(sizing.cells_per_stream, window), KV_PAD)


def kv_layer_bytes(spec: ModelSpec, config: ServerConfig, sizing: ContextSizing) -> list[int]:
    """Bytes of cache per layer (K + V, or recurrent state)."""
    type_k, type_v = type_by_name(config.cache_type_k), type_by_name(config.cache_type_v)
    # Without flash attention V is stored transposed and padded to the widest layer.
    v_max = max((layer.v_width for layer in spec.layers), default=0)
    sizes = []
    for layer in spec.layers:
        if layer.recurrent_floats:
            sizes.append(layer.recurrent_floats * 4 * max(1, config.parallel))
            continue
        if not layer.k_width:
            sizes.append(0)
            continue
        v_width = layer.v_width if config.flash_attn or not layer.v_width else v_max
        row = row_bytes(type_k, layer.k_width) + (row_bytes(type_v, v_width) if v_width else 0)
        sizes.append(row * _layer_cells(spec, config, sizing, layer.swa) * sizing.n_stream)
    return sizes


def kv_cache_bytes(spec: ModelSpec, config: ServerConfig) -> int:
    """Total KV (context) bytes over all layers, wherever they live."""
    return sum(kv_layer_bytes(spec, config, context_sizing(spec, config)))


def _gpu_layer_range(spec: ModelSpec, config: ServerConfig) -> tuple[int, int]:
    """(first repeating layer on the GPU, layers offloaded incl. output)."""
    total = spec.n_layer + 1
    ngl = total if config.gpu_layers is None else min(config.gpu_layers, total)
    return total - ngl, ngl


# common.h LLM_FFN_EXPS_REGEX, the tensors --n-cpu-moe (and --fit's MoE overflow) keep on the CPU.
EXPERT_TENSOR_RE = re.compile(r"\.ffn_(up|down|gate|gate_up)_(ch|)exps")


def weight_placement(spec: ModelSpec, config: ServerConfig) -> list[tuple[Tensor, bool]]:
    """Every weight with whether llama.cpp puts it on the GPU (``-ngl``, ``--n-cpu-moe``)."""
    first_gpu_layer, ngl = _gpu_layer_range(spec, config)
    output_on_gpu = ngl >= 1
    any_layer_on_gpu = first_gpu_layer < spec.n_layer
    placed = []
    for tensor in spec.tensors:
        layer = tensor.layer
        if tensor.name in ("token_embd.weight", "token_types.weight"):
            on_gpu = False  # llama.cpp keeps the input layer on the CPU
        elif layer is not None:
            on_gpu = layer >= first_gpu_layer and not (layer < config.n_cpu_moe and is_expert_tensor(tensor))
        elif tensor.name.startswith("rope_freqs"):
            on_gpu = any_layer_on_gpu
        else:
            on_gpu = output_on_gpu  # output, output_norm
        placed.append((tensor, on_gpu))
    return placed


def is_expert_tensor(tensor: Tensor) -> bool:
    return EXPERT_TENSOR_RE.search(tensor.name) is not None


def _weights(spec: ModelSpec, config: ServerConfig) -> tuple[int, int, list[Tensor]]:
    """(GPU bytes, CPU bytes, CPU-resident layer tensors)."""
    gpu = cpu = 0
    cpu_layer_tensors: list[Tensor] = []
    for tensor, on_gpu in weight_placement(spec, config):
        if on_gpu:
            gpu += tensor.cuda_nbytes
        else:
            cpu += tensor.nbytes
            if tensor.layer is not None:
                cpu_layer_tensors.append(tensor)
    if spec.tied_embeddings and _gpu_layer_range(spec, config)[1] >= 1:
        embd = spec.tensor("token_embd.weight")
        if embd is not None:  # TENSOR_DUPLICATED: the output reuses a GPU copy
            gpu += embd.cuda_nbytes
    return gpu, cpu, cpu_layer_tensors


def _kq_mask_bytes(spec: ModelSpec, config: ServerConfig, sizing: ContextSizing) -> int:
    """The KQ mask, an input of the graph that lives through it (f16 with flash attention, else f32)."""
    ub = sizing.n_ubatch
    n_kv = ub if spec.encoder_only else sizing.cells_per_stream
    mask_bytes = 2 if config.flash_attn else 4
    mask = mask_bytes * n_kv * ub
    if spec.has_swa:
        mask += mask_bytes * _layer_cells(spec, config, sizing, True) * ub
    return mask


def _compute_bytes(
    spec: ModelSpec, config: ServerConfig, sizing: ContextSizing, cpu_kv_layers: list[int], cpu_tensors: list[Tensor],
    *, with_output: bool = True,
) -> tuple[int, int]:
    """(GPU compute buffer, pinned host compute buffer), fitted to llama.cpp's CUDA reservations.

    The allocator reuses memory along the graph, so the buffer is its peak: the
    KQ mask (an input that lives throughout) plus the largest of the attention,
    FFN and output working sets. Terms, in f32 activations of ``ub`` tokens:
    attention holds 3 residual-width and 2 query-width tensors, plus the f32 KQ
    scores without flash attention, or f16 copies of a quantized K/V with it;
    the FFN holds 3 FFN-width and 4 residual-width tensors. ``with_output`` False: a card of several that does not
    hold the output layer (:mod:`.split`), so its graph never reaches the vocabulary head.
    """
    ub = sizing.n_ubatch
    n_kv = ub if spec.encoder_only else sizing.cells_per_stream  # an encoder attends within its micro-batch
    act = 4 * ub
    mask = _kq_mask_bytes(spec, config, sizing)
    e, q_width = spec.n_embd, spec.n_head * spec.head_dim
    k_width = max((layer.k_width for layer in spec.layers), default=0)
    v_width = max((layer.v_width for layer in spec.layers), default=0)
    attention = act * (3 * e + 2 * q_width)
    if spec.arch in SCALES_QUERY_ARCHS:
        # The scaled query is one more query-width tensor; without flash attention one
        # residual-width tensor more is live at the scores (gemma2/gemma3 on an H100).
        attention += act * q_width if config.flash_attn else act * (e + q_width)
    if not config.flash_attn:
        attention += 4 * n_kv * ub * spec.n_head + act * (k_width + v_width)
    else:
        kv_cells = n_kv * sizing.n_stream
        if config.cache_type_k != "f16":
            attention += 2 * kv_cells * k_width
        if config.cache_type_v != "f16" and v_width:
            attention += 2 * kv_cells * v_width
    ffn = act * (3 * spec.n_ff + 4 * e)
    if spec.n_expert:
        # MoE: each token's n_expert_used expert outputs ([n_embd, k, ub] f32) live until they
        # are summed; fitted to qwen3-30b-a3b on an H100 (docs/validation.md).
        ffn = max(ffn, act * (2 * e * spec.n_expert_used + spec.n_ff + 2 * e))
    # The server reserves one output row per slot; with --embeddings every token of the micro-batch is an output
    # (pooling reads them all: "n_outputs_max = n_ubatch"), and the graph still ends in the vocabulary head
    # (qwen3-embedding-0.6b on an H100: 312 MiB of compute buffer, mostly 512 rows of logits).
    n_outputs = ub if config.embedding else min(ub, config.parallel)
    output = act * e if spec.encoder_only or not with_output else 4 * spec.n_vocab * n_outputs + act * e
    if cpu_kv_layers:
        # Partial offload: big-batch ops of CPU layers run on the GPU, so one
        # layer's K/V and its largest weight are copied into the compute buffer.
        attention += max(cpu_kv_layers)
    offloaded = 0
    if cpu_tensors and all(is_expert_tensor(tensor) for tensor in cpu_tensors):
        # --n-cpu-moe: op offload copies one expert tensor into the buffer for its matmul, beside
        # the expert outputs, the FFN input and four residual-width tensors. Independent of how
        # many layers keep their experts on the CPU (qwen3-30b-a3b, gpt-oss-20b on an H100).
        widest = max(tensor.cuda_nbytes for tensor in cpu_tensors)
        offloaded = widest + act * (e * spec.n_expert_used + spec.n_ff + 4 * e)
    elif cpu_tensors:
        # -ngl: an upper bound (the largest weight copy on top of the FFN working set); llama.cpp
        # reserves 5-25% less (docs/validation.md).
        ffn += max(tensor.cuda_nbytes for tensor in cpu_tensors)
    gpu = mask + max(attention, ffn, output, offloaded)
    host = mask + 4 * act * e  # pinned staging of inputs and the mask
    return gpu, host


def runtime_pool_bytes(spec: ModelSpec, config: ServerConfig, profile: Profile, sizing: ContextSizing) -> int:
    """The overhead batches draw from the CUDA pool after ``--fit`` has measured the free memory at load: counted at
    peak, left out at load (the plan's peak must still fit the card: :func:`~.plan.overrun_mib`;
    docs/optimality.md). Three parts:

    * the profile's own (cuBLAS and the pool of any batch: 84 of the H100's 609 MiB);
    * an MoE's expert matmuls (``mul_mat_id``);
    * without flash attention, the f16 copy cuBLAS makes of the softmaxed KQ scores for the product with V
      (ggml-cuda.cu ``ggml_cuda_op_mul_mat_cublas`` converts an f32 operand when the other is f16): one micro-batch
      against a full slot, ``2 x cells x n_ubatch x n_head`` bytes, and NO_FLASH_ATTN_POOL_MIB beside it. It grows
      with the context, so a no-FA plan
      that --fit keeps on the GPU can still run out of memory once its slots fill (gpt-oss-20b, 2 x 21760 on
      16 GiB: "CUDA error: out of memory" in ``ggml_cuda_pool_vmm::alloc`` at 12,288 tokens of prompt).
    """
    moe = MOE_POOL_MIB * MIB if spec.n_expert else 0
    if config.flash_attn:
        scores = 0
    else:
        n_kv = sizing.n_ubatch if spec.encoder_only else sizing.cells_per_stream
        scores = kq_scores_copy_bytes(spec, n_kv, sizing.n_ubatch) + NO_FLASH_ATTN_POOL_MIB * MIB
    return profile.pool_after_load_mib * MIB + moe + scores


def kq_scores_copy_bytes(spec: ModelSpec, n_kv: int, n_ubatch: int) -> int:
    """Without flash attention: the f16 copy of one micro-batch's KQ scores against ``n_kv`` cells (the cells in
    use, so it grows as the slots fill; the plan prices full slots)."""
    return 2 * n_kv * n_ubatch * spec.n_head


def estimate_memory(spec: ModelSpec, config: ServerConfig, profile: Profile) -> MemoryBreakdown:
    """Per-device memory of ``spec`` served with ``config`` on ``profile``'s GPU (its cards, for several)."""
    if profile.devices:
        return _split_memory(spec, config, profile)
    sizing = context_sizing(spec, config)
    first_gpu_layer, ngl = _gpu_layer_range(spec, config)
    weights_gpu, weights_cpu, cpu_tensors = _weights(spec, config)
    kv = kv_layer_bytes(spec, config, sizing)
    kv_gpu = sum(size for il, size in enumerate(kv) if il >= first_gpu_layer)
    cpu_kv_layers = [size for il, size in enumerate(kv) if il < first_gpu_layer and size]
    compute_gpu, compute_host = _compute_bytes(spec, config, sizing, cpu_kv_layers, cpu_tensors)
    pool = runtime_pool_bytes(spec, config, profile, sizing)
    overhead = profile.overhead_at_load_mib * MIB + pool
    return MemoryBreakdown(
        gpu=DeviceMemory(weights_gpu, kv_gpu, compute_gpu, overhead, runtime_pool=pool),
        cpu=DeviceMemory(weights_cpu, sum(cpu_kv_layers), compute_host),
        sizing=sizing,
        gpu_layers=ngl,
        total_layers=spec.n_layer + 1,
    )


# ggml-backend.cpp GGML_SCHED_MAX_COPIES: with pipeline parallelism each graph input and each activation that
# crosses to another card is kept in this many copies (docs/sources/multi-gpu.md section 3.2).
PIPELINE_COPIES = 4


def _split_memory(spec: ModelSpec, config: ServerConfig, profile: Profile) -> MemoryBreakdown:
    """Several cards, llama.cpp's layer split: each card holds its block of layers' weights and KV (a layer's KV
    lives on its card), its own compute buffer (only the card with the output layer reaches the vocabulary head;
    the first runs the CPU layers' big-batch products) and its own CUDA overhead. With every layer on the cards
    and no tensor moved to the CPU, llama.cpp turns on pipeline parallelism, which keeps the graph's inputs (the KQ
    mask) and each card's incoming activations in PIPELINE_COPIES copies: an estimate from the source, not yet
    measured on several cards."""
    cards = profile.devices
    sizing = context_sizing(spec, config)
    first_gpu_layer, ngl = _gpu_layer_range(spec, config)
    positions = spec.n_layer + 1  # the output layer is position n_layer
    held = [0] * positions
    cpu_weights = 0
    cpu_tensors: list[Tensor] = []
    for tensor, on_gpu in weight_placement(spec, config):
        if not on_gpu:
            cpu_weights += tensor.nbytes
            if tensor.layer is not None:
                cpu_tensors.append(tensor)
            continue
        layer = tensor.layer if tensor.layer is not None else spec.n_layer
        if tensor.name.startswith("rope_freqs"):
            layer = first_gpu_layer  # with the first layer that reads it
        held[layer] += tensor.cuda_nbytes
    if spec.tied_embeddings and ngl >= 1:
        embd = spec.tensor("token_embd.weight")
        if embd is not None:  # TENSOR_DUPLICATED: the output reuses a copy on the output layer's card
            held[spec.n_layer] += embd.cuda_nbytes
    kv = [*kv_layer_bytes(spec, config, sizing), 0]  # the output layer holds no KV
    cpu_kv_layers = [size for il, size in enumerate(kv[:-1]) if il < first_gpu_layer and size]
    weight_sums, kv_sums = [0], [0]  # prefix sums over the offloaded positions
    for position in range(first_gpu_layer, positions):
        weight_sums.append(weight_sums[-1] + held[position])
        kv_sums.append(kv_sums[-1] + kv[position])
    alone = config.main_gpu
    if alone is not None and alone >= len(cards):
        raise ConfigError(f"card {alone} of {profile.name}: it has {len(cards)} cards, numbered from 0")
    # -sm none: llama.cpp keeps only that card (src/llama.cpp), so no pipeline and nothing on the others
    pipeline = ngl == positions and not config.n_cpu_moe and alone is None
    copies = (PIPELINE_COPIES - 1) * (_kq_mask_bytes(spec, config, sizing) + 4 * sizing.n_ubatch * spec.n_embd) \
        if pipeline else 0
    computes: dict[tuple[bool, bool], int] = {}

    def compute(first: bool, output: bool) -> int:
        if (first, output) not in computes:
            extra = (cpu_kv_layers, cpu_tensors) if first else ([], [])
            computes[first, output] = _compute_bytes(spec, config, sizing, *extra, with_output=output)[0] + copies
        return computes[first, output]

    def card_memory(card: int, start: int, end: int) -> DeviceMemory:
        if alone is not None and card != alone:
            return DeviceMemory(0, 0, 0)  # -sm none: llama.cpp opens no context on the other cards
        overhead = cards[card].overhead_at_load_mib * MIB  # the pools join below
        runs_cpu_layers = card == 0 and bool(cpu_kv_layers or cpu_tensors)  # big-batch products of CPU layers
        if start == end and not runs_cpu_layers:
            # In the device list, so it has a CUDA context, but the scheduler gives it no work: no compute buffer,
            # no pipeline copies, no matmul pool.
            return DeviceMemory(0, 0, 0, overhead)
        holds_output = end == ngl and end > start
        pool = runtime_pool_bytes(spec, config, cards[card], sizing)  # the pools grow on each card that runs batches
        return DeviceMemory(weight_sums[end] - weight_sums[start], kv_sums[end] - kv_sums[start],
                            compute(card == 0, holds_output), overhead + pool, runtime_pool=pool)

    def overrun_mib(card: int, start: int, end: int) -> float:
        memory = card_memory(card, start, end)  # the margin is the same on every card: it moves no layer
        return (memory.total - memory.runtime_pool) / MIB - cards[card].usable_mib

    # A plan's own split is what llama-server is started with (-ts), so a what-if that changes the context or the
    # agents keeps it; another -ngl needs another split.
    counts = config.tensor_split
    if alone is not None:
        counts = tuple(ngl if card == alone else 0 for card in range(len(cards)))
    elif len(counts) != len(cards) or sum(counts) != ngl:
        counts = balanced_counts(ngl, len(cards), overrun_mib)
    devices = tuple(card_memory(card, start, end) for card, (start, end) in enumerate(blocks(counts)))
    total = DeviceMemory(*(sum(getattr(device, name) for device in devices)
                           for name in ("model", "context", "compute", "overhead", "runtime_pool")))
    _, host_compute = _compute_bytes(spec, config, sizing, cpu_kv_layers, cpu_tensors)
    return MemoryBreakdown(gpu=total, cpu=DeviceMemory(cpu_weights, sum(cpu_kv_layers), host_compute), sizing=sizing,
                           gpu_layers=ngl, total_layers=positions, devices=devices, layer_split=tuple(counts))
