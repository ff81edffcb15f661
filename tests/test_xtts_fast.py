"""The fast XTTS path (components.engines.xtts.fast) against stock coqui, on the tiny generated checkpoint.

The tiny checkpoint is coqui's real architecture with a 2-layer GPT and random weights; its stop
token is disabled, so every sentence yields exactly ``gpt.max_gen_mel_tokens`` (29) codes. What
these tests cannot show: whether bf16/int8 *sound* as good as fp32 (that needs the real
weights); they only bound the numerical deviation.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import load_coqui_xtts

from components.engines.base import LabError
from components.engines.xtts.settings import XttsSettings

TEXT = "The quick brown fox jumps over the lazy dog."
SETTINGS = XttsSettings(temperature=0.7, top_k=30, top_p=0.9, repetition_penalty=2.0)


@pytest.fixture(scope="module")
def stock(xtts_dir):
    """The checkpoint loaded exactly as coqui documents it."""
    return load_coqui_xtts(xtts_dir)


@pytest.fixture(scope="module")
def model(xtts_dir):
    from components.engines.xtts import fast

    return fast.load_fast(xtts_dir)


@pytest.fixture(scope="module")
def voice(model):
    v = model.speaker_manager.speakers["Claribel Dervla"]
    return v["gpt_cond_latent"], v["speaker_embedding"]


def stock_inference(stock, voice, seed, **kwargs):
    """Stock ``Xtts.inference`` plus the codes and latents it used (recorded, not recomputed)."""
    import torch

    seen = {}
    generate, forward = stock.gpt.generate, stock.gpt.forward

    def record_generate(*a, **k):
        seen["codes"] = generate(*a, **k)
        return seen["codes"]

    def record_forward(*a, **k):
        seen["latents"] = forward(*a, **k)
        return seen["latents"]

    stock.gpt.generate, stock.gpt.forward = record_generate, record_forward
    try:
        torch.manual_seed(seed)
        out = stock.inference(TEXT, "en", voice[0], voice[1], temperature=SETTINGS.temperature,
                              top_k=SETTINGS.top_k, top_p=SETTINGS.top_p,
                              repetition_penalty=SETTINGS.repetition_penalty, **kwargs)
    finally:
        del stock.gpt.generate, stock.gpt.forward  # back to the class's methods
    return out["wav"], seen["codes"], seen["latents"]


def fast_synthesis(model, voice, seed, speed=1.0, max_new_tokens=None):
    import torch

    from components.engines.xtts import fast

    torch.manual_seed(seed)
    g = fast.generate(model, fast.encode(model, TEXT, "en"), voice[0], SETTINGS, max_new_tokens=max_new_tokens)
    return fast.vocode(model, g.latents, voice[1], speed), g


def test_load_fast_gives_stock_weights(stock, model):
    """Same tensors as coqui's loader; HiFiGAN's weight norm is folded into the weights it computes."""
    import torch

    mine, theirs = model.state_dict(), stock.state_dict()
    unfolded = {k for k in theirs if ".parametrizations." in k}
    assert unfolded and set(mine) == (set(theirs) - unfolded) | {
        k.replace(".parametrizations.weight.original0", ".weight") for k in unfolded if k.endswith("original0")}
    for name, tensor in theirs.items():
        if name not in unfolded:
            assert torch.equal(mine[name], tensor), name
    mods = dict(model.hifigan_decoder.named_modules())
    for name, module in stock.hifigan_decoder.named_modules():
        if hasattr(module, "parametrizations"):
            assert torch.equal(mods[name].weight, module.weight), name
    assert model.tokenizer.encode("hello", lang="en") == stock.tokenizer.encode("hello", lang="en")
    assert list(model.speaker_manager.speakers) == list(stock.speaker_manager.speakers)


@pytest.mark.parametrize("seed", [0, 5])
def test_fp32_equals_stock_inference(stock, model, voice, seed):
    """Same seed: the same codes, stock's second-forward latents, and the same audio."""
    import torch

    wav, codes, latents = stock_inference(stock, voice, seed)
    audio, g = fast_synthesis(model, voice, seed)
    assert torch.equal(g.tokens, codes)
    assert g.latents.shape == latents.shape
    torch.testing.assert_close(g.latents, latents, rtol=1e-4, atol=1e-4)
    assert audio.dtype == np.float32 and audio.shape == wav.shape
    np.testing.assert_allclose(audio, wav, rtol=0, atol=1e-4 * np.abs(wav).max())
    assert set(g.timings) == {"prefill", "decode"} and all(v > 0 for v in g.timings.values())


