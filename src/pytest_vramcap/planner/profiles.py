"""VRAM profiles: what a GPU offers a llama-server process.

A profile is either a size (``"16gb"``, ``"16GiB"``, ``"16384MiB"``), a named GPU
(``"rtx4080"``, ``"h100-80gb"``) or a user-defined entry from a TOML file. Sizes
in GB are read as GiB, the way cards are sold (a "16 GB" RTX 4080 has 16 GiB).

Per-process overhead is the memory llama.cpp does not account for in its own
buffers: CUDA context, cuBLAS workspace and the VMM pool. It is measured on the
H100 (docs/validation.md) and estimated elsewhere from the SM count (~3 MiB per
SM of context, per llama.cpp PR #23604, plus 86 MiB of cuBLAS workspace and
pool, which puts an RTX 4090 at the 470 MiB reported in PR #15860).
``vramcap`` marks each figure as measured or estimated.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import ProfileError
from ..parsers import checked_number

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = ["PROFILE_FILE_ENV", "Profile", "load_user_profiles", "named_profiles", "profile_of_gpu",
           "resolve_profile"]

PROFILE_FILE_ENV = "VRAMCAP_PROFILES"

# Dual-channel DDR5-5600 moves 89.6 GB/s at peak; two thirds of that is what a desktop's CPU kernels are
# assumed to reach (not measured: the H100 host's 81 GB/s was fitted from its offload configs, docs/throughput.md).
# A user profile sets its own (host_bandwidth_gbps).
DESKTOP_HOST_BANDWIDTH_GBPS = 60.0


@dataclass(frozen=True)
class Profile:
    """One GPU's memory budget and speed, as the planner sees it."""

    name: str
    total_mib: int
    """Device memory as NVML reports it."""
    reserved_mib: int
    """Used before our server starts: display server, driver, other apps."""
    bandwidth_gbps: float
    """Memory bandwidth in GB/s (10^9 bytes), for the decode roofline."""
    overhead_mib: int
    """Per-process CUDA overhead at peak with flash attention."""
    overhead_source: str
    decode_efficiency: float = 0.875
    """Share of the bandwidth a decode step's weight reads reach where no kernel limits them: Q8_0 reached 0.875 on
    an H100 (docs/throughput.md), carried to other cards."""
    sm_count: int = 0
    """Streaming multiprocessors: how fast dequantizing kernels run (0: unknown, the bandwidth alone decides)."""
    host_bandwidth_gbps: float = DESKTOP_HOST_BANDWIDTH_GBPS
    """The host memory's bandwidth as llama.cpp's CPU kernels reach it, for layers or experts left on the CPU."""
    pool_after_load_mib: int = 0
    """Of ``overhead_mib``, what the CUDA pool and cuBLAS take once batches run, after ``--fit`` has measured the
    free memory: the margin absorbs it, so a plan does not count it at load. 0 (all of it counted at load, the safe
    side) unless measured."""
    description: str = ""
    devices: tuple[Profile, ...] = ()
    """Several cards (``2x16gb``, ``rtx4080+rtx4060ti-16gb``), in llama.cpp's device order: the plan splits the
    model's layers over them (:mod:`.split`); this profile's own figures are their sums, and for speed their
    memory-weighted mean. Empty for one card."""

    @property
    def usable_mib(self) -> int:
        """Memory free for the server when it starts."""
        return self.total_mib - self.reserved_mib

    @property
    def overhead_at_load_mib(self) -> int:
        """The part of ``overhead_mib`` a process already holds when ``--fit`` measures the free memory (the CUDA
        context); the rest comes once batches run."""
        return self.overhead_mib - self.pool_after_load_mib

    @property
    def cards(self) -> tuple[Profile, ...]:
        """Each card, in device order: the devices of several, or this one."""
        return self.devices or (self,)

    def with_overhead_of(self, running: Profile) -> Profile:
        """This card's budget with the per-process overhead of ``running``, the GPU that really runs.

        When a big GPU emulates this card (the ballast), the server's CUDA context,
        cuBLAS and pool are the big GPU's, not the emulated card's. Several cards: each card's.
        """
        if self.devices:
            cards = several_cards(self.name, [device.with_overhead_of(running) for device in self.devices])
            return replace(cards, description=self.description)
        return replace(self, overhead_mib=running.overhead_mib, pool_after_load_mib=running.pool_after_load_mib,
                       overhead_source=f"{running.overhead_source}, of the GPU that runs ({running.name}) while it "
                                       f"emulates {self.name}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "total_mib": self.total_mib,
            "reserved_mib": self.reserved_mib,
            "usable_mib": self.usable_mib,
            "bandwidth_gbps": self.bandwidth_gbps,
            "overhead_mib": self.overhead_mib,
            "pool_after_load_mib": self.pool_after_load_mib,
            "overhead_source": self.overhead_source,
            "decode_efficiency": self.decode_efficiency,
            "sm_count": self.sm_count,
            "host_bandwidth_gbps": self.host_bandwidth_gbps,
            "description": self.description,
            **({"devices": [device.to_dict() for device in self.devices]} if self.devices else {}),
        }


