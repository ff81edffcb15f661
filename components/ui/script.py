"""Script tab: read a multi-speaker script aloud, with a voice per speaker; one stitched WAV,
SRT and WebVTT subtitles, a row per line; play or re-render one line.

API (``gradio_client``):

- ``/read_script`` (script, voices table {"headers": ["speaker", "voice"], "data": [[name, voice]...]},
  reference files [for ``ref=FILE`` voices], lang, pause s, paragraph pause s, speed, seed)
  -> (first line wav, stitched wav, srt, vtt, lines table, speakers table, results.csv, run id)
- ``/play_line`` (run id, line number) -> that line's wav
- ``/rerender_line`` (run id, line number, new text or "", new voice or "", reference files)
  -> (line wav, stitched wav, srt, vtt, lines table, speakers table, results.csv)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from components.context import LabContext
from components.engines import lab_languages
from components.engines.base import LabError
from components.results import rows_to_frame
from experiments import script as script_exp
from experiments.script_format import Voice, parse_script
from experiments.specs import ScriptSpec

from .common import judges_switch, servable, table_view, ui_errors

EXAMPLE = """# One line per utterance: "Name: text". A blank line is a longer pause.
Narrator: It was a quiet evening in the lab.
Ada: Shall we hear how the new voices sound?
Bob: Yes. Start with the long paragraph.

Narrator: And so they listened, line by line.
"""
EXAMPLE_VOICES = [["Narrator", "espeak:male"], ["Ada", "espeak:female"], ["Bob", "espeak:male 2"]]
LINE_COLUMNS = ("line", "speaker", "voice", "text", "start", "end", "audio_seconds", "synth_seconds", "rtf",
                "status", "note")
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


def lines_view(df: pd.DataFrame, stitched: script_exp.Stitched | None = None) -> pd.DataFrame:
    d = script_exp.table(df, stitched)
    if "voice" in d:
        d["voice"] = d["voice"].map(lambda v: Voice.parse(v).label() if isinstance(v, str) and v else v)
    v = table_view(d, show=("line", "voice", "start", "end"))
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
    judges = judges_switch(lab)
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

    @ui_errors
    def add_speakers(text, table):
        have = voices_from_table(table, None) if table is not None else {}
        rows = [[k, v] for k, v in have.items()]
        rows += [[name, "espeak:male"] for name in parse_script(text or "").speakers if name not in have]
        return pd.DataFrame(rows, columns=["speaker", "voice"])

    fill.click(add_speakers, [script, voices], [voices], api_visibility="private")

    def outputs_of(run, stitched) -> list[Any]:
        df = run.frame()
        return [servable(stitched.wav), servable(stitched.srt), servable(stitched.vtt), lines_view(df, stitched),
                stitched.speakers.round(4), servable(run.csv_path)]

    @ui_errors
    def read_script(text, table, refs, lang, pause, paragraph, speed, seed, judges=None, judge_reference=None, progress=gr.Progress()):
        from components.judges.session import attach

        try:
            seed_int = int(seed if seed is not None else 0)
        except (TypeError, ValueError):
            raise LabError(f"seed must be an integer, got {seed!r}") from None
        spec = ScriptSpec(script=text or "", voices=voices_from_table(table, refs), lang=lang,
                          pause=float(pause if pause is not None else 0.3),
                          paragraph_pause=float(paragraph if paragraph is not None else 0.8),
                          speed=float(speed), seed=seed_int)
        first_line = parse_script(spec.script).lines[0].number
        with lab.store.running("script", spec) as run:
            judging = attach(run, lab.judges, judges or lab.judge_choice, reference=judge_reference or None)
            rows, shown = [], 0.0
            for row in script_exp.render(spec, lab.engines, run, progress):
                rows.append(row)
                is_first = row.get("status") == "ok" and script_exp.row_line(row) == first_line
                if is_first or time.monotonic() - shown > TABLE_EVERY_S:
                    shown = time.monotonic()
                    yield (servable(row["wav_path"]) if is_first else gr.skip(), gr.skip(), gr.skip(), gr.skip(),
                           lines_view(rows_to_frame(rows)), gr.skip(), gr.skip(), run.run_id)
            progress(0.99, desc="stitching")
            stitched = script_exp.finish(spec, run)
        yield (gr.skip(), *outputs_of(run, stitched), run.run_id)
        if judging is not None:  # the audio is out; the lines table gains the judge columns when ready
            progress(0.99, desc=f"judging {judging.pending} line(s)")
            run.wait_for_judges()
            yield (gr.skip(), gr.skip(), gr.skip(), gr.skip(), lines_view(run.frame(), stitched), gr.skip(),
                   gr.skip(), gr.skip())

    run_btn.click(read_script, [script, voices, references, lang, pause, paragraph, speed, seed, *judges.inputs],
                  [first, whole, srt, vtt, lines, speakers, csv, run_id], api_name="read_script")

    def _line_wav(run_id: str, line: Any) -> str:
        if not run_id:
            raise LabError("read a script first: there is no run to take a line from")
        run = lab.store.reopen(run_id)
        current = script_exp.current_lines(run.frame())
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
        row, stitched = script_exp.rerender_line(spec, run, lab.engines, int(line), text=text or None,
                                                 voice=_voice_override(voice, refs), progress=progress)
        return [servable(row["wav_path"]), *outputs_of(run, stitched)]

    redo_btn.click(rerender, [run_id, line_no, new_text, new_voice, references],
                   [line_audio, whole, srt, vtt, lines, speakers, csv], api_name="rerender_line")
