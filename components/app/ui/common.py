"""Pieces every tab shares: error handling, judged runs, the outputs panel (the input controls are
in ``controls``).

Nothing here holds state between requests: widgets are built per page, per-user values
live in ``gr.State``, and the only shared object is the ``LabContext`` passed in.
"""

from __future__ import annotations

import functools
import html
import inspect
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import gradio as gr
import numpy as np
import pandas as pd
import soundfile as sf

from components.store import plots
from components.app.context import LabContext
from components.engines.base import LabError
from components.store.results import Run
from experiments import save_outputs

# The controls live in .controls; these names stay importable from here for the tabs and tests.
from .controls import (  # noqa: F401
    EngineChoice, EngineControls, Field, Form, FormValues, JudgeChoice, JudgeControls, can_clone, capabilities,
    common_kwargs, engine_choices, engine_controls, judges_switch, parse_floats, saved_voice_choices, shorten,
    speaker_update, speakers_for,
)
from .files import servable

# -- errors -------------------------------------------------------------------------------------


def user_error(where: str, error: LabError) -> gr.Error:
    """A problem the user can fix, as the UI shows it: one toast, and one line in the server log
    (gradio's own traceback is off: it is not a bug, and 40 lines per typo bury the real ones)."""
    message = str(error)
    print(f"lab.py: {where}: {message}", file=sys.stderr, flush=True)
    # gr.Error renders HTML: escape what could be markup (user text is quoted in some messages).
    return gr.Error(html.escape(message, quote=False), print_exception=False)


def ui_errors(fn: Callable) -> Callable:
    """Turn a ``LabError`` (a problem the user can fix) into ``gr.Error`` with its message.

    The only place in the lab where errors become UI; experiments and engines raise. Works on
    plain and generator functions and keeps the signature, which gradio reads to find the
    ``gr.Progress`` parameter.
    """
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except LabError as e:
                raise user_error(fn.__name__, e) from None
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except LabError as e:
            raise user_error(fn.__name__, e) from None
    return wrapper


# -- judged runs ------------------------------------------------------------------------------


def run_judged(lab: LabContext, experiment: str, spec: Any, progress: Any, judges: str | None,
               judge_reference: str | None = None):
    """Run ``experiment`` with the chosen judges (``experiments.pipeline``); yields ``(table, run)``
    twice: when the synthesis is done (audio and timings), then with the judge columns when
    judging is done (skipped when nothing was judged). The tab saves the figures (``panel_values``)."""
    from experiments.pipeline import run_experiment

    # live=False: the tab shows the table when the run is done, so no worker thread to watch rows land.
    for update in run_experiment(experiment, spec, engines=lab.engines, store=lab.store, judges=lab.judges,
                                 judge_choice=judges or lab.judge_choice, judge_reference=judge_reference,
                                 progress=progress, save=False, live=False):
        if update.done:
            yield update.rows, update.run


# -- outputs ------------------------------------------------------------------------------------

# Columns shown first in tables (when present); the rest follow, the noisy ones are left to the CSV.
# The judge columns come before the (wide) text so that quality shows beside the timings.
FIRST_COLUMNS = ("row", "engine", "precision", "speaker", "language", "speed", "text_length", "repeat", "cold",
                 "reference_seconds", "reference_speech_seconds", "audio_seconds", "synth_seconds", "rtf",
                 "ttfa_seconds", "latent_cache", "dnsmos_ovrl", "cer", "wer", "spk_sim", "xtts_spk_sim", "text",
                 "asr_text", "status", "note", "judge_notes")
HIDDEN_COLUMNS = ("run_id", "timestamp", "versions", "extra", "wav_path", "reference", "judges")
PLACEHOLDER_HEADERS = ("row", "engine", "speaker", "language", "text", "audio_seconds", "synth_seconds", "rtf", "status")


def table_view(df: pd.DataFrame, show: tuple[str, ...] = ()) -> pd.DataFrame:
    """The columns worth reading in the UI: empty ones dropped, the interesting ones first
    (``show`` names hidden columns to keep, placed first)."""
    if df is None or df.empty:
        return pd.DataFrame()
    d = df.replace("", np.nan).dropna(axis=1, how="all")
    first = [c for c in (*show, *FIRST_COLUMNS) if c in d]
    rest = [c for c in d.columns if c not in first and c not in HIDDEN_COLUMNS]
    d = d[first + rest]
    for col in d.select_dtypes("float").columns:
        d[col] = d[col].round(4)
    return d


def results_table(label: str, elem_id: str, headers: tuple[str, ...] = PLACEHOLDER_HEADERS) -> gr.Dataframe:
    """A read-only table whose empty state names the columns a run will fill."""
    return gr.Dataframe(label=label, headers=list(headers), interactive=False, max_height=400, elem_id=elem_id)


def row_label(row: pd.Series) -> str:
    """A short name for one output in the audio picker."""
    parts = [f"#{int(row['row'])}" if pd.notna(row.get("row")) else "#?"]
    for col, fmt in (("engine", "{}"), ("language", "{}"), ("speed", "speed {}"), ("text_length", "{}"),
                     ("reference_seconds", "ref {:.1f} s"), ("repeat", "repeat {}")):
        value = row.get(col)
        if value is not None and not (isinstance(value, float) and np.isnan(value)) and value != "":
            try:
                parts.append(fmt.format(value))
            except (ValueError, TypeError):
                parts.append(str(value))
    if pd.notna(row.get("audio_seconds")):
        parts.append(f"{float(row['audio_seconds']):.2f} s")
    return " · ".join(parts)


