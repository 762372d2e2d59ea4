"""VRAM emulation: hold the difference so a big GPU looks like the profile's card.

With ``--vram-profile=16gb`` on an 80 GB H100 we allocate ``free - usable`` MiB
through libcuda (ctypes, no torch) on the device's primary context and keep it
for the whole run. Every process then sees the profile's free memory, exactly
as llama.cpp's ``--fit`` and an out-of-memory would on the real card. The
allocation is freed on release and, with the process, at exit or Ctrl-C.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
from collections.abc import Sequence
from dataclasses import dataclass

from ..defaults import MIB
from ..errors import BadInputError, BallastError

__all__ = ["Ballast", "CardBallasts"]


def _libcuda() -> ctypes.CDLL:
    name = ctypes.util.find_library("cuda") or "libcuda.so.1"
    try:
        return ctypes.CDLL(name)
    except OSError as exc:
        raise BallastError(f"cannot load libcuda ({exc}): VRAM emulation needs an NVIDIA driver") from None


@dataclass
class Ballast:
    """Holds ``free - target_free_mib`` on CUDA device ``device`` (CUDA numbering)."""

    target_free_mib: int
    device: int = 0
    uuid: str = ""
    """NVML's UUID of the card meant (several cards): CUDA's device ``device`` must be it. CUDA numbers cards
    fastest first unless CUDA_DEVICE_ORDER=PCI_BUS_ID, NVML by PCI bus; on a host of unlike cards the two differ."""

    def __post_init__(self) -> None:
        self._cuda: ctypes.CDLL | None = None
        self._ptr = ctypes.c_uint64(0)
        self._ctx = ctypes.c_void_p()
        self._dev = ctypes.c_int(0)
        self.held_mib = 0
        self.free_before_mib = 0
        self.total_mib = 0

    def _check(self, result: int, what: str) -> None:
        if result != 0:
            message = ctypes.c_char_p()
            if self._cuda is not None:
                self._cuda.cuGetErrorString(result, ctypes.byref(message))
            text = message.value.decode() if message.value else f"CUresult {result}"
            raise BallastError(f"{what} failed: {text}")

    def free_and_total_mib(self) -> tuple[int, int]:
        free, total = ctypes.c_size_t(), ctypes.c_size_t()
        assert self._cuda is not None
        self._check(self._cuda.cuMemGetInfo_v2(ctypes.byref(free), ctypes.byref(total)), "cuMemGetInfo")
        return free.value // MIB, total.value // MIB

    def hold(self) -> Ballast:
        cuda = self._cuda = _libcuda()
        self._check(cuda.cuInit(0), "cuInit")
        self._check(cuda.cuDeviceGet(ctypes.byref(self._dev), self.device), f"cuDeviceGet({self.device})")
        if self.uuid:
            self._check_uuid(cuda)
        self._check(cuda.cuDevicePrimaryCtxRetain(ctypes.byref(self._ctx), self._dev), "cuDevicePrimaryCtxRetain")
        self._check(cuda.cuCtxSetCurrent(self._ctx), "cuCtxSetCurrent")
        self.free_before_mib, self.total_mib = self.free_and_total_mib()
        hold = self.free_before_mib - self.target_free_mib
        if hold < 0:
            self.release()
            raise BadInputError(f"the GPU has {self.free_before_mib} MiB free, less than the profile's "
                                f"{self.target_free_mib} MiB: use a smaller --vram-profile or the real card")
        if hold > 0:
            try:
                self._check(cuda.cuMemAlloc_v2(ctypes.byref(self._ptr), ctypes.c_size_t(hold * MIB)),
                            f"cuMemAlloc of {hold} MiB")
            except BallastError:
                self.release()  # the primary context it retained goes too
                raise
        self.held_mib = hold
        atexit.register(self.release)
        return self

    def _check_uuid(self, cuda: ctypes.CDLL) -> None:
        raw = (ctypes.c_ubyte * 16)()
        self._check(cuda.cuDeviceGetUuid(ctypes.byref(raw), self._dev), "cuDeviceGetUuid")
        found = bytes(raw).hex()
        found = f"GPU-{found[:8]}-{found[8:12]}-{found[12:16]}-{found[16:20]}-{found[20:]}"
        if found != self.uuid:
            self._cuda = None
            raise BallastError(f"CUDA's device {self.device} is {found}, not the card NVML counts as {self.device} "
                               f"({self.uuid}): set CUDA_DEVICE_ORDER=PCI_BUS_ID so that both count cards alike")

    def release(self) -> None:
        cuda = self._cuda
        if cuda is None:
            return
        if self._ptr.value:
            cuda.cuMemFree_v2(self._ptr)
            self._ptr = ctypes.c_uint64(0)
        if self._ctx.value:
            cuda.cuDevicePrimaryCtxRelease(self._dev)
            self._ctx = ctypes.c_void_p()
        self._cuda = None  # held_mib keeps what was held, for the report

    def __enter__(self) -> Ballast:
        return self.hold()

    def __exit__(self, *exc: object) -> None:
        self.release()


class CardBallasts:
    """One :class:`Ballast` per card of a profile, card ``i`` on CUDA device ``i``, each leaving that card's free
    memory (a profile of one card: one ballast on device 0). Held and released together; ``held_mib`` and
    ``free_before_mib`` are their sums, what the run's device-wide NVML readings carry."""

    def __init__(self, targets_free_mib: Sequence[int], uuids: Sequence[str] = ()) -> None:
        """``uuids``: NVML's UUID of each card. With several cards each is checked against CUDA's device of the same
        index; one card is CUDA's device 0 whatever NVML calls it, and is not."""
        checked = uuids if len(targets_free_mib) > 1 else ()
        self.cards = [Ballast(target_free_mib=target, device=index, **({"uuid": checked[index]} if checked else {}))
                      for index, target in enumerate(targets_free_mib)]

    def hold(self) -> CardBallasts:
        try:
            for ballast in self.cards:
                ballast.hold()
        except BaseException:
            self.release()  # the cards already held go back
            raise
        return self

    def release(self) -> None:
        for ballast in self.cards:
            ballast.release()

    @property
    def held_mib(self) -> int:
        return sum(ballast.held_mib for ballast in self.cards)

    @property
    def free_before_mib(self) -> int:
        return sum(ballast.free_before_mib for ballast in self.cards)

    def by_card(self) -> list[dict[str, int]]:
        return [{"device": ballast.device, "free_target_mib": ballast.target_free_mib,
                 "ballast_mib": ballast.held_mib, "free_before_mib": ballast.free_before_mib}
                for ballast in self.cards]

    def __enter__(self) -> CardBallasts:
        return self.hold()

    def __exit__(self, *exc: object) -> None:
        self.release()
