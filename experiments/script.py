"""script: read a multi-speaker script aloud — one row per line, one stitched WAV, SRT and WebVTT.

Each line is synthesised with its speaker's voice (lines of one voice go to the engine together,
so engines that batch can), saved as its own WAV and logged as its own row. The stitched file is
then built from those WAVs alone: each line's leading and trailing silence trimmed, resampled to
the highest engine rate among them (soxr), loudness-matched to ``loudness_lufs`` (EBU R128, per line, so
re-rendering one line never changes another), joined with ``pause`` seconds of silence between
lines and ``paragraph_pause`` at blank lines. Subtitle cues are the lines' spans in that file.

Files beside the run's CSV: ``script.wav``, ``script.srt``, ``script.vtt``, ``speakers.csv``
(lines, seconds and real-time factor per speaker).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import soundfile as sf

from components import dsp
from components.engines import Engines
from components.engines.settings import shared_for
from components.engines.base import (
    CapabilityError, Engine, LabError, Progress, SynthRequest, SynthResult, no_progress,
)
from components.results import Run, rows_to_frame

from .common import log_result, synthesize_many
from .script_format import (
    DEFAULT_LINE_CHARS, Cue, Line, Script, Voice, parse_script, parse_voices, split_line, to_srt, to_vtt, voices_for,
)
from .specs import ScriptSpec

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
    """Scale to ``lufs`` integrated loudness (EBU R128 / BS.1770, ``components.dsp``), then down if
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
    if df is None or df.empty:
        return pd.DataFrame()
    df = expand_extra(df)
    if "line" not in df:
        return pd.DataFrame()
    ok = df[(df["status"] == "ok") & df["line"].notna()].copy()
    ok["line"] = ok["line"].astype(int)
    ok["row"] = pd.to_numeric(ok["row"], errors="coerce")
    return ok.sort_values("row").groupby("line").tail(1).sort_values("line").reset_index(drop=True)


def row_line(row: dict[str, Any]) -> int | None:
    """The script line number of a row as ``Run.append`` returned it (kept in ``extra``)."""
    extra = row.get("extra")
    extra = json.loads(extra) if isinstance(extra, str) and extra.startswith("{") else (extra or {})
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


# -- synthesis -------------------------------------------------------------------------------------


def text_limit(engine: Engine, lang: str) -> int:
    """Characters per piece for ``engine``: its own ``max_chars(lang)`` where it declares one."""
    declared = getattr(engine, "max_chars", None)
    return int(declared(lang)) if callable(declared) else DEFAULT_LINE_CHARS


def check_voice(engine: Engine, voice: Voice, speaker: str, line: Line, lang: str) -> None:
    """Raise a LabError naming the line when ``voice`` cannot say ``line`` on ``engine``."""
    where = f"line {line.number} ({speaker} = {voice.label()})"
    if voice.reference:
        if not engine.capabilities.cloning:
            raise CapabilityError(f"{where}: {engine.name} cannot clone a voice from a recording; "
                                  f"give one of its speakers ({', '.join(engine.speakers()[:5])}) or an engine that clones")
        if not Path(voice.reference).is_file():
            raise LabError(f"{where}: reference recording {voice.reference!r} does not exist")
    elif voice.speaker:
        known = engine.speakers()
        if known and voice.speaker not in known:
            raise LabError(f"{where}: {engine.name} has no speaker {voice.speaker!r}; "
                           f"choose one of: {', '.join(known[:20])}")
    if lang not in engine.languages:
        raise LabError(f"{where}: {engine.name} does not speak {lang!r}; choose one of: {', '.join(engine.languages)}")


def _combine(results: list[SynthResult]) -> SynthResult:
    """A line's pieces joined back into one result (timings summed)."""
    timings: dict[str, float] = {}
    for r in results:
        for k, v in r.timings.items():
            timings[k] = timings.get(k, 0.0) + v
    info = dict(results[0].info)
    return SynthResult(np.concatenate([r.audio for r in results]).astype(np.float32), results[0].sample_rate,
                       timings, info)


@dataclass
class _Job:
    """One line to synthesise with one voice."""

    line: Line
    speaker: str
    voice: Voice
    lang: str
    pause_before: float
    pieces: list[str]


