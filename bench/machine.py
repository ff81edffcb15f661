"""What every benchmark prints first: the machine it measured on.

Machines of this project's kind differ (an Intel Xeon with AMX on some, an AMD Zen 4 without it on
others; memory bandwidth from 16 to 67 GB/s), so a figure means nothing without the CPU model, the
matrix extensions that decide bf16/int8 speed, and how busy the machine was while it ran.
"""

from __future__ import annotations

import os
from pathlib import Path

# Extensions that change matrix-multiply speed, in the order worth reading.
MATRIX_FLAGS = ("amx_tile", "amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni", "avx512f", "avx_vnni",
                "avx2", "fma")


def cpu_description() -> str:
    """``model; N cores; matrix extensions: ...`` from /proc/cpuinfo (``unknown CPU`` elsewhere)."""
    model, flags = "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown CPU":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    have = [f for f in MATRIX_FLAGS if f in flags]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"{model}; {cores} cores usable; matrix extensions: "
            f"{', '.join(have) if have else 'none of ' + ', '.join(MATRIX_FLAGS)}")


def load_average() -> str:
    """The 1, 5 and 15-minute load averages: a figure taken on a busy machine says so."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"
