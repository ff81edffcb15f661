"""Concurrency: one engine instance for everyone, requests queue per engine, 8 clients at once
each get their own result (no cross-talk), and memory stays flat over repeated rounds.

The lab runs in this process (uvicorn in a thread, UI mounted) so the test can look inside it.
Engine: espeak, real. espeak-ng is not sample-exact from call to call (the same request comes
out a few samples longer or shorter, with a different fine waveform), so results are matched by
a fingerprint: duration, median pitch and median spectral centroid. The eight requests differ
enough in those (language, voice, speed) that a result delivered to the wrong client is caught.
"""

from __future__ import annotations

import gc
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import psutil
import pytest
import soundfile as sf

from components.app.api import Admission, TooBusy, status_for
from components.app.context import LabContext
from components.engines.base import Capabilities, EngineUnavailable
from components.engines.espeak import EspeakEngine
from components.app.server import ServerOptions, create_app
from components.app.ui.app import build_app
from experiments.specs import DEFAULT_SENTENCES
from serving import all_rows, decode_wav, strict_rows, uvicorn_thread

# Eight different requests: language, voice and speed all vary (3.0 needs espeak's time-stretch).
REQUESTS = [
    {"lang": "en", "speaker": "male", "speed": 1.0},
    {"lang": "fr", "speaker": "female", "speed": 1.5},
    {"lang": "de", "speaker": "male 2", "speed": 0.75},
    {"lang": "es", "speaker": "female 2", "speed": 2.0},
    {"lang": "ja", "speaker": "male", "speed": 1.0},
    # Not "whisper": it is unvoiced, so its median pitch is noise and cannot fingerprint it.
    {"lang": "ru", "speaker": "female 2", "speed": 1.25},
    {"lang": "ko", "speaker": "female", "speed": 0.5},
    {"lang": "en", "speaker": "female", "speed": 3.0},
]
for r in REQUESTS:
    r.update(engine="espeak", text=DEFAULT_SENTENCES[r["lang"]])
SETTINGS = ("{}",)  # the engine settings the UI sends, as JSON: none changed


def fingerprint(audio: np.ndarray, sr: int) -> np.ndarray:
    """log(duration, median pitch, median spectral centroid) of one result."""
    import librosa

    f0 = librosa.yin(audio, fmin=60, fmax=500, sr=sr)
    centroid = librosa.feature.spectral_centroid(y=audio, sr=sr)[0]
    return np.log([len(audio) / sr, np.median(f0), np.median(centroid)])


def assert_each_is_its_own(got: list[np.ndarray], solo: list[np.ndarray], bodies: list[dict]) -> None:
    """Every result is nearest to the solo synthesis of its own request, by a wide margin."""
    distance = np.abs(np.array(got)[:, None, :] - np.array(solo)[None, :, :]).sum(-1)
    for i, body in enumerate(bodies):
        others = np.delete(distance[i], i)
        assert distance[i, i] < 0.5 * others.min(), f"result for {body} looks like another request's"
        assert abs(got[i][0] - solo[i][0]) < 0.03, f"duration of {body} differs from its solo run by > 3 %"


def espeak_instances() -> int:
    gc.collect()
    return sum(type(o) is EspeakEngine for o in gc.get_objects())  # type(): weak proxies raise on isinstance


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("concurrency") / "results"
    lab = LabContext.create(results=str(root))
    before = espeak_instances()
    with uvicorn_thread(create_app(lab, ServerOptions(), ui=build_app(lab))) as url:
        yield lab, url, root, before


def post(url: str, body: dict) -> dict:
    r = httpx.post(f"{url}/synthesize_base64", json=body, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


def burst(url: str, bodies: list[dict]) -> list[dict]:
    """All requests at once: a barrier releases the 8 threads together."""
    barrier = threading.Barrier(len(bodies))

    def one(body: dict) -> dict:
        barrier.wait(30)
        return post(url, body)

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(one, bodies))


