"""A small real run for listening tests: espeak clips of a few texts at two speaking rates (the two
"systems" of a test), written as a lab run folder (results.csv + wav/)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import soundfile as sf

TEXTS = ("The cat sat on the mat.", "A bird sings at dawn.", "Please close the door.")
SYSTEMS = {"slow": 0.8, "fast": 1.6}  # variant -> espeak rate factor


def espeak_run(results: Path, run_id: str = "20261204-000000-evaluate-abcd") -> str:
    """Write the run under ``results`` and return its id."""
    from components.engines.base import SynthRequest
    from components.engines.espeak import EspeakEngine

    run = results / run_id
    (run / "wav").mkdir(parents=True)
    engine = EspeakEngine()
    rows = []
    for system, speed in SYSTEMS.items():
        for text in TEXTS:
            n = len(rows) + 1
            path = run / "wav" / f"{n:04d}.wav"
            sf.write(path, engine.synthesize(SynthRequest(text, speed=speed)).audio, engine.sample_rate)
            rows.append({"run_id": run_id, "row": n, "experiment": "evaluate", "engine": "espeak",
                         "variant": system, "language": "en", "text": text, "status": "ok", "wav_path": str(path)})
    pd.DataFrame(rows).to_csv(run / "results.csv", index=False)
    return run_id
