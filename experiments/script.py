"""script: read a multi-speaker script aloud — one row per line, one stitched WAV, SRT and WebVTT.

Each line is synthesised with its speaker's voice (lines of one voice go to the engine together,
so engines that batch can), saved as its own WAV and logged as its own row. The stitched file is
then built from those WAVs alone: each line's leading and trailing silence trimmed, resampled to
the highest engine rate among them (soxr), loudness-matched to ``loudness_lufs`` (EBU R128, per line, so
re-rendering one line never changes another), joined with ``pause`` seconds of silence between
lines and ``paragraph_pause`` at blank lines. Subtitle cues are the lines' spans in that file.

Files beside the run's CSV: ``script.wav``, ``script.srt``, ``script.vtt``, ``speakers.csv``
(lines, seconds and real-time factor per speaker); the stitching is ``experiments.script_stitch``.

Checked takes: every take of a line is heard back while the next lines are made. The lab's ASR
judge (through the run's ``Judges``, never a model of its own) gives its CER against the line's
text, and ``components.judges.take_flags`` its signal flags (pace, silence, clipping, noise_tail,
runaway, silent). A take over ``max_cer`` or with a flag is flagged; on an engine that uses a
seed (``capabilities.seeded``) the line is retaken with a new seed, up to ``takes`` takes, in
rounds (all first takes, then the second takes of the flagged lines, ...), so batching engines
still batch. A deterministic engine would say the same again: its line is flagged, not retaken.
The best take is kept (clean first, then lowest CER); the user may choose another
(:func:`choose_take`), which re-stitches from the takes on disk without synthesis.

More files: ``checks.csv`` (per take: CER, transcript, signal flags; fsynced per take),
``chosen.json`` (takes the user chose, by line), ``report.csv`` (per line: takes, kept take, CER,
flags, verdict). A run resumes (:func:`render` on the reopened run, ``lab.py run --resume``):
takes already on disk are not made again, and takes not yet checked are checked.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from components.core.audio import load_audio
from components.judges import take_flags
from components.engines import Engines
from components.engines import shared_for
from components.engines.base import (
    CapabilityError, Engine, LabError, Progress, SynthRequest, SynthResult, no_progress,
)
from components.store.results import Run, append_line

from .common import log_result, synthesize_many
from .script_format import (
    DEFAULT_LINE_CHARS, Line, Script, Voice, parse_script, parse_voices, split_line, voices_for,
)
from .script_stitch import (  # noqa: F401 - callers reach the stitching through this module
    SPEAKERS_CSV, SRT, STITCHED_WAV, VTT, Stitched, _replace, _row_extra, current_lines, expand_extra, line_rows, row_line,
    stitch,
)
from .specs import ScriptSpec


CHECKS_CSV, CHOSEN_JSON, REPORT_CSV = "checks.csv", "chosen.json", "report.csv"
CHECK_COLUMNS = ("row", "line", "take", "cer", "asr_text", "signal_flags", "speech_seconds", "seconds", "chars",
                 "check_note")
TAKE_SEED_STEP = 1_000_003  # take k is seeded spec.seed + (k-1) * this: take 1 keeps the run's seed


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
    """One take of one line to synthesise with one voice."""

    line: Line
    speaker: str
    voice: Voice
    lang: str
    pause_before: float
    pieces: list[str]
    take: int = 1
    seed: int = 0


def take_seed(seed: int, take: int) -> int:
    """The seed of take ``take`` (1-based) of a run seeded ``seed``: take 1 keeps the run's seed."""
    return (int(seed) + (int(take) - 1) * TAKE_SEED_STEP) % 2**32


def _request(spec: ScriptSpec, job: _Job, text: str) -> SynthRequest:
    return SynthRequest(text=text, lang=job.lang, speaker=job.voice.speaker, reference=job.voice.reference,
                        speed=spec.speed, seed=job.seed, settings=shared_for(job.voice.engine, spec.settings))


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
        line_request = _request(spec, job, job.line.text)
        stem = f"line-{job.line.number:04d}-{job.speaker}" + (f"-take{job.take}" if job.take > 1 else "")
        yield log_result(engine, line_request, result, sum(p[1] for p in parts), run,
                         stem=stem, speaker=job.speaker,
                         voice=str(job.voice), line=job.line.number, take=job.take, pieces=len(job.pieces),
                         pause_before=job.pause_before, engine_speaker=job.voice.speaker)
        del done[j]


