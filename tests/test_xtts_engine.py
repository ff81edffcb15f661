"""The xtts engine end to end on a tiny generated checkpoint (real coqui classes, random weights).

The checkpoint disables the stop token, so every text chunk yields exactly ``TOKENS`` GPT tokens:
audio lengths are then exact, which is what most assertions here rely on. Its audio is noise;
quality and speaker similarity need the real weights.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from components.engines import EngineConfig, Engines
from components.engines.base import (
    EngineUnavailable, LabError, SynthRequest, SynthResult,
)
from components.engines.xtts.settings import XttsSettings

LANGS = ("en", "ko", "ja", "zh-cn")
TEXTS = {
    "en": "Hello there, this is a short test.",
    "ko": "안녕하세요, 짧은 테스트입니다.",
    "ja": "こんにちは、これは短いテストです。",
    "zh-cn": "你好，这是一个简短的测试。",
}


def voice_like(seconds: float, sr: int, f0: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    wave = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    wave = wave * (0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t) ** 2) + 0.01 * rng.standard_normal(len(t))
    return (0.4 * wave / np.abs(wave).max()).astype(np.float32)


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    """Reference recordings: two voices (44.1 kHz stereo with silence around), and bad ones."""
    d = tmp_path_factory.mktemp("refs")
    sr = 44100
    out = {}
    for name, f0 in (("alice", 150.0), ("bob", 95.0)):
        v = voice_like(8.0, sr, f0)
        padded = np.concatenate([np.zeros(sr // 2), v, np.zeros(sr)])
        sf.write(d / f"{name}.wav", np.stack([padded, 0.8 * padded], axis=1), sr)
        out[name] = str(d / f"{name}.wav")
    sf.write(d / "four.wav", voice_like(4.0, 22050, 120.0), 22050)
    out["four"] = str(d / "four.wav")
    sf.write(d / "silent.wav", np.zeros(5 * sr, dtype=np.float32), sr)
    out["silent"] = str(d / "silent.wav")
    sf.write(d / "short.wav", voice_like(1.0, sr, 150.0), sr)
    out["short"] = str(d / "short.wav")
    (d / "text.wav").write_text("not audio\n" * 100)
    out["text"] = str(d / "text.wav")
    return out


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("latent-cache")


@pytest.fixture(scope="module")
def engine(xtts_dir, cache_dir):
    """Loaded through the registry, exactly as the lab and CLI load it."""
    return Engines(EngineConfig(xtts_dir=str(xtts_dir), cache_dir=str(cache_dir))).get("xtts")


def tokens_per_chunk(engine) -> int:
    return engine.model.gpt.max_gen_mel_tokens  # the tiny checkpoint always generates this many


def samples_for(engine, frames: int) -> int:
    """HiFiGAN output length for ``frames`` GPT latents (one per token at speed 1).

    Each latent is stretched to 1024 / 256 = 4 mel frames, the frame count is scaled by
    24000 / 22050 and floored (``F.interpolate``), and each frame becomes 256 samples.
    """
    args = engine.model.args
    mel = frames * args.gpt_code_stride_len // args.output_hop_length
    return int(mel * args.output_sample_rate / args.input_sample_rate) * args.output_hop_length


def test_loads_once_with_release_layout(engine, xtts_dir):
    from TTS.tts.models.xtts import Xtts

    assert isinstance(engine.model, Xtts)
    assert engine.device == "cpu"
    assert engine.sample_rate == 24000 == engine.model.args.output_sample_rate
    assert len(engine.languages) == 17 and "ja" in engine.languages and "zh-cn" in engine.languages
    assert engine.speakers() == ["Claribel Dervla", "Ana Florence"]
    assert engine.weights.path == xtts_dir.resolve() and engine.weights.source == "--xtts-dir"
    assert engine.versions()["xtts_model"] == engine.model_id
    assert engine.capabilities.cloning and engine.capabilities.streaming and engine.capabilities.seeded


@pytest.mark.slow
@pytest.mark.parametrize("lang", LANGS)
def test_builtin_speaker_in_each_language(engine, lang):
    result = engine.synthesize(SynthRequest(text=TEXTS[lang], lang=lang, speaker="Ana Florence", seed=1))
    n = tokens_per_chunk(engine)
    assert result.sample_rate == 24000
    assert result.audio.dtype == np.float32 and len(result.audio) == samples_for(engine, n)
    assert np.isfinite(result.audio).all() and np.abs(result.audio).max() > 0
    assert set(result.timings) == {"reference", "conditioning", "gpt", "vocoder"}
    assert result.timings["gpt"] > 0 and result.timings["vocoder"] > 0
    info = result.info
    assert info["latent_cache"] == "builtin" and info["gpt_tokens"] == n and info["text_chunks"] == 1
    assert (info["temperature"], info["top_k"], info["top_p"]) == (0.75, 50, 0.85)
    assert info["precision"] == "fp32" and info["text_splitting"] is True


@pytest.mark.slow
def test_speakers_differ_and_default_is_the_first(engine):
    req = lambda speaker: SynthRequest(text="Same words.", lang="en", speaker=speaker, seed=5)  # noqa: E731
    a = engine.synthesize(req("Claribel Dervla")).audio
    b = engine.synthesize(req("Ana Florence")).audio
    default = engine.synthesize(req(None)).audio
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(default, a)
    with pytest.raises(LabError, match="no speaker 'Nobody'.*Claribel Dervla"):
        engine.synthesize(req("Nobody"))


@pytest.mark.slow
def test_clone_in_each_language_conditions_once(engine, refs):
    results = {lang: engine.synthesize(SynthRequest(text=TEXTS[lang], lang=lang, reference=refs["alice"], seed=2))
               for lang in LANGS}
    caches = [results[lang].info["latent_cache"] for lang in LANGS]
    assert caches[0] in ("miss", "hit-memory")  # another test may have used alice first
    assert caches[1:] == ["hit-memory"] * 3
    for lang, r in results.items():
        assert len(r.audio) == samples_for(engine, tokens_per_chunk(engine)), lang
        assert r.info["reference_speech_seconds"] == pytest.approx(8.0, abs=0.2)
        assert "note" not in r.info  # 8 s: no short-reference warning
        assert r.timings["reference"] > 0


@pytest.mark.slow
def test_cached_latents_equal_fresh_ones_and_survive_a_restart(xtts_dir, refs, tmp_path):
    cfg = EngineConfig(xtts_dir=str(xtts_dir), cache_dir=str(tmp_path / "cache"))
    first = Engines(cfg).get("xtts")
    miss = first.prepare_reference(refs["bob"])
    hit = first.prepare_reference(refs["bob"])
    assert (miss.cache, hit.cache) == ("miss", "hit-memory")
    assert hit.voice is miss.voice
    assert hit.timings["conditioning"] < miss.timings["conditioning"]
    assert list((tmp_path / "cache" / "latents").rglob("*.pt"))

    restarted = Engines(cfg).get("xtts")  # a new process would build exactly this
    assert restarted is not first and restarted.model is not first.model
    from_disk = restarted.prepare_reference(refs["bob"])
    assert from_disk.cache == "hit-disk"
    for name in ("gpt_cond_latent", "speaker_embedding"):
        assert getattr(from_disk.voice, name).equal(getattr(miss.voice, name))
    assert restarted.prepare_reference(refs["bob"]).cache == "hit-memory"

    request = SynthRequest(text="Cached voice.", lang="en", reference=refs["bob"], seed=9)
    a, b = first.synthesize(request), restarted.synthesize(request)
    assert a.info["latent_cache"] == "hit-memory" and b.info["latent_cache"] == "hit-memory"
    np.testing.assert_array_equal(a.audio, b.audio)
    assert restarted.prepare_reference(refs["alice"]).cache == "miss"  # other audio, other key


@pytest.mark.slow
def test_short_reference_warns_and_bad_references_are_refused(engine, refs):
    r = engine.synthesize(SynthRequest(text="Short reference.", lang="en", reference=refs["four"], seed=1))
    assert "6 s or more" in r.info["note"] and r.info["reference_speech_seconds"] == pytest.approx(4.0, abs=0.15)
    with pytest.raises(LabError, match="silent"):
        engine.synthesize(SynthRequest(text="x", lang="en", reference=refs["silent"]))
    with pytest.raises(LabError, match="at least 2 s"):
        engine.prepare_reference(refs["short"])
    with pytest.raises(LabError, match="not an audio file"):
        engine.prepare_reference(refs["text"])
    with pytest.raises(LabError, match="not found"):
        engine.prepare_reference(refs["alice"] + ".missing")
    assert engine.synthesize(SynthRequest(text="Still fine.", lang="en")).seconds > 0  # still serving


@pytest.mark.slow
def test_same_seed_same_samples_other_seed_other_samples(engine):
    req = lambda seed: SynthRequest(text="Reproducible.", lang="en", seed=seed)  # noqa: E731
    a, b, c = (engine.synthesize(req(s)).audio for s in (11, 11, 12))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_matches_stock_coqui_inference(engine):
    """The engine (fp32, the lab's fast path) gives coqui's own ``Xtts.inference`` samples for the
    same seed within float tolerance: the same number of codes, so the same length, and the
    same audio."""
    import torch

    settings = XttsSettings(temperature=0.7, top_k=30, top_p=0.9, repetition_penalty=2.0)
    request = SynthRequest(text="Exactly as coqui.", lang="en", seed=4, settings=settings)
    fast = engine.synthesize(request)
    voice = engine.model.speaker_manager.speakers["Claribel Dervla"]
    torch.manual_seed(4)
    stock = engine.model.inference("Exactly as coqui.", "en", voice["gpt_cond_latent"], voice["speaker_embedding"],
                                   temperature=0.7, top_k=30, top_p=0.9, repetition_penalty=2.0)
    assert fast.audio.shape == np.asarray(stock["wav"]).shape
    np.testing.assert_allclose(fast.audio, stock["wav"], atol=1e-4 * np.abs(stock["wav"]).max())


@pytest.mark.slow
def test_long_text_is_split_not_asserted(engine):
    n = tokens_per_chunk(engine)
    text = " ".join(f"Sentence {i} is here to make this text far longer than one chunk." for i in range(8))
    r = engine.synthesize(SynthRequest(text=text, lang="en", seed=3))
    chunks = r.info["text_chunks"]
    assert len(text) > 250 and chunks == 3  # 8 sentences of ~68 characters, at most 250 per chunk
    assert r.info["gpt_tokens"] == chunks * n and len(r.audio) == chunks * samples_for(engine, n)

    ja = "今日はとてもいい天気ですね。散歩に行きましょう。" * 4  # 96 characters, limit 71
    assert engine.synthesize(SynthRequest(text=ja, lang="ja", seed=3)).info["text_chunks"] == 2

    # Splitting off: one chunk as asked, until the 400-token limit forces a split anyway.
    huge = "word " * 150  # ~450 text tokens with the tiny vocabulary
    off = XttsSettings(enable_text_splitting=False)
    r = engine.synthesize(SynthRequest(text=huge, lang="en", seed=3, settings=off))
    assert r.info["text_chunks"] == 2 and "token limit" in r.info["note"] and r.info["text_splitting"] is False


@pytest.mark.slow
def test_speed_rescales_the_latents(engine):
    n = tokens_per_chunk(engine)
    fast = engine.synthesize(SynthRequest(text="Speed.", lang="en", seed=1, speed=2.0))
    slow = engine.synthesize(SynthRequest(text="Speed.", lang="en", seed=1, speed=0.5))
    assert len(fast.audio) == samples_for(engine, n // 2)  # F.interpolate floors 29 / 2 -> 14 latents
    assert len(slow.audio) == samples_for(engine, n * 2)


@pytest.mark.slow
def test_stream_yields_chunks_that_add_up_to_the_whole(engine):
    from components.engines.xtts.settings import STREAM_CHUNK_TOKENS

    engine.stream_chunk_tokens = 8  # 29 tokens per sentence -> several chunks each
    try:
        request = SynthRequest(text="First sentence to stream. " * 12, lang="en", seed=7)
        items = list(engine.stream(request))
    finally:
        engine.stream_chunk_tokens = STREAM_CHUNK_TOKENS
    chunks, result = items[:-1], items[-1]
    assert isinstance(result, SynthResult) and all(isinstance(c, np.ndarray) for c in chunks)
    whole = engine.synthesize(request)
    text_chunks = whole.info["text_chunks"]
    assert text_chunks == 2 and len(chunks) >= 2 * text_chunks
    # The fast path vocodes each chunk with context on both sides: the streamed samples are the
    # whole synthesis's (same seed, same tokens), crossfades blend near-identical samples.
    assert sum(len(c) for c in chunks) == len(whole.audio) == len(result.audio)
    np.testing.assert_array_equal(np.concatenate(chunks), result.audio)
    assert result.info["gpt_tokens"] == whole.info["gpt_tokens"]
    np.testing.assert_allclose(result.audio, whole.audio, atol=1e-4 * np.abs(whole.audio).max())
    assert 0 < result.info["ttfa_seconds"] < result.timings["gpt"] + result.timings["vocoder"]
    assert result.info["stream_chunks"] == len(chunks)
    assert {"reference", "conditioning", "gpt", "vocoder"} <= set(result.timings)


def test_language_and_oom_errors_keep_the_engine_serving(engine, monkeypatch):
    import torch

    with pytest.raises(LabError, match="does not speak 'xx'"):
        engine.synthesize(SynthRequest(text="Hi.", lang="xx"))

    def out_of_memory(*args, **kwargs):  # stands in for a real CUDA OOM: there is no GPU here
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(engine, "_vocode_fast", out_of_memory)  # on the batched and the solo path
    with pytest.raises(LabError, match="GPU out of memory"):
        engine.synthesize(SynthRequest(text="Too big.", lang="en"))
    monkeypatch.undo()
    assert engine.synthesize(SynthRequest(text="Recovered.", lang="en")).seconds > 0


def test_precision_is_applied_and_reported(xtts_dir):
    from components.engines.xtts import fast

    assert Engines(EngineConfig(xtts_dir=str(xtts_dir), precision="bf16")).unavailable_reason("xtts") is None
    # Loading and running bf16/int8 is covered in tests/test_xtts_fast.py; here only the wiring.
    engine = Engines(EngineConfig(xtts_dir=str(xtts_dir), precision="int8")).get("xtts")
    assert fast.precision_of(engine.model) == "int8"
    assert engine.synthesize(SynthRequest(text="Int eight.", lang="en", seed=1)).info["precision"] == "int8"


def test_broken_release_folder_and_missing_gpu_are_clear(tmp_path, xtts_dir):
    import torch

    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "model.pth", "vocab.json", "speakers_xtts.pth"):
        (broken / name).write_text("garbage")
    with pytest.raises(EngineUnavailable, match=r"could not load XTTS v2 from .*broken.*complete"):
        Engines(EngineConfig(xtts_dir=str(broken), cache_dir=str(tmp_path / "c"))).get("xtts")
    if not torch.cuda.is_available():
        with pytest.raises(EngineUnavailable, match="no CUDA GPU.*--device cpu"):
            Engines(EngineConfig(xtts_dir=str(xtts_dir), device="cuda", cache_dir=str(tmp_path / "c"))).get("xtts")


@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="needs a CUDA GPU")
def test_cuda_device_clones_streams_and_reproduces(xtts_dir, refs, tmp_path):
    engine = Engines(EngineConfig(xtts_dir=str(xtts_dir), device="auto", cache_dir=str(tmp_path))).get("xtts")
    assert engine.device == "cuda" and next(engine.model.parameters()).is_cuda
    request = SynthRequest(text="On the GPU.", lang="ja", reference=refs["alice"], seed=3)
    a, b = engine.synthesize(request), engine.synthesize(request)
    np.testing.assert_array_equal(a.audio, b.audio)
    assert (a.info["latent_cache"], b.info["latent_cache"]) == ("miss", "hit-memory")
    items = list(engine.stream(request))
    assert sum(len(c) for c in items[:-1]) == len(a.audio)