def audio_choices(df: pd.DataFrame) -> list[tuple[str, str]]:
    """(label, wav path) for every row that produced audio."""
    if df is None or df.empty or "wav_path" not in df:
        return []
    out = []
    for _, row in df.iterrows():
        wav = row.get("wav_path")
        if isinstance(wav, str) and wav and Path(wav).exists():
            out.append((row_label(row), wav))
    return out


def signal_images(wav: str | None) -> tuple[str | None, str | None]:
    """Waveform and spectrogram PNGs of one WAV, drawn once and kept in its run's plots/ folder."""
    if not wav or not Path(wav).exists():
        return None, None
    wav = Path(wav)
    plot_dir = wav.parent.parent / "plots"
    plot_dir.mkdir(exist_ok=True)
    out = []
    for kind, draw in (("waveform", plots.waveform), ("spectrogram", plots.spectrogram)):
        png = plot_dir / f"{wav.stem}-{kind}.png"
        if not png.exists() or png.stat().st_mtime < wav.stat().st_mtime:
            audio, sr = sf.read(wav, dtype="float32", always_2d=False)
            if audio.ndim > 1:
                audio = audio.mean(axis=1)
            fig = draw(audio, sr)
            tmp = png.with_suffix(".tmp.png")
            fig.savefig(tmp, dpi=90, bbox_inches="tight")
            plots.close(fig)
            os.replace(tmp, png)  # a half-written PNG is never shown
        out.append(servable(png))
    return out[0], out[1]


@dataclass
class OutputsPanel:
    """The summary plot, a picker over the run's outputs, the picked audio with its images,
    the table and the CSV: what every multi-output experiment tab shows."""

    summary: gr.Image
    picker: gr.Dropdown
    audio: gr.Audio
    wave: gr.Image
    spec: gr.Image
    table: gr.Dataframe
    csv: gr.File

    @property
    def outputs(self) -> list[gr.components.Component]:
        return [self.summary, self.picker, self.audio, self.wave, self.spec, self.table, self.csv]

    @property
    def hidden(self) -> list[gr.components.Component]:
        """The outputs hidden until a run fills them (``reveal_filled``): all but the table."""
        return [self.summary, self.picker, self.audio, self.wave, self.spec, self.csv]


def outputs_panel(lab: LabContext, prefix: str, summary_label: str = "Summary plot") -> OutputsPanel:
    """Build the outputs widgets and wire the picker (choosing a row plays its audio).
    ``prefix`` makes the widgets' element ids unique (``<prefix>-audio``, ``<prefix>-table``...).
    Only the table shows before a run (its headers say what a run fills); the plot, players and
    CSV appear with the first run that has them (``reveal_filled(event, panel.hidden)``): empty boxes
    only lengthen the page."""
    # One summary figure per experiment (plots.figures_for); wide figures read best as a plain image.
    summary = gr.Image(label=summary_label, type="filepath", interactive=False, elem_id=f"{prefix}-summary",
                       visible=False)
    with gr.Row():
        picker = gr.Dropdown([], label="Output to play", info="one entry per row that produced audio", scale=2,
                             elem_id=f"{prefix}-picker", visible=False)
        audio = gr.Audio(label="Audio", type="filepath", interactive=False, scale=3, elem_id=f"{prefix}-audio",
                         visible=False)
    with gr.Row():
        wave = gr.Image(label="Waveform", type="filepath", interactive=False, elem_id=f"{prefix}-waveform",
                        visible=False)
        spec = gr.Image(label="Spectrogram", type="filepath", interactive=False, elem_id=f"{prefix}-spectrogram",
                        visible=False)
    table = results_table("Results", f"{prefix}-table")
    csv = gr.File(label="results.csv", interactive=False, height=80, elem_id=f"{prefix}-csv", visible=False)
    panel = OutputsPanel(summary, picker, audio, wave, spec, table, csv)

    root = lab.store.root.resolve()

    @ui_errors
    def pick(wav: str | None):
        # The value names a file on the server: only WAVs inside the results folder are served.
        if not wav:
            return None, None, None
        path = Path(wav).resolve()
        if path.suffix != ".wav" or not path.is_relative_to(root) or not path.is_file():
            raise LabError("that output is not a WAV of this lab's results; run or open a run again")
        w, s = signal_images(str(path))
        return servable(path), w, s

    picker.input(pick, [picker], [audio, wave, spec], api_visibility="private", concurrency_limit=None)
    return panel


def reveal_filled(event: Any, components: list[gr.components.Component]) -> None:
    """After ``event`` succeeds, show each of ``components`` that now holds a value.

    Outputs start hidden (an empty player or image box only lengthens the page); their values
    stay plain in the API, so showing them is this second, private step.
    """
    def show(*values: Any) -> Any:
        updates = [gr.update(visible=v is not None and v != "") for v in values]
        return updates if len(updates) > 1 else updates[0]  # gradio takes one output's value unwrapped

    event.success(show, components, components, api_visibility="private", queue=False, show_progress="hidden")


def panel_values(experiment: str, df: pd.DataFrame, run: Run) -> list[Any]:
    """Values for ``OutputsPanel.outputs`` after a run (its figures and tables saved as the CLI
    saves them); the first output is picked, and what has a value is shown."""
    images = save_outputs(experiment, df, run)
    return files_values(images[0] if images else None, df, run.csv_path if run.csv_path.exists() else None)


def files_values(summary: str | os.PathLike | None, df: pd.DataFrame, csv: str | os.PathLike | None) -> list[Any]:
    """``OutputsPanel.outputs`` values for a table of rows, its summary figure and its CSV."""
    choices = audio_choices(df)
    first = choices[0][1] if choices else None
    wave, spec = signal_images(first)
    return [servable(summary), gr.Dropdown(choices=choices, value=first), servable(first), wave, spec,
            table_view(df), servable(csv)]