def plan(spec: ScriptSpec, engines: Engines, progress: Progress = no_progress) -> tuple[Script, list[_Job]]:
    """Parse the script, load each voice's engine and check every line against it (before any
    synthesis, so a bad line fails the run at once); returns the jobs (first takes) in script order."""
    script = parse_script(spec.script_text())
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
        jobs.append(_Job(line, line.speaker, voice, lang, pause, split_line(line.text, text_limit(engine, lang)),
                         1, spec.seed))
    return script, jobs


# -- checking takes --------------------------------------------------------------------------------


def judges_of(run: Run) -> Any:
    """The lab's ``Judges`` for checking a run's takes: ``run.judges`` where the caller put it
    (the CLI, the tab), else the run's judging session's. None: takes get signal flags only."""
    judges = getattr(run, "judges", None)
    if judges is None:
        judges = getattr(getattr(run, "judging", None), "judges", None)
    return judges


def check_take(wav_path: str | Path, text: str, lang: str, speed: float, judges: Any) -> dict[str, Any]:
    """One take heard back: its signal flags (``components.judges.take_flags``, all but pace), the
    measures pace needs, and the ASR judge's transcript and CER (None, with a note, when there is
    no judge or it cannot hear this language)."""
    from components.judges.base import CannotJudge, JudgeInput, LabError as JudgeError

    # Read as the run's judges read the take (experiments.common.log_result), so that when they
    # include asr, Judges remembers this transcript for them instead of running Whisper twice.
    audio, sr = load_audio(wav_path)
    out: dict[str, Any] = {
        "signal_flags": take_flags.join(take_flags.signal_flags(audio, sr)),
        "speech_seconds": round(take_flags.speech_seconds(audio, sr), 3), "seconds": round(len(audio) / sr, 3),
        "chars": take_flags.spoken_chars(text), "cer": None, "asr_text": None, "check_note": None,
    }
    if judges is None:
        out["check_note"] = "not heard: no judges (CER needs the asr judge)"
        return out
    try:
        scores, _ = judges.score("asr", JudgeInput(audio=audio, sample_rate=sr, text=text, lang=lang))
        out["cer"], out["asr_text"] = scores.get("cer"), scores.get("asr_text")
    except (CannotJudge, JudgeError) as e:  # JudgeUnavailable is a LabError
        out["check_note"] = f"not heard: {e}"
    return out


_checks_lock = threading.Lock()  # one writer of a checks.csv at a time (the file is per run, the lock cheap)


def append_check(run_dir: Path, values: dict[str, Any]) -> None:
    """One row of ``checks.csv``, in one fsynced write (the whole row or nothing)."""
    path = Path(run_dir) / CHECKS_CSV
    with _checks_lock:
        append_line(path, CHECK_COLUMNS, values)


def read_checks(run_dir: Path) -> pd.DataFrame:
    """``checks.csv`` of a run (empty frame when none); a take checked twice keeps its last check."""
    path = Path(run_dir) / CHECKS_CSV
    if not path.exists() or not path.stat().st_size:
        return pd.DataFrame(columns=list(CHECK_COLUMNS))
    df = pd.read_csv(path, on_bad_lines="skip", keep_default_na=True)
    df["row"] = pd.to_numeric(df["row"], errors="coerce")
    return df.dropna(subset=["row"]).drop_duplicates("row", keep="last")


def read_chosen(run_dir: Path) -> dict[int, int]:
    """The takes the user chose: script line -> row."""
    path = Path(run_dir) / CHOSEN_JSON
    try:
        return {int(k): int(v) for k, v in json.loads(path.read_text()).items()} if path.exists() else {}
    except (OSError, ValueError, AttributeError):
        return {}


def _write_chosen(run_dir: Path, chosen: dict[int, int]) -> None:
    _replace(Path(run_dir) / CHOSEN_JSON, lambda p: p.write_text(json.dumps({str(k): v for k, v in sorted(chosen.items())})))


