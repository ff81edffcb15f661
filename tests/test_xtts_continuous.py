"""Continuous batching: XTTS requests that arrive while a batch decodes join it at the next step,
each streams its own audio, and none hears another's (fp32: each equals its solo run).

Runs on the tiny generated checkpoint (coqui's real classes, 2-layer GPT, random weights) with
the stop code biased as in test_xtts_batch, so rows stop at different lengths. Rows are made to
overlap without timing anything: ``Rendezvous`` holds the decoder's step (the real one, only
delayed) until the expected rows have been submitted, so the first row is mid-decode when the
others join. What this cannot show: how the audio sounds, or the speed-up on the real model.
"""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest

from components.engines.base import LabError, SynthRequest
from components.engines.xtts.settings import XttsSettings
from test_xtts_batch import SETTINGS, solo, stopping


class Rendezvous:
    """Holds the batch decoder before its ``hold_at``-th step until ``rows`` rows have been
    submitted (the steps and submissions themselves are the real ones)."""

    def __init__(self, monkeypatch, rows: int, hold_at: int = 3):
        from components.engines.xtts import fast

        self.rows, self.hold_at = rows, hold_at
        self.cond = threading.Condition()
        self.submitted = self.steps = 0
        real_submit, real_step = fast.BatchDecoder.submit, fast.FastGPT.step

        def submit(decoder, item, *args, **kwargs):
            handle = real_submit(decoder, item, *args, **kwargs)
            with self.cond:
                self.submitted += 1
                self.cond.notify_all()
            return handle

        def step(fg, *args, **kwargs):
            self.steps += 1
            if self.steps == self.hold_at:
                with self.cond:
                    if not self.cond.wait_for(lambda: self.submitted >= self.rows, timeout=120):
                        raise RuntimeError(f"only {self.submitted} of {self.rows} rows were submitted")
            return real_step(fg, *args, **kwargs)

        monkeypatch.setattr(fast.BatchDecoder, "submit", submit)
        monkeypatch.setattr(fast.FastGPT, "step", step)


# -- the decoder ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model(xtts_dir):
    from components.engines.xtts import fast

    return stopping(fast.load_fast(xtts_dir))


def voices(model):
    return [(v["gpt_cond_latent"], v["speaker_embedding"]) for v in model.speaker_manager.speakers.values()]


def item_and_solo(model, text, lang, voice, seed, settings=SETTINGS):
    import torch

    from components.engines.xtts import fast

    cond = voices(model)[voice][0]
    item = fast.BatchItem([fast.encode(model, text, lang)], cond, settings, torch.Generator().manual_seed(seed))
    return item, solo(model, text, lang, cond, seed, settings, None)


@pytest.mark.slow
def test_rows_that_join_mid_decode_equal_solo_runs(model, monkeypatch):
    import torch

    from components.engines.xtts import fast

    rows = [("The first row starts alone and decodes for a while.", "en", 0, 0),
            ("hola", "es", 1, 1),                                       # stops early
            ("Bonjour tout le monde.", "fr", 0, 6)]
    pairs = [item_and_solo(model, *row) for row in rows]
    meet = Rendezvous(monkeypatch, rows=3)
    decoder = fast.BatchDecoder(model, slots=4)
    first = decoder.submit(pairs[0][0])
    with meet.cond:  # the first row is decoding alone, held before its third step
        assert meet.cond.wait_for(lambda: meet.steps >= meet.hold_at, timeout=60)
    handles = [first] + [decoder.submit(item) for item, _ in pairs[1:]]
    streamed = list(first.tokens())  # codes and latents as they came, then the result
    for handle, (_, alone) in zip(handles, pairs):
        done = handle.result()
        (g,) = done.generations
        assert torch.equal(g.tokens, alone.tokens)
        torch.testing.assert_close(g.latents, alone.latents, rtol=1e-5, atol=1e-5)
        assert done.rows_seen == 3
    assert [c for c, _ in streamed] == pairs[0][1].tokens[0].tolist()
    assert decoder.busiest == 3
    # Nothing is left running: the worker ends with the last row, and a new row starts it again.
    item, alone = item_and_solo(model, "again", "en", 1, 3)
    assert torch.equal(decoder.submit(item).result().generations[0].tokens, alone.tokens)


