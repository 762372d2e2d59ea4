"""The tokenizer a synthesized GGUF carries: its family's real one, or a stand-in byte vocabulary.

The real one is llama.cpp's vocab-only GGUF of the family (:mod:`.llama_cpp_files`) copied key by key
(tokens, types, scores, merges, pre-tokenizer, special ids), padded to the shape's vocabulary size as
llama.cpp's converter pads (``[PAD<i>]``, type UNUSED, score -1000), under the family's released chat
template. So a prompt costs the KV cells and prefill it costs on the released model, and llama-server
renders chats with the model's own template.

The stand-in is what every synthesized file carried before: ``<unk>``, ``<s>``, ``</s>``, 256 byte
tokens and fillers. It needs no files, but one byte of text is about one token: English costs about
five times the tokens a real BPE vocabulary gives it.
"""

from __future__ import annotations

from functools import cache

from gguf import GGUFValueType

from ..errors import ConfigError
from ..types import TOKENIZER_KINDS, TokenizerKind
from .gguf_header import MetadataValue, read_metadata
from .llama_cpp_files import models_dir, vocab_files
from .shapes import SHAPES, Shape

__all__ = ["byte_vocab", "shape_vocabularies", "tokenizer_label", "tokenizer_metadata"]

_T = GGUFValueType
_UNUSED = 5  # llama.cpp token type of converter padding
_PAD_SCORE = -1000.0
_TEMPLATE_KEY = "tokenizer.chat_template"


def byte_vocab(n_vocab: int) -> tuple[list[bytes], list[float], list[int]]:
    """``<unk>``, ``<s>``, ``</s>``, 256 ``<0xNN>`` byte tokens, then ordinary filler tokens."""
    tokens = [b"<unk>", b"<s>", b"</s>"] + [f"<0x{i:02X}>".encode() for i in range(256)]
    tokens += [f"tok{i}".encode() for i in range(n_vocab - len(tokens))]
    # llama.cpp token types: 1 normal, 2 unknown, 3 control, 6 byte
    types = [2, 3, 3] + [6] * 256 + [1] * (n_vocab - 259)
    return tokens[:n_vocab], [0.0] * n_vocab, types[:n_vocab]


def shape_vocabularies() -> frozenset[str]:
    """Every llama.cpp vocab the known shapes use (fetched together, once)."""
    return frozenset(shape.tokenizer.vocab for shape in SHAPES.values() if shape.tokenizer.vocab)


def tokenizer_label(shape: Shape, kind: TokenizerKind = "real") -> str:
    """``stand-in`` or the llama.cpp vocab a synthesized file of ``shape`` carries."""
    return shape.tokenizer.name if kind == "real" else "stand-in"


def tokenizer_metadata(shape: Shape, kind: TokenizerKind = "real") -> list[MetadataValue]:
    """The ``tokenizer.*`` metadata a synthesized file of ``shape`` carries."""
    if kind not in TOKENIZER_KINDS:
        raise ConfigError(f"--tokenizer must be one of {', '.join(TOKENIZER_KINDS)}, got {kind!r}")
    if tokenizer_label(shape, kind) == "stand-in":
        return _stand_in(shape.n_vocab)
    tokenizer = shape.tokenizer
    directory = models_dir(shape_vocabularies() | {tokenizer.vocab})
    metadata = _vocab_metadata(str(directory / vocab_files(tokenizer.vocab)[0]))
    values = [_fitted(value, shape, _real_tokens(metadata)) for value in metadata]
    if tokenizer.template:
        template = (directory / "templates" / f"{tokenizer.template}.jinja").read_text(encoding="utf-8")
        values = [v for v in values if v.key != _TEMPLATE_KEY] + [MetadataValue(_TEMPLATE_KEY, template, _T.STRING)]
    if tokenizer.add_bos is not None:
        key = "tokenizer.ggml.add_bos_token"
        values = [v for v in values if v.key != key] + [MetadataValue(key, tokenizer.add_bos, _T.BOOL)]
    return values


@cache
def _vocab_metadata(path: str) -> tuple[MetadataValue, ...]:
    # Read once per process: a test session synthesizes the same family many times.
    return tuple(read_metadata(path, "tokenizer."))


def _real_tokens(metadata: tuple[MetadataValue, ...]) -> int:
    """How many tokens the vocabulary has before its trailing ``[PAD<i>]`` entries (llama.cpp's own vocab files
    are padded to the checkpoint's embedding rows, which may be more than a sibling model of the family has)."""
    tokens = next(v.value for v in metadata if v.key == "tokenizer.ggml.tokens")
    real = len(tokens)
    while real and tokens[real - 1] == f"[PAD{real - 1}]".encode():
        real -= 1
    return real


def _fitted(value: MetadataValue, shape: Shape, real: int) -> MetadataValue:
    """Per-token arrays padded (or their padding cut) to the shape's vocabulary, as llama.cpp's converter pads a
    short tokenizer to the checkpoint's embedding rows."""
    pad_with = {"tokenizer.ggml.tokens": None, "tokenizer.ggml.token_type": _UNUSED,
                "tokenizer.ggml.scores": _PAD_SCORE}
    if value.key not in pad_with:
        return value
    if real > shape.n_vocab:
        raise ConfigError(f"{shape.name}: the {shape.tokenizer.vocab} vocabulary has {real:,} tokens, more than the "
                          f"shape's {shape.n_vocab:,}")
    kept = list(value.value[:min(len(value.value), shape.n_vocab)])
    if value.key == "tokenizer.ggml.tokens":
        padding: list[object] = [f"[PAD{i}]".encode() for i in range(len(kept), shape.n_vocab)]
    else:
        padding = [pad_with[value.key]] * (shape.n_vocab - len(kept))
    return MetadataValue(value.key, [*kept, *padding], value.vtype, value.sub_type)


def _stand_in(n_vocab: int) -> list[MetadataValue]:
    tokens, scores, types = byte_vocab(n_vocab)
    return [
        MetadataValue("tokenizer.ggml.model", "llama", _T.STRING),
        MetadataValue("tokenizer.ggml.tokens", tokens, _T.ARRAY, _T.STRING),
        MetadataValue("tokenizer.ggml.scores", scores, _T.ARRAY, _T.FLOAT32),
        MetadataValue("tokenizer.ggml.token_type", types, _T.ARRAY, _T.INT32),
        MetadataValue("tokenizer.ggml.bos_token_id", 1, _T.UINT32),
        MetadataValue("tokenizer.ggml.eos_token_id", 2, _T.UINT32),
        MetadataValue("tokenizer.ggml.unknown_token_id", 0, _T.UINT32),
        MetadataValue("tokenizer.ggml.add_bos_token", True, _T.BOOL),
    ]
