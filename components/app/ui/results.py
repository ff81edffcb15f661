"""Results tab: browse every logged row, re-open a run, compare two runs, download a run.

API: ``/results``, ``/open_run``, ``/compare_runs``, ``/download_run`` (see ``components.app.ui.app``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import pandas as pd

from components.store import plots
from components.app.context import LabContext
from components.engines.base import LabError
from components.store.results import RunFiles
from components.store.results_index import filter_rows as filter_index_rows
from experiments.compare import compare_runs as paired_comparison

from .common import (
    PLACEHOLDER_HEADERS, files_values, outputs_panel, results_table, reveal_filled, table_view, ui_errors,
)

ALL = "all"
# What the judge plot offers: any judge column against any parameter a run varies.
JUDGE_Y = ("dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808", "cer", "wer", "spk_sim", "xtts_spk_sim",
           "judge_seconds_per_audio_s")
# The table shows the newest rows and the scatter plot a sample: sending 100,000 rows to the browser
# (or drawing 100,000 points) would take seconds; the count line says so, and every row stays in
# the filters, the judge plot (means) and ``lab.py results --export``.
TABLE_ROWS = 1000
PLOT_POINTS = 5000
PARAMETERS = ("speed", "reference_seconds", "language", "engine", "speaker", "text_length", "text_chars",
              "precision", "repeat")


def filter_rows(df: pd.DataFrame, experiment: str, engine: str, language: str) -> pd.DataFrame:
    """Rows matching every filter that is not ``all``."""
    return filter_index_rows(df, experiment=experiment, engine=engine, language=language)


def matching_runs(runs: list[str], rows: pd.DataFrame, *, filtered: bool) -> list[str]:
    """The runs (newest first) that have rows among the filtered ``rows``: what "Open a run" and
    "Compare" offer, so they follow the filters. Unfiltered: every run."""
    if not filtered:
        return runs
    keep = set(rows["run_id"].astype(str)) if "run_id" in rows else set()
    return [r for r in runs if r in keep]


def run_summary(df: pd.DataFrame) -> dict[str, Any]:
    """A run's headline numbers (metric -> value), the same keys for every run so two compare."""
    num = {c: pd.to_numeric(df[c], errors="coerce") for c in
           ("audio_seconds", "synth_seconds", "rtf", "ttfa_seconds", "xtts_spk_sim", "spk_sim", "dnsmos_ovrl", "cer",
            "wer") if c in df}
    ok = df["status"].astype(str).eq("ok") if "status" in df else pd.Series(True, index=df.index)

    def stat(col: str, how: str) -> float | None:
        s = num.get(col, pd.Series(dtype=float))[ok].dropna()
        return None if s.empty else round(float(getattr(s, how)()), 4)

    def values(col: str) -> str:
        return ", ".join(sorted({str(v) for v in df[col].dropna()})) if col in df else ""

    return {
        "experiment": values("experiment"), "engines": values("engine"), "precision": values("precision"),
        "device": values("device"), "languages": values("language"),
        "rows": int(len(df)), "rows ok": int(ok.sum()),
        "audio seconds (total)": stat("audio_seconds", "sum"),
        "synthesis seconds (mean)": stat("synth_seconds", "mean"),
        "synthesis seconds (std)": stat("synth_seconds", "std"),
        "RTF (mean)": stat("rtf", "mean"), "RTF (median)": stat("rtf", "median"),
        "time to first audio (median s)": stat("ttfa_seconds", "median"),
        "XTTS-encoder similarity (mean)": stat("xtts_spk_sim", "mean"),
        "speaker similarity, Resemblyzer (mean)": stat("spk_sim", "mean"),
        "DNSMOS overall (mean)": stat("dnsmos_ovrl", "mean"),
        "CER (mean)": stat("cer", "mean"), "WER (mean)": stat("wer", "mean"),
    }


