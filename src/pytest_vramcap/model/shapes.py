"""Known model shapes and the GGUF tensor layout of each architecture.

A :class:`Shape` holds the hyper-parameters of a released model, taken from its
Hugging Face ``config.json``. :func:`tensor_layout` lists the tensors that
llama.cpp's converter writes for it (names and ggml dimensions), which is what
both the planner (with :mod:`.quantmix` for the types) and the synthetic GGUF
writer need. Sliding-window patterns follow llama.cpp's ``set_swa_pattern``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, replace

from ..errors import ModelSourceError

__all__ = ["SHAPES", "SWA_PATTERN", "Shape", "TensorDef", "Tokenizer", "get_shape", "swa_layers", "tensor_layout"]

# Layer il uses the sliding window iff il % n < n - 1 (llama-hparams.cpp
# set_swa_pattern); architectures missing here have no SWA in llama.cpp
# (Phi-3's window and Mistral-7B-v0.1's window are ignored there).
SWA_PATTERN: dict[str, int] = {"gemma2": 2, "gemma3": 6, "gpt-oss": 2, "cohere2": 4}


@dataclass(frozen=True)
class Tokenizer:
    """The tokenizer a synthesized file of a shape carries (:mod:`.tokenizer` writes it).

    ``vocab`` names llama.cpp's vocab-only GGUF of the family (``models/ggml-vocab-<vocab>.gguf``, whose
    test vectors share the name); empty means the stand-in byte vocabulary, and ``note`` says why.
    ``template`` names a released chat template (``models/templates/<template>.jinja``); None keeps the
    vocab file's own, if it has one. ``add_bos`` is what the released GGUF sets, where the vocab file
    leaves it to llama.cpp's default.
    """

    vocab: str = ""
    template: str | None = None
    add_bos: bool | None = None
    note: str = ""

    @property
    def name(self) -> str:
        return self.vocab or "stand-in"


@dataclass(frozen=True)
class Shape:
    """Hyper-parameters of one model, enough to lay out its tensors."""

    name: str
    arch: str
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ff: int
    n_vocab: int
    n_ctx_train: int
    tied_embeddings: bool = False
    qkv_bias: bool = False
    qk_norm: bool = False
    n_swa: int = 0
    n_expert: int = 0
    n_expert_used: int = 0
    n_ff_exp: int = 0
    rope_freqs: bool = False
    pooling: int = 0
    """llama.cpp's pooling type of an embedding model (1 mean, 2 cls, 3 last); 0: a model that generates."""
    tokenizer: Tokenizer = Tokenizer()
    aliases: tuple[str, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class TensorDef:
    """One tensor as the converter writes it: ggml dims (ne0 first)."""

    name: str
    dims: tuple[int, ...]
    layer: int | None

    @property
    def quantizable(self) -> bool:
        """llama.cpp quantizes 2-D/3-D ``*.weight`` tensors except norms, routers and BERT's token-type
        embeddings (kept F32: the graph adds a row of them to F32 activations)."""
        return (
            len(self.dims) >= 2
            and self.name.endswith("weight")
            and "_norm.weight" not in self.name
            and "ffn_gate_inp.weight" not in self.name
            and self.name != "token_types.weight"
        )


def swa_layers(arch: str, n_layer: int, n_swa: int) -> tuple[bool, ...]:
    """Which layers use the sliding-window cache."""
    pattern = SWA_PATTERN.get(arch)
    if not pattern or n_swa <= 0:
        return (False,) * n_layer
    return tuple(il % pattern < pattern - 1 for il in range(n_layer))


def _attention(shape: Shape, il: int) -> list[TensorDef]:
    e, q_width, kv_width = shape.n_embd, shape.n_head * shape.head_dim, shape.n_head_kv * shape.head_dim
    blk = f"blk.{il}."
    if shape.arch == "phi3":
        return [
            TensorDef(blk + "attn_qkv.weight", (e, q_width + 2 * kv_width), il),
            TensorDef(blk + "attn_output.weight", (q_width, e), il),
        ]
    tensors = [
        TensorDef(blk + "attn_q.weight", (e, q_width), il),
        TensorDef(blk + "attn_k.weight", (e, kv_width), il),
        TensorDef(blk + "attn_v.weight", (e, kv_width), il),
        TensorDef(blk + "attn_output.weight", (q_width, e), il),
    ]
    if shape.qkv_bias:
        tensors += [
            TensorDef(blk + "attn_q.bias", (q_width,), il),
            TensorDef(blk + "attn_k.bias", (kv_width,), il),
            TensorDef(blk + "attn_v.bias", (kv_width,), il),
        ]
    if shape.arch == "gpt-oss":
        tensors += [TensorDef(blk + "attn_output.bias", (e,), il), TensorDef(blk + "attn_sinks.weight", (shape.n_head,), il)]
    if shape.qk_norm:
        tensors += [
            TensorDef(blk + "attn_q_norm.weight", (shape.head_dim,), il),
            TensorDef(blk + "attn_k_norm.weight", (shape.head_dim,), il),
        ]
    return tensors


def _feed_forward(shape: Shape, il: int) -> list[TensorDef]:
    e, blk = shape.n_embd, f"blk.{il}."
    if shape.n_expert:
        ne, ff = shape.n_expert, shape.n_ff_exp
        tensors = [
            TensorDef(blk + "ffn_gate_inp.weight", (e, ne), il),
            TensorDef(blk + "ffn_gate_exps.weight", (e, ff, ne), il),
            TensorDef(blk + "ffn_up_exps.weight", (e, ff, ne), il),
            TensorDef(blk + "ffn_down_exps.weight", (ff, e, ne), il),
        ]
        if shape.arch == "gpt-oss":
            tensors += [
                TensorDef(blk + "ffn_gate_inp.bias", (ne,), il),
                TensorDef(blk + "ffn_gate_exps.bias", (ff, ne), il),
                TensorDef(blk + "ffn_up_exps.bias", (ff, ne), il),
                TensorDef(blk + "ffn_down_exps.bias", (e, ne), il),
            ]
        return tensors
    if shape.arch == "phi3":
        return [
            TensorDef(blk + "ffn_up.weight", (e, 2 * shape.n_ff), il),
            TensorDef(blk + "ffn_down.weight", (shape.n_ff, e), il),
        ]
    return [
        TensorDef(blk + "ffn_gate.weight", (e, shape.n_ff), il),
        TensorDef(blk + "ffn_up.weight", (e, shape.n_ff), il),
        TensorDef(blk + "ffn_down.weight", (shape.n_ff, e), il),
    ]


def _norms(shape: Shape, il: int) -> list[TensorDef]:
    e, blk = shape.n_embd, f"blk.{il}."
    names = ["attn_norm", "ffn_norm"]
    if shape.arch in ("gemma2", "gemma3"):
        names = ["attn_norm", "post_attention_norm", "ffn_norm", "post_ffw_norm"]
    elif shape.arch == "gpt-oss":
        names = ["attn_norm", "post_attention_norm"]
    return [TensorDef(f"{blk}{name}.weight", (e,), il) for name in names]


def _encoder_layout(shape: Shape) -> list[TensorDef]:
    """nomic-bert (llama.cpp src/models/nomic-bert.cpp): token and token-type embeddings with a LayerNorm, then
    post-norm layers of fused QKV and a SwiGLU FFN, each norm with its bias; no output head (it only embeds)."""
    e, ff = shape.n_embd, shape.n_ff
    tensors = [TensorDef("token_embd.weight", (e, shape.n_vocab), None),
               TensorDef("token_types.weight", (e, 2), None),
               TensorDef("token_embd_norm.weight", (e,), None), TensorDef("token_embd_norm.bias", (e,), None)]
    for il in range(shape.n_layer):
        blk = f"blk.{il}."
        tensors += [TensorDef(blk + "attn_qkv.weight", (e, 3 * e), il), TensorDef(blk + "attn_output.weight", (e, e), il),
                    TensorDef(blk + "attn_output_norm.weight", (e,), il),
                    TensorDef(blk + "attn_output_norm.bias", (e,), il),
                    TensorDef(blk + "ffn_up.weight", (e, ff), il), TensorDef(blk + "ffn_gate.weight", (e, ff), il),
                    TensorDef(blk + "ffn_down.weight", (ff, e), il),
                    TensorDef(blk + "layer_output_norm.weight", (e,), il),
                    TensorDef(blk + "layer_output_norm.bias", (e,), il)]
    return tensors


def tensor_layout(shape: Shape) -> list[TensorDef]:
    """The tensors of ``shape`` in the order llama.cpp's converter writes them."""
    if shape.arch == "nomic-bert":
        return _encoder_layout(shape)
    tensors = [TensorDef("token_embd.weight", (shape.n_embd, shape.n_vocab), None)]
    if shape.rope_freqs:
        tensors.append(TensorDef("rope_freqs.weight", (shape.head_dim // 2,), None))
    for il in range(shape.n_layer):
        norms = _norms(shape, il)
        tensors += norms[:1] + _attention(shape, il) + norms[1:] + _feed_forward(shape, il)
    tensors.append(TensorDef("output_norm.weight", (shape.n_embd,), None))
    if not shape.tied_embeddings:
        tensors.append(TensorDef("output.weight", (shape.n_embd, shape.n_vocab), None))
    return tensors


def _s(name: str, arch: str, L: int, E: int, H: int, KV: int, HD: int, FF: int, V: int, CTX: int, **kw: object) -> Shape:
    return Shape(name, arch, L, E, H, KV, HD, FF, V, CTX, **kw)  # type: ignore[arg-type]


# Tokenizers: the released instruct models' templates; add_bos as their GGUFs set it.
_QWEN25_TOK = Tokenizer("qwen2", "Qwen-Qwen2.5-7B-Instruct", add_bos=False)
_QWEN3_TOK = Tokenizer("qwen2", "Qwen-Qwen3-0.6B", add_bos=False)
_LLAMA31_TOK = Tokenizer("llama-bpe", "meta-llama-Llama-3.1-8B-Instruct", add_bos=True)
_LLAMA32_TOK = Tokenizer("llama-bpe", "meta-llama-Llama-3.2-3B-Instruct", add_bos=True)
# Phi-3.5's template: the vocab file's (Phi-3's first) drops system messages.
_PHI3_TOK = Tokenizer("phi-3", "microsoft-Phi-3.5-mini-instruct")
# CI shapes: a 32,000-token llama layout takes LLaMA 2's vocabulary as it is.
_SPM_TOK = Tokenizer("llama-spm", note="LLaMA 2's vocabulary; no chat template (llama-server falls back to ChatML)")
_GEMMA_TOK = Tokenizer(note="llama.cpp ships Gemma 4's vocabulary, not Gemma 2's or 3's")
_MISTRAL_TOK = Tokenizer(note="llama.cpp ships no Mistral vocabulary")

_QWEN25 = dict(qkv_bias=True, tokenizer=_QWEN25_TOK)
_QWEN3 = dict(qk_norm=True, tokenizer=_QWEN3_TOK)
_LLAMA3 = dict(rope_freqs=True, tokenizer=_LLAMA31_TOK)

_REGISTRY: list[Shape] = [
    _s("qwen2.5-0.5b", "qwen2", 24, 896, 14, 2, 64, 4864, 151936, 32768, tied_embeddings=True, **_QWEN25),
    _s("qwen2.5-1.5b", "qwen2", 28, 1536, 12, 2, 128, 8960, 151936, 32768, tied_embeddings=True, **_QWEN25),
    _s("qwen2.5-3b", "qwen2", 36, 2048, 16, 2, 128, 11008, 151936, 32768, tied_embeddings=True, **_QWEN25),
    _s("qwen2.5-7b", "qwen2", 28, 3584, 28, 4, 128, 18944, 152064, 32768, **_QWEN25),
    _s("qwen2.5-14b", "qwen2", 48, 5120, 40, 8, 128, 13824, 152064, 32768, **_QWEN25),
    _s("qwen2.5-32b", "qwen2", 64, 5120, 40, 8, 128, 27648, 152064, 32768, **_QWEN25),
    _s("qwen2.5-72b", "qwen2", 80, 8192, 64, 8, 128, 29568, 152064, 32768, **_QWEN25),
    _s("qwen3-0.6b", "qwen3", 28, 1024, 16, 8, 128, 3072, 151936, 40960, tied_embeddings=True, **_QWEN3),
    _s("qwen3-1.7b", "qwen3", 28, 2048, 16, 8, 128, 6144, 151936, 40960, tied_embeddings=True, **_QWEN3),
    _s("qwen3-4b", "qwen3", 36, 2560, 32, 8, 128, 9728, 151936, 40960, tied_embeddings=True, **_QWEN3),
    _s("qwen3-8b", "qwen3", 36, 4096, 32, 8, 128, 12288, 151936, 40960, **_QWEN3),
    _s("qwen3-14b", "qwen3", 40, 5120, 40, 8, 128, 17408, 151936, 40960, **_QWEN3),
    _s("qwen3-32b", "qwen3", 64, 5120, 64, 8, 128, 25600, 151936, 40960, **_QWEN3),
    _s("qwen3-30b-a3b", "qwen3moe", 48, 2048, 32, 4, 128, 0, 151936, 40960,
       n_expert=128, n_expert_used=8, n_ff_exp=768, **_QWEN3),
    _s("llama3-8b", "llama", 32, 4096, 32, 8, 128, 14336, 128256, 8192,
       tokenizer=replace(_LLAMA31_TOK, note="Llama 3.1's template: llama.cpp's tree has none of 3.0's")),
    _s("llama3.1-8b", "llama", 32, 4096, 32, 8, 128, 14336, 128256, 131072, **_LLAMA3),
    _s("llama3.1-70b", "llama", 80, 8192, 64, 8, 128, 28672, 128256, 131072, aliases=("llama3.3-70b",), **_LLAMA3),
    _s("llama3.2-1b", "llama", 16, 2048, 32, 8, 64, 8192, 128256, 131072, tied_embeddings=True, rope_freqs=True,
       tokenizer=_LLAMA32_TOK),
    _s("llama3.2-3b", "llama", 28, 3072, 24, 8, 128, 8192, 128256, 131072, tied_embeddings=True, rope_freqs=True,
       tokenizer=_LLAMA32_TOK),
    _s("mistral-7b", "llama", 32, 4096, 32, 8, 128, 14336, 32768, 32768, aliases=("mistral-7b-v0.3",),
       tokenizer=_MISTRAL_TOK),
    _s("mistral-nemo-12b", "llama", 40, 5120, 32, 8, 128, 14336, 131072, 131072, tokenizer=_MISTRAL_TOK),
    _s("mistral-small-24b", "llama", 40, 5120, 32, 8, 128, 32768, 131072, 32768, tokenizer=_MISTRAL_TOK),
    _s("gemma2-2b", "gemma2", 26, 2304, 8, 4, 256, 9216, 256000, 8192, tied_embeddings=True, n_swa=4096,
       tokenizer=_GEMMA_TOK),
    _s("gemma2-9b", "gemma2", 42, 3584, 16, 8, 256, 14336, 256000, 8192, tied_embeddings=True, n_swa=4096,
       tokenizer=_GEMMA_TOK),
    _s("gemma2-27b", "gemma2", 46, 4608, 32, 16, 128, 36864, 256000, 8192, tied_embeddings=True, n_swa=4096,
       tokenizer=_GEMMA_TOK),
    _s("gemma3-1b", "gemma3", 26, 1152, 4, 1, 256, 6912, 262144, 32768, tied_embeddings=True, n_swa=512, qk_norm=True,
       tokenizer=_GEMMA_TOK),
    _s("gemma3-4b", "gemma3", 34, 2560, 8, 4, 256, 10240, 262208, 131072, tied_embeddings=True, n_swa=1024, qk_norm=True,
       tokenizer=_GEMMA_TOK),
    _s("gemma3-12b", "gemma3", 48, 3840, 16, 8, 256, 15360, 262208, 131072, tied_embeddings=True, n_swa=1024,
       qk_norm=True, tokenizer=_GEMMA_TOK),
    _s("gemma3-27b", "gemma3", 62, 5376, 32, 16, 128, 21504, 262208, 131072, tied_embeddings=True, n_swa=1024,
       qk_norm=True, tokenizer=_GEMMA_TOK),
    _s("phi3-mini", "phi3", 32, 3072, 32, 32, 96, 8192, 32064, 4096, aliases=("phi3.5-mini",), tokenizer=_PHI3_TOK),
    _s("phi3-medium", "phi3", 40, 5120, 40, 10, 128, 17920, 32064, 4096, tokenizer=_PHI3_TOK),
    _s("phi4", "phi3", 40, 5120, 40, 10, 128, 17920, 100352, 16384, aliases=("phi4-14b",),
       tokenizer=Tokenizer(note="llama.cpp ships no vocabulary of Phi-4's 100k BPE")),
    _s("phi4-mini", "phi3", 32, 3072, 24, 8, 128, 8192, 200064, 131072, tied_embeddings=True,
       tokenizer=Tokenizer(note="llama.cpp ships no vocabulary of Phi-4-mini's 200k BPE")),
    # CI-sized: a llama layout that loads in a second and decodes fast on 2 CPU cores.
    _s("tiny", "llama", 8, 512, 8, 4, 64, 1408, 32000, 8192, tokenizer=_SPM_TOK),
    # Wide and shallow: in F16 a CPU decode step is bound by reading the weights, so
    # batching agents pays off on a CPU too (docs/benchmarks.md). The main job's default.
    _s("small", "llama", 4, 1024, 16, 4, 64, 4096, 32000, 8192, tokenizer=_SPM_TOK),
    _s("gpt-oss-20b", "gpt-oss", 24, 2880, 64, 8, 64, 0, 201088, 131072, qkv_bias=True, n_swa=128,
       n_expert=32, n_expert_used=4, n_ff_exp=2880,
       tokenizer=Tokenizer(note="llama.cpp ships no vocabulary of GPT-OSS's o200k_harmony")),
]


def _distill(name: str, base: str, **changes: object) -> Shape:
    source = next(shape for shape in _REGISTRY if shape.name == base)
    return replace(source, name=name, aliases=(), **changes)  # type: ignore[arg-type]


# DeepSeek-R1 distills keep their base's shape and vocabulary under DeepSeek's template; the Qwen ones untie
# the embeddings. DeepSeek renamed some of the base's special tokens (User, Assistant, in full-width bars): here they
# are text, a few tokens each per message.
_DEEPSEEK_NOTE = "the base's vocabulary: DeepSeek's renamed special tokens are text here"
_R1_QWEN_TOK = replace(_QWEN25_TOK, template="deepseek-ai-DeepSeek-R1-Distill-Qwen-32B", note=_DEEPSEEK_NOTE)
_R1_LLAMA_TOK = replace(_LLAMA31_TOK, template="deepseek-ai-DeepSeek-R1-Distill-Llama-8B", note=_DEEPSEEK_NOTE)
_REGISTRY += [
    _distill("deepseek-r1-distill-qwen-1.5b", "qwen2.5-1.5b", tied_embeddings=False, tokenizer=_R1_QWEN_TOK),
    _distill("deepseek-r1-distill-qwen-7b", "qwen2.5-7b", tokenizer=_R1_QWEN_TOK),
    _distill("deepseek-r1-distill-qwen-14b", "qwen2.5-14b", tokenizer=_R1_QWEN_TOK),
    _distill("deepseek-r1-distill-qwen-32b", "qwen2.5-32b", tokenizer=_R1_QWEN_TOK),
    _distill("deepseek-r1-distill-llama-8b", "llama3.1-8b", tokenizer=_R1_LLAMA_TOK),
    _distill("deepseek-r1-distill-llama-70b", "llama3.1-70b", tokenizer=_R1_LLAMA_TOK),
]

# Embedding models: Qwen3-Embedding keeps its base's layers without an output head and pools the last token
# (its GGUFs set qwen3.pooling_type 3); Ollama loads an embedding model with one slot (server/sched.go).
_QWEN3_EMBED_TOK = Tokenizer("qwen2", note="an embedding model: no chat template is used")
_REGISTRY += [
    # CI-sized: tiny's layers as an embedding model that pools the last token, as Qwen3-Embedding does.
    _distill("tiny-embed", "tiny", pooling=3, tokenizer=replace(_SPM_TOK, note="LLaMA 2's vocabulary; an embedding "
                                                                             "model")),
    _distill("qwen3-embedding-0.6b", "qwen3-0.6b", n_vocab=151669, n_ctx_train=32768, pooling=3,
             tokenizer=_QWEN3_EMBED_TOK),
    _distill("qwen3-embedding-4b", "qwen3-4b", n_vocab=151665, n_ctx_train=32768, pooling=3,
             tokenizer=_QWEN3_EMBED_TOK),
    _distill("qwen3-embedding-8b", "qwen3-8b", n_vocab=151665, n_ctx_train=32768, pooling=3, tied_embeddings=True,
             tokenizer=_QWEN3_EMBED_TOK),
]

# nomic-embed-text v1.5 (Ollama's nomic-embed-text, F16): a BERT-style encoder (nomic-bert) with bert-base's
# WordPiece vocabulary (llama.cpp's bert-bge vocab file), mean pooling, 2048 tokens; no KV cache.
_REGISTRY += [
    _s("nomic-embed-text", "nomic-bert", 12, 768, 12, 12, 64, 3072, 30522, 2048, pooling=1,
       aliases=("nomic-embed-text-v1.5",), tokenizer=Tokenizer("bert-bge", note="an embedding model: no chat "
                                                                                  "template is used")),
]

SHAPES: dict[str, Shape] = {shape.name: shape for shape in _REGISTRY}
_BY_ALIAS: dict[str, Shape] = {alias: shape for shape in _REGISTRY for alias in shape.aliases}


def _normalise(name: str) -> str:
    key = name.strip().lower().replace("_", "-")
    return key.replace("qwen-2.5", "qwen2.5").replace("llama-3", "llama3").replace("gemma-", "gemma")


def get_shape(name: str) -> Shape:
    """A registered shape by name or alias (``qwen2.5-14b``, ``llama3-8b``)."""
    key = _normalise(name)
    shape = SHAPES.get(key) or _BY_ALIAS.get(key)
    if shape is None:
        close = difflib.get_close_matches(key, [*SHAPES, *_BY_ALIAS], n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else " (see `vramcap shapes`)"
        raise ModelSourceError(f"unknown model shape {name!r}{hint}")
    return shape