def takes(df: pd.DataFrame, checks: pd.DataFrame, spec: ScriptSpec, chosen: dict[int, int] | None = None) -> pd.DataFrame:
    """Every take that produced audio, with its verdict: ``line``, ``take``, ``cer``, ``flags``
    (comma-separated, "" when clean), ``checked`` and ``kept`` (the take that goes into the
    stitched file: the user's choice, else the best: clean first, then lowest CER, then fewest
    flags, then the latest). Pace is judged against the median pace of each voice's first takes."""
    d = line_rows(df)
    if d.empty:
        return d
    d = d.sort_values("row")
    if "take" not in d:
        d["take"] = np.nan
    # Rows from before checked takes carry no take: number them per line in row order.
    d["take"] = pd.to_numeric(d["take"], errors="coerce").fillna(d.groupby("line").cumcount() + 1).astype(int)
    c = checks.set_index("row") if checks is not None and not checks.empty else pd.DataFrame()
    for col in ("cer", "asr_text", "signal_flags", "speech_seconds", "seconds", "chars", "check_note"):
        d[col] = d["row"].map(c[col]) if col in c else None
    d["cer"] = pd.to_numeric(d["cer"], errors="coerce")
    d["checked"] = d["row"].isin(c.index) if len(c) else False
    d["speech_seconds"] = pd.to_numeric(d["speech_seconds"], errors="coerce")
    d["chars"] = pd.to_numeric(d["chars"], errors="coerce")
    d["seconds"] = pd.to_numeric(d["seconds"], errors="coerce")
    spc = d["speech_seconds"] / d["chars"].where(d["chars"] > 0)
    voice = d["voice"].astype(str) if "voice" in d else pd.Series("", index=d.index)
    flags_col = []
    for i, row in d.iterrows():
        flags = take_flags.split(row["signal_flags"])
        if pd.notna(row["cer"]) and float(row["cer"]) > spec.max_cer:
            flags.append("cer")
        if row["checked"] and pd.notna(row["speech_seconds"]) and "silent" not in flags:
            usual = spc[(voice == voice[i]) & (d["take"] == 1)].dropna().tolist()
            flags += take_flags.voice_flags(float(row["speech_seconds"]), float(row["seconds"]),
                                            int(row["chars"] or 0), str(row.get("language") or spec.lang),
                                            spec.speed, usual)
        flags_col.append(take_flags.join(flags))
    d["flags"] = flags_col
    chosen = chosen or {}
    kept_rows = set()
    for line, group in d.groupby("line"):
        pick = chosen.get(int(line))
        if pick is None or pick not in set(group["row"]):
            ranked = sorted(group.itertuples(), key=lambda r: (bool(r.flags), r.cer if pd.notna(r.cer) else 0.0,
                                                               len(take_flags.split(r.flags)), -r.row))
            pick = ranked[0].row
        kept_rows.add(pick)
    d["kept"] = d["row"].isin(kept_rows)
    d["chosen"] = d["row"].isin(set(chosen.values()))
    return d.sort_values(["line", "take", "row"]).reset_index(drop=True)


def run_takes(spec: ScriptSpec, run: Run) -> pd.DataFrame:
    """:func:`takes` of ``run`` from its files (results, checks, the user's choices)."""
    return takes(run.frame(), read_checks(run.dir), spec, read_chosen(run.dir))


def report(all_takes: pd.DataFrame) -> pd.DataFrame:
    """Per line: ``takes`` made, ``kept_take``, its ``cer`` and ``flags``, the flags of every take
    (``take_flags``: "1: cer; 2: "), and the ``verdict``: clean (first take clean), retaken (a later take
    kept clean), flagged (the kept take still has a flag), chosen (the user picked the take)."""
    if all_takes is None or all_takes.empty:
        return pd.DataFrame(columns=["line", "speaker", "text", "takes", "kept_take", "cer", "flags", "verdict"])
    out = []
    for line, group in all_takes.groupby("line"):
        kept = group[group["kept"]].iloc[0]
        best_first = int(kept["take"]) == 1
        verdict = "chosen" if kept["chosen"] else "flagged" if kept["flags"] else (
            "clean" if best_first and len(group) == 1 else "retaken")
        out.append({"line": int(line), "speaker": kept.get("speaker"), "text": kept.get("text"),
                    "takes": len(group), "kept_take": int(kept["take"]),
                    "cer": kept["cer"] if pd.notna(kept["cer"]) else None, "flags": kept["flags"],
                    "take_flags": "; ".join(f"{int(t)}: {f or 'clean'}" for t, f in zip(group["take"], group["flags"])),
                    "verdict": verdict, "note": kept.get("check_note") if pd.notna(kept.get("check_note")) else None})
    return pd.DataFrame(out)