@pytest.mark.slow
def test_eight_clients_at_once_each_get_their_own_result(served):
    lab, url, root, instances_before = served
    concurrent = burst(url, REQUESTS)  # the first requests of this lab: the engine loads under load
    solo = [post(url, body) for body in REQUESTS]
    for got in concurrent:
        audio, sr = decode_wav(got["audio_base64"])
        assert got["duration_seconds"] == pytest.approx(len(audio) / sr, abs=1e-3)
    assert_each_is_its_own([fingerprint(*decode_wav(r["audio_base64"])) for r in concurrent],
                           [fingerprint(*decode_wav(r["audio_base64"])) for r in solo], REQUESTS)
    # Each response was logged as its own row (of the server session's one run), with its own request's fields.
    rows = {(row["run_id"], row["row"]): row for row in all_rows(root)}
    assert len({(r["run_id"], r["row"]) for r in concurrent}) == len(REQUESTS)
    assert len({r["run_id"] for r in concurrent + solo}) == 1
    for body, got in zip(REQUESTS, concurrent):
        row = rows[(got["run_id"], str(got["row"]))]
        assert (row["language"], row["speaker"], float(row["speed"]), row["text"]) == \
            (body["lang"], body["speaker"], body["speed"], body["text"])
    # The model was loaded once, for everyone: at most one new instance (a load per request would
    # make up to eight; in a full run, other tests' instances may be freed meanwhile, hence <=).
    assert espeak_instances() - instances_before <= 1
    assert lab.engines.status("espeak") == "ready"


def test_ui_and_rest_at_once_share_the_engine_without_cross_talk(served):
    from gradio_client import Client

    lab, url, _, _ = served
    client = Client(url, verbose=False)
    ui_bodies, rest_bodies = REQUESTS[:4], REQUESTS[4:]
    jobs = [client.submit(b["text"], "espeak", b["speaker"], b["lang"], None, 0, *SETTINGS, b["speed"],
                          api_name="/synthesize") for b in ui_bodies]
    rest = burst(url, rest_bodies)
    ui_got = []
    for job in jobs:
        _, wav, *_ = job.result(timeout=120)
        audio, sr = sf.read(wav, dtype="float32")
        ui_got.append(fingerprint(audio, sr))
    rest_got = [fingerprint(*decode_wav(r["audio_base64"])) for r in rest]
    solo = [fingerprint(*decode_wav(post(url, body)["audio_base64"])) for body in REQUESTS]
    assert_each_is_its_own(ui_got + rest_got, solo, REQUESTS)


def test_requests_queue_behind_the_engine_lock(served):
    lab, url, _, _ = served
    done = threading.Event()
    result: list[httpx.Response] = []

    def request() -> None:
        result.append(httpx.post(f"{url}/synthesize_base64", json=REQUESTS[0], timeout=60))
        done.set()

    with lab.engines.use("espeak"):  # someone else holds the engine
        threading.Thread(target=request, daemon=True).start()
        assert not done.wait(1.5), "the request ran while the engine was busy"
        queued = httpx.get(f"{url}/health", timeout=10).json()["engines"]["espeak"]["queued"]
        assert queued == 1
    assert done.wait(60) and result[0].status_code == 200


def test_queue_is_bounded_per_engine():
    admission = Admission(limit=2)
    with admission.enter("espeak"), admission.enter("espeak"):
        with pytest.raises(TooBusy) as e:
            with admission.enter("espeak"):
                pass
        assert status_for(e.value) == 503
        with admission.enter("xtts"):  # another engine has its own queue
            assert admission.queued("xtts") == 1
    assert admission.queued("espeak") == 0


