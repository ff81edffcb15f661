"""Speaker-latent cache: keys, LRU eviction, disk round trip (components/engines/xtts/latents.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from components.engines.xtts.latents import LatentCache, Voice, latent_key

SETTINGS = {"gpt_cond_len": 30, "gpt_cond_chunk_len": 4, "max_ref_len": 30}


def voice(seed: int) -> Voice:
    g = torch.Generator().manual_seed(seed)
    return Voice(torch.randn(1, 32, 64, generator=g), torch.randn(1, 512, 1, generator=g), {"seconds": 8.0})


def test_key_depends_on_audio_rate_settings_and_model():
    audio = np.random.default_rng(0).standard_normal(22050).astype(np.float32)
    key = latent_key(audio, 22050, SETTINGS, "model-a")
    assert key == latent_key(audio.copy(), 22050, dict(SETTINGS), "model-a")
    changed = audio.copy()
    changed[5] += 1e-3
    others = {
        latent_key(changed, 22050, SETTINGS, "model-a"),
        latent_key(audio, 24000, SETTINGS, "model-a"),
        latent_key(audio, 22050, {**SETTINGS, "gpt_cond_len": 6}, "model-a"),
        latent_key(audio, 22050, SETTINGS, "model-b"),
    }
    assert key not in others and len(others) == 4


def test_memory_is_least_recently_used():
    cache = LatentCache(None, capacity=2)
    cache.put("a", voice(1))
    cache.put("b", voice(2))
    assert cache.get("a")[1] == "hit-memory"  # a is now the most recent
    cache.put("c", voice(3))                  # evicts b
    assert cache.get("b") is None
    assert cache.get("a") is not None and cache.get("c") is not None
    assert len(cache) == 2
    with pytest.raises(ValueError):
        LatentCache(None, capacity=0)


def test_disk_round_trip_and_corrupt_entries_are_misses(tmp_path):
    stored = voice(4)
    LatentCache(tmp_path).put("ab" + "0" * 62, stored)
    fresh = LatentCache(tmp_path)          # as after a restart
    found, where = fresh.get("ab" + "0" * 62)
    assert where == "hit-disk"
    assert found.gpt_cond_latent.equal(stored.gpt_cond_latent)
    assert found.speaker_embedding.equal(stored.speaker_embedding)
    assert found.meta == {"seconds": 8.0}
    assert fresh.get("ab" + "0" * 62)[1] == "hit-memory"
    assert not list(tmp_path.rglob("*.tmp"))  # written atomically, nothing left behind

    broken = tmp_path / "cd" / ("cd" + "1" * 62 + ".pt")
    broken.parent.mkdir()
    broken.write_bytes(b"truncated")
    assert LatentCache(tmp_path).get("cd" + "1" * 62) is None