def summarize_report(lines: pd.DataFrame) -> str:
    """report.csv in a few lines for a terminal: counts per verdict, then each line not clean."""
    if lines is None or lines.empty:
        return "checked takes: no line was spoken"
    counts = lines["verdict"].value_counts()
    out = [f"checked takes: {len(lines)} lines; " + ", ".join(f"{counts.get(v, 0)} {v}" for v in
                                                             ("clean", "retaken", "flagged", "chosen"))]
    for r in lines[lines["verdict"] != "clean"].itertuples():
        cer = f"CER {r.cer:.2f}" if pd.notna(r.cer) else "CER -"
        flags = r.flags if isinstance(r.flags, str) and r.flags else "clean"
        out.append(f"  line {r.line}: {r.verdict}, kept take {r.kept_take} of {r.takes} ({cer}; {flags}): {r.text}")
    return "\n".join(out)


def kept_lines(spec: ScriptSpec, run: Run) -> pd.DataFrame:
    """The rows that make the stitched file: each line's kept take, in line order."""
    t = run_takes(spec, run)
    return t[t["kept"]].sort_values("line").reset_index(drop=True) if not t.empty else t


# -- rendering -------------------------------------------------------------------------------------


def _eta(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def render(spec: ScriptSpec, engines: Engines, run: Run, progress: Progress = no_progress,
           judges: Any = None) -> Iterator[dict[str, Any]]:
    """Synthesise every line, check every take and retake flagged lines; yields each row as its
    take finishes (first takes of every line, then second takes of the flagged lines, ...; within
    a round, lines of one voice together). Skipped lines (nothing to say) are logged first, with a
    note. Takes already in ``run`` (a resumed run) are not made again. Stitch with :func:`finish`.

    Checking runs on its own thread, off the engine: the ASR judge hears take k while the engine
    makes take k+1, and a round's retake decisions wait only for that round's checks.
    ``judges``: the lab's ``Judges`` (default: :func:`judges_of` ``run``).
    """
    script, jobs = plan(spec, engines, progress)
    judges = judges if judges is not None else judges_of(run)
    have = expand_extra(run.frame())
    logged_skips = set()
    if "line" in have and not have.empty:
        logged_skips = set(pd.to_numeric(have.loc[have["status"] == "skipped", "line"], errors="coerce").dropna().astype(int))
    for skip in script.skipped:
        if skip.number not in logged_skips:
            yield run.append({"speaker": skip.speaker, "text": skip.text, "language": spec.lang, "status": "skipped",
                              "note": skip.note, "line": skip.number})
    by_line = {job.line.number: job for job in jobs}
    seeded = {job.line.number: engines.get(job.voice.engine).capabilities.seeded for job in jobs}
    checker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"check-{run.run_id}")
    futures: list[Future] = []

    heard = [0]  # takes checked by this call (the checker thread counts, the script thread reads)

    def check(row: int, line: int, take: int, wav_path: str) -> None:
        job = by_line[line]
        values = check_take(wav_path, job.line.text, job.lang, spec.speed, judges)
        append_check(run.dir, {"row": row, "line": line, "take": take, **values})
        heard[0] += 1

    def estimate() -> str:
        """Takes made and heard so far, and the time left: whichever of synthesis and hearing
        is slower sets it (a fast engine waits for the ear, a slow one the other way round)."""
        elapsed = time.monotonic() - started
        left = [elapsed / n * (queued - n) for n, queued in ((made, planned), (heard[0], len(checks_queued)))
                if n and queued > n]
        return (f"{made}/{planned} takes made, {heard[0]}/{len(checks_queued)} heard"
                + (f", about {_eta(max(left))} left" if left else ""))

    def wait_for_checks() -> None:
        """Wait for every queued check (re-raising a failure), reporting progress meanwhile."""
        pending = [f for f in futures if not f.done()]
        while pending:
            progress(0.98 * (made + heard[0]) / max(planned + len(checks_queued), 1), desc=f"hearing: {estimate()}")
            done, pending_set = wait(pending, timeout=2.0, return_when=FIRST_EXCEPTION)
            pending = list(pending_set)
        for f in futures:
            f.result()
        futures.clear()

    checks_queued: list[int] = []

    def on_disk() -> pd.DataFrame:
        t = takes(run.frame(), read_checks(run.dir), spec)
        if t.empty:
            return t
        t = t[t["line"].isin(by_line)]
        return t[[Path(str(p)).is_file() for p in t["wav_path"]]]

    # A resumed run: takes on disk whose check was lost with the process are checked now.
    for r in on_disk().itertuples():
        if not r.checked:
            futures.append(checker.submit(check, int(r.row), int(r.line), int(r.take), str(r.wav_path)))
            checks_queued.append(int(r.row))
    started, made, planned = time.monotonic(), 0, 0
    try:
        for take in range(1, spec.takes + 1):
            wait_for_checks()  # this round's decisions need every earlier take's verdict
            existing = on_disk()
            if take == 1:
                wanted = [j for j in jobs if existing.empty or not ((existing["line"] == j.line.number)
                                                                  & (existing["take"] == 1)).any()]
            else:
                wanted = []
                for line, group in (existing.groupby("line") if not existing.empty else []):
                    if not seeded[int(line)] or (group["flags"] == "").any() or (group["take"] >= take).any() \
                            or len(group) < take - 1:
                        continue
                    job = by_line[int(line)]
                    wanted.append(_Job(job.line, job.speaker, job.voice, job.lang, job.pause_before, job.pieces,
                                       take, take_seed(spec.seed, take)))
            if not wanted:
                if take > 1:
                    break
                continue
            planned += len(wanted)
            groups: dict[str, list[_Job]] = {}
            for job in wanted:
                groups.setdefault(str(job.voice), []).append(job)
            for voice, group in groups.items():
                name, before = group[0].voice.engine, made

                def step(fraction: float = 0.0, desc: str = "", **_: Any) -> None:
                    done = min(before + fraction * len(group), planned) + heard[0]
                    progress(0.98 * done / max(planned + len(checks_queued), 1), desc=f"take {take}, {voice}: {desc}")

                with engines.use(name, progress) as engine:
                    for row in _synthesize(engine, spec, group, run, step):
                        made += 1
                        futures.append(checker.submit(check, int(row["row"]), row_line(row), _row_extra(row)["take"],
                                                      row["wav_path"]))
                        checks_queued.append(int(row["row"]))
                        progress(0.98 * (made + heard[0]) / max(planned + len(checks_queued), 1),
                                 desc=f"take {take}: {estimate()}")
                        yield row
        wait_for_checks()
    finally:
        checker.shutdown(wait=True)


