from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from pytest_vramcap.errors import ProfileError
from pytest_vramcap.planner.profiles import load_user_profiles, named_profiles, resolve_profile

REQUIRED = ["rtx4060ti-16gb", "rtx4070ti-super", "rtx4080", "rtx4080-super", "rtx4090", "rtx4090-laptop", "rtx3090",
            "rtx5090", "a10g", "l4", "t4", "a100-40gb", "a100-80gb", "h100-80gb", "h200"]


@pytest.mark.parametrize("text, mib", [("8gb", 8192), ("16gb", 16384), ("24gb", 24576), ("16GiB", 16384),
                                       ("16384MiB", 16384), ("16GB", 16384), (" 12.5gb ", 12800)])
def test_sizes(text: str, mib: int) -> None:
    profile = resolve_profile(text, user_profiles={})
    assert profile.total_mib == mib and profile.usable_mib == mib


@pytest.mark.parametrize("name", REQUIRED)
def test_named_gpus(name: str) -> None:
    profile = resolve_profile(name, user_profiles={})
    assert profile.total_mib > profile.reserved_mib >= 0
    assert profile.bandwidth_gbps > 0 and profile.overhead_mib > 0


def test_h100_overhead_agrees_with_the_measurements(h100_logs: Path) -> None:
    """Peak process memory minus llama.cpp's own buffers, as measured on the H100.

    Fixture: 15030-14421 with flash attention. docs/validation.json: the median over the FA configs.
    """
    import json

    profile = named_profiles()["h100-80gb"]
    assert profile.total_mib == 81079  # "Total VRAM: 81079 MiB" in every fixture log
    assert profile.overhead_mib == 15030 - 14421
    rows = json.loads((Path(__file__).parents[2] / "docs" / "validation.json").read_text())
    overheads = [r["overhead_at_peak_mib"] for r in rows if r["flash_attn"]]
    assert profile.overhead_mib == pytest.approx(statistics.median(overheads), abs=10)


def test_what_fit_sees_at_load_is_the_overhead_less_the_pool() -> None:
    """--fit's own line "N MiB used, M MiB free" over the free memory the ballast left: the process held the rest
    when it measured (the CUDA context), FA on and off, dense and MoE (docs/gpu/optimality-2026-12-06.json and
    -2026-11-24.json)."""
    import json
    import re

    profile = named_profiles()["h100-80gb"]
    at_load = []
    for name in ("optimality-2026-11-24.json", "optimality-2026-12-06.json"):
        for row in json.loads((Path(__file__).parents[2] / "docs" / "gpu" / name).read_text()):
            free = resolve_profile(row.get("profile", "24gb" if row["shape"] == "qwen3-30b-a3b" else "16gb")).usable_mib
            for line in row["confirm_above"]["fit"]:
                used, left = map(int, re.search(r"(\d+) MiB used, +(\d+) MiB free", line).groups())  # type: ignore[union-attr]
                at_load.append(free - used - left)
    assert len(at_load) >= 20
    assert max(at_load) - min(at_load) <= 1
    assert profile.overhead_mib - profile.pool_after_load_mib == pytest.approx(statistics.median(at_load), abs=1)


def test_a_pool_after_load_is_part_of_the_overhead(tmp_path: Path) -> None:
    """A user's own overhead is a peak figure: none of it is taken as coming after load unless they say so."""
    path = tmp_path / "profiles.toml"
    path.write_text('[profiles.mine]\nbase = "h100-80gb"\noverhead_mib = 700\n'
                    '[profiles.split]\nbase = "h100-80gb"\noverhead_mib = 700\npool_after_load_mib = 100\n'
                    '[profiles.bad]\ntotal_mib = 16384\noverhead_mib = 500\npool_after_load_mib = 600\n')
    with pytest.raises(ProfileError, match=r"pool_after_load_mib \(600\) is part of overhead_mib \(500\)"):
        load_user_profiles(path)
    path.write_text(path.read_text().split("[profiles.bad]")[0])
    profiles = load_user_profiles(path)
    old = tmp_path / "old.toml"  # a file written before 2026-12-06
    old.write_text('[profiles.old]\nbase = "l4"\nno_flash_attn_extra_mib = 120\n')
    with pytest.raises(ProfileError, match=r"no_flash_attn_extra_mib is no longer a profile field .* remove it$"):
        load_user_profiles(old)
    assert named_profiles()["h100-80gb"].pool_after_load_mib == 609 - 525
    assert profiles["mine"].pool_after_load_mib == 0
    assert profiles["split"].pool_after_load_mib == 100


@pytest.mark.parametrize("text", ["", "0gb", "-8gb", "16tb", "bogus-gpu", "gb", "0MiB"])
def test_bad_profiles_are_one_clear_error(text: str) -> None:
    with pytest.raises(ProfileError) as excinfo:
        resolve_profile(text, user_profiles={})
    assert "\n" not in str(excinfo.value)


def test_user_profiles_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "vramcap.toml"
    path.write_text('[profiles.my-4080]\nbase = "rtx4080"\nreserved_mib = 900\n\n'
                    '[profiles.lab-card]\ntotal_mib = 20480\noverhead_mib = 400\nbandwidth_gbps = 500\n')
    users = load_user_profiles(path)
    assert users["my-4080"].total_mib == 16376 and users["my-4080"].usable_mib == 16376 - 900
    assert users["lab-card"].overhead_mib == 400 and "user-defined" in users["lab-card"].overhead_source
    assert resolve_profile("lab-card", users).total_mib == 20480


@pytest.mark.parametrize("body, message", [
    ("[profiles.x]\nreserved_mib = 10\n", "needs 'total_mib' or 'base'"),
    ("[profiles.x]\ntotal_mib = 100\nreserved_mib = 200\n", r"reserved_mib \(200\) must be below total_mib \(100\)"),
    ("[profiles.x]\ntotal_mib = 100\ncolour = 1\n", "unknown keys"),
    ("not toml [", "not valid TOML"),
])
def test_bad_user_profiles(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(body)
    with pytest.raises(ProfileError, match=message):
        load_user_profiles(path)


def test_missing_profile_file(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="does not exist"):
        load_user_profiles(tmp_path / "nope.toml")