def _request(spec: ScriptSpec, job: _Job, text: str) -> SynthRequest:
    return SynthRequest(text=text, lang=job.lang, speaker=job.voice.speaker, reference=job.voice.reference,
                        speed=spec.speed, seed=spec.seed, settings=shared_for(job.voice.engine, spec.settings))


def _synthesize(engine: Engine, spec: ScriptSpec, jobs: list[_Job], run: Run,
                progress: Progress = no_progress) -> Iterator[dict[str, Any]]:
    """Synthesise ``jobs`` (one voice) as one batch of pieces; log and yield each line's row as
    soon as all its pieces are done."""
    requests, owner = [], []
    for j, job in enumerate(jobs):
        for text in job.pieces:
            requests.append(_request(spec, job, text))
            owner.append(j)
    done: dict[int, dict[int, tuple[SynthResult, float]]] = {}
    first_piece = {j: owner.index(j) for j in range(len(jobs))}
    for index, result, seconds in synthesize_many(engine, requests, batch_size=spec.batch_size, progress=progress):
        j = owner[index]
        done.setdefault(j, {})[index] = (result, seconds)
        job = jobs[j]
        if len(done[j]) < len(job.pieces):
            continue
        parts = [done[j][first_piece[j] + k] for k in range(len(job.pieces))]
        result = _combine([p[0] for p in parts])
        line_request = SynthRequest(text=job.line.text, lang=job.lang, speaker=job.voice.speaker,
                                    reference=job.voice.reference, speed=spec.speed, seed=spec.seed,
                                    settings=shared_for(job.voice.engine, spec.settings))
        yield log_result(engine, line_request, result, sum(p[1] for p in parts), run,
                         stem=f"line-{job.line.number:04d}-{job.speaker}", speaker=job.speaker,
                         voice=str(job.voice), line=job.line.number, pieces=len(job.pieces),
                         pause_before=job.pause_before, engine_speaker=job.voice.speaker)
        del done[j]


def plan(spec: ScriptSpec, engines: Engines, progress: Progress = no_progress) -> tuple[Script, list[_Job]]:
    """Parse the script, load each voice's engine and check every line against it (before any
    synthesis, so a bad line fails the run at once); returns the jobs in script order."""
    script = parse_script(spec.script)
    voices = voices_for(script, parse_voices(dict(spec.voices)))
    loaded: dict[str, Engine] = {}
    jobs = []
    for line in script.lines:
        voice = voices[line.speaker]
        if voice.engine not in loaded:
            try:
                loaded[voice.engine] = engines.get(voice.engine, progress)
            except LabError as e:
                raise type(e)(f"line {line.number} ({line.speaker} = {voice.label()}): {e}") from None
        engine = loaded[voice.engine]
        lang = line.lang or spec.lang
        check_voice(engine, voice, line.speaker, line, lang)
        pause = 0.0 if not jobs else (spec.paragraph_pause if line.paragraph else spec.pause)
        jobs.append(_Job(line, line.speaker, voice, lang, pause, split_line(line.text, text_limit(engine, lang))))
    return script, jobs


def render(spec: ScriptSpec, engines: Engines, run: Run, progress: Progress = no_progress) -> Iterator[dict[str, Any]]:
    """Synthesise every line and log its row; yields each row as its line finishes (lines of one
    voice together, voices in order of first appearance, so the first line comes first). Skipped
    lines (nothing to say) are logged first, with a note. Stitch afterwards with :func:`finish`."""
    script, jobs = plan(spec, engines, progress)
    for skip in script.skipped:
        yield run.append({"speaker": skip.speaker, "text": skip.text, "language": spec.lang, "status": "skipped",
                          "note": skip.note, "line": skip.number})
    groups: dict[str, list[_Job]] = {}
    for job in jobs:
        groups.setdefault(str(job.voice), []).append(job)
    finished = 0
    for voice, group in groups.items():
        name, before = group[0].voice.engine, finished

        def step(fraction: float = 0.0, desc: str = "", **_: Any) -> None:
            progress((before + fraction * len(group)) / len(jobs), desc=f"{voice}: {desc}")

        with engines.use(name, progress) as engine:
            for row in _synthesize(engine, spec, group, run, step):
                finished += 1
                progress(finished / len(jobs), desc=f"{finished}/{len(jobs)} lines done")
                yield row