def finish(spec: ScriptSpec, run: Run) -> Stitched:
    """Stitch each line's kept take into the stitched WAV, subtitles and per-speaker summary, and
    write ``report.csv`` (per line: takes, kept take, CER, flags, verdict)."""
    all_takes = run_takes(spec, run)
    kept = all_takes[all_takes["kept"]].sort_values("line").reset_index(drop=True) if not all_takes.empty else all_takes
    stitched = stitch(kept, run.dir, spec.loudness_lufs)
    lines = report(all_takes)
    _replace(run.dir / REPORT_CSV, lambda p: lines.to_csv(p, index=False))
    return stitched


def choose_take(spec: ScriptSpec, run: Run, line: int, take: int) -> Stitched:
    """Keep take ``take`` of script line ``line`` and re-stitch from the takes on disk: no
    synthesis, every other line as it was. LabError naming the takes there are."""
    all_takes = run_takes(spec, run)
    mine = all_takes[all_takes["line"] == int(line)] if not all_takes.empty else all_takes
    if mine.empty:
        raise LabError(f"line {line} has no take in run {run.run_id}")
    match = mine[mine["take"] == int(take)]
    if match.empty:
        raise LabError(f"line {line} has no take {take}; its takes: {', '.join(str(int(t)) for t in mine['take'])}")
    chosen = read_chosen(run.dir)
    chosen[int(line)] = int(match["row"].iloc[-1])
    _write_chosen(run.dir, chosen)
    return finish(spec, run)


