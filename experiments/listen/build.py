"""Building a listening test from a run's rows: one system per value of the factor column, clips of
different systems matched on text and every other varying setting, pairs (pairwise) or items (MOS,
SMOS), and the control items mixed in (an identical pair, a low anchor, a repeated clip)."""

from __future__ import annotations

import json
import os
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from components.core import LabError

from .common import ANCHOR_SNR_DB, FACTOR_COLUMNS, MODES, _now, _seed


def factors_of(frame: pd.DataFrame) -> list[str]:
    """The columns of ``frame`` that can be a test's factor: two or more values among rows with audio."""
    ok = _clips_frame(frame)
    return [c for c in FACTOR_COLUMNS if c in ok and ok[c].nunique(dropna=True) >= 2]


def _clips_frame(frame: pd.DataFrame) -> pd.DataFrame:
    df = frame.replace("", np.nan)
    if "status" in df:
        df = df[df["status"].astype(str) == "ok"]
    if "wav_path" not in df or "text" not in df:
        return df.iloc[0:0]
    return df[df["wav_path"].notna() & df["text"].notna()]


def _label(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _anchor(src: Path, dest: Path, seed: int) -> None:
    """The low anchor: ``src`` with white noise at ANCHOR_SNR_DB (same text, clearly worse)."""
    import soundfile as sf

    audio, sr = sf.read(str(src), dtype="float32", always_2d=False)
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    rms = float(np.sqrt(np.mean(audio ** 2))) or 1e-3
    noise = np.random.default_rng(seed).standard_normal(len(audio)).astype(np.float32)
    noisy = audio + noise * rms / 10 ** (ANCHOR_SNR_DB / 20)
    noisy *= 0.95 / max(1e-6, float(np.abs(noisy).max()))
    sf.write(str(dest), noisy, sr, subtype="PCM_16")


def build_test(listen_dir: Path, frame: pd.DataFrame, factor: str, mode: str = "pairwise", *,
               source: dict[str, Any] | None = None, controls: bool = True, max_pairs: int = 60) -> str:
    """Write a new test under ``listen_dir`` (``<test_id>/test.json`` and its anchor clips) over the
    rows of ``frame``; returns its id. See ``ListenTests.create_from_frame``."""
    if mode not in MODES:
        raise LabError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    ok = _clips_frame(frame)
    if factor not in FACTOR_COLUMNS:
        raise LabError(f"factor must be one of {', '.join(FACTOR_COLUMNS)}, got {factor!r}")
    if factor not in ok or ok[factor].nunique(dropna=True) < 2:
        raise LabError(f"factor {factor!r} takes fewer than two values in this run's rows with audio; "
                       f"pick one of: {', '.join(factors_of(frame)) or 'none (the run varies nothing)'}")
    ok = ok[ok[factor].notna()]
    # Match clips on the settings that vary within a system (two languages, two seeds...); one that
    # only changes with the factor (each engine's own default speaker) is part of the system.
    others = [c for c in factors_of(ok) if c != factor
              and ok.groupby(factor)[c].nunique(dropna=True).max() > 1]
    clips: dict[str, dict[str, Any]] = {}
    groups: list[list[str]] = []  # tokens of clips that share a text and every other setting
    for _, group in ok.groupby(["text", *others], dropna=False, sort=False):
        tokens = []
        for system, rows in group.groupby(factor, sort=True):
            row = rows.iloc[0]
            token = secrets.token_urlsafe(12)
            reference = row.get("reference")
            clips[token] = {"system": _label(system), "text": str(row["text"]), "path": str(row["wav_path"]),
                            "reference": str(reference) if isinstance(reference, str) and reference else None,
                            "run_dir": str(Path(row["wav_path"]).parent.parent),
                            "row": int(float(row["row"])) if "row" in row and pd.notna(row["row"]) else None,
                            "kind": "real"}
            tokens.append(token)
        if len(tokens) >= 2:
            groups.append(tokens)
        else:
            for t in tokens:
                clips.pop(t)
    if not groups:
        raise LabError(f"no text was spoken by two or more values of {factor!r}: nothing to compare")
    references: dict[str, str] = {}  # SMOS: reference file -> its token
    if mode == "smos":
        for tokens in groups:
            for t in tokens:
                ref = clips[t]["reference"]
                if ref and Path(ref).is_file() and ref not in references:
                    references[ref] = secrets.token_urlsafe(12)
        if not references:
            raise LabError("smos compares each voice with the recording it cloned, and this run's clips have "
                           "no reference recording: use pairwise or mos, or a run of an engine that clones")
    systems = sorted({c["system"] for c in clips.values()})
    test_id = f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}"
    test_dir = Path(listen_dir) / test_id
    (test_dir / "clips").mkdir(parents=True)
    rng = np.random.default_rng(_seed(test_id))
    units: list[dict[str, Any]] = []
    if mode == "pairwise":
        for tokens in groups:
            for i in range(len(tokens)):
                for j in range(i + 1, len(tokens)):
                    units.append({"kind": "real", "clips": [tokens[i], tokens[j]]})
        if len(units) > max_pairs:  # many systems x texts: a sample every rater can finish
            keep = sorted(rng.choice(len(units), max_pairs, replace=False))
            units = [units[k] for k in keep]
    else:
        units = [{"kind": "real", "clips": [t]} for tokens in groups for t in tokens
                 if mode == "mos" or clips[t]["reference"] in references][:max_pairs]
        if mode == "smos":
            for unit in units:
                unit["reference"] = references[clips[unit["clips"][0]]["reference"]]
            for ref, token in references.items():
                clips[token] = {"system": "(reference)", "text": "", "path": ref, "reference": None,
                                "run_dir": "", "row": None, "kind": "reference"}
    if controls:
        base = units[int(rng.integers(len(units)))]["clips"][0]
        anchor = secrets.token_urlsafe(12)
        path = test_dir / "clips" / f"anchor-{len(clips):03d}.wav"
        _anchor(Path(clips[base]["path"]), path, _seed(test_id, "anchor"))
        clips[anchor] = {**clips[base], "system": "(anchor)", "path": str(path), "row": None, "kind": "anchor"}
        copy = secrets.token_urlsafe(12)  # the same file under another token: the page cannot tell
        clips[copy] = {**clips[base], "kind": "copy"}
        if mode == "pairwise":
            units += [{"kind": "identical", "clips": [base, copy]}, {"kind": "anchor", "clips": [base, anchor]}]
        elif mode == "mos":
            units += [{"kind": "anchor", "clips": [anchor]}, {"kind": "repeat", "clips": [copy], "of": base}]
        else:  # smos: noise hides the voice rather than changing it, so no anchor; the repeat stays
            ref = next(u["reference"] for u in units if u["clips"][0] == base)
            units += [{"kind": "repeat", "clips": [copy], "of": base, "reference": ref}]
    width = len(str(len(units)))
    prefix = "p" if mode == "pairwise" else "i"
    ids = [f"{prefix}{k + 1:0{width}d}" for k in range(len(units))]
    test = {"test_id": test_id, "mode": mode, "factor": factor, "created": _now(), "source": source or {},
            "systems": systems, "clips": clips, "units": dict(zip(ids, units))}
    tmp = test_dir / "test.json.tmp"
    tmp.write_text(json.dumps(test, indent=1, ensure_ascii=False))
    os.replace(tmp, test_dir / "test.json")  # the test exists whole or not at all
    return test_id
