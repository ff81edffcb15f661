"""Listen tab: build a blind listening test (from a saved run, or engines x sentences), share its
rater link, rate in the tab, and read the report (table, win matrix, plot with error bars).

Raters never need this tab: the link opens a standalone page (``components.app.listen_api``).
API: ``/listen_build_run`` (run id, factor, mode), ``/listen_build_engines`` (engines, sentences,
lang, mode), ``/listen_report`` (test id), ``/listen_close`` (test id).
"""

from __future__ import annotations

import html
import json

import gradio as gr

from components.app.context import LabContext
from components.engines.base import LabError
from experiments.listen.build import factors_of
from experiments.listen.common import FACTOR_COLUMNS, MODES
from experiments.listen.report import matrix_table, summary_text, systems_table
from experiments.listen.store import ListenTests
from experiments.sentences import read_sentences

from .common import servable, ui_errors


def rater_link(test_id: str | None) -> str:
    """The rater link and the rater page itself, embedded so that the owner can rate here too."""
    if not test_id:
        return "<p>Build a test, or pick one, to get its rater link.</p>"
    path = f"/listen/{html.escape(test_id)}"
    return (f'<p>Rater link (send it to your listeners; over <code>--share</code> put the public address in front): '
            f'<a id="listen-link" href="{path}" target="_blank">{path}</a></p>'
            f'<iframe src="{path}" title="Rate here" style="width:100%;height:560px;border:1px solid #ddd;'
            f'border-radius:8px"></iframe>')


def render(lab: LabContext) -> None:
    """The Listen tab's widgets and its endpoints."""
    tests = ListenTests(lab.store.root)
    gr.Markdown("Blind A/B or MOS tests: raters hear clips without knowing their system; the report ranks the "
                "systems with 95% intervals and says how often each judge (DNSMOS, CER...) agrees with the ears. "
                "See docs/listening.md.")
    mode = gr.Radio(list(MODES), value="pairwise", label="Mode",
                    info="pairwise: A / B / no preference (+ how much); mos: a 1-5 score per clip; "
                         "smos: 1-5, how like its reference recording (runs of cloning engines)")
    with gr.Row():
        with gr.Column():
            gr.Markdown("**From a saved run**: its clips that share a text, one system per value of the factor")
            runs = lab.store.runs()
            # Custom values allowed: runs and tests made after the page loaded (checked when used).
            run = gr.Dropdown(runs, value=None, label="Run", elem_id="listen-run", allow_custom_value=True)
            factor = gr.Dropdown(list(FACTOR_COLUMNS), value="engine", label="Factor (its values are the systems)",
                                 elem_id="listen-factor")
            from_run = gr.Button("Build test from run")
        with gr.Column():
            gr.Markdown("**From engines × sentences**: synthesised (and judged) now")
            runnable = [n for n, why in lab.engines.available().items() if why is None]
            engines = gr.Dropdown(lab.engines.names(), value=runnable[:2], multiselect=True,
                                  label="Engines", elem_id="listen-engines")
            with gr.Row():
                sentences = gr.Slider(1, 10, 3, step=1, label="Sentences")
                lang = gr.Dropdown(list(read_sentences()), value="en", label="Language")
            from_engines = gr.Button("Synthesise and build test", variant="primary", elem_id="listen-build")
    with gr.Row():
        test = gr.Dropdown(tests.tests(), value=None, label="Test", elem_id="listen-test", scale=3,
                           allow_custom_value=True)
        report_btn = gr.Button("Show report", elem_id="listen-report-btn", scale=1)
        close_btn = gr.Button("Close test (no more votes)", variant="stop", scale=1)
    link = gr.HTML(rater_link(None), elem_id="listen-link-box")
    summary = gr.Markdown(elem_id="listen-summary")
    with gr.Row():
        table = gr.Dataframe(label="Systems, best first", interactive=False, elem_id="listen-systems", scale=3)
        plot = gr.Image(label="Strength with 95% intervals", type="filepath", interactive=False, scale=2)
    matrix = gr.Dataframe(label="Win matrix: row's share of wins against column (ties half)", interactive=False)

    @ui_errors
    def pick_run(run_id):
        if not run_id:
            return gr.Dropdown(choices=list(FACTOR_COLUMNS), value="engine")
        choices = factors_of(lab.store.open_run(run_id).frame)
        if not choices:
            raise LabError(f"run {run_id} varies nothing (engine, speed, speaker...): no systems to compare")
        return gr.Dropdown(choices=choices, value=choices[0])

    def built(test_id):
        return gr.Dropdown(choices=tests.tests(), value=test_id), rater_link(test_id)

    @ui_errors
    def build_run(run_id, factor_name, mode_name):
        if not run_id:
            raise LabError("pick a run first")
        return built(tests.create_from_run(lab.store, run_id, factor_name or "engine", mode_name))

    @ui_errors
    def build_engines(engine_names, n, language, mode_name, progress=gr.Progress()):
        return built(tests.create_from_engines(lab, engine_names or (), int(n), language, mode_name,
                                               progress=progress))

    @ui_errors
    def show_report(test_id):
        if not test_id:
            raise LabError("pick a test first")
        paths = tests.save_report(test_id)
        report = json.loads(paths[2].read_text())
        return (summary_text(report), systems_table(report), servable(paths[3]),
                matrix_table(report).reset_index(), rater_link(test_id))

    @ui_errors
    def close_test(test_id):
        if not test_id:
            raise LabError("pick a test first")
        tests.close(test_id)
        return show_report(test_id)

    report_outputs = [summary, table, plot, matrix, link]
    run.focus(lambda: gr.Dropdown(choices=lab.store.runs()), None, run, api_visibility="private", queue=False)
    run.change(pick_run, run, factor, api_visibility="private")
    from_run.click(build_run, [run, factor, mode], [test, link], api_name="listen_build_run")
    from_engines.click(build_engines, [engines, sentences, lang, mode], [test, link], api_name="listen_build_engines")
    test.focus(lambda: gr.Dropdown(choices=tests.tests()), None, test, api_visibility="private", queue=False)
    test.change(lambda t: rater_link(t), test, link, api_visibility="private", queue=False)
    report_btn.click(show_report, test, report_outputs, api_name="listen_report")
    close_btn.click(close_test, test, report_outputs, api_name="listen_close")
