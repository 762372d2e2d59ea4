"""Deterministic synthetic text of a given length in tokens: shared system prompts and tool results.

The words are common English words that are one token each (with their leading space) in every real
vocabulary synthesized models carry: Qwen2's, Llama 3's, LLaMA 2's SPM and Phi-3's (checked through
llama-server's ``/tokenize`` on 2026-12-05; tests/load/test_conversations.py holds them to it). So
``synthetic_text(n)`` is ``n`` tokens on those models (the first word may take two), about ``n`` on
other BPE vocabularies, and several times ``n`` on the byte stand-in.
"""

from __future__ import annotations

import random

__all__ = ["WORDS", "synthetic_text"]

_WORD_LIST = (
    "after agent all an and any are as at be before but by cache call can check code data down each eight else "
    "error every file first five for four from how if in input into is it last left line list memory model more "
    "most name new next nine not number of old on one or other out output over page plan read request result "
    "right run same server service seven six some state step system table task ten test text that the then this "
    "three time to tool two type under up user value we what when where which while who with word write"
)
WORDS = tuple(_WORD_LIST.split())


def synthetic_text(n_tokens: int, seed: str) -> str:
    """``n_tokens`` words drawn from :data:`WORDS` by a generator seeded with ``seed`` (the same text every run)."""
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(n_tokens))