def several_cards(name: str, devices: Sequence[Profile], held: Sequence[float] | None = None) -> Profile:
    """One profile for cards that serve one model together (llama.cpp's layer split).

    Memory adds up; each card keeps its own overhead and budget in the plan. Speed: a decode step passes each
    card's layers in turn, so it takes each card's share at that card's speed: the effective bandwidth and SM count
    are harmonic means weighted by what each card ``held`` (bytes of weights and KV; without them, by usable
    memory, the share llama.cpp's default split gives). Prefill is priced the same way, without the overlap
    pipeline parallelism gives its micro-batches: an upper bound on its time. Decode efficiency is the lowest of
    the cards' (the slowest card's share of its bandwidth binds its layers); the host is the first card's machine."""
    if len(devices) < 2:
        raise ProfileError(f"VRAM profile {name!r}: several cards need at least two")
    if any(device.devices for device in devices):
        raise ProfileError(f"VRAM profile {name!r}: a card of several cards cannot itself be several")
    weights = list(held) if held is not None and sum(held) > 0 else [device.usable_mib for device in devices]

    def harmonic(values: Sequence[float]) -> float:
        if not all(value or not weight for value, weight in zip(values, weights, strict=True)):
            return 0.0  # a card that holds something has no figure: unknown
        return sum(weights) / sum(w / v for w, v in zip(weights, values, strict=True) if w)

    return Profile(
        name=name,
        total_mib=sum(device.total_mib for device in devices),
        reserved_mib=sum(device.reserved_mib for device in devices),
        bandwidth_gbps=round(harmonic([device.bandwidth_gbps for device in devices]), 1),
        overhead_mib=sum(device.overhead_mib for device in devices),
        overhead_source="per card: " + "; ".join(f"{device.name} {device.overhead_source}" for device in devices),
        decode_efficiency=min(device.decode_efficiency for device in devices),
        sm_count=round(harmonic([device.sm_count for device in devices])),
        host_bandwidth_gbps=devices[0].host_bandwidth_gbps,
        pool_after_load_mib=sum(device.pool_after_load_mib for device in devices),
        description=" + ".join(device.description or device.name for device in devices),
        devices=tuple(devices),
    )


def _estimated_overhead(sm_count: int) -> int:
    return 3 * sm_count + 86


# Desktop GeForce cards usually drive a display; 300 MiB is a typical Xorg +
# compositor footprint. Datacenter cards run headless.
_DESKTOP_RESERVED_MIB = 300

