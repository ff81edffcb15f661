"""Batched XTTS decoding is per-row exact: row i of a batch equals running it alone (same seed).

Runs on the tiny generated checkpoint (coqui's real classes, 2-layer GPT, random weights). Its
stop code is disabled, so to have rows that stop early these tests give the stop code a bias
that makes it likely (``stopping`` below): seeds then stop at different lengths, as real speech
does. What this cannot show: where real weights stop, or how the audio sounds.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from components.engines.base import LabError, SynthRequest
from components.engines.xtts.settings import XttsSettings

SETTINGS = XttsSettings(temperature=0.7, top_k=30, top_p=0.9, repetition_penalty=2.0)
STOP_BIAS = 1.0  # with it, seeds 1 and 6 stop after 12 and 8 of the 29 codes, the others run on


def stopping(model, bias=STOP_BIAS):
    """Give ``model``'s stop code a bias so that some seeds stop early (the fixture disables it)."""
    from components.engines.xtts import fast

    fg = fast.apply_precision(model, "fp32")
    fg.mel_head[1][fg.stop_audio] = bias
    return model


@pytest.fixture(scope="module")
def model(xtts_dir):
    from components.engines.xtts import fast

    return stopping(fast.load_fast(xtts_dir))


# (text, language, voice index, seed, settings, max_new_tokens): lengths, languages, voices,
# seeds, sampling settings and length limits all differ from row to row.
ROWS = [
    ("The quick brown fox jumps over the lazy dog near the river.", "en", 0, 0, SETTINGS, None),
    ("hola", "es", 1, 1, SETTINGS, None),                       # stops early (12 codes)
    ("Bonjour tout le monde, ça va bien aujourd'hui?", "fr", 0, 6, SETTINGS, None),  # stops early
    ("こんにちは、これは短いテストです。", "ja", 1, 3,
     XttsSettings(temperature=1.1, top_k=5, top_p=0.5, repetition_penalty=1.0), None),
    ("Der schnelle braune Fuchs.", "de", 0, 4, SETTINGS, 9),    # a row-specific length limit
]


def solo(model, text, lang, cond, seed, settings, max_new_tokens):
    import torch

    from components.engines.xtts import fast

    torch.manual_seed(seed)  # what the engine does before a single synthesis
    return fast.generate(model, fast.encode(model, text, lang), cond, settings, max_new_tokens=max_new_tokens)


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", [2, 5])
def test_batch_rows_equal_solo_runs(model, batch_size):
    """Each row: the same codes and (float tolerance) the same latents as alone, whatever the batch
    size, including rows that stop early and rows that join when another leaves."""
    import torch

    from components.engines.xtts import fast

    voices = [(v["gpt_cond_latent"], v["speaker_embedding"]) for v in model.speaker_manager.speakers.values()]
    items, alone = [], []
    for text, lang, v, seed, settings, limit in ROWS:
        alone.append(solo(model, text, lang, voices[v][0], seed, settings, limit))
        items.append(fast.BatchItem([fast.encode(model, text, lang)], voices[v][0], settings,
                                    torch.Generator().manual_seed(seed), max_new_tokens=limit))
    lengths = [g.tokens.shape[1] for g in alone]
    assert min(lengths) < 29 and max(lengths) == 29 and len(set(lengths)) >= 3, lengths
    order = []
    for done in fast.generate_batch(model, items, batch_size=batch_size):
        order.append(done.index)
        (g,) = done.generations
        ref = alone[done.index]
        assert torch.equal(g.tokens, ref.tokens), done.index
        torch.testing.assert_close(g.latents, ref.latents, rtol=1e-5, atol=1e-5)
        assert 1 <= done.rows_seen <= batch_size and done.seconds > 0
        audio = fast.vocode(model, g.latents, voices[ROWS[done.index][2]][1])
        expected = fast.vocode(model, ref.latents, voices[ROWS[done.index][2]][1])
        np.testing.assert_allclose(audio, expected, rtol=0, atol=1e-4 * np.abs(expected).max())
    assert sorted(order) == list(range(len(ROWS)))
    assert order != list(range(len(ROWS)))  # short rows finished first: rows leave the batch as they stop


@pytest.mark.slow
def test_batch_of_one_row_with_several_chunks(model):
    """A row's chunks decode one after another in its slot, its generator running on, as alone."""
    import torch

    from components.engines.xtts import fast

    cond = next(iter(model.speaker_manager.speakers.values()))["gpt_cond_latent"]
    chunks = [fast.encode(model, t, "en") for t in ("First part here.", "and the second part.")]
    torch.manual_seed(1)
    alone = [fast.generate(model, c, cond, SETTINGS) for c in chunks]
    other = fast.BatchItem([fast.encode(model, "Another row beside it.", "en")], cond, SETTINGS,
                           torch.Generator().manual_seed(2))
    done = {d.index: d for d in fast.generate_batch(
        model, [fast.BatchItem(chunks, cond, SETTINGS, torch.Generator().manual_seed(1)), other], 2)}
    assert [g.tokens.tolist() for g in done[0].generations] == [g.tokens.tolist() for g in alone]


