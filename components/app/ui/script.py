"""Script tab: read a multi-speaker script aloud, with a voice per speaker; one stitched WAV,
SRT and WebVTT subtitles, a row per line; play or re-render one line.

API (``gradio_client``):

- ``/read_script`` (script, voices table {"headers": ["speaker", "voice"], "data": [[name, voice]...]},
  reference files [for ``ref=FILE`` voices], lang, pause s, paragraph pause s, speed, seed)
  -> (first line wav, stitched wav, srt, vtt, lines table, speakers table, results.csv, run id)
- ``/play_line`` (run id, line number) -> that line's wav
- ``/rerender_line`` (run id, line number, new text or "", new voice or "", reference files)
  -> (line wav, stitched wav, srt, vtt, lines table, speakers table, results.csv)
- ``/flagged_lines`` (run id) -> (table of the lines not clean: retaken, flagged or chosen; line picker)
- ``/line_takes`` (run id, line number) -> (one player per take [MAX_TAKES], take picker)
- ``/choose_take`` (run id, line number, take) -> (stitched wav, srt, vtt, lines table, speakers
  table, results.csv, flagged table): keeps that take and re-stitches, with no synthesis

Every take is checked (CER from the lab's asr judge, signal flags) and flagged lines are retaken
on engines that use a seed: see ``experiments.script``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from components.app.context import LabContext
from components.engines import lab_languages
from components.engines.base import LabError
from experiments import script as script_exp
from experiments.pipeline import run_experiment
from experiments.script_format import FORMATS, Voice, parse_script
from experiments.specs import MAX_TAKES, ScriptSpec

from .common import servable, table_view, ui_errors
from .controls import judges_switch

EXAMPLE = """# One line per utterance: "Name: text". A blank line is a longer pause.
Narrator: It was a quiet evening in the lab.
Ada: Shall we hear how the new voices sound?
Bob: Yes. Start with the long paragraph.