# name: (NVML total MiB, reserved MiB, bandwidth GB/s, SM count, description)
_GPU_TABLE: dict[str, tuple[int, int, float, int, str]] = {
    "rtx4060ti-16gb": (16380, _DESKTOP_RESERVED_MIB, 288.0, 34, "GeForce RTX 4060 Ti 16 GB"),
    "rtx4070ti-super": (16376, _DESKTOP_RESERVED_MIB, 672.0, 66, "GeForce RTX 4070 Ti SUPER 16 GB"),
    "rtx4080": (16376, _DESKTOP_RESERVED_MIB, 716.8, 76, "GeForce RTX 4080 16 GB"),
    "rtx4080-super": (16376, _DESKTOP_RESERVED_MIB, 736.3, 80, "GeForce RTX 4080 SUPER 16 GB"),
    "rtx4090": (24564, _DESKTOP_RESERVED_MIB, 1008.0, 128, "GeForce RTX 4090 24 GB"),
    "rtx4090-laptop": (16376, 0, 576.0, 76, "GeForce RTX 4090 Laptop 16 GB (display on the iGPU)"),
    "rtx3090": (24576, _DESKTOP_RESERVED_MIB, 936.2, 82, "GeForce RTX 3090 24 GB"),
    "rtx5090": (32607, _DESKTOP_RESERVED_MIB, 1792.0, 170, "GeForce RTX 5090 32 GB"),
    "a10g": (23028, 0, 600.0, 80, "NVIDIA A10G 24 GB (AWS g5)"),
    "l4": (23034, 0, 300.0, 58, "NVIDIA L4 24 GB"),
    "t4": (15360, 0, 320.0, 40, "NVIDIA T4 16 GB"),
    "a100-40gb": (40960, 0, 1555.0, 108, "NVIDIA A100 40 GB"),
    "a100-80gb": (81920, 0, 2039.0, 108, "NVIDIA A100 80 GB SXM"),
    "h100-80gb": (81079, 0, 3350.0, 132, "NVIDIA H100 80 GB HBM3 SXM"),
    "h200": (143771, 0, 4800.0, 132, "NVIDIA H200 141 GB"),
}

# Measured on an H100 (docs/validation.md, docs/throughput.md, docs/optimality.md): process memory minus
# llama.cpp's model+context+compute buffers at peak with flash attention, of which 525 MiB (the CUDA context) is
# taken when --fit measures the free memory (14 of 14 configs, to the MiB) and the rest once batches run; the share
# of the bandwidth Q8_0 weight reads reached in a decode step; and the host's memory bandwidth as llama.cpp's CPU
# kernels reached it on that machine (a server host; a desktop's is the default).
_MEASURED: dict[str, dict[str, Any]] = {
    "h100-80gb": {"overhead_mib": 609, "pool_after_load_mib": 609 - 525, "decode_efficiency": 0.875,
                  "host_bandwidth_gbps": 80.8},
}
# The H200 uses the H100's die: we carry its measured overhead and weight-read efficiency over (not the H100
# host's memory bandwidth: that is the machine's, not the card's).
_MEASURED["h200"] = {key: _MEASURED["h100-80gb"][key]
                     for key in ("overhead_mib", "pool_after_load_mib", "decode_efficiency")}


def _build_named() -> dict[str, Profile]:
    profiles = {}
    for name, (total, reserved, bandwidth, sms, description) in _GPU_TABLE.items():
        measured = _MEASURED.get(name, {})
        profiles[name] = Profile(
            name=name,
            total_mib=total,
            reserved_mib=reserved,
            bandwidth_gbps=bandwidth,
            overhead_mib=measured.get("overhead_mib", _estimated_overhead(sms)),
            overhead_source=(
                "measured (H100, llama.cpp 11434)" if measured else f"estimated: 3 MiB x {sms} SMs + 86 MiB"
            ),
            decode_efficiency=measured.get("decode_efficiency", Profile.decode_efficiency),
            pool_after_load_mib=measured.get("pool_after_load_mib", 0),
            sm_count=sms,
            host_bandwidth_gbps=measured.get("host_bandwidth_gbps", DESKTOP_HOST_BANDWIDTH_GBPS),
            description=description,
        )
    return profiles


