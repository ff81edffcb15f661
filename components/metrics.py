"""Signal metrics computed on every output, whatever the engine."""

from __future__ import annotations

from typing import Any

import numpy as np


def signal_metrics(audio: np.ndarray, sample_rate: int, text: str | None = None,
                   lang: str | None = None) -> dict[str, Any]:
    """Cheap, model-free facts about one output (keys are CSV columns)."""
    audio = np.asarray(audio, dtype=np.float32)
    return {
        "audio_seconds": len(audio) / sample_rate,
        "clipping_fraction": float(np.mean(np.abs(audio) >= 0.999)) if len(audio) else 0.0,
    }