def table(df: pd.DataFrame, stitched: Stitched | None = None, all_takes: pd.DataFrame | None = None) -> pd.DataFrame:
    """Rows for reading: ``line``/``voice`` columns spread out, sorted by line, each take's
    ``take``, ``kept``, ``cer`` and ``flags`` (from ``all_takes``), and each kept line's
    ``start``/``end`` in the stitched file (seconds) from its subtitle cue."""
    if df is None or df.empty:
        return pd.DataFrame()
    d = expand_extra(df)
    if "line" in d:
        d["line"] = pd.to_numeric(d["line"], errors="coerce")
        d = d.sort_values(["line", "row"], kind="stable")
    if all_takes is not None and not all_takes.empty:
        t = all_takes.set_index("row")
        rows = pd.to_numeric(d["row"], errors="coerce")
        for col in ("take", "kept", "cer", "flags"):
            d[col] = rows.map(t[col]).where(rows.isin(t.index), d[col] if col in d else None)
    if stitched is not None and "line" in d and all_takes is not None and not all_takes.empty:
        kept = all_takes[all_takes["kept"]].sort_values("line")
        spans = {int(line): (c.start, c.end) for line, c in zip(kept["line"], stitched.cues)}
        latest = d["row"].isin(kept["row"])
        d.loc[(d["status"] == "ok") & ~latest & d["line"].notna(), "status"] = "not kept"
        d["start"] = [spans.get(int(l), (None,))[0] if ok and pd.notna(l) else None for l, ok in zip(d["line"], latest)]
        d["end"] = [spans.get(int(l), (None, None))[1] if ok and pd.notna(l) else None for l, ok in zip(d["line"], latest)]
    first = [c for c in ("line", "take", "kept", "flags", "cer", "speaker", "voice", "text", "start", "end",
                         "audio_seconds", "synth_seconds", "rtf", "pieces", "status", "note") if c in d]
    return d[first + [c for c in d.columns if c not in first]].reset_index(drop=True)


def run(spec: ScriptSpec, engines: Engines, run: Run, progress: Progress = no_progress) -> pd.DataFrame:
    """Read ``spec.script`` aloud, every line checked and flagged lines retaken: one row per take
    (with ``line``, ``take``, ``kept``, ``flags``, ``cer``), then the stitched WAV, SRT, WebVTT,
    speakers.csv and report.csv beside the CSV."""
    for _ in render(spec, engines, run, progress):
        pass
    progress(0.99, desc="stitching")
    stitched = finish(spec, run)
    progress(1.0, desc="done")
    return table(run.frame(), stitched, run_takes(spec, run))


def rerender_line(spec: ScriptSpec, run: Run, engines: Engines, line: int, *, text: str | None = None,
                  voice: str | None = None, progress: Progress = no_progress) -> tuple[dict[str, Any], Stitched]:
    """Synthesise script line ``line`` of ``run`` again (with new ``text`` or ``voice`` if given) as
    a new take, check it, keep it and rebuild the stitched WAV and subtitles: every other line's
    audio is kept as it was. Returns (the new row, the new stitched files)."""
    all_takes = run_takes(spec, run)
    current = all_takes[all_takes["kept"]] if not all_takes.empty else all_takes
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
    take = int(all_takes.loc[all_takes["line"] == int(line), "take"].max()) + 1
    job = _Job(script_line, script_line.speaker, new_voice, script_line.lang, float(old["pause_before"]),
               split_line(new_text, text_limit(engine, script_line.lang)), take, take_seed(spec.seed, take))
    with engines.use(new_voice.engine, progress) as engine:
        row = next(iter(_synthesize(engine, spec, [job], run, progress)))
    values = check_take(row["wav_path"], new_text, script_line.lang, spec.speed, judges_of(run))
    append_check(run.dir, {"row": int(row["row"]), "line": int(line), "take": take, **values})
    chosen = read_chosen(run.dir)
    chosen[int(line)] = int(row["row"])  # the user asked for this rendering: it is kept
    _write_chosen(run.dir, chosen)
    return row, finish(spec, run)


def open_spec(run_dir: Path) -> ScriptSpec:
    """The ScriptSpec saved in a script run's folder."""
    import yaml

    from .specs import spec_from_dict

    doc = yaml.safe_load((run_dir / "spec.yaml").read_text()) or {}
    if doc.get("experiment") != "script":
        raise LabError(f"run {run_dir.name} is not a script run")
    return spec_from_dict(ScriptSpec, doc.get("spec") or {})


