"""MeloTTS worker: runs INSIDE MeloTTS's own Python environment, never in the lab's.

MeloTTS pins transformers 4.27.4, librosa 0.9.1 and more, which cannot live beside coqui-tts, so
the lab starts this script with the python of a separate environment and talks to it over
newline-delimited JSON on stdin/stdout. The protocol is documented in docs/melo.md. This file
uses the standard library and what MeloTTS itself installs (melo, torch, numpy) only: it must
never import the lab.

    python melo_worker.py --out-dir DIR [--device auto|cpu|cuda|cuda:N]

Requests (one JSON object per line)::

    {"id": 1, "op": "hello"}
    {"id": 2, "op": "synthesize", "text": "...", "language": "EN", "speaker": "EN-US",
     "speed": 1.0, "seed": 0}
    {"id": 3, "op": "shutdown"}

Answers: ``{"id": ..., "ok": true, ...}`` or ``{"id": ..., "ok": false, "error": "..."}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
import wave

PROTOCOL = 1
LANGUAGES = ("EN", "ES", "FR", "ZH", "JP", "KR")  # MeloTTS's own language codes


class Worker:
    def __init__(self, out_dir: str, device: str):
        self.out_dir = out_dir
        self.device = device
        self.models: dict[str, object] = {}  # language -> melo.api.TTS, loaded on first use
        self.count = 0

    def hello(self, msg: dict) -> dict:
        # Importing melo.api is what fetches tokenizers and dictionaries from the hub the first
        # time: doing it here makes a broken environment fail at start, with its own message.
        import melo.api  # noqa: F401
        import torch

        device = self.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        versions = {"torch": torch.__version__, "python": sys.version.split()[0]}
        from importlib.metadata import PackageNotFoundError, version

        versions["melotts"] = "?"
        # Upstream's setup.py names the distribution MyShellTTSBase; forks call it melotts.
        for dist in ("MyShellTTSBase", "melotts", "melo-tts"):
            try:
                versions["melotts"] = version(dist)
                break
            except PackageNotFoundError:
                continue
        return {"protocol": PROTOCOL, "engine": "MeloTTS", "languages": list(LANGUAGES),
                "device": device, "versions": versions}

    def model(self, language: str):
        if language not in LANGUAGES:
            raise ValueError(f"MeloTTS has no language {language!r}; it has {', '.join(LANGUAGES)}")
        if language not in self.models:
            from melo.api import TTS

            self.models[language] = TTS(language=language, device=self.device)
        return self.models[language]

    def synthesize(self, msg: dict) -> dict:
        text = msg.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ValueError("text is empty")
        language = msg.get("language", "EN")
        speed = float(msg.get("speed", 1.0))
        t0 = time.perf_counter()
        tts = self.model(language)
        t_load = time.perf_counter() - t0
        spk2id = tts.hps.data.spk2id
        names = list(spk2id.keys())
        speaker = msg.get("speaker") or next(
            (n for n in (language, f"{language}-Default", f"{language}-US") if n in names), names[0])
        if speaker not in names:
            raise ValueError(f"MeloTTS {language} has no speaker {speaker!r}; it has {', '.join(names)}")
        seed = msg.get("seed")
        import torch

        # MeloTTS samples durations and latents (noise_scale): a seed makes the output repeatable.
        torch.manual_seed(int(seed) if seed is not None else 0)
        t0 = time.perf_counter()
        audio = tts.tts_to_file(text, spk2id[speaker], output_path=None, speed=speed, quiet=True)
        t_synth = time.perf_counter() - t0
        sr = int(tts.hps.data.sampling_rate)
        self.count += 1
        path = os.path.join(self.out_dir, f"melo-{os.getpid()}-{self.count:06d}.wav")
        write_wav(path, audio, sr)
        return {"path": path, "sample_rate": sr, "seconds": len(audio) / sr, "speaker": speaker,
                "timings": {"load": t_load, "synth": t_synth}}


def write_wav(path: str, audio, sr: int) -> None:
    """16-bit PCM mono WAV with the standard library (soundfile is MeloTTS's, not ours to rely on)."""
    import numpy as np

    pcm = (np.clip(np.asarray(audio, dtype=np.float32).reshape(-1), -1.0, 1.0) * 32767).astype("<i2")
    tmp = path + ".tmp"
    with wave.open(tmp, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())
    os.replace(tmp, path)  # the lab never sees half a file


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="MeloTTS worker for XTTS Lab (protocol: docs/melo.md)")
    p.add_argument("--out-dir", required=True, help="folder the lab reads WAVs from")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)

    # The protocol owns the real stdout. MeloTTS and its dependencies print progress with print():
    # send fd 1 (and sys.stdout) to stderr so nothing they print can corrupt an answer.
    proto = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def reply(obj: dict) -> None:
        proto.write(json.dumps(obj, ensure_ascii=False) + "\n")
        proto.flush()

    worker = Worker(args.out_dir, args.device)
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            msg = json.loads(line)
            if not isinstance(msg, dict):
                raise ValueError("a request must be a JSON object")
        except ValueError as e:
            reply({"id": None, "ok": False, "error": f"bad request: {e}"})
            continue
        rid, op = msg.get("id"), msg.get("op")
        try:
            if op == "hello":
                reply({"id": rid, "ok": True, **worker.hello(msg)})
            elif op == "synthesize":
                reply({"id": rid, "ok": True, **worker.synthesize(msg)})
            elif op == "shutdown":
                reply({"id": rid, "ok": True})
                break
            else:
                reply({"id": rid, "ok": False, "error": f"unknown op {op!r}"})
        except Exception as e:  # noqa: BLE001 - every failure is an answer, never a dead worker
            traceback.print_exc(file=sys.stderr)
            reply({"id": rid, "ok": False, "error": f"{type(e).__name__}: {e}"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
