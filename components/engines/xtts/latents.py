"""Speaker-latent cache: conditioning on a voice costs nothing the second time, even after a restart.

XTTS turns a reference recording into two tensors (the GPT conditioning latent and the HiFiGAN
speaker embedding); that takes a second or more on CPU. They depend only on the cleaned audio,
the conditioning settings and the model, so the cache key is a hash of exactly those. Entries
live in memory (least recently used evicted first) and on disk as small ``.pt`` files, written
atomically so a crash never leaves a torn entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

DEFAULT_CAPACITY = 64  # voices kept in memory; each is ~130 KB with the v2 model


@dataclass
class Voice:
    """Conditioning for one voice (tensors on CPU)."""

    gpt_cond_latent: Any       # torch.Tensor (1, 32, model channels)
    speaker_embedding: Any     # torch.Tensor (1, 512, 1)
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. reference seconds, warnings


def latent_key(audio: np.ndarray, sr: int, settings: Mapping[str, Any], model_id: str) -> str:
    """Cache key: SHA-256 of the cleaned samples, their rate, the conditioning settings and the model."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(audio, dtype=np.float32).tobytes())
    h.update(json.dumps({"sr": int(sr), "settings": dict(settings), "model": model_id},
                        sort_keys=True, default=str).encode())
    return h.hexdigest()


class LatentCache:
    """Thread-safe two-level cache of :class:`Voice` entries: memory (LRU) then ``directory``.

    ``directory`` None keeps the cache in memory only.
    """

    def __init__(self, directory: str | os.PathLike | None, capacity: int = DEFAULT_CAPACITY):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.directory = Path(directory) if directory is not None else None
        self.capacity = capacity
        self._memory: OrderedDict[str, Voice] = OrderedDict()
        self._lock = threading.Lock()

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / key[:2] / f"{key}.pt"

    def get(self, key: str) -> tuple[Voice, str] | None:
        """``(voice, "hit-memory" | "hit-disk")`` or None on a miss."""
        with self._lock:
            voice = self._memory.get(key)
            if voice is not None:
                self._memory.move_to_end(key)
                return voice, "hit-memory"
        if self.directory is None:
            return None
        path = self._path(key)
        if not path.is_file():
            return None
        import torch

        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
            voice = Voice(data["gpt_cond_latent"], data["speaker_embedding"], dict(data.get("meta", {})))
        except Exception:  # noqa: BLE001 - an unreadable entry is a miss; it is rewritten on put
            return None
        self._remember(key, voice)
        return voice, "hit-disk"

    def put(self, key: str, voice: Voice) -> None:
        """Store ``voice`` in memory and, if there is a directory, on disk."""
        self._remember(key, voice)
        if self.directory is None:
            return
        import torch

        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        meta = json.loads(json.dumps(voice.meta, default=str))  # plain types: loadable weights_only
        torch.save({"gpt_cond_latent": voice.gpt_cond_latent.detach().cpu(),
                    "speaker_embedding": voice.speaker_embedding.detach().cpu(),
                    "meta": meta}, tmp)
        os.replace(tmp, path)

    def _remember(self, key: str, voice: Voice) -> None:
        with self._lock:
            self._memory[key] = voice
            self._memory.move_to_end(key)
            while len(self._memory) > self.capacity:
                self._memory.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._memory)


COND_SAMPLE_RATE = 22050  # Hz: XTTS conditions on 22.05 kHz audio (its speaker encoder resamples to 16 kHz)


def conditioning_settings(model: Any) -> dict[str, Any]:
    """The values a loaded coqui ``Xtts``'s latents depend on besides the audio (cache key part)."""
    cfg = model.config
    return {"gpt_cond_len": int(cfg.gpt_cond_len), "gpt_cond_chunk_len": int(cfg.gpt_cond_chunk_len),
            "max_ref_len": int(cfg.max_ref_len), "sr": COND_SAMPLE_RATE}


def condition(model: Any, audio: np.ndarray, sr: int, cache: LatentCache, model_id: str,
              progress: Any = None, meta: Mapping[str, Any] | None = None) -> tuple[Voice, str]:
    """The voice of cleaned reference ``audio`` (mono float32 at ``sr``): from ``cache`` when it
    has it, else computed with the model's own conditioning encoders and cached with ``meta``.
    Returns (voice, "hit-memory" | "hit-disk" | "miss")."""
    settings = conditioning_settings(model)
    key = latent_key(audio, sr, settings, model_id)
    found = cache.get(key)
    if found is not None:
        return found
    import torch

    if progress is not None:
        progress(0.05, desc=f"conditioning on the reference ({len(audio) / sr:.1f} s)")
    samples = torch.from_numpy(audio)[None]
    with torch.inference_mode():
        latent = model.get_gpt_cond_latents(samples, sr, length=settings["gpt_cond_len"],
                                            chunk_length=settings["gpt_cond_chunk_len"])
        embedding = model.get_speaker_embedding(samples, sr)
    voice = Voice(latent.cpu(), embedding.cpu(), dict(meta or {}))
    cache.put(key, voice)
    return voice, "miss"
