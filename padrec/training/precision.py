"""Whether training runs its forward passes in bf16 autocast.

bf16 autocast halves matmul time on CPUs that do bf16 in hardware (AVX512-BF16, AMX). On the others
(an AVX2-only CPU, say) oneDNN emulates it and a training step is several times slower than fp32:
measured 8x on one 256x768 matmul, 100x on a whole step. So `None` in the configs means "where the
hardware has it".
"""

from __future__ import annotations

from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def native_bf16(cpuinfo: str | None = None) -> bool:
    """True when the CPU flags (from /proc/cpuinfo, or the given text) include hardware bf16."""
    if cpuinfo is None:
        try:
            cpuinfo = CPUINFO.read_text()
        except OSError:  # not Linux: no way to tell, so the safe choice
            return False
    flags = {flag for line in cpuinfo.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[-1].split()}
    return bool(NATIVE_BF16_FLAGS & flags)


def use_bf16(setting: bool | None) -> bool:
    """The configured choice, or the hardware's when the config leaves it open (None)."""
    return native_bf16() if setting is None else setting