def finish(spec: ScriptSpec, run: Run) -> Stitched:
    """Stitch the run's current lines into the stitched WAV, subtitles and per-speaker summary."""
    return stitch(current_lines(run.frame()), run.dir, spec.loudness_lufs)


def table(df: pd.DataFrame, stitched: Stitched | None = None) -> pd.DataFrame:
    """Rows for reading: ``line``/``voice`` columns spread out, sorted by line, each current line's
    ``start``/``end`` in the stitched file (seconds) from its subtitle cue."""
    if df is None or df.empty:
        return pd.DataFrame()
    d = expand_extra(df)
    if "line" in d:
        d["line"] = pd.to_numeric(d["line"], errors="coerce")
        d = d.sort_values(["line", "row"], kind="stable")
    if stitched is not None and "line" in d:
        current = current_lines(df)
        spans = {int(line): (c.start, c.end) for line, c in zip(current["line"], stitched.cues)}
        latest = d["row"].isin(current["row"])
        d.loc[(d["status"] == "ok") & ~latest & d["line"].notna(), "status"] = "replaced"  # re-rendered since
        d["start"] = [spans.get(int(l), (None,))[0] if ok and pd.notna(l) else None for l, ok in zip(d["line"], latest)]
        d["end"] = [spans.get(int(l), (None, None))[1] if ok and pd.notna(l) else None for l, ok in zip(d["line"], latest)]
    first = [c for c in ("line", "speaker", "voice", "text", "start", "end", "audio_seconds", "synth_seconds", "rtf",
                         "pieces", "status", "note") if c in d]
    return d[first + [c for c in d.columns if c not in first]].reset_index(drop=True)


def run(spec: ScriptSpec, engines: Engines, run: Run, progress: Progress = no_progress) -> pd.DataFrame:
    """Read ``spec.script`` aloud: one row per line, then the stitched WAV, SRT, WebVTT and
    speakers.csv beside the CSV."""
    rows = list(render(spec, engines, run, progress))
    progress(0.99, desc="stitching")
    finish(spec, run)
    progress(1.0, desc="done")
    return rows_to_frame(rows)


def rerender_line(spec: ScriptSpec, run: Run, engines: Engines, line: int, *, text: str | None = None,
                  voice: str | None = None, progress: Progress = no_progress) -> tuple[dict[str, Any], Stitched]:
    """Synthesise script line ``line`` of ``run`` again (with new ``text`` or ``voice`` if given),
    log it as a new row and rebuild the stitched WAV and subtitles: every other line's audio is
    kept as it was. Returns (the new row, the new stitched files)."""
    current = current_lines(run.frame())
    match = current[current["line"] == int(line)] if not current.empty else current
    if match.empty:
        lines = ", ".join(str(n) for n in current.get("line", [])) or "none"
        raise LabError(f"line {line} was not spoken in run {run.run_id}; spoken lines: {lines}")
    old = match.iloc[0]
    new_text = " ".join((text if text is not None and text.strip() else str(old["text"])).split())
    if not new_text or not any(c.isalnum() for c in new_text):
        raise LabError(f"line {line}: the new text has nothing to say")
    new_voice = Voice.parse(voice or str(old["voice"]), name=str(old["speaker"]))
    script_line = Line(int(line), str(old["speaker"]), new_text, str(old["language"]), False)
    engine = engines.get(new_voice.engine, progress)
    check_voice(engine, new_voice, script_line.speaker, script_line, script_line.lang)
    job = _Job(script_line, script_line.speaker, new_voice, script_line.lang, float(old["pause_before"]),
               split_line(new_text, text_limit(engine, script_line.lang)))
    with engines.use(new_voice.engine, progress) as engine:
        row = next(iter(_synthesize(engine, spec, [job], run, progress)))
    return row, finish(spec, run)


def open_spec(run_dir: Path) -> ScriptSpec:
    """The ScriptSpec saved in a script run's folder."""
    import yaml

    from .specs import spec_from_dict

    doc = yaml.safe_load((run_dir / "spec.yaml").read_text()) or {}
    if doc.get("experiment") != "script":
        raise LabError(f"run {run_dir.name} is not a script run")
    return spec_from_dict(ScriptSpec, doc.get("spec") or {})


