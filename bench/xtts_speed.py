"""XTTS v2 speed: stock coqui ``Xtts.inference`` against the lab's fast path, in one run.

    uv run python bench/xtts_speed.py                      # int8, 86 tokens (~4 s of audio)
    uv run python bench/xtts_speed.py --precision fp32 --tokens 86 --threads 2 --repeats 3

Builds the full-size v2 architecture with random weights (fixed seed; generated once into
``--checkpoint``, default ~/.cache/xtts-lab/bench-full-seed0), pins the number of GPT tokens
(random weights never emit the stop token), warms both paths up, then times them interleaved
(stock, lab, stock, lab, ...) so that load from other processes hits both alike, and reports
medians per stage: GPT ms/token, the second latent forward, HiFiGAN, model load, and streaming
time to first audio. It also measures this machine's memory read bandwidth, the floor it puts
on GPT ms/token for the chosen precision, and how far from the floor the lab path is.

With random weights nothing can be heard; for bf16/int8 the run reports the deviation from
fp32 instead: free-running token agreement with stock (same seed), the latent error on stock's
own codes, and the audio error of the vocoder alone.

``--batch N`` (default 8) then decodes N different rows (languages, voices, seeds) as one batch
against the same N rows one after another, both on the lab path in the same precision, and
prints the GPT tokens/s of both, HiFiGAN over the batch's rows (``vocode_batch``: rows in one
padded, masked call, against one row per call), batch-vs-solo token agreement and peak resident
memory. The last lines are ``speedup: N.NNx`` (single stream: stock synthesis time / lab
synthesis time, load excluded), ``batch speedup: N.NNx`` (batched GPT tokens/s /
one-after-another GPT tokens/s), ``batch end-to-end speedup: N.NNx`` (the N rows one after
another, GPT + HiFiGAN, / the same rows as a batch) and ``aggregate real-time: N.NNx`` (seconds
of audio the batch made / seconds it took).

``--quick`` runs the same code on the tiny generated checkpoint (2-layer GPT, full-size HiFiGAN)
with short rows, one repeat and a batch of 4: a check that the bench works, in well under a
minute; its figures say nothing about full-size speed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere in the checkout

from bench.machine import cpu_description, load_average  # noqa: E402
from components.core import PRECISIONS  # noqa: E402

TEXT = "the quick brown fox jumps over the lazy dog. hello world, how are you today?"
DEFAULT_CHECKPOINT = Path("~/.cache/xtts-lab/bench-full-seed0").expanduser()
QUICK_CHECKPOINT = Path("~/.cache/xtts-lab/bench-tiny-seed0").expanduser()


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--precision", choices=PRECISIONS, default="int8",
                   help="lab path precision (stock is always fp32); default int8, the fastest here. "
                        "fp32 is the exact mode (same codes as stock), bf16/int8 are opt-in")
    p.add_argument("--tokens", type=int, default=86, help="GPT tokens per synthesis (86 = 4.0 s of audio)")
    p.add_argument("--stream-tokens", type=int, default=215,
                   help="tokens of the streaming measurement (215 = ~10 s of audio); 0 skips it")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per path (the median is reported)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT,
                   help="full-size random-weight checkpoint folder (generated if missing)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed of the timed runs")
    p.add_argument("--batch", type=int, default=8,
                   help="rows of the batch measurement: N different rows decoded as one batch against the "
                        "same N rows one after another, lab path, same precision (0 skips it)")
    p.add_argument("--quick", action="store_true",
                   help="the same code on the tiny generated checkpoint, short rows, one repeat, batch of 4 "
                        "(checks the bench runs; its figures say nothing about full-size speed)")
    args = p.parse_args(argv)
    if args.quick:
        args.tokens, args.stream_tokens, args.repeats = min(args.tokens, 12), min(args.stream_tokens, 20), 1
        args.batch = min(args.batch, 4)
        if args.checkpoint == DEFAULT_CHECKPOINT:
            args.checkpoint = QUICK_CHECKPOINT
    if args.tokens < 2 or args.repeats < 1 or args.stream_tokens < 0 or args.batch < 0:
        p.error("--tokens must be >= 2, --repeats >= 1, --stream-tokens >= 0, --batch >= 0")
    return args


def ensure_checkpoint(folder: Path, preset: str = "full") -> Path:
    """The random-weight checkpoint, generated once (full: ~30 s, ~1.9 GB; tiny: a few s, ~90 MB)."""
    from components.engines.xtts.synthetic import REQUIRED_FILES, make_checkpoint

    if all((folder / f).is_file() for f in REQUIRED_FILES):
        return folder
    print(f"generating the {preset}-size random-weight checkpoint in {folder} (once) ...", flush=True)
    return make_checkpoint(folder, preset=preset, seed=0)


def read_bandwidth(device) -> float:
    """Memory read bandwidth in bytes/s: the median of 9 sums over 512 MB (16x the L3 cache).

    The median, not the best: on a shared machine single runs swing by 2x either way."""
    import torch

    x = torch.ones(128 * 1024 * 1024, dtype=torch.float32, device=device)
    times = []
    for _ in range(9):
        sync(device)
        t0 = time.perf_counter()
        x.sum()
        sync(device)
        times.append(time.perf_counter() - t0)
    return x.numel() * 4 / statistics.median(times)


def sync(device) -> None:
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def gpt_bytes_per_token(model, precision: str) -> int:
    """Weight bytes one decoding step must read: the transformer blocks' matrices in
    ``precision`` (int8/int4 with their per-block fp32 scales), their norms and biases and the
    mel head in fp32 (what the lab path keeps there)."""
    from components.engines.xtts.ort_gpt import BITS, block_size

    matrices = [p for n, p in model.gpt.gpt.h.named_parameters() if n.endswith("weight") and p.dim() == 2]
    if precision in BITS:  # MatMulNBits: bits per weight plus one fp32 scale per block of K rows
        blocks = sum(p.numel() * BITS[precision] // 8 + p.numel() // block_size(p.shape[0]) * 4 for p in matrices)
    else:
        blocks = sum(p.numel() for p in matrices) * {"fp32": 4, "bf16": 2}[precision]
    rest = sum(p.numel() for n, p in model.gpt.gpt.h.named_parameters() if not (n.endswith("weight") and p.dim() == 2))
    head = model.gpt.mel_head.weight.numel()
    return blocks + (rest + head) * 4


def stock_run(model, voice, tokens: int, seed: int, device) -> dict:
    """Stock ``Xtts.inference`` with its three stages timed; also returns its codes and latents."""
    import torch

    gpt, dec = model.gpt, model.hifigan_decoder
    seen: dict = {"gpt": 0.0, "latents": 0.0, "vocoder": 0.0}

    def timed(name, fn, key=None):
        def run(*a, **k):
            sync(device)
            t0 = time.perf_counter()
            out = fn(*a, **k)
            sync(device)
            seen[name] += time.perf_counter() - t0
            if key:
                seen[key] = out
            return out
        return run

    gpt.generate = timed("gpt", gpt.generate, "codes")
    gpt.forward = timed("latents", gpt.forward, "latent_tensor")
    dec.forward = timed("vocoder", dec.forward)
    try:
        torch.manual_seed(seed)
        t0 = time.perf_counter()
        out = model.inference(TEXT, "en", voice[0], voice[1], min_new_tokens=tokens, max_new_tokens=tokens)
        seen["total"] = time.perf_counter() - t0
    finally:
        del gpt.generate, gpt.forward, dec.forward
    seen["wav"] = out["wav"]
    return seen


def lab_run(model, voice, tokens: int, seed: int, device) -> dict:
    """The lab path: fast generation (latents reused) + HiFiGAN, stages timed."""
    import torch

    from components.engines.xtts.settings import XttsSettings as GenerationSettings
    from components.engines.xtts import fast

    settings = GenerationSettings()  # the same values as stock inference()'s defaults
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    text = fast.encode(model, TEXT, "en")
    g = fast.generate(model, text, voice[0], settings, min_new_tokens=tokens, max_new_tokens=tokens)
    sync(device)
    t1 = time.perf_counter()
    wav = fast.vocode(model, g.latents, voice[1])
    sync(device)
    t2 = time.perf_counter()
    return {"gpt": t1 - t0, "decode": g.timings["decode"], "latents": 0.0, "vocoder": t2 - t1,
            "total": t2 - t0, "wav": wav, "codes": g.tokens, "latent_tensor": g.latents, "text": text}


def stock_ttfa(model, voice, seed: int, tokens: int = 100) -> float:
    """Seconds until stock ``inference_stream`` yields its first chunk (20 tokens + HiFiGAN)."""
    import torch

    torch.manual_seed(seed)
    t0 = time.perf_counter()
    stream = model.inference_stream(TEXT, "en", voice[0], voice[1], min_new_tokens=tokens, max_new_tokens=tokens)
    next(stream)
    out = time.perf_counter() - t0
    stream.close()
    return out


def lab_stream(model, voice, tokens: int, seed: int, device) -> dict:
    """Lab streaming of ``tokens`` tokens: time to first audio, total, and the same non-streamed."""
    import torch

    from components.engines.xtts.settings import XttsSettings as GenerationSettings
    from components.engines.xtts import fast

    settings = GenerationSettings()
    text = fast.encode(model, TEXT, "en")
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    g = fast.generate(model, text, voice[0], settings, min_new_tokens=tokens, max_new_tokens=tokens)
    fast.vocode(model, g.latents, voice[1])
    sync(device)
    whole = time.perf_counter() - t0
    torch.manual_seed(seed)
    stats: dict = {}
    t0 = time.perf_counter()
    n = 0
    for chunk in fast.stream(model, text, voice[0], voice[1], settings, min_new_tokens=tokens,
                             max_new_tokens=tokens, stats=stats):
        n += len(chunk)
    sync(device)
    return {"whole": whole, "streamed": time.perf_counter() - t0, "ttfa": stats["ttfa_seconds"],
            "chunks": stats["chunks"], "seconds": n / model.args.output_sample_rate}


def deviation(stock_runs: list[dict], lab_runs: list[dict], lab_model, voice) -> dict:
    """How far the lab path is from stock fp32 (same seeds): tokens, latents, audio."""
    import numpy as np
    import torch

    from components.engines.xtts import fast

    same = total = 0
    first_diff = []
    for s, l in zip(stock_runs, lab_runs):
        a, b = s["codes"][0], l["codes"][0]
        eq = (a == b)
        same += int(eq.sum())
        total += len(a)
        first_diff.append(int((~eq).nonzero()[0]) if not bool(eq.all()) else len(a))
    s, l = stock_runs[0], lab_runs[0]
    forced = fast.teacher_forced_latents(lab_model, l["text"], voice[0], s["codes"])
    ref = s["latent_tensor"].float().cpu()
    err = (forced.float().cpu() - ref)
    wav = fast.vocode(lab_model, s["latent_tensor"], voice[1])
    noise = np.asarray(wav, dtype=np.float64) - s["wav"]
    snr = 10 * np.log10(np.sum(s["wav"].astype(np.float64) ** 2) / max(np.sum(noise ** 2), 1e-30))
    return {"token_agreement": same / total, "first_divergence": min(first_diff),
            "latent_max_abs": float(err.abs().max()), "latent_rel": float(err.norm() / ref.norm()),
            "vocoder_snr_db": float(snr), "audio_equal_fp32": bool(torch.equal(
                torch.as_tensor(lab_runs[0]["wav"]), torch.as_tensor(s["wav"])))}


# Rows of the batch measurement: several languages, texts of different lengths (the voices
# alternate between the checkpoint's speakers, the seeds differ).
BATCH_ROWS = (
    ("the quick brown fox jumps over the lazy dog.", "en"),
    ("el veloz murcielago hindu comia feliz cardillo y kiwi.", "es"),
    ("portez ce vieux whisky au juge blond qui fume.", "fr"),
    ("victor jagt zwölf boxkämpfer quer über den großen sylter deich.", "de"),
    ("hello world, how are you today?", "en"),
    ("pchnąć w tę łódź jeża lub ośm skrzyń fig.", "pl"),
    ("съешь же ещё этих мягких французских булок.", "ru"),
    ("quel vituperabile xenofobo zelante assaggia il whisky.", "it"),
)


def batch_items(model, voices, n: int, tokens: int, seed: int):
    """N different rows (languages, texts, voices, seeds), each pinned to ``tokens`` codes."""
    import torch

    from components.engines.xtts.settings import XttsSettings as GenerationSettings
    from components.engines.xtts import fast

    items = []
    for i in range(n):
        text, lang = BATCH_ROWS[i % len(BATCH_ROWS)]
        items.append(fast.BatchItem([fast.encode(model, text, lang)], voices[i % len(voices)][0],
                                    GenerationSettings(), torch.Generator().manual_seed(seed + i),
                                    min_new_tokens=tokens, max_new_tokens=tokens))
    return items


def batch_compare(model, voices, n: int, tokens: int, seed: int, device) -> dict:
    """The same N rows one after another (``generate``, seeded like the engine seeds a single
    synthesis) and as one batch (``generate_batch``); GPT time, HiFiGAN time and codes of each,
    with peak resident memory while each ran."""
    import torch

    from components.engines.xtts import fast
    from experiments.benchmark import PeakMemory

    items = batch_items(model, voices, n, tokens, seed)
    out: dict = {}
    with PeakMemory(str(device)) as mem:
        t_gpt = t_voc = prefill = 0.0
        solo_codes = []
        for i, item in enumerate(items):
            torch.manual_seed(seed + i)
            t0 = time.perf_counter()
            g = fast.generate(model, item.chunks[0], item.gpt_cond_latent, item.settings,
                              min_new_tokens=tokens, max_new_tokens=tokens)
            sync(device)
            t1 = time.perf_counter()
            fast.vocode(model, g.latents, voices[i % len(voices)][1])
            sync(device)
            t_gpt += t1 - t0
            t_voc += time.perf_counter() - t1
            solo_codes.append(g.tokens[0])
            prefill += g.timings["prefill"]
    out["solo"] = {"gpt": t_gpt, "vocoder": t_voc, "codes": solo_codes, "peak_rss_mb": mem.peak_rss_mb,
                   "prefill": prefill}
    items = batch_items(model, voices, n, tokens, seed)
    embeddings = [voices[i % len(voices)][1] for i in range(n)]
    with PeakMemory(str(device)) as mem:
        prefill = 0.0
        batch_codes, latents = [None] * n, [None] * n
        t0 = time.perf_counter()
        for done in fast.generate_batch(model, items, batch_size=n):
            batch_codes[done.index] = done.generations[0].tokens[0]
            latents[done.index] = done.generations[0].latents
            prefill += done.generations[0].timings["prefill"]
        sync(device)
        t_gpt = time.perf_counter() - t0
        # HiFiGAN over the batch's rows as the lab runs it on this device (rows per call from
        # fast.rows_per_vocoder_call), then the other way round for comparison.
        per_call = fast.rows_per_vocoder_call(device.type)
        t0 = time.perf_counter()
        wavs = fast.vocode_batch(model, latents, embeddings)
        sync(device)
        t_voc = time.perf_counter() - t0
    other = n if per_call == 1 else 1
    t0 = time.perf_counter()
    fast.vocode_batch(model, latents, embeddings, rows_per_call=other)
    sync(device)
    t_other = time.perf_counter() - t0
    out["batch"] = {"gpt": t_gpt, "vocoder": t_voc, "codes": batch_codes, "peak_rss_mb": mem.peak_rss_mb,
                    "prefill": prefill, "audio_s": sum(len(w) for w in wavs) / model.args.output_sample_rate,
                    "rows_per_call": per_call, "vocoder_other": t_other, "rows_per_call_other": other}
    same = sum(int((a == b).sum()) for a, b in zip(solo_codes, batch_codes))
    out["agreement"] = same / sum(len(a) for a in solo_codes)
    out["rows_equal"] = sum(bool(torch.equal(a, b)) for a, b in zip(solo_codes, batch_codes))
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.models.xtts import Xtts

    from components.engines.xtts import fast
    from components.engines.xtts.precision import _fast

    load_before = load_average()
    folder = ensure_checkpoint(args.checkpoint.expanduser(), "tiny" if args.quick else "full")
    device = torch.device(args.device)

    t0 = time.perf_counter()
    config = XttsConfig()
    config.load_json(str(folder / "config.json"))
    stock = Xtts(config)
    stock.load_checkpoint(config, checkpoint_dir=str(folder), eval=True)
    stock.to(device)
    sync(device)
    stock_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    lab = fast.load_fast(folder, device=str(device), precision=args.precision)
    sync(device)
    lab_load = time.perf_counter() - t0

    first = next(iter(stock.speaker_manager.speakers.values()))
    voice = (first["gpt_cond_latent"].to(device), first["speaker_embedding"].to(device))
    bandwidth = read_bandwidth(device)

    # Warm-up: first calls pay for page faults, oneDNN plans and allocator growth.
    stock_run(stock, voice, 8, args.seed, device)
    lab_run(lab, voice, 8, args.seed, device)
    lab_run(lab, voice, args.tokens, args.seed, device)

    stock_runs, lab_runs = [], []
    with torch.inference_mode():
        for r in range(args.repeats):
            stock_runs.append(stock_run(stock, voice, args.tokens, args.seed + r, device))
            lab_runs.append(lab_run(lab, voice, args.tokens, args.seed + r, device))
            print(f"run {r + 1}/{args.repeats}: stock {stock_runs[-1]['total']:.2f} s, "
                  f"lab {lab_runs[-1]['total']:.2f} s", flush=True)
    dev = deviation(stock_runs, lab_runs, lab, voice)
    batch = None
    if args.batch:
        voices = [(v["gpt_cond_latent"].to(device), v["speaker_embedding"].to(device))
                  for v in lab.speaker_manager.speakers.values()]
        batch_compare(lab, voices, min(2, args.batch), min(4, args.tokens), args.seed, device)  # warm-up (oneDNN plans)
        batch = batch_compare(lab, voices, args.batch, args.tokens, args.seed, device)
    streaming = lab_stream(lab, voice, args.stream_tokens, args.seed, device) if args.stream_tokens else None
    ttfa_stock = stock_ttfa(stock, voice, args.seed, min(100, _fast(lab).max_new_tokens)) if args.stream_tokens else None

    def med(runs, key):
        return statistics.median(r[key] for r in runs)

    audio_s = len(lab_runs[0]["wav"]) / stock.args.output_sample_rate
    floor_ms = gpt_bytes_per_token(lab, args.precision) / bandwidth * 1e3
    sg, lg = med(stock_runs, "gpt") / args.tokens * 1e3, med(lab_runs, "gpt") / args.tokens * 1e3
    ld = med(lab_runs, "decode") / args.tokens * 1e3  # the steps alone: what the floor bounds
    st, lt = med(stock_runs, "total"), med(lab_runs, "total")
    rows = [
        ("model load (s)", stock_load, lab_load),
        ("GPT ms/token (incl. prompt)", sg, lg),
        ("GPT ms/token (decode steps only)", float("nan"), ld),
        ("latent 2nd forward (s)", med(stock_runs, "latents"), med(lab_runs, "latents")),
        ("HiFiGAN (s)", med(stock_runs, "vocoder"), med(lab_runs, "vocoder")),
        ("synthesis total (s)", st, lt),
        ("real-time factor", st / audio_s, lt / audio_s),
    ]
    if streaming:
        rows.append((f"stream: first audio (s), {args.stream_tokens} tok", ttfa_stock, streaming["ttfa"]))
    print()
    size = "tiny generated checkpoint (2-layer GPT, full-size HiFiGAN)" if args.quick else "XTTS v2 full-size architecture"
    print(f"{size}, random weights (seed 0), {args.tokens} tokens = {audio_s:.2f} s audio")
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"lab precision {args.precision}"
          f"{'' if _fast(lab).ort is None else ' (ONNX Runtime, worker threads spinning: ' + ('yes' if _fast(lab).ort.spinning else 'no, XTTS_LAB_ORT_SPIN=1 for yes') + ')'}, "
          f"{args.repeats} interleaved runs (median), "
          f"load average before {load_before}, after {load_average()}")
    print(f"{'stage':38s} {'stock':>10s} {'lab':>10s} {'ratio':>7s}")
    for name, a, b in rows:
        ratio = f"{a / b:6.2f}x" if b and a == a else "    --"
        stock_cell = f"{a:10.3f}" if a == a else f"{'--':>10s}"  # NaN: stock has no such stage
        print(f"{name:38s} {stock_cell} {b:10.3f} {ratio}")
    print(f"memory read bandwidth {bandwidth / 1e9:.1f} GB/s -> GPT weight-streaming floor "
          f"{floor_ms:.1f} ms/token in {args.precision}; lab GPT at {lg / floor_ms:.2f}x the floor with the "
          f"prompt, {ld / floor_ms:.2f}x in the decode steps alone "
          f"(stock fp32 floor {gpt_bytes_per_token(lab, 'fp32') / bandwidth * 1e3:.1f} ms/token)")
    if streaming:
        print(f"lab streaming of {streaming['seconds']:.1f} s audio: first audio {streaming['ttfa']:.2f} s "
              f"= {streaming['ttfa'] / streaming['whole']:.0%} of the whole synthesis ({streaming['whole']:.2f} s); "
              f"streamed total {streaming['streamed']:.2f} s = {streaming['streamed'] / streaming['whole']:.2f}x "
              f"non-streamed, {streaming['chunks']} chunks")
    print(f"deviation from stock fp32 ({args.precision}): token agreement {dev['token_agreement']:.1%} "
          f"(first divergence at token {dev['first_divergence']}), latents on stock's codes "
          f"max abs {dev['latent_max_abs']:.2e}, relative {dev['latent_rel']:.2e}; "
          f"vocoder alone SNR {dev['vocoder_snr_db']:.1f} dB")
    if batch:
        n_tok = args.batch * args.tokens
        solo, bat = batch["solo"], batch["batch"]
        print(f"batch of {args.batch} different rows ({len({l for _, l in BATCH_ROWS[:args.batch]})} languages, "
              f"{len(lab.speaker_manager.speakers)} voices, {args.tokens} tokens each), lab path in {args.precision}: "
              f"one after another {n_tok / solo['gpt']:.1f} tokens/s, batched {n_tok / bat['gpt']:.1f} tokens/s (GPT); "
              f"with HiFiGAN {solo['gpt'] + solo['vocoder']:.2f} s -> {bat['gpt'] + bat['vocoder']:.2f} s "
              f"({(solo['gpt'] + solo['vocoder']) / (bat['gpt'] + bat['vocoder']):.2f}x end to end)")
        print(f"HiFiGAN over the batch's {args.batch} rows ({bat['audio_s']:.1f} s of audio): "
              f"{bat['rows_per_call']} row(s) per call (the lab's choice on {device.type}) {bat['vocoder']:.2f} s, "
              f"{bat['rows_per_call_other']} per call {bat['vocoder_other']:.2f} s; one row after another "
              f"(solo) {solo['vocoder']:.2f} s")
        sd, bd = solo["gpt"] - solo["prefill"], bat["gpt"] - bat["prefill"]
        print(f"decoding only (each row's prompt prefill, the same work either way, left out): one after another "
              f"{n_tok / sd:.1f} tokens/s, batched {n_tok / bd:.1f} tokens/s ({sd / bd:.2f}x)")
        print(f"batch vs solo token agreement {batch['agreement']:.1%} ({batch['rows_equal']} of {args.batch} rows "
              f"identical); peak RSS of the process (stock model loaded too) one after another "
              f"{solo['peak_rss_mb']:.0f} MB, batched {bat['peak_rss_mb']:.0f} MB")
    print(f"CPU: {cpu_description()}; torch threads {torch.get_num_threads()}; load average at the end "
          f"{load_average()}")
    print(f"speedup: {st / lt:.2f}x")
    if batch:
        solo, bat = batch["solo"], batch["batch"]
        print(f"batch speedup: {solo['gpt'] / bat['gpt']:.2f}x")
        print(f"batch end-to-end speedup: {(solo['gpt'] + solo['vocoder']) / (bat['gpt'] + bat['vocoder']):.2f}x")
        print(f"aggregate real-time: {bat['audio_s'] / (bat['gpt'] + bat['vocoder']):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
