"""XTTS v2 memory on the lab path: resident memory after loading, peak at batch 1 and batch N.

    uv run python bench/xtts_memory.py                    # fp32, int8 and int4, batch 1 and 8, 40 tokens
    uv run python bench/xtts_memory.py --quick            # tiny checkpoint, fp32 and int8, batch 2, 8 tokens

Each precision runs in a fresh process (so one measurement's pages never count in another's) on
the full-size random-weight checkpoint of ``bench/xtts_speed.py``. For comparison the same is
measured with the memory-mapped GPT weights kept resident after packing (what the lab did before
``release_mapped_pages``): the difference is what packing used to add on top of the model.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import cpu_description, load_average  # noqa: E402
from bench.xtts_speed import DEFAULT_CHECKPOINT, batch_items, ensure_checkpoint  # noqa: E402


def measure(checkpoint: Path, precision: str, batch: int, tokens: int, keep: bool) -> dict:
    """In this process: load, then peak RSS of one row alone and of ``batch`` rows batched (MB)."""
    import psutil
    import torch

    from components.engines.xtts import fast, precision as xprecision
    from experiments.benchmark import PeakMemory

    if keep:  # the old behaviour: packed copy beside the resident originals
        xprecision.release_mapped_pages = lambda *a, **k: 0
    model = fast.load_fast(checkpoint, precision=precision)
    after_load = psutil.Process().memory_info().rss / 2**20
    voices = [(v["gpt_cond_latent"], v["speaker_embedding"]) for v in model.speaker_manager.speakers.values()]
    out = {"after_load_mb": after_load}
    for n in (1, batch):
        items = batch_items(model, voices, n, tokens, 0)
        with PeakMemory("cpu") as mem:
            for done in fast.generate_batch(model, items, batch_size=n):
                fast.vocode(model, done.generations[0].latents, voices[done.index % len(voices)][1])
        out[f"peak_batch{n}_mb"] = mem.peak_rss_mb
    out["threads"] = torch.get_num_threads()
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--precisions", default="fp32,int8,int4")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--tokens", type=int, default=40, help="GPT tokens per row (pinned)")
    p.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    p.add_argument("--quick", action="store_true",
                   help="the same measurement on the tiny test checkpoint (fp32 and int8, batch 2, 8 tokens): "
                        "a check that it works, not a figure")
    p.add_argument("--child", nargs=2, metavar=("PRECISION", "KEEP"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick and not args.child:
        from components.engines.xtts.synthetic import make_checkpoint

        with tempfile.TemporaryDirectory(prefix="xtts-memory-quick-") as tmp:
            folder = make_checkpoint(Path(tmp), preset="tiny", seed=0)
            return main(["--precisions", "fp32,int8", "--batch", "2", "--tokens", "8", "--checkpoint", str(folder)])
    folder = ensure_checkpoint(args.checkpoint.expanduser())
    if args.child:
        print(json.dumps(measure(folder, args.child[0], args.batch, args.tokens, args.child[1] == "1")))
        return 0
    print(f"CPU: {cpu_description()}; load average {load_average()}")
    print(f"{'precision':9s} {'GPT originals':14s} {'after load MB':>14s} {'peak batch 1 MB':>16s} "
          f"{'peak batch ' + str(args.batch) + ' MB':>16s}")
    peaks: dict[tuple[str, bool], float] = {}
    for precision in args.precisions.split(","):
        for keep in (True, False):
            cmd = [sys.executable, __file__, "--child", precision, "1" if keep else "0", "--batch", str(args.batch),
                   "--tokens", str(args.tokens), "--checkpoint", str(folder)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                print(proc.stderr[-2000:])
                return 1
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            peaks[(precision, keep)] = r[f"peak_batch{args.batch}_mb"]
            print(f"{precision:9s} {'kept resident' if keep else 'released':14s} {r['after_load_mb']:14.0f} "
                  f"{r['peak_batch1_mb']:16.0f} {r[f'peak_batch{args.batch}_mb']:16.0f}", flush=True)
    for precision in args.precisions.split(","):
        print(f"{precision}: peak at batch {args.batch}, released vs kept resident: "
              f"{peaks[(precision, False)] / peaks[(precision, True)]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
