"""Evaluate tab: the XTTS paper's kind of table (per engine, variant and language: CER, speaker
similarity, DNSMOS, RTF) for the engines chosen, here or on a Ray cluster.

API: ``/evaluate`` (see ``components.app.ui.app`` for every endpoint's parameters).
"""

from __future__ import annotations

import gradio as gr

from components.app.context import LabContext
from components.engines import engine_class
from components.engines.base import LabError
from experiments.evaluate import summarize, summary_view, verdicts as paired_verdicts
from experiments.sentences import read_sentences
from experiments.specs import EvaluateSpec

from .common import outputs_panel, panel_values, results_table, reveal_filled, run_judged, ui_errors
from .controls import Field, Form, judges_switch

DEFAULT_LANGS = ["en", "ja"]


def engine_entries(lab: LabContext) -> list[str]:
    """Every engine, then each of its named variants as ``engine:variant`` (from the engine class)."""
    out = []
    for name in lab.engines.names():
        out.append(name)
        try:
            out += [f"{name}:{v}" for v in (getattr(engine_class(name), "variants", None) or {})]
        except ImportError:
            pass  # an engine that cannot import has no variants to offer; its status says why
    return out


def _list(name: str, text: str, cast=str) -> tuple:
    try:
        return tuple(cast(v.strip()) for v in str(text or "").split(",") if v.strip())
    except ValueError:
        raise LabError(f"{name} must be comma-separated {cast.__name__}s, got {text!r}") from None


def render(lab: LabContext) -> None:
    """The Evaluate tab's widgets and its ``evaluate`` endpoint."""
    gr.Markdown("One row per engine × variant × language × sentence × speaker × seed, judged; the summary "
                "has one line per engine × variant × language. An empty cell means a judge could not score "
                "it (the notes say why), never a zero.")
    with gr.Row():
        engines = gr.Dropdown(engine_entries(lab), value=[lab.engines.default()], multiselect=True,
                              allow_custom_value=True, label="Engines", scale=3, elem_id="evaluate-engines",
                              info="engine or engine:variant, e.g. xtts:int8 or xtts:temperature=0.3+top_k=10")
        sentences = gr.Slider(1, 20, 3, step=1, label="Sentences per language", scale=1,
                              info="the first N of the set")
    set_langs = list(read_sentences())  # the built-in set's languages (the 17 of XTTS v2)
    langs = gr.CheckboxGroup(set_langs, value=DEFAULT_LANGS, label="Languages")
    with gr.Accordion("Sentences, voices and seeds", open=False):
        with gr.Row():
            sentence_file = gr.File(label="Your sentence set (optional)", file_types=[".csv", ".txt"],
                                    type="filepath", height=80)
            sentence_lang = gr.Dropdown([""] + set_langs, value="", label="Language of a .txt set",
                                        info="a .csv has a lang,text header instead")
        with gr.Row():
            speakers = gr.Textbox("", label="Built-in voices", placeholder="e.g. female,male",
                                  info="each engine uses those it has; empty = its default voice")
            seeds = gr.Textbox("0", label="Seeds", info="comma-separated; for engines that sample")
        reference = gr.Audio(sources=["upload"], type="filepath", label="Reference voice to clone (optional)")
    with gr.Accordion("Where to run", open=False):
        with gr.Row():
            executor = gr.Radio(["local", "ray"], value="local", label="Executor",
                                info="ray: one actor per engine instance (README: Ray cluster)")
            address = gr.Textbox("", label="Ray address", placeholder="empty = a local Ray instance; auto; HOST:PORT")
            workers = gr.Slider(1, 16, 1, step=1, label="Ray workers per engine")
    judges = judges_switch(lab, "evaluate")  # the summary's CER, speaker similarity and DNSMOS come from these
    run_btn = gr.Button("Run evaluation", variant="primary")
    summary = results_table("Summary (engine × variant × language)", "evaluate-summary",
                            ("engine", "variant", "lang", "rows", "CER", "CER>0", "spk_sim", "DNSMOS OVRL", "RTF", "notes"))
    verdicts = results_table("Paired verdicts (A - B over the same sentences, 95% bootstrap interval)",
                             "evaluate-verdicts", ("language", "a", "b", "column", "pairs", "diff_mean", "ci_low",
                                                   "ci_high", "verdict"))
    panel = outputs_panel(lab, "evaluate")
    last_run = gr.State(None)  # this user's latest run id

    form = Form(Field("engines", engines), Field("langs", langs), Field("sentences", sentences),
                Field("sentence_file", sentence_file), Field("sentence_lang", sentence_lang),
                Field("speakers", speakers), Field("seeds", seeds), Field("reference", reference),
                Field("executor", executor), Field("address", address), Field("workers", workers), judges)

    @ui_errors
    @form.handler
    def evaluate(v, progress):
        spec = EvaluateSpec(engines=tuple(v.engines or ()), langs=tuple(v.langs or ()), sentences=int(v.sentences),
                            sentence_file=v.sentence_file or None, sentence_lang=v.sentence_lang or None,
                            speakers=_list("voices", v.speakers), seeds=_list("seeds", v.seeds, int),
                            references=(v.reference,) if v.reference else (), executor=v.executor or "local",
                            ray_address=(v.address or "").strip() or None, workers=int(v.workers))
        # Timings first; the summary again with the judges' columns once they have scored every row.
        for df, run in run_judged(lab, "evaluate", spec, progress, v.judges.judges, v.judges.reference):
            table = paired_verdicts(df)
            shown = table[["language", "a", "b", "column", "pairs", "diff_mean", "ci_low", "ci_high", "verdict"]] \
                if not table.empty else table
            yield [summary_view(summarize(df)), *panel_values("evaluate", df, run), run.run_id, shown]

    ran = run_btn.click(evaluate, form.inputs, [summary, *panel.outputs, last_run, verdicts],
                        api_name="evaluate", show_progress_on=[summary])
    reveal_filled(ran, panel.hidden)