_NAMED = _build_named()

# Aliases users type.
_ALIASES = {
    "4060ti": "rtx4060ti-16gb",
    "rtx4060ti": "rtx4060ti-16gb",
    "4070ti-super": "rtx4070ti-super",
    "4080": "rtx4080",
    "4080-super": "rtx4080-super",
    "4090": "rtx4090",
    "3090": "rtx3090",
    "5090": "rtx5090",
    "h100": "h100-80gb",
    "a100": "a100-80gb",
}

# A bare size describes no particular card: assume an RTX 4090's measured
# overhead (the largest public consumer figure) and a mid-range bandwidth.
_GENERIC_OVERHEAD_MIB = 470
_GENERIC_BANDWIDTH_GBPS = 700.0

_SIZE_RE = re.compile(r"^\s*(?P<num>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>gb|gib|g|mb|mib|m)\s*$", re.IGNORECASE)


def named_profiles() -> dict[str, Profile]:
    """The built-in named GPUs."""
    return dict(_NAMED)


# A GPU has a few hundred GiB at most; 1 PiB leaves room without letting a
# 400-digit size overflow into infinity.
MAX_MIB = 1 << 30


def _parse_size_mib(text: str) -> int | None:
    match = _SIZE_RE.match(text)
    if not match:
        return None
    unit = match["unit"].lower()
    if len(match["num"].split(".")[0]) > 10:
        raise ProfileError(f"VRAM profile {text.strip()[:40]!r}...: sizes above {MAX_MIB:,} MiB are not GPUs")
    number = float(match["num"])
    return round(number * 1024 if unit in ("gb", "gib", "g") else number)


def _size_profile(text: str, mib: int) -> Profile:
    if mib <= 0:
        raise ProfileError(f"VRAM profile {text!r} has no memory: sizes must be positive")
    if mib > MAX_MIB:
        raise ProfileError(f"VRAM profile {text.strip()[:40]!r}: sizes above {MAX_MIB:,} MiB are not GPUs")
    return Profile(
        name=text.strip().lower(),
        total_mib=mib,
        reserved_mib=0,
        bandwidth_gbps=_GENERIC_BANDWIDTH_GBPS,
        overhead_mib=_GENERIC_OVERHEAD_MIB,
        overhead_source="generic consumer GPU (RTX 4090 report, llama.cpp PR #15860)",
        description=f"any GPU with {mib} MiB",
    )


# key: (integer?, lower bound, upper bound, lower bound excluded?)
_NUMBER_FIELDS: dict[str, tuple[bool, float, float, bool]] = {
    "total_mib": (True, 1, MAX_MIB, False),
    "reserved_mib": (True, 0, MAX_MIB, False),
    "bandwidth_gbps": (False, 0, 1e6, True),
    "overhead_mib": (True, 0, MAX_MIB, False),
    "decode_efficiency": (False, 0, 1, True),
    "sm_count": (True, 0, 100_000, False),
    "host_bandwidth_gbps": (False, 0, 1e6, True),
    "pool_after_load_mib": (True, 0, MAX_MIB, False),
}
_TEXT_FIELDS = ("description", "base")


