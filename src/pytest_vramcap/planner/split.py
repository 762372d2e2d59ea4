"""Which card of several holds which layer: llama.cpp's layer split (``-sm layer``, ``-ts``).

llama.cpp offloads the last ``ngl`` of the positions ``0 .. n_layer`` (the output layer is position ``n_layer``,
so it goes to a GPU first) and hands them to the cards in device order as contiguous blocks: offloaded position
``k`` goes to the first card whose cumulative share of ``-ts`` exceeds ``k / ngl`` (src/llama-model.cpp
``load_tensors``, docs/sources/multi-gpu.md section 1.2). A ``-ts`` of whole layer counts, which is what
``--fit`` writes, gives card ``d`` exactly ``counts[d]`` positions; the last card with any holds the output.

This module places positions; what each card then holds is :mod:`.memory`'s to count.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = ["balanced_counts", "blocks", "proportional_counts"]


def blocks(counts: Sequence[int]) -> list[tuple[int, int]]:
    """Each card's offloaded positions ``[start, end)`` (0 = the first offloaded position)."""
    spans, start = [], 0
    for count in counts:
        spans.append((start, start + count))
        start += count
    return spans


def proportional_counts(ngl: int, shares: Sequence[float]) -> tuple[int, ...]:
    """The positions each card gets from llama.cpp's rule for a ``-ts`` of ``shares`` (without ``-ts``: each card's
    free memory): position ``k`` to the first card whose cumulative share exceeds ``k / ngl``."""
    total = sum(shares)
    cumulative, running = [], 0.0
    for share in shares:
        running += share
        cumulative.append(running / total)
    counts = [0] * len(shares)
    for k in range(ngl):
        counts[next((d for d, edge in enumerate(cumulative) if edge > k / ngl), len(shares) - 1)] += 1
    return tuple(counts)


def balanced_counts(ngl: int, cards: int, overrun_mib: Callable[[int, int, int], float]) -> tuple[int, ...]:
    """Layer counts that leave the most room on the tightest card.

    ``overrun_mib(card, start, end)`` is how far that card is over its budget holding offloaded positions
    ``[start, end)`` (<= 0: within it), growing with what it holds. For a target headroom the cards are filled
    back to front as llama.cpp's ``--fit`` does (the last card holds the output layer, which cannot be split), each
    taking as many positions as keep it that far under budget; the largest headroom for which the first card can
    take the rest is found by bisection. When no split fits, the one least over budget."""

    def fill(headroom: float) -> tuple[int, ...] | None:
        counts = [0] * cards
        end = ngl
        for card in range(cards - 1, 0, -1):
            start = end
            while start > 0 and overrun_mib(card, start - 1, end) <= -headroom:
                start -= 1
            counts[card] = end - start
            end = start
        counts[0] = end
        return tuple(counts) if overrun_mib(0, 0, end) <= -headroom else None

    low, high = -float(1 << 20), float(1 << 20)  # MiB (a TiB): every split meets the first, none the second
    for _ in range(40):  # to a millionth of a MiB
        middle = (low + high) / 2
        if fill(middle) is not None:
            low = middle
        else:
            high = middle
    found = fill(low)
    assert found is not None  # fill(-1 TiB) always succeeds: no card is a TiB over
    return found
