"""Results storage: one folder per run under ``results/``, one CSV row per synthesis.

Layout of a run folder (it is also the export format)::

    results/<run_id>/results.csv   one row per synthesis, appended the moment it finishes
    results/<run_id>/spec.yaml     the experiment spec: ``lab.py run --spec`` reproduces the run
    results/<run_id>/wav/          every output (and cut reference) as WAV
    results/<run_id>/plots/        PNGs the experiment drew

Crash safety: each row is formatted completely in memory and written with a single
``write`` on a file opened ``O_APPEND``, then fsynced. A process killed at any point
leaves either the whole row or nothing, never a torn line.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import secrets
import shutil
import threading
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import soundfile as sf
import yaml

from components.engines.base import LabError

DEFAULT_ROOT = "results"
JUDGES_CSV = "judges.csv"  # judge columns, appended beside results.csv as judging finishes (merged on read)
# Columns renamed since: old runs read back under the new name.
RENAMED = {"similarity": "xtts_spk_sim"}  # XTTS's own speaker encoder, not an independent judge

# Every row has these columns, in this order; keys outside it go to ``extra`` as JSON.
COLUMNS: tuple[str, ...] = (
    # identity
    "run_id", "row", "timestamp", "experiment", "engine", "device", "precision", "seed", "versions",
    # what was asked
    "speaker", "reference", "voice", "reference_sha256", "reference_seconds", "reference_speech_seconds",
    "language", "text", "text_chars", "speed",
    "repeat", "cold", "text_length",
    # evaluate: the engine's named settings, and where the row was synthesised
    "variant", "executor", "worker",
    # timings, seconds
    "audio_seconds", "synth_seconds", "rtf", "ttfa_seconds",
    "t_reference", "t_conditioning", "t_gpt", "t_vocoder", "latent_cache", "gpt_tokens",
    # the engine's settings actually used: all of them as JSON, and the ones it names as columns
    "settings", "temperature", "top_k", "top_p", "repetition_penalty", "length_penalty", "text_splitting",
    # signal metrics of the output
    "f0_median_hz", "f0_range_hz", "loudness_lufs", "lead_silence_s", "trail_silence_s",
    "clipping_fraction", "runaway", "xtts_spk_sim", "envelope_distance", "peak_rss_mb",
    "peak_vram_mb",
    # outcome
    "status", "note", "wav_path", "extra",
)


def new_run_id(experiment: str) -> str:
    """Sortable, unique run id such as ``20261125-104512-speed-sweep-3f2a``."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{experiment}-{secrets.token_hex(2)}"


def slug(text: str, limit: int = 24) -> str:
    """A file-name-safe fragment of arbitrary user text (never used as a path itself)."""
    s = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()
    return s[:limit] or "x"


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if not np.isfinite(value) else round(value, 6)
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return _cell(value.item())
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return value


def spec_to_dict(spec: Any) -> dict[str, Any]:
    data = asdict(spec) if is_dataclass(spec) else dict(spec)
    return json.loads(json.dumps(data, default=list))  # tuples -> lists, plain YAML



