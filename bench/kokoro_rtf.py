"""Kokoro's real-time factor on this CPU, with 1 thread and with every core, in one run.

    uv run python bench/kokoro_rtf.py [--repeats 3]
    uv run python bench/kokoro_rtf.py --quick     # one short English sentence, one timed run: checks it works

Prints the CPU model, its matrix extensions and the load average (the machine may be shared),
then per language and thread count the median synthesis time over ``--repeats`` warm runs, the
audio length and RTF (synthesis seconds / audio seconds), and last the speedup of all cores over one.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import cpu_description, load_average  # noqa: E402

TEXTS = {  # about 200 characters each
    "en": ("Speech synthesis has come a long way: modern models clone a voice from a few seconds of audio, "
           "speak many languages, and run on a laptop. This benchmark measures how long that takes here."),
    "ja": "音声合成は大きく進歩しました。最近のモデルは数秒の音声から声を再現し、多くの言語を話し、ノートパソコンでも動きます。"
          "このベンチマークは、この機械でそれにどれだけ時間がかかるかを測ります。",
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="one short English sentence, one timed run (a check, not a figure)")
    args = p.parse_args(argv)
    texts = {"en": TEXTS["en"].split(":")[0] + "."} if args.quick else TEXTS  # quick: one short sentence
    repeats = 1 if args.quick else args.repeats

    from components.engines import EngineConfig
    from components.engines.base import SynthRequest
    from components.engines.kokoro import KokoroEngine, default_threads

    cores = default_threads()
    print(f"cpu: {cpu_description()}; load average: {load_average()}")
    results: dict[tuple[str, int], float] = {}
    # On a one-core machine 2 threads still says what oversubscribing costs.
    for threads in sorted({1, max(cores, 2)}):
        engine = KokoroEngine(EngineConfig(threads=threads))
        t0 = time.perf_counter()
        engine.load()
        print(f"threads={threads}: load {time.perf_counter() - t0:.1f} s")
        for lang, text in texts.items():
            request = SynthRequest(text, lang=lang, speaker="jm_kumo")
            engine.synthesize(request)  # warm-up: first call pays for allocations and the G2P
            times, seconds = [], 0.0
            for _ in range(repeats):
                t0 = time.perf_counter()
                seconds = engine.synthesize(request).seconds
                times.append(time.perf_counter() - t0)
            median = statistics.median(times)
            results[(lang, threads)] = median / seconds
            print(f"  {lang}: {len(text)} chars -> {seconds:.2f} s audio in {median:.2f} s (median of "
                  f"{repeats}), RTF {median / seconds:.2f}")
    print(f"load average after: {load_average()}")
    most = max(cores, 2)
    for lang in texts:
        print(f"speedup {lang} {most} threads vs 1: {results[(lang, 1)] / results[(lang, most)]:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