def test_a_reader_of_whole_chunks_gets_no_token_events(model):
    """``stream_tokens=False`` (requests that are not streamed): ``tokens()`` yields nothing and
    returns at each chunk's end, and the result is the same row as a streamed one."""
    import torch

    from components.engines.xtts import fast

    item, alone = item_and_solo(model, "Whole chunks only.", "en", 0, 5)
    handle = fast.BatchDecoder(model, slots=2).submit(item, stream_tokens=False)
    assert list(handle.tokens()) == []
    assert len(handle.generations) == 1 and torch.equal(handle.generations[0].tokens, alone.tokens)
    assert torch.equal(handle.result().generations[0].tokens, alone.tokens)


def test_a_long_row_joining_grows_the_cache_under_a_decoding_row(model, monkeypatch):
    """The cache is sized for the rows it has; a longer row joining mid-decode makes it grow, and
    the row already decoding carries on from its copied keys/values exactly as alone."""
    import torch

    from components.engines.xtts import fast

    short = item_and_solo(model, "hola", "es", 1, 1)
    long = item_and_solo(model, "A much longer sentence joins later, one that needs far more room in the "
                                "cache than the short row that started the batch.", "en", 0, 0)
    Rendezvous(monkeypatch, rows=2)
    decoder = fast.BatchDecoder(model, slots=2)
    first = decoder.submit(short[0])
    second = decoder.submit(long[0])
    for handle, (_, alone) in ((first, short), (second, long)):
        done = handle.result()
        assert torch.equal(done.generations[0].tokens, alone.tokens) and done.rows_seen == 2
        torch.testing.assert_close(done.generations[0].latents, alone.latents, rtol=1e-5, atol=1e-5)
    from components.engines.xtts.batch import _positions

    assert _positions(decoder.fast, long[0]) > 128 >= _positions(decoder.fast, short[0])


def test_a_row_with_bad_inputs_fails_alone(model, monkeypatch):
    import torch

    from components.engines.xtts import fast

    good = [item_and_solo(model, "One good row here.", "en", 0, 0), item_and_solo(model, "hola", "es", 1, 1)]
    bad = fast.BatchItem([fast.encode(model, "bad", "en")], torch.zeros(1, 32, 7), SETTINGS)  # wrong width
    Rendezvous(monkeypatch, rows=3)
    decoder = fast.BatchDecoder(model, slots=4)
    handles = [decoder.submit(good[0][0]), decoder.submit(bad), decoder.submit(good[1][0])]
    with pytest.raises(LabError, match="could not be decoded"):
        handles[1].result()
    for handle, (_, alone) in zip((handles[0], handles[2]), good):
        assert torch.equal(handle.result().generations[0].tokens, alone.tokens)