@pytest.mark.slow
def test_memory_stays_flat_over_repeated_rounds(served):
    """The Python and numpy heap, traced exactly, gets a tight bound: keeping the results of 40
    syntheses (about 0.3 MB each) would break it. RSS is the whole test process's and noisy (in
    the full suite, 12 rounds grew it by 16, 57, 57, 59, 59, 62, 62, 63, 63, 86, 36, 83 MB: a
    step as the worker threads' allocator arenas fill in the first two rounds, then +-25 MB with
    no trend), so it gets a loose bound on its trend: the median of the last three rounds against
    the median of rounds 2-4."""
    import statistics
    import tracemalloc

    lab, url, _, _ = served
    process = psutil.Process()
    burst(url, REQUESTS)  # warm: every language's voice data, the kana converter, librosa
    tracemalloc.start()
    try:
        burst(url, REQUESTS)
        gc.collect()
        rss_first, heap_first = process.memory_info().rss, tracemalloc.get_traced_memory()[0]
        rounds = 8  # a count, not a time budget: a busy machine measures as many rounds as a quiet one
        rss = []  # MB over rss_first after each round
        for _ in range(rounds):
            burst(url, REQUESTS)
            rss.append((process.memory_info().rss - rss_first) / 2**20)
        gc.collect()
        heap_grown = (tracemalloc.get_traced_memory()[0] - heap_first) / 2**20
    finally:
        tracemalloc.stop()
    assert heap_grown < 4, f"the heap grew {heap_grown:.1f} MB over {rounds} rounds of 8 requests"
    trend = statistics.median(rss[-3:]) - statistics.median(rss[1:4])
    assert trend < 60, f"RSS kept growing over {rounds} rounds of 8 requests: {[round(x) for x in rss]} MB"


# -- engines side by side ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def served_with_xtts(tmp_path_factory, xtts_dir):
    """The lab served as ``lab.py`` serves it (create_app: REST + UI queue), with the tiny
    generated XTTS checkpoint: random weights never emit the stop token, so every sentence is
    decoded to the checkpoint's token limit and an XTTS request takes seconds here."""
    from components.engines import EngineConfig

    root = tmp_path_factory.mktemp("side-by-side") / "results"
    lab = LabContext.create(EngineConfig(xtts_dir=str(xtts_dir), cache_dir=str(root.parent / "cache")),
                            results=str(root))
    lab.engines.get("xtts")  # loaded before the race: the test is about decoding, not loading
    with uvicorn_thread(create_app(lab, ServerOptions(), ui=build_app(lab))) as url:
        yield lab, url, root


@pytest.mark.slow
def test_espeak_answers_while_xtts_decodes(served_with_xtts, monkeypatch):
    """Eight espeak clients in the UI while one XTTS request decodes: every espeak request is
    answered, with its own result, before the XTTS request finishes (engines run side by side;
    only requests for the same engine wait for each other). The XTTS decoder's real steps are
    held until the espeak answers are in, so a slow machine cannot finish XTTS first; if espeak
    waited for XTTS, nothing would be answered and the test would fail on its timeout."""
    from gradio_client import Client

    from components.engines.xtts import fast

    espeak_done = threading.Event()
    real_step = fast.FastGPT.step

    def held_step(fg, *args, **kwargs):
        espeak_done.wait(timeout=150)
        return real_step(fg, *args, **kwargs)

    monkeypatch.setattr(fast.FastGPT, "step", held_step)
    lab, url, _ = served_with_xtts
    client = Client(url, verbose=False)
    speaker = lab.engines.get("xtts").speakers()[0]
    solo = [post(url, body) for body in REQUESTS]  # also warms espeak and the metrics
    xtts_text = " ".join(["The quick brown fox jumps over the lazy dog, then it runs far away."] * 4)
    xtts_job = client.submit(xtts_text, "xtts", speaker, "en", None, 0, *SETTINGS, 1.0, api_name="/synthesize")
    deadline = time.monotonic() + 60
    while not lab.engines.busy("xtts"):  # XTTS has the engine: it is decoding now
        assert time.monotonic() < deadline and not xtts_job.done(), "the XTTS request never started"
        time.sleep(0.02)
    espeak_jobs = [client.submit(b["text"], "espeak", b["speaker"], b["lang"], None, 0, *SETTINGS, b["speed"],
                                 api_name="/synthesize") for b in REQUESTS]
    got = []
    try:
        for job in espeak_jobs:
            _, wav, *_ = job.result(timeout=120)
            got.append(fingerprint(*sf.read(wav, dtype="float32")))
        assert not xtts_job.done(), "the espeak requests waited for the XTTS request"
    finally:
        espeak_done.set()
    assert_each_is_its_own(got, [fingerprint(*decode_wav(r["audio_base64"])) for r in solo], REQUESTS)
    _, xtts_wav, *_ = xtts_job.result(timeout=300)
    assert sf.info(xtts_wav).duration > 1.0