def test_bad_batch_arguments_are_lab_errors(model):
    from components.engines.xtts import fast

    with pytest.raises(LabError, match="batch size"):
        fast.generate_batch(model, [], batch_size=0)
    cond = next(iter(model.speaker_manager.speakers.values()))["gpt_cond_latent"]
    with pytest.raises(LabError, match="max_new_tokens"):
        fast.generate_batch(model, [fast.BatchItem([fast.encode(model, "hi", "en")], cond, max_new_tokens=0)])


# -- the engine and the experiments' common path ---------------------------------------------------

@pytest.fixture(scope="module")
def engine(xtts_dir, tmp_path_factory):
    from components.engines import EngineConfig, Engines

    config = EngineConfig(xtts_dir=str(xtts_dir), cache_dir=str(tmp_path_factory.mktemp("latents")), batch=3)
    e = Engines(config).get("xtts")
    stopping(e.model)
    return e


@pytest.mark.slow
def test_engine_batch_equals_single_syntheses(engine, reference_wav):
    """synthesize_batch: every request (languages, a cloned voice and built-in ones, seeds,
    speeds, a text split in two chunks) equals its own synthesize() call."""
    requests = [
        SynthRequest("Hello there, this is a short test.", "en", seed=6, settings=SETTINGS),
        SynthRequest("안녕하세요, 짧은 테스트입니다.", "ko", speaker="Ana Florence", seed=1, speed=1.3,
                     settings=SETTINGS),
        SynthRequest("你好，这是一个简短的测试。", "zh-cn", reference=str(reference_wav), seed=2, settings=SETTINGS),
        SynthRequest("One sentence here, long enough that the lab has to split this text in two chunks. " * 3
                     + "And then a second sentence follows it.", "en", seed=4,
                     settings=replace(SETTINGS, top_k=10)),
        SynthRequest("hola", "es", seed=1, settings=SETTINGS),
    ]
    batch = engine.synthesize_batch(requests)
    assert len(batch) == len(requests)
    chunks = [r.info["text_chunks"] for r in batch]
    tokens = [r.info["gpt_tokens"] for r in batch]
    assert max(chunks) >= 2 and min(tokens) < 29, (chunks, tokens)
    assert max(r.info["batch_rows"] for r in batch) == 3
    for request, got in zip(requests, batch):
        alone = engine.synthesize(request)
        assert got.info["gpt_tokens"] == alone.info["gpt_tokens"]
        assert got.audio.shape == alone.audio.shape and got.sample_rate == alone.sample_rate
        np.testing.assert_allclose(got.audio, alone.audio, rtol=0, atol=1e-4 * np.abs(alone.audio).max())
        assert got.info["batch_size"] == 3 and 1 <= got.info["batch_rows"] <= 3
        assert set(got.timings) >= {"gpt", "vocoder"} and got.timings["gpt"] > 0


@pytest.mark.slow
def test_synthesize_many_yields_rows_as_they_finish(engine):
    from experiments.common import synthesize_many

    requests = [SynthRequest(t, "en", seed=s, settings=SETTINGS)
                for t, s in (("A longer row that runs on.", 0), ("short", 6), ("row three", 1))]
    out = list(synthesize_many(engine, requests, batch_size=3))
    assert sorted(i for i, _, _ in out) == [0, 1, 2]
    assert [i for i, _, _ in out] != [0, 1, 2]  # the early stoppers came first
    for i, result, seconds in out:
        assert seconds == pytest.approx(sum(result.timings.values()))
        assert result.info["batch_size"] == 3
    one_by_one = list(synthesize_many(engine, requests, batch_size=1))
    # One at a time: each request decoded alone (through the engine's shared batch, with nobody beside it).
    assert [i for i, _, _ in one_by_one] == [0, 1, 2] and one_by_one[0][1].info.get("batch_rows", 1) == 1
    for (i, a, _), (j, b, _) in zip(sorted(out, key=lambda x: x[0]), one_by_one):
        np.testing.assert_allclose(a.audio, b.audio, rtol=0, atol=1e-4 * np.abs(b.audio).max())


def test_synthesize_many_falls_back_to_one_at_a_time():
    """Engines without batching (espeak) run each request alone, in order."""
    from components.engines.espeak import EspeakEngine
    from experiments.common import synthesize_many

    engine = EspeakEngine()
    assert not engine.capabilities.batching
    out = list(synthesize_many(engine, [SynthRequest("one"), SynthRequest("two words")], batch_size=8))
    assert [i for i, _, _ in out] == [0, 1] and all(s > 0 and len(r.audio) for _, r, s in out)