@pytest.mark.slow
def test_fp32_equals_stock_at_other_speeds_and_pinned_lengths(stock, model, voice):
    import torch

    from components.engines.xtts import fast

    wav, codes, _ = stock_inference(stock, voice, 2, speed=1.5, min_new_tokens=12, max_new_tokens=12)
    torch.manual_seed(2)
    g = fast.generate(model, fast.encode(model, TEXT, "en"), voice[0], SETTINGS,
                      min_new_tokens=12, max_new_tokens=12)
    assert torch.equal(g.tokens, codes) and g.tokens.shape == (1, 12)
    np.testing.assert_allclose(fast.vocode(model, g.latents, voice[1], 1.5), wav, atol=1e-5)


@pytest.mark.slow
def test_speed_sweep_rows_equal_separate_syntheses(model, voice):
    """One GPT pass vocoded at N speeds == N syntheses with the same seed."""
    import torch

    from components.engines.xtts import fast

    speeds = [0.5, 1.7]
    torch.manual_seed(9)
    g = fast.generate(model, fast.encode(model, TEXT, "en"), voice[0], SETTINGS, max_new_tokens=12)
    swept = fast.vocode_speeds(model, g.latents, voice[1], speeds)
    assert len(swept) == 2 and len(swept[0]) > 3 * len(swept[1])
    for speed, row in zip(speeds, swept):
        separate, _ = fast_synthesis(model, voice, 9, speed, max_new_tokens=12)
        np.testing.assert_array_equal(row, separate)


@pytest.mark.slow
@pytest.mark.parametrize("speed", [1.0, 1.3])
def test_stream_equals_whole_vocoding_with_seamless_joins(model, voice, speed):
    """Chunks vocoded with context reproduce the whole-utterance audio, so joins are invisible."""
    import torch

    from components.engines.xtts import fast

    whole, g = fast_synthesis(model, voice, 3, speed)
    torch.manual_seed(3)
    stats: dict = {}
    chunks = list(fast.stream(model, fast.encode(model, TEXT, "en"), voice[0], voice[1], SETTINGS,
                              speed=speed, first_chunk_tokens=3, chunk_tokens=5, stats=stats))
    assert len(chunks) >= 4, [len(c) for c in chunks]  # several joins to check
    audio = np.concatenate(chunks)
    assert audio.shape == whole.shape and audio.dtype == np.float32
    peak = np.abs(whole).max()
    np.testing.assert_allclose(audio, whole, atol=1e-4 * peak)
    # No discontinuity at any join: the step across it is an ordinary sample-to-sample step.
    steps = np.abs(np.diff(whole))
    for end in np.cumsum([len(c) for c in chunks])[:-1]:
        assert abs(audio[end] - audio[end - 1]) <= steps.max() + 1e-6
        assert abs(audio[end] - audio[end - 1]) == pytest.approx(float(steps[end - 1]), abs=float(1e-4 * peak))
    assert stats["gpt_tokens"] == g.tokens.shape[1] and stats["chunks"] == len(chunks)
    assert 0 < stats["ttfa_seconds"] and set(stats["timings"]) == {"gpt", "vocoder"}


@pytest.mark.slow
def test_stream_vocodes_linearly_not_quadratically(model, voice, monkeypatch):
    """Each chunk vocodes its own frames plus bounded context, not everything so far."""
    import torch

    from components.engines.xtts import fast

    decoder = model.hifigan_decoder.waveform_decoder
    sizes = []
    real = decoder.forward

    def measure(z, g=None):
        sizes.append(z.shape[-1])
        return real(z, g=g)

    monkeypatch.setattr(decoder, "forward", measure)
    torch.manual_seed(1)
    chunks = list(fast.stream(model, fast.encode(model, TEXT, "en"), voice[0], voice[1], SETTINGS,
                              first_chunk_tokens=2, chunk_tokens=4))
    total_frames = len(np.concatenate(chunks)) // fast.HOP_SAMPLES
    chunk_frames = 4 * fast.frames_per_token(model)
    bound = chunk_frames + 2 * fast.CONTEXT_FRAMES + 8  # + rounding and the crossfade
    assert len(sizes) == len(chunks) >= 5
    assert max(sizes) <= bound < total_frames


@pytest.mark.parametrize("precision", ["bf16", "int8", "int4"])
def test_reduced_precisions_stay_close_to_fp32(model, voice, precision, xtts_dir):
    """bf16/int8/int4 change the numbers a little: bounded latent error on the same codes."""
    import torch

    from components.engines.xtts import fast

    text = fast.encode(model, TEXT, "en")
    torch.manual_seed(4)
    ref = fast.generate(model, text, voice[0], SETTINGS)
    low = fast.load_fast(xtts_dir, precision=precision)
    assert fast.precision_of(low) == precision and fast.precision_of(model) == "fp32"
    forced = fast.teacher_forced_latents(low, text, voice[0], ref.tokens)
    rel = (forced - ref.latents).norm() / ref.latents.norm()
    assert 0 < rel < 0.05, float(rel)
    torch.manual_seed(4)
    g = fast.generate(low, text, voice[0], SETTINGS)
    assert g.tokens.shape == ref.tokens.shape and int(g.tokens.max()) < 1024
    audio = fast.vocode(low, g.latents, voice[1])
    assert audio.dtype == np.float32 and audio.shape == fast.vocode(model, ref.latents, voice[1]).shape
    assert np.isfinite(audio).all()


