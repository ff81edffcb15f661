"""Precision modes: build and keep a model's packed GPT (``FastGPT``) on the model object, and
give back the memory the originals held (memory-mapped pages, freed heap)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from components.core import PRECISIONS, LabError
from components.engines.xtts.gpt import FastGPT

_STATE_ATTR = "_xtts_lab_fast"  # where apply_precision keeps its packed weights on the model
_MAPPED_ATTR = "_xtts_lab_mapped"  # the memory-mapped model.pth whose GPT pages packing may drop


def apply_precision(model: Any, precision: str = "fp32") -> FastGPT:
    """Prepare ``model`` (a loaded coqui ``Xtts``) for the fast path in ``precision``; idempotent.

    Builds repacked GPT weights on the model's device and keeps them on the model, replacing any
    earlier precision. The coqui modules keep their weights, so stock ``Xtts.inference`` still
    runs on the same model; those memory-mapped from the checkpoint (``load_fast``) have their
    pages released after packing (``release_mapped_pages``). Raises LabError for an unknown precision or int8 off the CPU.
    """
    import torch

    if precision not in PRECISIONS:
        raise LabError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    current = getattr(model, _STATE_ATTR, None)
    device = next(model.gpt.parameters()).device
    if current is not None and current.precision == precision and current.device == device:
        return current
    setattr(model, _STATE_ATTR, None)  # free the old packed weights before building new ones
    with torch.inference_mode():
        fast = FastGPT(model.gpt, precision, device)
    setattr(model, _STATE_ATTR, fast)
    mapped = getattr(model, _MAPPED_ATTR, None)
    if mapped is not None:
        release_mapped_pages(_packed_sources(model.gpt), mapped)
    _return_freed_heap()
    return fast


def _return_freed_heap() -> None:
    """Hand freed heap memory back to the OS (glibc ``malloc_trim``; a no-op elsewhere).

    Packing frees hundreds of MB of temporaries (quantisation copies, the serialized ONNX graph,
    the previous precision's packed weights) in pieces glibc keeps mapped for reuse: measured on
    the full-size model, int8 sat at 4.0 GB resident after packing and 1.8 GB after a trim.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        ctypes.CDLL(name).malloc_trim(0)
    except (OSError, AttributeError, TypeError):  # not glibc (musl, macOS): nothing to trim
        pass


def _packed_sources(gpt: Any) -> list:
    """The coqui GPT matrices FastGPT keeps its own (repacked) copies of."""
    return [m.weight for b in gpt.gpt.h for m in (b.attn.c_attn, b.attn.c_proj, b.mlp.c_fc, b.mlp.c_proj)]


def _file_mappings(path: Path) -> list[tuple[int, int]]:
    """Address ranges at which this process has ``path`` memory-mapped (from /proc/self/maps)."""
    target = str(Path(path).resolve())
    ranges = []
    try:
        for line in Path("/proc/self/maps").read_text().splitlines():
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and parts[5] == target:
                a, b = parts[0].split("-")
                ranges.append((int(a, 16), int(b, 16)))
    except OSError:
        pass
    return ranges


def release_mapped_pages(tensors: Sequence[Any], path: Path) -> int:
    """Drop the resident pages of ``tensors`` that lie in this process's mapping of ``path``.

    ``load_fast`` memory-maps ``model.pth`` and the coqui modules use those pages directly;
    packing the GPT reads all of them, after which they would stay resident beside the packed
    copy (+1.7 GB in fp32). ``madvise(MADV_DONTNEED)`` on a private file mapping drops clean
    pages from the process; the tensors stay valid and the next read (the stock coqui path, a
    precision switch) faults them back in from the file. Only whole pages inside tensors that
    lie in the file's mapping are touched, never memory the process wrote (copy-on-write pages of
    tensors someone modified would lose the change), nor anything else. Returns the bytes
    released (0 where madvise is unavailable).
    """
    import ctypes
    import mmap

    ranges = _file_mappings(path)
    if not ranges:
        return 0
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        madvise = libc.madvise
    except (OSError, AttributeError):
        return 0
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    page, released = mmap.PAGESIZE, 0
    for t in tensors:
        start = t.data_ptr()
        end = start + t.numel() * t.element_size()
        if t.device.type != "cpu" or not any(a <= start and end <= b for a, b in ranges):
            continue
        a, b = -(-start // page) * page, end // page * page
        if b > a and madvise(a, b - a, 4) == 0:  # 4 = MADV_DONTNEED
            released += b - a
    return released


def precision_of(model: Any) -> str:
    """The precision ``apply_precision`` last prepared ``model`` for ("fp32" if never)."""
    fast = getattr(model, _STATE_ATTR, None)
    return fast.precision if fast is not None else "fp32"


def _fast(model: Any) -> FastGPT:
    return getattr(model, _STATE_ATTR, None) or apply_precision(model, "fp32")
