"""GGUF header fuzzing: mutated counts, lengths, types and truncations of real synthetic headers.

Every case ends in a plan or one ModelSourceError, never another exception or a hang. The
deadline is a hang guard (parsing takes milliseconds; benchmarks/bench_header_fuzz.py measures it),
not a speed claim.
"""

from __future__ import annotations

import os
import struct
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_vramcap.errors import ModelSourceError
from pytest_vramcap.model import spec_from_gguf, write_sparse_gguf
from pytest_vramcap.planner import PlanRequest, make_plan, resolve_profile

SOURCE = write_sparse_gguf("qwen2.5-0.5b", "Q8_0", Path(os.environ.get("TMPDIR", "/tmp")) / f"fuzz-{os.getpid()}.gguf",
                           layers=2)
ORIGINAL = SOURCE.read_bytes()[: 4 * 1024 * 1024]  # the header and a little of the data region
FULL_SIZE = SOURCE.stat().st_size
HEADER_END = len(ORIGINAL)
PROFILE = resolve_profile("16gb", {})

_U64 = st.sampled_from([0, 1, 2, 255, 2**16, 2**31, 2**32 - 1, 2**32, 2**40, 2**63 - 1, 2**64 - 1])
_U32 = st.sampled_from([0, 1, 7, 8, 9, 12, 13, 30, 2**16, 2**31, 2**32 - 1])


@st.composite
def mutations(draw: st.DrawFn) -> tuple[bytes, int]:
    """A damaged copy of the header: a u64 or u32 overwritten, bytes flipped, or a truncation."""
    data = bytearray(ORIGINAL)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["u64", "u32", "byte", "counts"]))
        if kind == "counts":  # the tensor and key counts right after the magic and version
            struct.pack_into("<Q", data, draw(st.sampled_from([8, 16])), draw(_U64))
        elif kind == "u64":
            struct.pack_into("<Q", data, draw(st.integers(0, 200_000)), draw(_U64))
        elif kind == "u32":
            struct.pack_into("<I", data, draw(st.integers(0, 200_000)), draw(_U32))
        else:
            data[draw(st.integers(0, 200_000))] = draw(st.integers(0, 255))
    if draw(st.booleans()):  # a truncation, after the other damage
        size = draw(st.integers(4, HEADER_END))
        return bytes(data[:size]), size
    return bytes(data), FULL_SIZE


@settings(max_examples=150, deadline=timedelta(seconds=10), suppress_health_check=[HealthCheck.too_slow])
@given(mutations())
def test_a_damaged_header_plans_or_fails_in_one_line(tmp_path_factory: pytest.TempPathFactory,
                                                     mutation: tuple[bytes, int]) -> None:
    data, size = mutation
    path = tmp_path_factory.mktemp("fuzz") / "m.gguf"
    path.write_bytes(data)
    os.truncate(path, size)
    try:
        spec = spec_from_gguf(path)
    except ModelSourceError as exc:
        assert "\n" not in str(exc)
        return
    plan = make_plan(spec, PROFILE, PlanRequest(agents=2, ctx_per_agent=1024))
    assert plan.memory.gpu.total > 0