def append_line(path: str | os.PathLike, columns: Sequence[str], row: Mapping[str, Any]) -> None:
    """Append ``row`` (its ``columns``; None as empty) to the CSV at ``path``, with a header when the
    file is new or empty, as ONE ``write`` on an O_APPEND file, fsynced: a crash leaves the whole
    line or nothing. Every crash-safe CSV of the lab (rows, judges, votes, checks) is written so."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        writer.writeheader()
    writer.writerow({c: "" if row.get(c) is None else row.get(c) for c in columns})
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, buf.getvalue().encode("utf-8"))  # one write: the whole row or nothing
        os.fsync(fd)
    finally:
        os.close(fd)

class Run:
    """One experiment run: its folder, its CSV and a row counter. Thread-safe."""

    def __init__(self, root: Path, run_id: str, experiment: str):
        self.root = root
        self.run_id = run_id
        self.experiment = experiment
        self.dir = root / run_id
        self.csv_path = self.dir / "results.csv"
        self.wav_dir = self.dir / "wav"
        self.plot_dir = self.dir / "plots"
        for d in (self.wav_dir, self.plot_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._rows = 0
        self._wavs: int | None = None  # WAV files numbered so far (see wav_path)
        # A components.store.judging.JudgingSession when rows are to be judged (set by the caller:
        # the CLI, the UI); experiments.common.log_result submits every row to it.
        self.judging: Any = None
        # Called with each row as written (experiments.pipeline shows rows as they land).
        self._listeners: list[Callable[[dict[str, Any]], None]] = []

    def subscribe(self, listener: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """Call ``listener(row)`` after each row is written (in the appending thread; it must be
        quick, e.g. a queue put). Returns the function that unsubscribes it."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)
        return unsubscribe

    def save_spec(self, spec: Any, experiment: str | None = None) -> Path:
        path = self.dir / "spec.yaml"
        doc = {"experiment": experiment or self.experiment, "spec": spec_to_dict(spec)}
        path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
        return path

    def wav_path(self, stem: str) -> Path:
        """A fresh path in ``wav/`` built from a counter and a slug, never from user file names.
        The counter starts after the files already there (a reopened run) and is then kept in
        memory: concurrent requests sharing a server session's run never get the same number, and
        a run of thousands of rows does not list its folder for every row."""
        with self._lock:
            if self._wavs is None:
                self._wavs = len(list(self.wav_dir.iterdir()))
            self._wavs += 1
            n = self._wavs
        return self.wav_dir / f"{n:04d}-{slug(stem)}.wav"

    def save_wav(self, audio: np.ndarray, sample_rate: int, stem: str) -> Path:
        path = self.wav_path(stem)
        tmp = path.with_suffix(".tmp")
        sf.write(tmp, np.asarray(audio, dtype=np.float32), sample_rate, format="WAV", subtype="PCM_16")
        os.replace(tmp, path)  # a crash leaves no half-written .wav
        return path

    def save_figure(self, fig: Any, name: str) -> Path:
        path = self.plot_dir / f"{slug(name, 40)}.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        return path

    def append(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """Write one row now (flushed and fsynced); returns the row as written."""
        with self._lock:
            self._rows += 1
            full = {"run_id": self.run_id, "row": self._rows, "experiment": self.experiment,
                    "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            extra = {}
            for key, value in row.items():
                if key in COLUMNS:
                    full[key] = value
                else:
                    extra[key] = value
            if extra:
                full["extra"] = extra
            out = {col: _cell(full.get(col)) for col in COLUMNS}
            append_line(self.csv_path, COLUMNS, out)
            listeners = list(self._listeners)
        for listener in listeners:  # outside the lock: a listener may read the run
            listener(out)
        return out

    def frame(self) -> pd.DataFrame:
        """The run's rows so far, with the judge columns written so far."""
        return read_run(self.dir)

    def wait_for_judges(self, timeout: float | None = None) -> bool:
        """Block until every row submitted for judging is judged (True; also when none is)."""
        return True if self.judging is None else self.judging.wait(timeout)


class ResultsStore:
    """All runs under one root folder."""

    def __init__(self, root: str | os.PathLike = DEFAULT_ROOT):
        self.root = Path(root)

    def new_run(self, experiment: str, spec: Any | None = None) -> Run:
        self.root.mkdir(parents=True, exist_ok=True)
        while True:  # claim the folder atomically: concurrent REST requests start runs in one second
            run_id = new_run_id(experiment)
            try:
                (self.root / run_id).mkdir()
                break
            except FileExistsError:
                continue
        run = Run(self.root, run_id, experiment)
        if spec is not None:
            run.save_spec(spec)
        return run

    @contextmanager
    def running(self, experiment: str, spec: Any | None = None) -> Iterator[Run]:
        """A new run for the block; if the block fails before logging any row (a request refused
        by the engine, say), the run's folder is removed so that no empty run is left behind."""
        run = self.new_run(experiment, spec)
        try:
            yield run
        except BaseException:
            if not run.csv_path.exists():
                shutil.rmtree(run.dir, ignore_errors=True)
            raise

    def reopen(self, run_id: str) -> Run:
        """Saved run ``run_id`` opened to append more rows (a re-rendered script line, ``--resume``):
        row numbers continue after the highest one written, so later rows never reuse a number.
        LabError if there is no such run."""
        run_dir = _store_run_dir(self, run_id)
        spec = yaml.safe_load((run_dir / "spec.yaml").read_text()) if (run_dir / "spec.yaml").exists() else {}
        run = Run(self.root, run_id, (spec or {}).get("experiment") or "")
        if run.csv_path.exists():  # a run killed before its first row has none yet
            rows = pd.to_numeric(read_csv(run.csv_path).get("row", pd.Series(dtype=float)), errors="coerce")
            run._rows = int(rows.max()) if rows.notna().any() else 0
        return run

    def runs(self) -> list[str]:
        """Run ids, newest first."""
        if not self.root.exists():
            return []
        return sorted((p.parent.name for p in self.root.glob("*/results.csv")), reverse=True)

    def open_run(self, run_id: str) -> "RunFiles":
        """Run ``run_id`` read back (table, spec, WAVs, PNGs). LabError if there is no such run."""
        return RunFiles(_store_run_dir(self, run_id))

    def export_run(self, run_id: str, dest: str | os.PathLike, *, as_zip: bool = False) -> Path:
        """Run ``run_id`` as a self-contained folder (or zip) under ``dest``; see :func:`export_run`."""
        return export_run(self, run_id, dest, as_zip=as_zip)

    def compare_runs(self, a: str, b: str) -> pd.DataFrame:
        """Runs ``a`` and ``b`` side by side (see :func:`compare_frames`); columns end in _a, _b, _delta."""
        out = compare_frames(self.open_run(a).frame, self.open_run(b).frame)
        out.attrs["runs"] = {"a": a, "b": b}
        return out

    def load_all(self) -> pd.DataFrame:
        """Every row ever logged under this root, newest run first."""
        frames = [read_run(self.root / r) for r in self.runs()]
        frames = [f for f in frames if not f.empty]
        if not frames:
            return pd.DataFrame(columns=list(COLUMNS))
        return pd.concat(frames, ignore_index=True)


def read_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Read a results CSV; a line that is not a whole row (never written by us) is skipped, and so is
    a last row without its newline (a row being appended right now, or torn by a crash)."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame(columns=list(COLUMNS))
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        whole = f.read(1) == b"\n"
    try:
        df = pd.read_csv(path, on_bad_lines="skip", keep_default_na=True) if whole else None
    except pd.errors.ParserError:  # torn just after a newline inside a quoted cell
        df = None
    if df is None:
        df = _complete_rows(path.read_bytes())
    return df.rename(columns={old: new for old, new in RENAMED.items() if old in df and new not in df})


def _complete_rows(data: bytes) -> pd.DataFrame:
    """The rows of CSV ``data`` up to its last complete one. Every row ends in a newline, but a quoted
    cell may hold newlines too: cut at the last newline and step back while the rest is not whole CSV."""
    end = data.rfind(b"\n")
    for _ in range(1000):
        if end < 0:
            break
        try:
            return pd.read_csv(io.BytesIO(data[:end + 1]), on_bad_lines="skip", keep_default_na=True)
        except (pd.errors.ParserError, pd.errors.EmptyDataError):
            end = data.rfind(b"\n", 0, end)
    return pd.DataFrame(columns=list(COLUMNS))


def merge_judges(df: pd.DataFrame, judges: pd.DataFrame) -> pd.DataFrame:
    """``df`` (one run's rows) with the judge columns of ``judges`` (that run's judges.csv) joined on
    ``row``. A judge value wins over an empty cell of the same name; a row judged twice (never
    written so, but a copied file might be) takes its last judging."""
    if judges is None or judges.empty or df.empty or "row" not in df or "row" not in judges:
        return df
    j = judges.copy()
    j["row"] = pd.to_numeric(j["row"], errors="coerce")
    j = j.dropna(subset=["row"]).drop_duplicates("row", keep="last").set_index("row")
    j = j.drop(columns=[c for c in ("run_id",) if c in j])
    out = df.copy()
    rows = pd.to_numeric(out["row"], errors="coerce")
    for col in j.columns:
        mapped = rows.map(j[col])
        out[col] = mapped.combine_first(out[col]) if col in out else mapped
    return out


def read_run(run_dir: str | os.PathLike) -> pd.DataFrame:
    """A run folder's rows (results.csv) with its judge columns (judges.csv) merged in."""
    run_dir = Path(run_dir)
    df = read_csv(run_dir / "results.csv")
    judges = run_dir / JUDGES_CSV
    if judges.exists() and judges.stat().st_size:
        df = merge_judges(df, read_csv(judges))
    return df


def rows_to_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Rows as written by ``Run.append`` -> a DataFrame with the empty columns dropped."""
    df = pd.DataFrame(list(rows))
    if df.empty:
        return df
    df = df.replace("", np.nan)
    return df.dropna(axis=1, how="all")


# -- reading back, comparing and exporting runs -------------------------------------------------------
# Additive: nothing below writes rows; it reads run folders as ``Run`` left them.

METRIC_COLUMNS: tuple[str, ...] = (
    "audio_seconds", "synth_seconds", "rtf", "ttfa_seconds", "f0_median_hz", "f0_range_hz",
    "loudness_lufs", "lead_silence_s", "trail_silence_s", "clipping_fraction", "runaway",
    "xtts_spk_sim", "envelope_distance", "peak_rss_mb", "peak_vram_mb",
    # judge columns (components.judges), from judges.csv
    "dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808", "spk_sim", "cer", "wer",
    "judge_seconds_per_audio_s",
)
# Columns that can say what a run varied; a comparison lines rows up on those that vary.
KEY_COLUMNS: tuple[str, ...] = ("engine", "language", "speaker", "speed", "reference_seconds", "text_length", "cold")


class RunFiles:
    """One saved run, read back: its table, spec and files (for re-opening it in the UI)."""

    def __init__(self, run_dir: Path):
        self.dir = run_dir
        self.run_id = run_dir.name
        self.csv_path = run_dir / "results.csv"
        self.frame = read_run(run_dir)
        spec_path = run_dir / "spec.yaml"
        self.spec: dict[str, Any] = yaml.safe_load(spec_path.read_text()) if spec_path.exists() else {}
        self.experiment = (self.spec or {}).get("experiment") or (
            str(self.frame["experiment"].iloc[0]) if not self.frame.empty else "")
        self.wavs = sorted((run_dir / "wav").glob("*.wav"))
        self.plots = sorted((run_dir / "plots").glob("*.png"))


_RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def is_run_name(run_id: str) -> bool:
    """A plain folder name (never a path): what a run id looks like."""
    return bool(_RUN_NAME.fullmatch(run_id or ""))


def _store_run_dir(store: "ResultsStore", run_id: str) -> Path:
    # Only ids of runs that exist: never a path built from arbitrary user text (a plain folder name
    # with a results.csv; checked directly rather than by listing thousands of folders).

    if not is_run_name(run_id) or not (store.root / run_id / "results.csv").is_file():
        raise LabError(f"no run {run_id!r} under {store.root}; pick one of the saved runs")
    return store.root / run_id


def export_run(store: "ResultsStore", run_id: str, dest: str | os.PathLike, *, as_zip: bool = False) -> Path:
    """Copy run ``run_id`` of ``store`` to ``dest/<run_id>/`` as a self-contained folder (or ``.zip`` of it).

    The folder holds results.csv (``wav_path`` made relative to the folder), spec.yaml, wav/,
    plots/, any other files the run wrote beside its CSV (summary.csv; script.wav, .srt, .vtt), and
    the reference recording the spec names, copied into reference/ with spec.yaml pointing there (relative), so that
    ``lab.py run --spec <folder>/spec.yaml`` reproduces the run on another machine.
    Returns the folder, or the zip file when ``as_zip``.
    """
    src = _store_run_dir(store, run_id)
    out = Path(dest) / run_id
    if out.exists():
        raise LabError(f"{out} already exists: export somewhere else or remove it first")
    out.mkdir(parents=True)
    for sub in ("wav", "plots"):
        if (src / sub).is_dir():
            shutil.copytree(src / sub, out / sub)
    for pattern in ("*.csv", "*.wav", "*.srt", "*.vtt"):  # summary.csv; the script's stitched WAV and subtitles
        for extra_file in src.glob(pattern):
            if extra_file.name != "results.csv":
                shutil.copy2(extra_file, out / extra_file.name)
    df = read_run(src)  # judge columns merged in: the export reads as one table

    def relative(value: Any) -> Any:
        if isinstance(value, str) and value:
            p = Path(value)
            try:
                return p.resolve().relative_to(src.resolve()).as_posix()
            except ValueError:
                return value
        return value

    for col in ("wav_path", "reference"):
        if col in df:
            df[col] = df[col].map(relative)
    df.to_csv(out / "results.csv", index=False)
    spec_path = src / "spec.yaml"
    if spec_path.exists():
        doc = yaml.safe_load(spec_path.read_text()) or {}
        spec = doc.get("spec") or {}
        ref = spec.get("reference")
        if isinstance(ref, str) and ref and Path(ref).is_file():
            (out / "reference").mkdir()
            copied = out / "reference" / Path(ref).name
            shutil.copy2(ref, copied)
            spec["reference"] = copied.relative_to(out).as_posix()
            doc["spec"] = spec
        (out / "spec.yaml").write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    if as_zip:
        archive = shutil.make_archive(str(out), "zip", root_dir=out.parent, base_dir=out.name)
        shutil.rmtree(out)
        return Path(archive)
    return out


def _numeric(df: pd.DataFrame, col: str) -> pd.Series:
    s = df[col]
    if col == "runaway":  # booleans read back from CSV as True/False strings
        s = s.map(lambda v: {"true": 1.0, "false": 0.0}.get(str(v).lower(), np.nan))
    return pd.to_numeric(s, errors="coerce")


def compare_frames(a: pd.DataFrame, b: pd.DataFrame, labels: tuple[str, str] = ("a", "b")) -> pd.DataFrame:
    """Two runs' tables side by side: rows lined up on the key columns either run varies (engine,
    language, speed, reference length, ...), each metric's mean per run as ``<metric>_<label>`` and
    ``<metric>_delta`` (second minus first). ``runaway`` becomes the fraction of runaway rows."""
    la, lb = labels
    frames = []
    for df in (a, b):
        df = df[df["status"] == "ok"].copy() if "status" in df else df.copy()
        frames.append(df)
    a, b = frames
    # Line up on what the runs swept (language, speed, reference length...), not on what they held
    # constant: comparing an xtts run with an espeak run must pair "en" with "en".
    keys = [k for k in KEY_COLUMNS if k in a and k in b
            and (a[k].astype(str).nunique() > 1 or b[k].astype(str).nunique() > 1)]
    metrics = [m for m in METRIC_COLUMNS if m in a and m in b
               and (_numeric(a, m).notna().any() or _numeric(b, m).notna().any())]

    def per_key(df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy()
        for m in metrics:
            df[m] = _numeric(df, m)
        for k in keys:  # NaN keys would drop rows from groupby
            df[k] = df[k].astype(str)
        agg = {m: (m, "mean") for m in metrics}
        agg["rows"] = (metrics[0] if metrics else df.columns[0], "size")
        if not keys:
            return pd.DataFrame({name: [df[src].agg(how)] for name, (src, how) in agg.items()})
        return df.groupby(keys, sort=False).agg(**agg).reset_index()

    left, right = per_key(a), per_key(b)
    merged = left.merge(right, on=keys, how="outer", suffixes=(f"_{la}", f"_{lb}")) if keys else \
        left.add_suffix(f"_{la}").join(right.add_suffix(f"_{lb}"))
    cols = list(keys) + [f"rows_{la}", f"rows_{lb}"]
    for m in metrics:
        merged[f"{m}_delta"] = merged[f"{m}_{lb}"] - merged[f"{m}_{la}"]
        cols += [f"{m}_{la}", f"{m}_{lb}", f"{m}_delta"]
    return merged[cols]