Narrator: And so they listened, line by line.
"""
EXAMPLE_VOICES = [["Narrator", "espeak:male"], ["Ada", "espeak:female"], ["Bob", "espeak:male 2"]]
LINE_COLUMNS = ("line", "take", "kept", "flags", "cer", "speaker", "voice", "text", "start", "end", "audio_seconds",
                "synth_seconds", "rtf", "status", "note")
FLAGGED_COLUMNS = ("line", "speaker", "text", "takes", "kept_take", "cer", "flags", "take_flags", "verdict")
TABLE_EVERY_S = 1.0  # while a script renders, the table refreshes at most this often


def voices_from_table(value: Any, references: list[Any] | None) -> dict[str, str]:
    """The voices table (pandas, or gradio_client's {"headers", "data"}) -> {speaker: voice}.
    ``ref=NAME`` must name one of the uploaded ``references`` (never a path on the server)."""
    if isinstance(value, pd.DataFrame):
        rows = value.values.tolist()
    elif isinstance(value, dict):
        rows = value.get("data") or []
    else:
        rows = list(value or [])
    uploads = {Path(str(getattr(f, "name", f))).name: str(getattr(f, "name", f)) for f in references or []}
    voices = {}
    for row in rows:
        if len(row) < 2 or not str(row[0] or "").strip():
            continue
        name, voice = str(row[0]).strip(), str(row[1] or "").strip()
        engine, _, rest = voice.partition(":")
        if rest.strip().startswith("ref="):
            wanted = Path(rest.strip()[4:].strip()).name
            if wanted not in uploads:
                raise LabError(f"voice of {name!r} clones {wanted!r}: upload that recording under "
                               f"'Reference recordings' (uploaded: {', '.join(uploads) or 'none'})")
            voice = f"{engine}:ref={uploads[wanted]}"
        voices[name] = voice
    return voices


def _voice_override(voice: str, references: list[Any] | None) -> str | None:
    if not voice or not voice.strip():
        return None
    return voices_from_table([["line", voice]], references)["line"]


def lines_view(df: pd.DataFrame, stitched: script_exp.Stitched | None = None,
               all_takes: pd.DataFrame | None = None) -> pd.DataFrame:
    d = script_exp.table(df, stitched, all_takes)
    if "voice" in d:
        d["voice"] = d["voice"].map(lambda v: Voice.parse(v).label() if isinstance(v, str) and v else v)
    v = table_view(d, show=("line", "take", "kept", "flags", "voice", "start", "end"))
    first = [c for c in LINE_COLUMNS if c in v]
    return v[first + [c for c in v.columns if c not in first]]


def render(lab: LabContext) -> None:
    """The Script tab's widgets and its ``read_script``, ``play_line`` and ``rerender_line`` endpoints."""
    with gr.Row():
        with gr.Column(scale=3):
            script = gr.Textbox(EXAMPLE, lines=10, max_lines=30, label="Script",
                                info="'Name: text' per line; 'Name [ko]: text' sets a line's language; "
                                     "a line without a name continues the speaker; # comments; blank line = pause",
                                elem_id="script-text")
        with gr.Column(scale=2):
            voices = gr.Dataframe(value=pd.DataFrame(EXAMPLE_VOICES, columns=["speaker", "voice"]),
                                  headers=["speaker", "voice"], column_count=2, interactive=True,
                                  label="Voices", elem_id="script-voices",
                                  show_row_numbers=False)
            gr.Markdown("voice = `engine:speaker` (e.g. `espeak:female`, `xtts:Claribel Dervla`) or "
                        "`engine:ref=FILE` with FILE uploaded below (engines that clone).")
            fill = gr.Button("Add the script's speakers", size="sm")
            references = gr.File(file_count="multiple", file_types=["audio"], label="Reference recordings (for ref=FILE)",
                                 height=140, elem_id="script-references")
    with gr.Row():
        lang = gr.Dropdown(list(lab_languages()), value="en", label="Language", info="of lines without [xx]", scale=1)
        pause = gr.Number(0.3, minimum=0, maximum=10, label="Pause between lines (s)", scale=1)
        paragraph = gr.Number(0.8, minimum=0, maximum=10, label="Pause at a blank line (s)", scale=1)
        speed = gr.Slider(0.25, 4.0, 1.0, step=0.05, label="Speed", scale=2)
        seed = gr.Number(0, precision=0, minimum=0, label="Seed", scale=1)
    with gr.Row():
        fmt = gr.Dropdown(list(FORMATS), value="script", label="Format", scale=1, elem_id="script-format",
                          info="script: 'Name: text'; text or markdown: one line per sentence, read by the one voice")
        max_cer = gr.Number(0.2, minimum=0, maximum=10, label="Retake above CER", scale=1, elem_id="script-max-cer",
                            info="heard back by the asr judge")
        n_takes = gr.Number(3, precision=0, minimum=1, maximum=MAX_TAKES, label="Takes per line (at most)", scale=1,
                            elem_id="script-takes", info="flagged lines are retaken on engines that use a seed")
    judges = judges_switch(lab, "script")
    run_btn = gr.Button("Read the script aloud", variant="primary", elem_id="script-run")
    with gr.Row():
        first = gr.Audio(label="First line (plays while the rest is made)", type="filepath", autoplay=True,
                         interactive=False, elem_id="script-first")
        whole = gr.Audio(label="Whole script (stitched, loudness-matched)", type="filepath", interactive=False,
                         elem_id="script-audio")
    with gr.Row():
        srt = gr.File(label="Subtitles (SRT)", interactive=False, height=80, elem_id="script-srt")
        vtt = gr.File(label="Subtitles (WebVTT)", interactive=False, height=80, elem_id="script-vtt")
        csv = gr.File(label="results.csv", interactive=False, height=80, elem_id="script-csv")
    run_id = gr.Textbox(label="Run", interactive=False, elem_id="script-run-id")
    speakers = gr.Dataframe(label="Per speaker", headers=["speaker", "lines", "seconds", "synth_seconds", "rtf"],
                            interactive=False, elem_id="script-speakers")
    lines = gr.Dataframe(label="Lines", headers=list(LINE_COLUMNS),
                         interactive=False, max_height=400, elem_id="script-table")
    with gr.Accordion("One line: play or re-render", open=True):
        with gr.Row():
            line_no = gr.Number(None, precision=0, label="Line number (of the script; or click a row)", scale=1,
                                elem_id="script-line")
            new_text = gr.Textbox(label="New text (empty = keep)", scale=3, elem_id="script-line-text")
            new_voice = gr.Textbox(label="New voice (empty = keep)", scale=2, elem_id="script-line-voice")
        with gr.Row():
            play_btn = gr.Button("Play line", elem_id="script-play")
            redo_btn = gr.Button("Re-render line", variant="secondary", elem_id="script-rerender")
        line_audio = gr.Audio(label="Line", type="filepath", interactive=False, autoplay=True, elem_id="script-line-audio")
    with gr.Accordion("Checked takes: lines not clean", open=True):
        flagged = gr.Dataframe(label="Retaken, flagged or chosen lines", headers=list(FLAGGED_COLUMNS),
                               interactive=False, elem_id="script-flagged")
        with gr.Row():
            take_line = gr.Dropdown([], value=None, label="Line", scale=3, elem_id="script-take-line")
            take_pick = gr.Radio([], value=None, label="Keep take", scale=2, elem_id="script-take-choice")
            keep_btn = gr.Button("Keep this take and re-stitch", scale=1, elem_id="script-keep-take")
        with gr.Row():
            players = [gr.Audio(label=f"Take {k}", type="filepath", interactive=False, visible=False,
                                elem_id=f"script-take-{k}") for k in range(1, MAX_TAKES + 1)]

    @ui_errors
    def add_speakers(text, table):
        have = voices_from_table(table, None) if table is not None else {}
        rows = [[k, v] for k, v in have.items()]
        rows += [[name, "espeak:male"] for name in parse_script(text or "").speakers if name not in have]
        return pd.DataFrame(rows, columns=["speaker", "voice"])

    fill.click(add_speakers, [script, voices], [voices], api_visibility="private")

    def outputs_of(run, stitched) -> list[Any]:
        df = run.frame()
        all_takes = script_exp.run_takes(script_exp.open_spec(run.dir), run)
        return [servable(stitched.wav), servable(stitched.srt), servable(stitched.vtt),
                lines_view(df, stitched, all_takes), stitched.speakers.round(4), servable(run.csv_path)]

    @ui_errors
    def read_script(text, table, refs, lang, pause, paragraph, speed, seed, judges=None, judge_reference=None,
                    text_format="script", max_cer_value=0.2, takes_value=3, progress=gr.Progress()):
        try:
            seed_int = int(seed if seed is not None else 0)
        except (TypeError, ValueError):
            raise LabError(f"seed must be an integer, got {seed!r}") from None
        spec = ScriptSpec(script=text or "", voices=voices_from_table(table, refs), lang=lang,
                          pause=float(pause if pause is not None else 0.3),
                          paragraph_pause=float(paragraph if paragraph is not None else 0.8),
                          speed=float(speed), seed=seed_int, format=text_format or "script",
                          max_cer=float(max_cer_value if max_cer_value is not None else 0.2),
                          takes=_int(takes_value, "takes", 3))
        first_line = parse_script(spec.script_text()).lines[0].number
        shown, seen = 0.0, 0
        for update in run_experiment("script", spec, engines=lab.engines, store=lab.store, judges=lab.judges,
                                     judge_choice=judges or lab.judge_choice, judge_reference=judge_reference,
                                     progress=progress, save=False):
            run = update.run
            if update.judged:  # the audio is out; the lines table gains the judge columns when ready
                yield (gr.skip(), gr.skip(), gr.skip(), gr.skip(), lines_view(update.rows), gr.skip(), gr.skip(),
                       gr.skip())
            elif update.done:  # stitched: the whole file, its subtitles and the lines table
                yield (gr.skip(), servable(run.dir / script_exp.STITCHED_WAV), servable(run.dir / script_exp.SRT),
                       servable(run.dir / script_exp.VTT), lines_view(update.rows),
                       pd.read_csv(run.dir / script_exp.SPEAKERS_CSV).round(4), servable(run.csv_path), run.run_id)
            else:  # takes as they land: the first line plays at once, the table refreshes now and then
                new, seen = update.rows.iloc[seen:], len(update.rows)
                first = next((r for _, r in new.iterrows() if r.get("status") == "ok"
                              and script_exp.row_line(r) == first_line), None)
                if first is not None or time.monotonic() - shown > TABLE_EVERY_S:
                    shown = time.monotonic()
                    yield (servable(first["wav_path"]) if first is not None else gr.skip(), gr.skip(), gr.skip(),
                           gr.skip(), lines_view(update.rows), gr.skip(), gr.skip(), run.run_id)

    read_event = run_btn.click(read_script, [script, voices, references, lang, pause, paragraph, speed, seed,
                                             *judges.inputs, fmt, max_cer, n_takes],
                               [first, whole, srt, vtt, lines, speakers, csv, run_id], api_name="read_script")

    def _line_wav(run_id: str, line: Any) -> str:
        if not run_id:
            raise LabError("read a script first: there is no run to take a line from")
        run = lab.store.reopen(run_id)
        current = script_exp.kept_lines(script_exp.open_spec(run.dir), run)
        try:
            n = int(line)
        except (TypeError, ValueError):
            raise LabError(f"line must be a line number of the script, got {line!r}") from None
        match = current[current["line"] == n] if not current.empty else current
        if match.empty:
            raise LabError(f"line {n} was not spoken in this run; spoken lines: "
                           f"{', '.join(str(x) for x in current.get('line', [])) or 'none'}")
        return servable(match["wav_path"].iloc[0])

    def pick_row(evt: gr.SelectData, table):
        # Clicking a row of the lines table picks that line for playing or re-rendering.
        df = table if isinstance(table, pd.DataFrame) else pd.DataFrame()
        if "line" not in df or evt.index is None or evt.index[0] >= len(df):
            return gr.skip(), gr.skip()
        row = df.iloc[evt.index[0]]
        return int(row["line"]), str(row.get("text", ""))

    lines.select(pick_row, [lines], [line_no, new_text], api_visibility="private")

    @ui_errors
    def play_line(run_id, line):
        return _line_wav(run_id, line)

    play_btn.click(play_line, [run_id, line_no], [line_audio], api_name="play_line")

    @ui_errors
    def rerender(run_id, line, text, voice, refs, progress=gr.Progress()):
        if not run_id:
            raise LabError("read a script first: there is no run to re-render a line of")
        if line is None:
            raise LabError("give the line number to re-render")
        run = lab.store.reopen(run_id)
        spec = script_exp.open_spec(run.dir)
        run.judges = lab.judges  # the new take is heard back like the others
        row, stitched = script_exp.rerender_line(spec, run, lab.engines, int(line), text=text or None,
                                                 voice=_voice_override(voice, refs), progress=progress)
        return [servable(row["wav_path"]), *outputs_of(run, stitched)]

    redo_event = redo_btn.click(rerender, [run_id, line_no, new_text, new_voice, references],
                                [line_audio, whole, srt, vtt, lines, speakers, csv], api_name="rerender_line")

    def _run_and_spec(run_id: str):
        if not run_id:
            raise LabError("read a script first: there is no run to take a line from")
        run = lab.store.reopen(run_id)
        return run, script_exp.open_spec(run.dir)

    def _flagged_table(run, spec) -> pd.DataFrame:
        report = script_exp.report(script_exp.run_takes(spec, run))
        report = report[report["verdict"] != "clean"] if not report.empty else report
        return report[[c for c in FLAGGED_COLUMNS if c in report]].reset_index(drop=True)

    @ui_errors
    def flagged_lines(run_id):
        run, spec = _run_and_spec(run_id)
        table = _flagged_table(run, spec)
        choices = [(f"line {int(r.line)}: {str(r.text)[:50]}", int(r.line)) for r in table.itertuples()]
        return table, gr.update(choices=choices, value=choices[0][1] if choices else None)


    @ui_errors
    def line_takes(run_id, line):
        if line is None or line == "":
            return [gr.update(visible=False, value=None) for _ in players] + [gr.update(choices=[], value=None)]
        run, spec = _run_and_spec(run_id)
        all_takes = script_exp.run_takes(spec, run)
        mine = all_takes[all_takes["line"] == _int(line, "line", None)] if not all_takes.empty else all_takes
        if mine.empty:
            raise LabError(f"line {line} has no take in this run")
        out = []
        for k in range(MAX_TAKES):
            if k < len(mine):
                t = mine.iloc[k]
                cer = f"CER {t['cer']:.2f}" if pd.notna(t["cer"]) else "CER -"
                label = f"Take {int(t['take'])}{' (kept)' if t['kept'] else ''}: {cer}, {t['flags'] or 'clean'}"
                out.append(gr.update(value=servable(t["wav_path"]), label=label, visible=True))
            else:
                out.append(gr.update(value=None, visible=False))
        kept = int(mine.loc[mine["kept"], "take"].iloc[0])
        return out + [gr.update(choices=[(f"take {int(t)}", int(t)) for t in mine["take"]], value=kept)]

    take_line.input(line_takes, [run_id, take_line], [*players, take_pick], api_name="line_takes")
    # After a run or a re-render: the flagged lines, then the takes of the picked line (its value
    # may not change, so .input above would not fire).
    read_event.success(flagged_lines, [run_id], [flagged, take_line], api_name="flagged_lines").success(
        line_takes, [run_id, take_line], [*players, take_pick], api_visibility="private")
    redo_event.success(flagged_lines, [run_id], [flagged, take_line], api_visibility="private").success(
        line_takes, [run_id, take_line], [*players, take_pick], api_visibility="private")

    @ui_errors
    def choose(run_id, line, take):
        if line is None or take is None:
            raise LabError("pick a line and the take to keep")
        run, spec = _run_and_spec(run_id)
        stitched = script_exp.choose_take(spec, run, _int(line, "line", None), _int(take, "take", None))
        return [*outputs_of(run, stitched), _flagged_table(run, spec)]

    keep_btn.click(choose, [run_id, take_line, take_pick], [whole, srt, vtt, lines, speakers, csv, flagged],
                   api_name="choose_take").success(line_takes, [run_id, take_line], [*players, take_pick],
                                                   api_visibility="private")


def _int(value: Any, name: str, default: int | None) -> int:
    """``value`` as an integer (``default`` when empty); LabError naming ``name`` otherwise."""
    if value is None or value == "":
        if default is None:
            raise LabError(f"{name} must be a whole number, got nothing")
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise LabError(f"{name} must be a whole number, got {value!r}") from None
    if number != int(number):
        raise LabError(f"{name} must be a whole number, got {value!r}")
    return int(number)