def render(lab: LabContext, tab: gr.Tab | None = None) -> None:
    """The Results tab's widgets and endpoints; ``tab`` (if given) refreshes the table when selected."""
    store = lab.store

    def load_run(run_id: str | None) -> RunFiles:
        run = store.open_run(run_id or "")  # only ids the store lists: never a user path
        df = run.frame
        if "wav_path" in df:  # the CSV holds the path as seen at write time; the file is in wav/
            df["wav_path"] = [str(run.dir / "wav" / Path(p).name) if isinstance(p, str) and p else np.nan
                              for p in df["wav_path"]]
        return run

    gr.Markdown("Every row logged under the results folder. Filter it, then open a run to hear and "
                "see its outputs, compare two runs, or download one as a zip.")
    with gr.Row():
        experiment = gr.Dropdown([ALL], value=ALL, label="Experiment", allow_custom_value=True)
        engine = gr.Dropdown([ALL], value=ALL, label="Engine", allow_custom_value=True)
        language = gr.Dropdown([ALL], value=ALL, label="Language", allow_custom_value=True)
        refresh_btn = gr.Button("Refresh", variant="primary")
    count = gr.Markdown(label="row count")
    table = results_table("All rows", "results-table", ("run_id", "experiment", *PLACEHOLDER_HEADERS))
    plot = gr.Image(label="Synthesis time vs text length", type="filepath", interactive=False, elem_id="results-plot",
                    visible=False)

    gr.Markdown("### Plot a judge column")
    with gr.Row():
        judge_y = gr.Dropdown(list(JUDGE_Y), value="dnsmos_ovrl", label="Judge column (y)")
        judge_x = gr.Dropdown(list(PARAMETERS), value="engine", label="Parameter (x)")
        judge_btn = gr.Button("Plot")
    judge_img = gr.Image(label="Judge column vs parameter (rows matching the filters above)", type="filepath",
                         interactive=False, elem_id="results-judge-plot")

    gr.Markdown("### Open a run")
    with gr.Row():
        run_dd = gr.Dropdown([], label="Run", scale=3)
        with gr.Column(scale=1, min_width=160):
            open_btn = gr.Button("Open run")
            zip_btn = gr.Button("Download run (.zip)")
        zip_file = gr.File(label="Run folder (.zip)", interactive=False, height=80, scale=2, visible=False)
    panel = outputs_panel(lab, "run", summary_label="Summary plot saved with the run")

    gr.Markdown("### Compare two runs")
    with gr.Row():
        run_a = gr.Dropdown([], label="Run A")
        run_b = gr.Dropdown([], label="Run B")
        compare_btn = gr.Button("Compare")
    comparison = results_table("Summary side by side", "compare-table", ("metric", "A", "B"))
    plot_dir = gr.State(None)  # this user's temp folder for the table plot

    @ui_errors
    def results(experiment, engine, language, folder):
        df, run_ids = lab.index().snapshot()  # every row, without re-reading every folder
        rows = filter_rows(df, experiment, engine, language)
        folder = folder or tempfile.mkdtemp(prefix="xtts-lab-plot-")
        sample = rows.sample(PLOT_POINTS, random_state=0) if len(rows) > PLOT_POINTS else rows
        fig = plots.synth_vs_text_length(sample)
        png = Path(folder) / f"synth-vs-text-{len(list(Path(folder).iterdir()))}.png"  # new name: no stale cache
        fig.savefig(png, dpi=90, bbox_inches="tight")
        plots.close(fig)

        def choices(col: str, value: str) -> gr.Dropdown:
            found = sorted({str(v) for v in df[col].dropna()}) if col in df else []
            return gr.Dropdown(choices=[ALL, *found], value=value if value in found else ALL)

        runs = matching_runs(run_ids, rows,
                             filtered=any(v and v != ALL for v in (experiment, engine, language)))
        first = runs[0] if runs else None
        second = runs[1] if len(runs) > 1 else first
        shown = [f"the table shows the newest {TABLE_ROWS}"] if len(rows) > TABLE_ROWS else []
        shown += [f"the plot a sample of {PLOT_POINTS}"] if len(rows) > PLOT_POINTS else []
        return (table_view(rows.head(TABLE_ROWS), show=("run_id", "experiment")),
                None if rows.empty else str(png),  # an empty plot says nothing
                f"{len(rows)} of {len(df)} rows, {len(runs)} runs"
                + (f" ({', '.join(shown)}; `lab.py results --export` writes them all)" if shown else ""),
                choices("experiment", experiment), choices("engine", engine), choices("language", language),
                gr.Dropdown(choices=runs, value=first), gr.Dropdown(choices=runs, value=second),
                gr.Dropdown(choices=runs, value=first), folder)

    @ui_errors
    def judge_plot(experiment, engine, language, y, x):
        if y not in JUDGE_Y or x not in PARAMETERS:  # names columns only from the fixed lists
            raise LabError(f"plot a judge column ({', '.join(JUDGE_Y)}) against a parameter ({', '.join(PARAMETERS)})")
        rows = filter_rows(lab.index().rows(), experiment, engine, language)
        fig = plots.judge_plot(rows, y, x)
        png = Path(tempfile.mkdtemp(prefix="xtts-lab-judge-plot-")) / f"{y}-vs-{x}.png"
        fig.savefig(png, dpi=90, bbox_inches="tight")
        plots.close(fig)
        return str(png)

    @ui_errors
    def open_run(run_id):
        run = load_run(run_id)
        df = run.frame
        # The experiment's summary plot; per-output waveforms/spectrograms are drawn when an output is picked.
        pngs = [p for p in run.plots if not p.stem.endswith(("-waveform", "-spectrogram"))]
        return tuple(files_values(pngs[0] if pngs else None, df, run.csv_path))

    @ui_errors
    def compare_runs(a, b):
        # Headline numbers side by side, then paired verdicts over the sentences both runs spoke.
        return paired_comparison(load_run(a).frame, load_run(b).frame, run_summary, a, b)

    @ui_errors
    def download_run(run_id):
        # The export format: paths made relative and the reference copied in, so it reproduces.
        folder = tempfile.mkdtemp(prefix="xtts-lab-zip-")
        return str(store.export_run(run_id or "", folder, as_zip=True))

    filters = [experiment, engine, language, plot_dir]
    outs = [table, plot, count, experiment, engine, language, run_dd, run_a, run_b, plot_dir]
    reveal_filled(refresh_btn.click(results, filters, outs, api_name="results", show_progress_on=[table]), [plot])
    reveal_filled(gr.on([experiment.input, engine.input, language.input], results, filters, outs,
                        api_visibility="private", show_progress_on=[table]), [plot])
    if tab is not None:
        reveal_filled(tab.select(results, filters, outs, api_visibility="private", show_progress_on=[table]), [plot])
    judge_btn.click(judge_plot, [experiment, engine, language, judge_y, judge_x], [judge_img], api_name="judge_plot",
                    show_progress_on=[judge_img])
    # Progress, and a failure's badge, on the one output each event is about (not on every output).
    opened = open_btn.click(open_run, [run_dd], panel.outputs, api_name="open_run", show_progress_on=[panel.table])
    reveal_filled(opened, panel.hidden)
    zipped = zip_btn.click(download_run, [run_dd], [zip_file], api_name="download_run", show_progress_on=[run_dd])
    reveal_filled(zipped, [zip_file])
    compare_btn.click(compare_runs, [run_a, run_b], [comparison], api_name="compare_runs")
