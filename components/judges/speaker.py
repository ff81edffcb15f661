"""``speaker``: does the output sound like the reference? An encoder independent of every engine.

Column ``spk_sim``: cosine similarity between Resemblyzer (GE2E speaker encoder, weights in the
wheel) embeddings of the output and of the reference recording: the cloned reference, or a
recording the user gives for a built-in voice (``--judge-reference`` / the Judges accordion). Without
a reference the cell stays empty. XTTS's own speaker encoder similarity is a different column,
``xtts_spk_sim`` (components.core.similarity): that encoder is the one XTTS conditions on, so it
favours XTTS; this one judges every engine alike.

Weak at: the ranges overlap. Same Kokoro voice on two sentences 0.86-0.94, two different
Kokoro voices 0.47-0.88 (README's calibration table): compare means over several outputs, never
read one value against a threshold. GE2E was trained on English read speech.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from .base import CannotJudge, JudgeConfig, JudgeInput, mono16k, package_version, require

SAMPLE_RATE = 16000   # Hz, Resemblyzer's rate
MIN_SPEECH_S = 0.5    # after Resemblyzer's own silence trimming; shorter has no stable embedding
REFERENCE_CACHE = 16  # reference embeddings kept (one per recording; runs reuse one reference)


class SpeakerJudge:
    name = "speaker"
    columns = ("spk_sim",)
    reads = ("reference",)

    def __init__(self, config: JudgeConfig | None = None):
        self.config = config or JudgeConfig()
        self._encoder: Any = None
        self._refs: dict[tuple[str, float], np.ndarray] = {}
        self._lock = threading.Lock()

    @classmethod
    def unavailable_reason(cls, config: JudgeConfig | None = None) -> str | None:
        # webrtcvad (Resemblyzer's dependency) imports pkg_resources: setuptools < 81 provides it.
        return require("resemblyzer", "resemblyzer") or require("pkg_resources", "setuptools<81")

    @property
    def version(self) -> str:
        return package_version("resemblyzer") + " (GE2E pretrained.pt)"

    def languages(self) -> None:
        return None

    def load(self) -> None:
        import warnings

        # torch's thread count is process-wide (XTTS shares it): left as the lab set it.
        with warnings.catch_warnings():  # webrtcvad's pkg_resources import warns on every start
            warnings.simplefilter("ignore")  # and resemblyzer's scipy.ndimage.morphology import
            from resemblyzer import VoiceEncoder

        self._encoder = VoiceEncoder("cpu", verbose=False)
        # Warm-up (torch's first forward allocates and picks kernels): loading, not judging time.
        self._encoder.embed_utterance(0.1 * np.random.default_rng(0).standard_normal(2 * SAMPLE_RATE).astype(np.float32))

    def embed(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Resemblyzer's utterance embedding (unit length) of mono audio at any rate."""
        from resemblyzer import preprocess_wav

        y = mono16k(JudgeInput(audio, sample_rate), SAMPLE_RATE)
        wav = preprocess_wav(y, source_sr=SAMPLE_RATE)  # level-normalised, long silences removed
        if len(wav) < MIN_SPEECH_S * SAMPLE_RATE:
            raise CannotJudge(f"speaker: under {MIN_SPEECH_S} s of speech to embed")
        return self._encoder.embed_utterance(wav)

    def reference_embedding(self, path: str) -> np.ndarray:
        from components.core.audio import load_audio

        key = (str(Path(path).resolve()), Path(path).stat().st_mtime)
        with self._lock:
            if key in self._refs:
                return self._refs[key]
        audio, sr = load_audio(path)
        emb = self.embed(audio, sr)
        with self._lock:
            if len(self._refs) >= REFERENCE_CACHE:
                self._refs.pop(next(iter(self._refs)))
            self._refs[key] = emb
        return emb

    @staticmethod
    def cannot_judge(item: JudgeInput) -> str | None:
        """No reference, nothing to compare: said before Resemblyzer is ever loaded."""
        if not item.reference:
            return ("speaker: no reference recording to compare with (clone from one; for a built-in "
                    "voice give a recording of it: the Judges accordion, or --judge-reference)")
        if not Path(item.reference).is_file():
            return f"speaker: the reference {item.reference} is gone"
        return None

    def judge(self, item: JudgeInput) -> dict[str, Any]:
        why = self.cannot_judge(item)
        if why:
            raise CannotJudge(why)
        ref = self.reference_embedding(item.reference)
        out = self.embed(item.audio, item.sample_rate)
        cos = float(np.dot(ref, out) / (np.linalg.norm(ref) * np.linalg.norm(out)))
        return {"spk_sim": round(cos, 4)}