def test_teacher_forcing_reproduces_generation_latents(model, voice):
    import torch

    from components.engines.xtts import fast

    text = fast.encode(model, TEXT, "en")
    torch.manual_seed(6)
    g = fast.generate(model, text, voice[0], SETTINGS)
    torch.testing.assert_close(fast.teacher_forced_latents(model, text, voice[0], g.tokens), g.latents,
                               rtol=1e-4, atol=1e-4)


def test_bad_arguments_are_lab_errors(model, voice):
    from components.engines.xtts import fast

    with pytest.raises(LabError, match="precision must be one of"):
        fast.apply_precision(model, "fp8")
    with pytest.raises(LabError, match="chunk sizes"):
        fast.stream(model, fast.encode(model, TEXT, "en"), voice[0], voice[1], chunk_tokens=0)
    with pytest.raises(LabError, match="max_new_tokens"):
        fast.generate(model, fast.encode(model, TEXT, "en"), voice[0], max_new_tokens=0)
    with pytest.raises(LabError, match="has no config.json"):
        fast.load_fast("/nonexistent-xtts-folder")


# -- the xtts engine on the fast path ----------------------------------------------------------

@pytest.fixture(scope="module")
def engine(xtts_dir, tmp_path_factory):
    from components.engines import EngineConfig, Engines

    config = EngineConfig(xtts_dir=str(xtts_dir), cache_dir=str(tmp_path_factory.mktemp("latents")))
    return Engines(config).get("xtts")


@pytest.mark.slow
def test_engine_speed_sweep_is_one_gpt_pass_equal_to_separate_syntheses(engine, monkeypatch):
    from dataclasses import replace

    from components.engines.base import SynthRequest
    from components.engines.xtts import fast

    calls = []
    real = fast.generate
    monkeypatch.setattr(fast, "generate", lambda *a, **k: calls.append(1) or real(*a, **k))
    real_submit = fast.BatchDecoder.submit  # a GPT pass in the shared batch (the engine's default)
    monkeypatch.setattr(fast.BatchDecoder, "submit", lambda *a, **k: calls.append(1) or real_submit(*a, **k))
    request = SynthRequest(text="One pass, two speeds.", lang="en", seed=5)
    rows = engine.synthesize_speeds(request, [0.8, 1.6])
    assert len(calls) == rows[0].info["text_chunks"] == 1  # one GPT pass for both rows
    for speed, row in zip((0.8, 1.6), rows):
        separate = engine.synthesize(replace(request, speed=speed))
        np.testing.assert_array_equal(row.audio, separate.audio)
        assert row.info["speed"] == speed and row.info["precision"] == "fp32" and row.info["gpt_shared"]
        assert row.timings["gpt"] > 0 and row.timings["vocoder"] > 0
    with pytest.raises(LabError, match="speed must be between"):
        engine.synthesize_speeds(request, [1.0, 9.0])


def mapping_rss_kb(path) -> int:
    """Resident kB of this process's mappings of ``path`` (from /proc/self/smaps)."""
    from pathlib import Path

    target, total, inside = str(Path(path).resolve()), 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
            inside = len(head) == 6 and head[5] == target
        elif inside and line.startswith("Rss:"):
            total += int(head[1])
    return total


def test_release_mapped_pages_frees_memory_and_keeps_values(tmp_path):
    """Packing drops the memory-mapped originals' pages (no doubled memory); they stay readable."""
    import torch

    from components.engines.xtts import fast

    path = tmp_path / "weights.pth"
    torch.save({"w": torch.arange(8 * 2**20, dtype=torch.float32), "b": torch.ones(10)}, path)  # 32 MB
    state = torch.load(path, mmap=True, weights_only=True)
    total = float(state["w"].sum())  # reads every page
    assert mapping_rss_kb(path) > 30_000
    released = fast.release_mapped_pages([state["w"]], path)
    assert released > 31 * 2**20 and mapping_rss_kb(path) < 1_000
    assert float(state["w"].sum()) == total and float(state["b"].sum()) == 10.0  # faulted back in
    assert fast.release_mapped_pages([torch.ones(2**20)], path) == 0  # not in the file: left alone