@pytest.mark.slow
def test_eight_xtts_clients_join_one_batch_and_each_gets_its_own_result(served_with_xtts, monkeypatch):
    """Eight XTTS requests at once, five by REST and three through the UI (gradio_client): they
    decode as one continuously batched GPT pass (the decoder's third step is held until all eight
    have joined, so requests that arrive while it decodes join it), and each response is
    sample-for-sample its own request's solo result (same seed), not a neighbour's."""
    from gradio_client import Client

    from test_xtts_continuous import Rendezvous

    lab, url, root = served_with_xtts
    speakers = lab.engines.get("xtts").speakers()
    texts = ["The quick brown fox jumps.", "Hola, ¿cómo estás?", "Bonjour à tous.", "Guten Morgen!",
             "Buongiorno a tutti.", "Bom dia, amigos.", "Dzień dobry.", "Goedemorgen allemaal."]
    langs = ["en", "es", "fr", "de", "it", "pt", "pl", "nl"]
    bodies = [{"engine": "xtts", "text": t, "lang": lang, "speaker": speakers[i % len(speakers)],
               "speed": (1.0, 1.25, 0.8)[i % 3], "seed": 10 + i} for i, (t, lang) in enumerate(zip(texts, langs))]
    solo = [decode_wav(post(url, body)["audio_base64"]) for body in bodies]  # one at a time
    Rendezvous(monkeypatch, rows=len(bodies))
    client = Client(url, verbose=False)
    ui_bodies, rest_bodies = bodies[:3], bodies[3:]
    jobs = [client.submit(b["text"], "xtts", b["speaker"], b["lang"], None, b["seed"], *SETTINGS, b["speed"],
                          api_name="/synthesize") for b in ui_bodies]
    rest = burst(url, rest_bodies)
    got = [sf.read(job.result(timeout=300)[1], dtype="float32") for job in jobs]
    got += [decode_wav(r["audio_base64"]) for r in rest]
    for body, (audio, sr), (want, want_sr) in zip(bodies, got, solo):
        assert sr == want_sr and audio.shape == want.shape, body
        # Both went through 16-bit WAVs: equal up to the rounding of one step of 16 bits.
        np.testing.assert_allclose(audio, want, rtol=0, atol=1e-4 * np.abs(want).max() + 2.0 / 32768,
                                   err_msg=f"{body} got another request's audio")
    rows = {(row["run_id"], row["row"]): row for row in all_rows(root)}
    extra = [json.loads(rows[(r["run_id"], str(r["row"]))]["extra"]) for r in rest]  # engine facts beyond the columns
    assert {e["batch_rows"] for e in extra} == {len(bodies)}, "the requests did not decode together"


class _Blocking:
    """Stands in for an engine whose availability probe is slow (melo asks its own python, up to
    30 s): the probe waits until the test lets it go. Its load fails the first ``fail_loads``
    times, as a load does when weights are missing and then copied in."""

    probing = threading.Event()
    release = threading.Event()
    fail_loads = 0
    loads = 0
    block_probe = False

    name = "blocking"
    capabilities = Capabilities()

    def __init__(self, config=None):
        self.config = config

    @classmethod
    def unavailable_reason(cls, config=None):
        if cls.block_probe:
            cls.probing.set()
            cls.release.wait(60)
            return "its probe said no"
        return None

    def load(self, progress=None):
        type(self).loads += 1
        if type(self).loads <= type(self).fail_loads:
            raise EngineUnavailable("weights are missing")