def _user_profile(name: str, table: Mapping[str, Any], origin: str,
                  others: Mapping[str, Profile] | None = None) -> Profile:
    """Build a profile from a TOML table; ``base`` copies a built-in GPU."""
    where = f"profile {name!r} in {origin}"
    if "devices" in table:  # several cards: a list of card profiles, in device order
        devices = table["devices"]
        if set(table) - {"devices", "description"} or not isinstance(devices, list) \
                or not all(isinstance(device, str) for device in devices):
            raise ProfileError(f"{where}: 'devices' is a list of card profiles (names, sizes or one-card profiles "
                               f"of this file), beside at most 'description'")
        # a card is a built-in, a size, or a one-card profile of the same file (its reserved_mib, its overhead)
        cards = several_cards(name, [resolve_profile(device, user_profiles=others or {}) for device in devices])
        return replace(cards, description=table.get("description", cards.description))
    unknown = set(table) - set(_NUMBER_FIELDS) - set(_TEXT_FIELDS)
    if "no_flash_attn_extra_mib" in unknown:  # gone on 2026-12-06: the planner prices that pool from the shape
        raise ProfileError(f"{where}: no_flash_attn_extra_mib is no longer a profile field (without flash attention "
                           f"the planner prices the pool's copy of the KQ scores from the model); remove it")
    if unknown:
        raise ProfileError(f"{where}: unknown keys {sorted(unknown)}")
    values: dict[str, Any] = {}
    for key, (integer, lo, hi, strict_lo) in _NUMBER_FIELDS.items():
        if key in table:
            try:
                values[key] = checked_number(table[key], integer=integer, lo=lo, hi=hi, strict_lo=strict_lo)
            except ValueError as exc:
                raise ProfileError(f"{where}: {key} {exc}") from None
    for key in _TEXT_FIELDS:
        if key in table and not isinstance(table[key], str):
            raise ProfileError(f"{where}: {key} must be a string")
    if "base" in table:
        base = resolve_profile(table["base"], user_profiles={})
    elif "total_mib" in values:
        base = _size_profile(name, values["total_mib"])
    else:
        raise ProfileError(f"{where}: needs 'total_mib' or 'base'")
    profile = replace(base, name=name, **values, **({"description": table["description"]}
                                                      if "description" in table else {}))
    if "overhead_mib" in values:
        # A peak figure of the user's own: how much of it comes after load is not known unless they say.
        profile = replace(profile, overhead_source=f"user-defined in {origin}",
                          pool_after_load_mib=values.get("pool_after_load_mib", 0))
    if profile.pool_after_load_mib > profile.overhead_mib:
        raise ProfileError(f"{where}: pool_after_load_mib ({profile.pool_after_load_mib}) is part of overhead_mib "
                           f"({profile.overhead_mib}) and cannot exceed it")
    if profile.reserved_mib >= profile.total_mib:
        raise ProfileError(f"{where}: reserved_mib ({profile.reserved_mib}) must be below total_mib "
                           f"({profile.total_mib})")
    return profile


