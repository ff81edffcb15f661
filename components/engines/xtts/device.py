"""Torch plumbing of the XTTS engine: which device, seeding every generator, waiting for the GPU,
and CUDA out-of-memory turned into a LabError. torch is imported inside each function (the engine
module is imported at start-up and must stay light)."""

from __future__ import annotations

import contextlib
import random
from typing import Iterator

import numpy as np

from components.core import EngineUnavailable, LabError


def resolve_device(wanted: str) -> str:
    """``auto`` -> cuda when there is a GPU, else cpu; a CUDA device asked for without a GPU fails."""
    import torch

    if wanted == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if wanted.startswith("cuda") and not torch.cuda.is_available():
        raise EngineUnavailable(f"device {wanted!r} was asked for but no CUDA GPU is available; "
                                "use --device cpu or auto")
    return wanted


def seed_all(seed: int | None) -> None:
    """Seed every generator the sampler may touch, right before generation (None: leave them)."""
    if seed is None:
        return
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def sync(device: str) -> None:
    """Wait for queued GPU work so the stage timers measure it."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


@contextlib.contextmanager
def oom_guard() -> Iterator[None]:
    """Turn CUDA out-of-memory into a LabError; the engine stays usable afterwards."""
    import torch

    try:
        yield
    except (torch.cuda.OutOfMemoryError, LabError) as e:
        # The shared batch reports a failed step as a LabError caused by the OOM.
        if not isinstance(e, torch.cuda.OutOfMemoryError) and not isinstance(
                e.__cause__, torch.cuda.OutOfMemoryError):
            raise
        torch.cuda.empty_cache()
        raise LabError(
            "GPU out of memory while synthesising: try shorter text (text splitting on), "
            "close other GPU programs, or restart the lab with --device cpu"
        ) from e
