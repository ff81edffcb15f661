"""The script's stitched file: each line's saved WAV trimmed of edge silence, resampled to one
rate, loudness-matched (EBU R128, per line, so re-rendering one line never changes another) and
joined with the pauses asked for; subtitle cues (SRT, WebVTT) are the lines' spans in that file.
A pure function of the lines' WAVs on disk (``experiments.script`` makes them)."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf

from components.core import LabError, dsp

from .script_format import Cue, to_srt, to_vtt

EDGE_FRAME_S = 0.01        # frame of the edge-silence trim, seconds
EDGE_TOP_DB = 40.0         # frames this far below the line's loudest frame are edge silence
PEAK_CEILING = 0.95        # loudness matching never pushes a sample past this
MIN_LOUDNESS_S = 0.4       # EBU R128 gates 400 ms blocks: shorter lines are measured looped

STITCHED_WAV, SRT, VTT, SPEAKERS_CSV = "script.wav", "script.srt", "script.vtt", "speakers.csv"


# -- one line's audio ------------------------------------------------------------------------------


def trim_edges(audio: np.ndarray, sr: int, top_db: float = EDGE_TOP_DB) -> np.ndarray:
    """``audio`` without the leading and trailing frames ``top_db`` below its loudest frame: the
    stitched pauses are then exactly the pauses asked for, whatever silence an engine adds."""
    frame = max(1, int(sr * EDGE_FRAME_S))
    n = len(audio) // frame
    if n == 0:
        return audio
    rms = np.sqrt(np.mean(audio[: n * frame].astype(np.float64).reshape(n, frame) ** 2, axis=1))
    db = 20 * np.log10(np.maximum(rms, 1e-10))
    loud = np.flatnonzero(db > db.max() - top_db)
    if db.max() < -90 or not len(loud):
        return audio[:0]
    return audio[loud[0] * frame: min(len(audio), (loud[-1] + 1) * frame)]


def match_loudness(audio: np.ndarray, sr: int, lufs: float) -> np.ndarray:
    """Scale to ``lufs`` integrated loudness (EBU R128 / BS.1770, ``components.core.dsp``), then down if
    the peak would pass PEAK_CEILING. A line under 400 ms is measured looped (R128 needs whole
    400 ms blocks)."""
    if not len(audio) or not np.abs(audio).max():
        return audio
    measured = audio.astype(np.float64)
    if len(measured) < MIN_LOUDNESS_S * sr:
        measured = np.tile(measured, int(np.ceil(MIN_LOUDNESS_S * sr / len(measured))) + 1)
    loudness = dsp.integrated_loudness(measured, sr)
    gain = 10.0 ** ((lufs - loudness) / 20.0) if np.isfinite(loudness) else 1.0
    peak = float(np.abs(audio).max()) * gain
    if peak > PEAK_CEILING:
        gain *= PEAK_CEILING / peak
    return (audio * gain).astype(np.float32)


def segment(wav_path: str | Path, sr: int, lufs: float) -> np.ndarray:
    """One line's saved WAV as it goes into the stitched file: trimmed, at ``sr``, loudness-matched."""
    audio, rate = sf.read(str(wav_path), dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    trimmed = trim_edges(audio, rate)
    return match_loudness(dsp.resample(trimmed, rate, sr) if len(trimmed) else trimmed, sr, lufs)


# -- stitching -------------------------------------------------------------------------------------


@dataclass
class Stitched:
    wav: Path
    srt: Path
    vtt: Path
    speakers_csv: Path
    cues: list[Cue]
    sample_rate: int
    seconds: float
    speakers: pd.DataFrame


def current_lines(df: pd.DataFrame) -> pd.DataFrame:
    """The rows that make the stitched file: per script line, its latest rendering that succeeded,
    in line order (``line``, ``voice``, ``pause_before`` read from the ``extra`` column)."""
    ok = line_rows(df)
    if ok.empty:
        return ok
    return ok.sort_values("row").groupby("line").tail(1).sort_values("line").reset_index(drop=True)


def line_rows(df: pd.DataFrame | None) -> pd.DataFrame:
    """Every take that succeeded, its ``extra`` spread into columns, ``line`` as int and ``row`` as
    a number (an empty frame when there is none)."""
    if df is None or df.empty:
        return pd.DataFrame()
    d = expand_extra(df)
    if "line" not in d:
        return pd.DataFrame()
    d = d[(d["status"] == "ok") & d["line"].notna()].copy()
    if d.empty:
        return pd.DataFrame()
    d["line"] = d["line"].astype(int)
    d["row"] = pd.to_numeric(d["row"], errors="coerce")
    return d


def _row_extra(row: dict[str, Any]) -> dict[str, Any]:
    extra = row.get("extra")
    return json.loads(extra) if isinstance(extra, str) and extra.startswith("{") else (extra or {})


def row_line(row: dict[str, Any]) -> int | None:
    """The script line number of a row as ``Run.append`` returned it (kept in ``extra``)."""
    extra = _row_extra(row)
    line = extra.get("line", row.get("line"))
    return int(line) if line not in (None, "") else None


def expand_extra(df: pd.DataFrame) -> pd.DataFrame:
    """The JSON ``extra`` column spread into columns (``line``, ``voice``, ``pause_before``...)."""
    if "extra" not in df:
        return df
    extra = pd.DataFrame([json.loads(v) if isinstance(v, str) and v.startswith("{") else {} for v in df["extra"]],
                         index=df.index)
    extra = extra[[c for c in extra.columns if c not in df.columns]]
    return pd.concat([df.drop(columns="extra"), extra], axis=1)


def _replace(path: Path, write) -> None:
    """``write(tmp)`` then rename over ``path``: a reader (a player, a second re-render) never sees a
    half-written file, and two rebuilds at once never write into the same temporary file."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def stitch(lines: pd.DataFrame, folder: Path, lufs: float) -> Stitched:
    """Build ``script.wav``, ``script.srt``, ``script.vtt`` and ``speakers.csv`` in ``folder`` from
    the lines' WAVs (see :func:`current_lines`). Pure function of those files and ``lufs``."""
    if lines.empty:
        raise LabError("no line of the script produced audio: nothing to stitch")
    rates = [sf.info(str(p)).samplerate for p in lines["wav_path"]]
    sr = max(rates)
    pieces, cues, cursor = [], [], 0
    per_speaker: dict[str, dict[str, float]] = {}
    for i, row in enumerate(lines.itertuples(index=False)):
        if i:  # no pause before the first line
            gap = np.zeros(int(round(float(row.pause_before) * sr)), dtype=np.float32)
            pieces.append(gap)
            cursor += len(gap)
        audio = segment(row.wav_path, sr, lufs)
        cues.append(Cue(cursor / sr, (cursor + len(audio)) / sr, str(row.speaker), str(row.text)))
        pieces.append(audio)
        cursor += len(audio)
        stats = per_speaker.setdefault(str(row.speaker), {"lines": 0, "seconds": 0.0, "synth_seconds": 0.0})
        stats["lines"] += 1
        stats["seconds"] += len(audio) / sr
        stats["synth_seconds"] += float(row.synth_seconds)
    folder.mkdir(parents=True, exist_ok=True)
    speakers = pd.DataFrame([{"speaker": name, **s, "rtf": s["synth_seconds"] / s["seconds"] if s["seconds"] else None}
                             for name, s in per_speaker.items()])
    _replace(folder / STITCHED_WAV, lambda p: sf.write(p, np.concatenate(pieces), sr, format="WAV", subtype="PCM_16"))
    _replace(folder / SRT, lambda p: p.write_text(to_srt(cues), encoding="utf-8"))
    _replace(folder / VTT, lambda p: p.write_text(to_vtt(cues), encoding="utf-8"))
    _replace(folder / SPEAKERS_CSV, lambda p: speakers.to_csv(p, index=False))
    return Stitched(folder / STITCHED_WAV, folder / SRT, folder / VTT, folder / SPEAKERS_CSV, cues, sr, cursor / sr, speakers)