@pytest.fixture
def blocking_engine(monkeypatch):
    import components.engines as registry

    real = registry.engine_class
    monkeypatch.setitem(registry.REGISTRY, "blocking", "tests:_Blocking")
    monkeypatch.setattr(registry, "engine_class", lambda name: _Blocking if name == "blocking" else real(name))
    for attr, value in (("fail_loads", 0), ("loads", 0), ("block_probe", False)):
        monkeypatch.setattr(_Blocking, attr, value)
    _Blocking.probing.clear()
    _Blocking.release.clear()
    yield _Blocking
    _Blocking.release.set()


def test_a_slow_probe_does_not_stall_other_engines(blocking_engine):
    from components.engines import Engines

    engines = Engines()
    blocking_engine.block_probe = True
    errors = []

    def probe() -> None:
        try:
            engines.get("blocking")
        except EngineUnavailable as e:
            errors.append(e)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    assert blocking_engine.probing.wait(30)
    other = threading.Thread(target=engines.get, args=("espeak",), daemon=True)
    other.start()
    other.join(30)
    espeak_done, still_probing = not other.is_alive(), prober.is_alive()
    blocking_engine.release.set()
    prober.join(30)
    assert espeak_done, "espeak waited for another engine's availability probe"
    assert still_probing and engines.status("espeak") == "ready"
    assert errors and "its probe said no" in str(errors[0])


def test_a_failed_load_is_retried_after_a_while(blocking_engine, monkeypatch):
    import components.engines as registry
    from components.engines import Engines

    engines = Engines()
    blocking_engine.fail_loads = 1
    with pytest.raises(EngineUnavailable, match="weights are missing"):
        engines.get("blocking")
    assert engines.status("blocking").startswith("unavailable: ")
    with pytest.raises(EngineUnavailable, match="weights are missing"):
        engines.get("blocking")  # remembered: no second load right away
    assert blocking_engine.loads == 1
    monkeypatch.setattr(registry, "RETRY_FAILED_LOAD_S", 0.0)  # ... and once the wait is over:
    assert isinstance(engines.get("blocking"), blocking_engine)
    assert blocking_engine.loads == 2 and engines.status("blocking") == "ready"


def test_rows_are_measured_and_written_with_the_engine_let_go(tmp_path, monkeypatch):
    """Signal metrics and the WAV write happen after the engine is released: the next request
    gets the engine while the previous row is still being measured."""
    import experiments.common as common
    from experiments import runner
    from experiments.specs import SynthSpec

    lab = LabContext.create(results=str(tmp_path / "results"))
    measuring, proceed = threading.Event(), threading.Event()
    real_metrics = common.signal_metrics

    def held_metrics(*args, **kwargs):  # the real metrics, entered only when the test says so
        measuring.set()
        proceed.wait(60)
        return real_metrics(*args, **kwargs)

    monkeypatch.setattr(common, "signal_metrics", held_metrics)
    run = lab.store.new_run("synth", None)
    failures: list[BaseException] = []

    def experiment() -> None:
        try:
            runner("synth")(SynthSpec(engine="espeak", text="Hello."), lab.engines, run)
        except BaseException as e:  # noqa: BLE001 - reported by the test below
            failures.append(e)
            measuring.set()

    worker = threading.Thread(target=experiment, daemon=True)
    worker.start()
    try:
        assert measuring.wait(60) and not failures, failures
        got_engine = threading.Event()

        def next_request() -> None:
            with lab.engines.use("espeak"):
                got_engine.set()

        threading.Thread(target=next_request, daemon=True).start()
        assert got_engine.wait(30), "the next request waited for the previous row's metrics"
    finally:
        proceed.set()
        worker.join(180)
    assert not failures and len(strict_rows(run.csv_path)) == 1