def test_a_failed_step_fails_its_rows_and_the_decoder_goes_on(model, monkeypatch):
    import torch

    from components.engines.xtts import fast

    real_step = fast.FastGPT.step
    calls = []

    def failing_once(fg, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("simulated kernel failure")
        return real_step(fg, *args, **kwargs)

    monkeypatch.setattr(fast.FastGPT, "step", failing_once)
    decoder = fast.BatchDecoder(model, slots=2)
    item, _ = item_and_solo(model, "This row is in the failing step.", "en", 0, 0)
    with pytest.raises(fast.BatchDecodeError, match="simulated kernel failure"):
        decoder.submit(item).result()
    item, alone = item_and_solo(model, "The next row decodes afresh.", "en", 1, 2)
    assert torch.equal(decoder.submit(item).result().generations[0].tokens, alone.tokens)


def test_a_cancelled_row_leaves_the_batch(model, monkeypatch):
    """A closed stream cancels its row: the next step decodes without it; the other row goes on."""
    import torch

    from components.engines.xtts import fast

    kept, alone = item_and_solo(model, "This row runs to its end.", "en", 0, 0)
    gone, _ = item_and_solo(model, "This one is cancelled.", "en", 1, 1)
    Rendezvous(monkeypatch, rows=2, hold_at=1)  # both rows decode from the second step on
    held_step = fast.FastGPT.step
    sizes, at_third, cancelled = [], threading.Event(), threading.Event()

    def step(fg, x, *args, **kwargs):
        sizes.append(x.shape[0])
        if len(sizes) == 3:
            at_third.set()
            cancelled.wait(60)
        return held_step(fg, x, *args, **kwargs)

    monkeypatch.setattr(fast.FastGPT, "step", step)
    decoder = fast.BatchDecoder(model, slots=2)
    handle_kept, handle_gone = decoder.submit(kept), decoder.submit(gone)
    assert at_third.wait(60)
    handle_gone.cancel()
    cancelled.set()
    done = handle_kept.result()
    assert torch.equal(done.generations[0].tokens, alone.tokens) and done.rows_seen == 2
    assert sizes[1:3] == [2, 2] and set(sizes[3:]) == {1}, sizes


# -- the engine: concurrent requests through Engines.use --------------------------------------------

@pytest.fixture(scope="module")
def engines(xtts_dir, tmp_path_factory):
    """The registry as the server has it (batch 8), and a --batch 1 engine for the solo runs."""
    from components.engines import EngineConfig, Engines

    config = EngineConfig(xtts_dir=str(xtts_dir), cache_dir=str(tmp_path_factory.mktemp("latents")))
    batched = Engines(config)
    stopping(batched.get("xtts").model)
    alone = Engines(replace(config, batch=1)).get("xtts")
    stopping(alone.model)
    return batched, alone


def concurrent_requests(reference_wav):
    return [
        SynthRequest("The first request starts alone and decodes for a while.", "en", seed=0, settings=SETTINGS),
        SynthRequest("hola", "es", seed=1, settings=SETTINGS),
        SynthRequest("안녕하세요, 짧은 테스트입니다.", "ko", speaker="Ana Florence", seed=1, speed=1.3,
                     settings=SETTINGS),
        SynthRequest("你好，这是一个简短的测试。", "zh-cn", reference=str(reference_wav), seed=2, settings=SETTINGS),
        SynthRequest("One sentence here, long enough that the lab has to split this text in two chunks. " * 3
                     + "And then a second sentence follows it.", "en", seed=4, settings=replace(SETTINGS, top_k=10)),
        SynthRequest("Bonjour tout le monde, ça va?", "fr", seed=6,
                     settings=XttsSettings(temperature=1.1, top_k=5, top_p=0.5, repetition_penalty=1.0)),
    ]


@pytest.mark.slow
def test_concurrent_requests_share_a_batch_and_each_equals_its_solo_run(engines, reference_wav, monkeypatch):
    """Six requests (languages, built-in and cloned voices, seeds, speeds, sampling settings, a
    two-chunk text), two of them streamed: they decode in one batch, joining the first while it is
    mid-decode, and each gets exactly its own solo result (--batch 1 engine, same seed)."""
    batched, alone = engines
    engine = batched.get("xtts")
    assert engine.concurrent and not alone.concurrent
    requests = concurrent_requests(reference_wav)
    streamed = {0, 4}
    expected = [alone.synthesize(r) for r in requests]
    assert max(r.info["text_chunks"] for r in expected) == 2
    Rendezvous(monkeypatch, rows=len(requests))
    results: dict[int, object] = {}
    failures: list[BaseException] = []

    def run(i: int) -> None:
        try:
            with batched.use("xtts") as e:  # all of them at once: the engine batches them itself
                if i in streamed:
                    *chunks, result = list(e.stream(requests[i]))
                    assert len(chunks) >= 2 or i != 4  # its two text chunks stream apart
                    np.testing.assert_array_equal(np.concatenate(chunks), result.audio)
                    results[i] = result
                else:
                    results[i] = e.synthesize(requests[i])
        except BaseException as err:  # noqa: BLE001 - reported below
            failures.append(err)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not failures, failures
    for i, (request, want) in enumerate(zip(requests, expected)):
        got = results[i]
        assert got.info["gpt_tokens"] == want.info["gpt_tokens"], i
        assert got.audio.shape == want.audio.shape, i
        np.testing.assert_allclose(got.audio, want.audio, rtol=0, atol=1e-4 * np.abs(want.audio).max())
        assert got.info["batch_size"] == 8 and got.info["batch_rows"] == len(requests), i
    assert len({r.info["gpt_tokens"] for r in results.values()}) >= 3  # rows of different lengths


@pytest.mark.slow
def test_a_bad_request_among_concurrent_ones_fails_alone(engines, monkeypatch):
    batched, alone = engines
    requests = [SynthRequest("A good request.", "en", seed=3, settings=SETTINGS),
                SynthRequest("A bad one.", "en", speaker="Nobody At All", seed=3),
                SynthRequest("Another good one.", "de", seed=5, settings=SETTINGS)]
    expected = {0: alone.synthesize(requests[0]), 2: alone.synthesize(requests[2])}
    Rendezvous(monkeypatch, rows=2)
    out: dict[int, object] = {}

    def run(i: int) -> None:
        try:
            with batched.use("xtts") as e:
                out[i] = e.synthesize(requests[i])
        except LabError as err:
            out[i] = err

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert isinstance(out[1], LabError) and "no speaker 'Nobody At All'" in str(out[1])
    for i in (0, 2):
        np.testing.assert_allclose(out[i].audio, expected[i].audio, rtol=0,
                                   atol=1e-4 * np.abs(expected[i].audio).max())
        assert out[i].info["batch_rows"] == 2


def test_batch_one_queues_requests_one_at_a_time(engines):
    """--batch 1 keeps the engine exclusive: a second user of Engines.use waits for the first."""
    from components.engines import Engines

    batched, alone = engines
    with batched.use("xtts"), batched.use("xtts"):  # concurrent: a second user enters at once
        assert batched.busy("xtts")
    registry = Engines(alone.config)
    registry._engines["xtts"] = alone  # the loaded --batch 1 engine (no second load)
    entered, leave = threading.Event(), threading.Event()

    def second() -> None:
        with registry.use("xtts"):
            entered.set()
            leave.wait(60)

    with registry.use("xtts"):
        threading.Thread(target=second, daemon=True).start()
        assert not entered.wait(1.0), "a second request entered a --batch 1 engine in use"
    assert entered.wait(30)
    leave.set()


def test_int8_rows_decode_together_through_onnx_runtime(xtts_dir, monkeypatch):
    """The int8 GPT (one ONNX Runtime graph on the shared KV cache) serves the decoder too; on
    this checkpoint its batched codes equal its solo ones as well."""
    import torch

    from components.engines.xtts import fast

    model = fast.load_fast(xtts_dir, precision="int8")
    assert fast.precision_of(model) == "int8"
    rows = [("The first row starts alone and decodes for a while.", "en", 0, 0), ("hola", "es", 1, 1),
            ("Bonjour tout le monde.", "fr", 0, 2)]
    pairs = [item_and_solo(model, *row) for row in rows]
    Rendezvous(monkeypatch, rows=len(rows))
    decoder = fast.BatchDecoder(model, slots=4)
    handles = [decoder.submit(item) for item, _ in pairs]
    for handle, (_, alone) in zip(handles, pairs):
        done = handle.result()
        assert torch.equal(done.generations[0].tokens, alone.tokens) and done.rows_seen == 3


@pytest.mark.slow
def test_a_request_for_another_precision_waits_for_the_batch_then_switches(engines, monkeypatch):
    """A request in another precision does not repack the weights under rows decoding in the
    batch: it waits for them, switches, and both get what they asked for. (It leaves the shared
    engine in fp32 again, with the stop bias the other tests expect.)"""
    from components.engines.xtts import fast

    batched, alone = engines
    engine = batched.get("xtts")
    fp32 = SynthRequest("This row is decoding when the other arrives.", "en", seed=0, settings=SETTINGS)
    int8 = SynthRequest("This one wants int8.", "en", seed=1, settings=replace(SETTINGS, precision="int8"))
    expected = alone.synthesize(fp32)
    real_step, release, held = fast.FastGPT.step, threading.Event(), threading.Event()

    def step(fg, *args, **kwargs):
        if fg.precision == "fp32" and not release.is_set():
            held.set()
            release.wait(60)
        return real_step(fg, *args, **kwargs)

    monkeypatch.setattr(fast.FastGPT, "step", step)
    out: dict[str, object] = {}
    threads = [threading.Thread(target=lambda k=k, r=r: out.__setitem__(k, engine.synthesize(r)))
               for k, r in (("fp32", fp32), ("int8", int8))]
    threads[0].start()
    assert held.wait(60)  # the fp32 row is mid-decode in the batch
    threads[1].start()
    with engine._gate._cond:  # the int8 request is waiting to have the model alone
        assert engine._gate._cond.wait_for(lambda: engine._gate._waiting_alone == 1, timeout=60)
    assert fast.precision_of(engine.model) == "fp32"
    release.set()
    for t in threads:
        t.join(300)
    assert out["fp32"].info["precision"] == "fp32" and out["int8"].info["precision"] == "int8"
    np.testing.assert_allclose(out["fp32"].audio, expected.audio, rtol=0, atol=1e-4 * np.abs(expected.audio).max())
    assert fast.precision_of(engine.model) == "int8"
    engine.synthesize(replace(fp32, settings=SETTINGS))  # back to fp32 ...
    stopping(engine.model)  # ... with the stop bias the other tests expect


def test_a_benchmark_has_a_concurrent_engine_to_itself(engines):
    """``Engines.use(alone=True)`` (the benchmark experiment) waits for the shared users to leave,
    and later shared users wait for it: no other request is batched into its timings."""
    batched, _ = engines
    inside, leave = threading.Event(), threading.Event()

    def benchmark() -> None:
        with batched.use("xtts", alone=True):
            inside.set()
            leave.wait(60)

    with batched.use("xtts"):  # a request decoding
        threading.Thread(target=benchmark, daemon=True).start()
        assert not inside.wait(1.0), "the benchmark entered beside a request"
    assert inside.wait(30)
    late = threading.Event()

    def request() -> None:
        with batched.use("xtts"):
            late.set()

    threading.Thread(target=request, daemon=True).start()
    assert not late.wait(1.0), "a request entered beside the benchmark"
    leave.set()
    assert late.wait(30)


def test_out_of_memory_in_the_batch_is_the_engine_s_clear_error(engines, monkeypatch):
    """A CUDA out-of-memory in a batched step reaches the request as the engine's usual advice,
    and the next request decodes (stands in for a real OOM: there is no GPU here)."""
    import torch

    from components.engines.xtts import fast

    batched, _ = engines
    engine = batched.get("xtts")
    real_step = fast.FastGPT.step

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(fast.FastGPT, "step", out_of_memory)
    with pytest.raises(LabError, match="GPU out of memory"):
        engine.synthesize(SynthRequest("Too big.", "en", seed=1, settings=SETTINGS))
    monkeypatch.setattr(fast.FastGPT, "step", real_step)
    assert engine.synthesize(SynthRequest("Recovered.", "en", seed=1, settings=SETTINGS)).info["batch_rows"] == 1


@pytest.mark.slow
def test_an_experiment_s_rows_and_a_request_share_one_batch(engines, monkeypatch):
    """An experiment's rows (synthesize_many: the languages, ref-length and benchmark tabs) join the
    batch a concurrent request decodes in, and each still equals its solo run."""
    from experiments.common import synthesize_many

    batched, alone = engines
    rows = [SynthRequest("An experiment row that runs on.", "en", seed=0, settings=SETTINGS),
            SynthRequest("hola", "es", seed=1, settings=SETTINGS)]
    request = SynthRequest("A request from another tab.", "de", speaker="Ana Florence", seed=2, settings=SETTINGS)
    expected = [alone.synthesize(r) for r in (*rows, request)]
    Rendezvous(monkeypatch, rows=3)
    got: dict[int, object] = {}

    def experiment() -> None:
        with batched.use("xtts") as e:
            for i, result, _seconds in synthesize_many(e, rows):
                got[i] = result

    def other_tab() -> None:
        with batched.use("xtts") as e:
            got[2] = e.synthesize(request)

    threads = [threading.Thread(target=experiment), threading.Thread(target=other_tab)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert sorted(got) == [0, 1, 2]
    for i, want in enumerate(expected):
        np.testing.assert_allclose(got[i].audio, want.audio, rtol=0, atol=1e-4 * np.abs(want.audio).max())
        assert got[i].info["batch_rows"] == 3, i


def test_a_closed_stream_leaves_the_batch(engines, monkeypatch):
    """A client that stops reading (the generator is closed) takes its row out of the batch at the
    next step, so the next request decodes alone instead of beside a row nobody will hear."""
    from components.engines.xtts import fast

    batched, alone = engines
    engine = batched.get("xtts")
    real_step, steps, closed = fast.FastGPT.step, [], threading.Event()

    def step(fg, x, *args, **kwargs):
        steps.append(x.shape[0])
        if len(steps) == 20:  # the decoder waits here until the client has gone
            closed.wait(60)
        return real_step(fg, x, *args, **kwargs)

    monkeypatch.setattr(fast.FastGPT, "step", step)
    long = SynthRequest("One sentence here, long enough that the lab has to split this text in two chunks. " * 3
                        + "And then a second sentence follows it.", "en", seed=4, settings=SETTINGS)
    chunks = engine.stream(long)
    assert isinstance(next(chunks), np.ndarray)  # the first audio, while the row is mid-decode
    chunks.close()
    closed.set()
    monkeypatch.setattr(fast.FastGPT, "step", real_step)
    request = SynthRequest("The next request.", "en", seed=2, settings=SETTINGS)
    got = engine.synthesize(request)
    assert got.info["batch_rows"] == 1 and len(steps) == 20
    want = alone.synthesize(request)
    np.testing.assert_allclose(got.audio, want.audio, rtol=0, atol=1e-4 * np.abs(want.audio).max())