def load_user_profiles(path: Path | None = None) -> dict[str, Profile]:
    """Profiles from ``[profiles.NAME]`` tables of a TOML file.

    Looked up, first found wins: ``path``, ``$VRAMCAP_PROFILES``, ``./vramcap.toml``,
    and ``[tool.vramcap.profiles]`` in ``./pyproject.toml``.
    """
    explicit = path if path is not None else os.environ.get(PROFILE_FILE_ENV)
    if explicit:
        candidates: list[tuple[Path, tuple[str, ...]]] = [(Path(explicit), ("profiles",))]
    else:
        candidates = [(Path("vramcap.toml"), ("profiles",)), (Path("pyproject.toml"), ("tool", "vramcap", "profiles"))]
    for candidate, keys in candidates:
        if not candidate.is_file():
            if explicit:
                raise ProfileError(f"profile file {str(candidate)!r} does not exist")
            continue
        try:
            document: Any = tomllib.loads(candidate.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise ProfileError(f"profile file {str(candidate)!r} is not valid TOML: "
                               f"{str(exc).splitlines()[0] if str(exc) else 'nested too deeply'}") from None
        except OSError as exc:
            raise ProfileError(f"profile file {str(candidate)!r} cannot be read: {exc.strerror or exc}") from None
        for key in keys:
            document = document.get(key, {}) if isinstance(document, dict) else {}
        if not isinstance(document, dict):
            raise ProfileError(f"profile file {str(candidate)!r}: profiles must be tables")
        profiles: dict[str, Profile] = {}
        for name, table in document.items():
            if not isinstance(table, dict):
                raise ProfileError(f"profile {name!r} in {candidate}: must be a table")
        # one-card profiles first: a profile of several cards may name them
        for name, table in sorted(document.items(), key=lambda item: "devices" in item[1]):
            profiles[name.lower()] = _user_profile(name.lower(), table, str(candidate), profiles)
        if profiles or explicit:
            return profiles
    return {}


def profile_of_gpu(name: str, total_mib: int) -> Profile | None:
    """The built-in profile of the GPU NVML names (``NVIDIA H100 80GB HBM3`` -> h100-80gb), if any.

    Keys are matched without dashes inside the squashed name, longest first (``rtx4080super``
    before ``rtx4080``); cards sold in several sizes (A100 40/80 GB) by the closest total.
    """
    squashed = re.sub(r"[^a-z0-9]", "", name.lower())
    found = [(len(stem), -abs(profile.total_mib - total_mib), profile) for key, profile in _NAMED.items()
             if (stem := re.sub(r"-?\d+gb$", "", key).replace("-", "")) in squashed]
    return max(found, key=lambda item: item[:2])[2] if found else None


def resolve_profile(text: str, user_profiles: Mapping[str, Profile] | None = None) -> Profile:
    """Turn a ``--vram-profile`` value into a :class:`Profile`."""
    if not isinstance(text, str) or not text.strip():
        raise ProfileError("empty VRAM profile: give a size like '16gb' or a GPU name like 'rtx4080'")
    key = text.strip().lower()
    users = load_user_profiles() if user_profiles is None else user_profiles
    if key in users:
        return users[key]
    if key.startswith("-") or key.startswith("+"):
        raise ProfileError(f"VRAM profile {text!r}: sizes must be positive, like '16gb'")
    if "+" in key or _COUNT_RE.match(key):
        return several_cards(key, _several(key, users))
    return _one_card(text, key, users)


def _one_card(text: str, key: str, users: Mapping[str, Profile]) -> Profile:
    """A named card, an alias, or a bare size."""
    if key in users:
        return users[key]
    key = _ALIASES.get(key, key)
    if key in _NAMED:
        return _NAMED[key]
    mib = _parse_size_mib(key)
    if mib is not None:
        return _size_profile(text, mib)
    known = ", ".join(sorted([*_NAMED, *users]))
    raise ProfileError(f"unknown VRAM profile {text!r}: use a size like '16gb', '16GiB', '16384MiB' or one of: {known}")


_COUNT_RE = re.compile(r"^(?P<count>[0-9]+)\s*x\s*(?P<card>.+)$")
MAX_CARDS = 16
"""llama.cpp's GGML_CUDA_MAX_DEVICES."""


def _several(key: str, users: Mapping[str, Profile]) -> list[Profile]:
    """The cards of ``2x16gb`` or ``rtx4080+rtx4060ti-16gb`` (each part may be ``N x CARD``), in order."""
    parts = [part.strip() for part in key.split("+")]
    cards: list[Profile] = []
    for part in parts:
        match = _COUNT_RE.match(part)
        count, card = (int(match["count"]), match["card"].strip()) if match else (1, part)
        if not card or not 1 <= count <= MAX_CARDS:
            raise ProfileError(f"VRAM profile {key!r}: {part!r} is not N x CARD with 1 <= N <= {MAX_CARDS}")
        if _COUNT_RE.match(card):
            raise ProfileError(f"VRAM profile {key!r}: {part!r} counts twice")
        cards += [_one_card(card, card, users)] * count
    if len(cards) > MAX_CARDS:
        raise ProfileError(f"VRAM profile {key!r}: {len(cards)} cards; llama.cpp uses at most {MAX_CARDS}")
    return cards
