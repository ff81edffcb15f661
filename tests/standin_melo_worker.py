"""STAND-IN for the MeloTTS worker, for tests only. It is NOT MeloTTS and runs no model.

MeloTTS cannot be installed on the machines that test the lab (its pins conflict with coqui-tts
and it downloads from the Hugging Face hub), so tests drive the real adapter
(``components/engines/melo.py``) against this script instead. It speaks the same protocol as
``components/engines/workers/melo_worker.py`` (docs/melo.md) and answers ``synthesize`` with a sine tone whose length
follows the text length and 1/speed. Standard library only.

Misbehaviour on demand, to test the adapter's error handling:
    env STANDIN_MELO_START=fail    ``hello`` answers ok=false, as a worker without melo would
    env STANDIN_MELO_START=exit    exits with status 1 before answering anything
    env STANDIN_MELO_RECORD=FILE   append every request received to FILE (JSON lines)
    text containing [crash]        dies in the middle of the request (exit status 7)
    text containing [garbage]      answers a line that is not JSON
    text containing [hang]         never answers
"""

from __future__ import annotations

import argparse
import json
import math
import os
import struct
import sys
import time
import wave

LANGUAGES = ("EN", "ES", "FR", "ZH", "JP", "KR")
ENGLISH = ("EN-US", "EN-BR", "EN_INDIA", "EN-AU", "EN-Default")
SAMPLE_RATE = 44100
SECONDS_PER_CHAR = 0.06


def tone(path: str, seconds: float, freq: float) -> None:
    n = int(seconds * SAMPLE_RATE)
    frames = b"".join(struct.pack("<h", int(12000 * math.sin(2 * math.pi * freq * i / SAMPLE_RATE)))
                      for i in range(n))
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(frames)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out-dir", required=True)
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    if os.environ.get("STANDIN_MELO_START") == "exit":
        print("Traceback (most recent call last):\nImportError: stand-in told to fail at start", file=sys.stderr)
        return 1
    record = os.environ.get("STANDIN_MELO_RECORD")
    count = 0

    def reply(obj: dict) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            msg = json.loads(line)
            assert isinstance(msg, dict)
        except (ValueError, AssertionError):
            reply({"id": None, "ok": False, "error": "bad request: not a JSON object"})
            continue
        if record:
            with open(record, "a") as f:
                f.write(json.dumps(msg) + "\n")
        rid, op = msg.get("id"), msg.get("op")
        if op == "hello":
            if os.environ.get("STANDIN_MELO_START") == "fail":
                reply({"id": rid, "ok": False, "error": "ModuleNotFoundError: No module named 'melo'"})
            else:
                reply({"id": rid, "ok": True, "protocol": 1, "engine": "MeloTTS stand-in",
                       "languages": list(LANGUAGES), "device": "cpu",
                       "versions": {"melotts": "stand-in", "python": sys.version.split()[0]}})
        elif op == "shutdown":
            reply({"id": rid, "ok": True})
            break
        elif op == "synthesize":
            text, lang = msg.get("text", ""), msg.get("language")
            # Default voice as the real worker picks it: the language's own, EN-Default for English.
            speaker = msg.get("speaker") or ("EN-Default" if lang == "EN" else lang)
            if "[crash]" in text:
                print("stand-in: crashing mid-request", file=sys.stderr, flush=True)
                os._exit(7)
            if "[garbage]" in text:
                sys.stdout.write("Downloading (…)okenizer.json: 100%\n")
                sys.stdout.flush()
                continue
            if "[hang]" in text:
                time.sleep(3600)
            if lang not in LANGUAGES:
                reply({"id": rid, "ok": False, "error": f"ValueError: MeloTTS has no language {lang!r}"})
                continue
            if speaker not in (ENGLISH if lang == "EN" else (lang,)):
                reply({"id": rid, "ok": False, "error": f"ValueError: no speaker {speaker!r} for {lang}"})
                continue
            count += 1
            path = os.path.join(args.out_dir, f"standin-{count:04d}.wav")
            seconds = max(0.2, SECONDS_PER_CHAR * len(text) / float(msg.get("speed", 1.0)))
            t0 = time.perf_counter()
            tone(path, seconds, 220.0)
            reply({"id": rid, "ok": True, "path": path, "sample_rate": SAMPLE_RATE, "seconds": seconds,
                   "speaker": speaker, "timings": {"load": 0.0, "synth": time.perf_counter() - t0}})
        else:
            reply({"id": rid, "ok": False, "error": f"unknown op {op!r}"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
