"""HiFiGAN over many rows at once (components.engines.xtts.vocoder.vocode_batch) on the tiny checkpoint.

The tiny checkpoint's HiFiGAN is the full-size v2 architecture with random weights: these tests
show that padded, masked rows give the audio each row gets alone, and bound the bf16 vocoder's
numerical deviation from fp32 on random weights; how bf16 sounds needs the real weights.
"""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def model(xtts_dir):
    from components.engines.xtts import fast

    return fast.load_fast(xtts_dir)


@pytest.fixture(scope="module")
def rows(model):
    """Four rows of different lengths, speeds and voices (random latents: HiFiGAN sees them as
    it sees GPT latents)."""
    import torch

    dim = model.hifigan_decoder.waveform_decoder.conv_pre.in_channels
    gen = torch.Generator().manual_seed(0)
    latents = [torch.randn(1, n, dim, generator=gen) for n in (20, 29, 7, 29)]
    voices = [v["speaker_embedding"] for v in model.speaker_manager.speakers.values()]
    embeddings = [voices[i % len(voices)] for i in range(len(latents))]
    return latents, embeddings, [1.0, 1.3, 0.8, 1.0]


def snr_db(ref: np.ndarray, other: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref ** 2) / max(np.sum((ref - other) ** 2), 1e-30)))


@pytest.mark.slow
@pytest.mark.parametrize("rows_per_call", [4, 2])
def test_padded_rows_equal_solo_vocoding_in_fp32(model, rows, rows_per_call):
    from components.engines.xtts import fast

    fast.apply_precision(model, "fp32")
    latents, embeddings, speeds = rows
    together = fast.vocode_batch(model, latents, embeddings, speeds, rows_per_call=rows_per_call)
    for z, g, s, got in zip(latents, embeddings, speeds, together):
        alone = fast.vocode(model, z, g, s)
        assert got.dtype == np.float32 and got.shape == alone.shape  # trimmed to the row's own length
        # Measured ~3e-7 (SNR > 115 dB): only the float rounding of batched kernels differs.
        np.testing.assert_allclose(got, alone, atol=1e-5 * np.abs(alone).max())


@pytest.mark.slow
def test_bf16_vocoder_stays_within_its_stated_bound(model, rows):
    """bf16 HiFiGAN (the bf16/int8/int4 modes), alone or batched, against fp32 alone: at least
    30 dB SNR on every row (measured 41-56 dB on these random weights; docs/xtts-performance.md)."""
    from components.engines.xtts import fast

    latents, embeddings, speeds = rows
    fast.apply_precision(model, "fp32")
    exact = [fast.vocode(model, z, g, s) for z, g, s in zip(latents, embeddings, speeds)]
    fast.apply_precision(model, "bf16")
    try:
        alone = [fast.vocode(model, z, g, s) for z, g, s in zip(latents, embeddings, speeds)]
        together = fast.vocode_batch(model, latents, embeddings, speeds, rows_per_call=len(latents))
    finally:
        fast.apply_precision(model, "fp32")
    for ref, a, b in zip(exact, alone, together):
        assert a.shape == b.shape == ref.shape
        assert snr_db(ref, a) > 30 and snr_db(ref, b) > 30


def test_bad_arguments_are_refused(model, rows):
    from components.engines.xtts import fast

    latents, embeddings, _speeds = rows
    with pytest.raises(ValueError, match="as many speaker embeddings"):
        fast.vocode_batch(model, latents, embeddings[:1])
    assert fast.vocode_batch(model, [], []) == []
    assert fast.rows_per_vocoder_call("cpu") == 1 and fast.rows_per_vocoder_call("cuda") > 1


@pytest.mark.slow
def test_vocode_rows_groups_finished_rows_and_keeps_each_rows_audio(model, monkeypatch):
    """``vocode_rows`` as a GPU runs it (3 rows per call, forced here on the CPU): rows of two text
    chunks each come back whole, in the order they finished, with the audio ``vocode`` gives
    each chunk alone, and the group's vocoder time shared out."""
    import torch

    from components.engines.xtts.settings import XttsSettings as GenerationSettings
    from components.engines.xtts import fast, vocoder

    fast.apply_precision(model, "fp32")
    voices = list(model.speaker_manager.speakers.values())
    texts = ("one two.", "three four five six.", "seven.", "eight nine ten.")
    items = [fast.BatchItem([fast.encode(model, t, "en"), fast.encode(model, t[::-1], "en")],
                            voices[i % 2]["gpt_cond_latent"], GenerationSettings(),
                            torch.Generator().manual_seed(i), max_new_tokens=5 + 3 * i)
             for i, t in enumerate(texts)]
    rows = list(fast.generate_batch(model, items, batch_size=4))
    embeddings = [voices[i % 2]["speaker_embedding"] for i in range(len(items))]
    speeds = [1.0, 1.25, 0.9, 1.0]
    monkeypatch.setitem(vocoder.ROWS_PER_CALL, "cpu", 3)
    out = list(fast.vocode_rows(model, iter(rows), embeddings, speeds))
    assert [row.index for row, _, _ in out] == [row.index for row in rows]
    for row, audio, seconds in out:
        alone = np.concatenate([fast.vocode(model, g.latents, embeddings[row.index], speeds[row.index])
                                for g in row.generations])
        assert seconds > 0 and audio.shape == alone.shape
        np.testing.assert_allclose(audio, alone, atol=1e-5 * np.abs(alone).max())
