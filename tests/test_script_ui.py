"""The Script tab through gradio_client, against the real app in-process, engine espeak: the
stitched file and subtitles agree with the audio, the first line comes before the rest, one line
plays and re-renders, and bad input is a gradio error while the server keeps serving."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from components.app.context import LabContext  # noqa: E402
from serving import ui_client  # noqa: E402
from experiments.script_format import parse_srt  # noqa: E402
from tests.test_script import speech_spans  # noqa: E402

SCRIPT = "Narrator: The lab opens early.\nAda: Good morning everyone.\n\nBob: Is the coffee ready yet\n"
VOICES = {"headers": ["speaker", "voice"],
          "data": [["Narrator", "espeak:male"], ["Ada", "espeak:female"], ["Bob", "espeak:whisper"]]}



@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with ui_client(LabContext.create(results=str(tmp_path_factory.mktemp("script-ui-results")))) as c:
        yield c


def table(value: dict) -> pd.DataFrame:
    return pd.DataFrame(value["data"], columns=value["headers"])


@pytest.fixture(scope="module")
def read(client):
    job = client.submit(SCRIPT, VOICES, None, "en", 0.3, 0.8, 1.0, 0, api_name="/read_script")
    final = job.result()
    return job.outputs(), final


@pytest.mark.slow
def test_read_script_streams_the_first_line_then_stitches(read):
    updates, final = read
    first, whole, srt, vtt, lines, speakers, csv, run_id = final
    # The first line's audio came out in an update before the stitched file existed.
    early = [u for u in updates if isinstance(u[0], str)]
    assert early and not isinstance(early[0][1], str), "the first line must come before the stitched file"
    first_wav = early[0][0]
    assert sf.info(first_wav).duration > 0.5
    rows = table(lines)
    assert rows["line"].tolist() == [1, 2, 4] and rows["speaker"].tolist() == ["Narrator", "Ada", "Bob"]
    audio, sr = sf.read(whole, dtype="float32")
    cues = parse_srt(Path(srt).read_text())
    assert [c.speaker for c in cues] == ["Narrator", "Ada", "Bob"]
    spans = speech_spans(audio, sr)
    assert len(spans) == 3
    for cue, (start, end) in zip(cues, spans):
        assert abs(cue.start - start) <= 0.05 and abs(cue.end - end) <= 0.05
    assert rows["start"].tolist() == pytest.approx([c.start for c in cues], abs=2e-3)
    assert Path(vtt).read_text().startswith("WEBVTT")
    assert table(speakers).set_index("speaker")["lines"].to_dict() == {"Narrator": 1, "Ada": 1, "Bob": 1}
    assert run_id and len(pd.read_csv(csv)) == 3


def test_play_and_rerender_one_line(client, read):
    _, (_, whole, srt, *_, run_id) = read
    line_wav = client.predict(run_id, 2, api_name="/play_line")
    assert sf.info(line_wav).duration > 0.5
    before, sr = sf.read(whole, dtype="int16")
    before_cues = parse_srt(Path(srt).read_text())
    wav, whole2, srt2, vtt2, lines, speakers, csv = client.predict(
        run_id, 2, "A completely different greeting for all", "", None, api_name="/rerender_line")
    after, _ = sf.read(whole2, dtype="int16")
    after_cues = parse_srt(Path(srt2).read_text())
    assert after_cues[1].text == "A completely different greeting for all"
    assert after_cues[1].end - after_cues[1].start > before_cues[1].end - before_cues[1].start
    # The first line is untouched sample for sample; the last is the same audio, later.
    n0 = int(before_cues[0].end * sr) - 5
    assert np.array_equal(before[:n0], after[:n0])
    tail = int((before_cues[2].end - before_cues[2].start) * sr) - 5
    assert np.array_equal(before[len(before) - tail:], after[len(after) - tail:])
    assert len(table(lines)) == 4  # the old rendering of line 2 stays in the table and the CSV
    assert len(pd.read_csv(csv)) == 4


def test_bad_input_is_a_gradio_error_and_the_server_keeps_serving(client, read):
    with pytest.raises(Exception, match="line 2: speaker 'Eve' has no voice"):
        client.predict("Narrator: hi\nEve: hello", VOICES, None, "en", 0.3, 0.8, 1.0, 0, api_name="/read_script")
    with pytest.raises(Exception, match="upload that recording"):
        client.predict("A: hi", {"headers": ["speaker", "voice"], "data": [["A", "espeak:ref=me.wav"]]}, None,
                       "en", 0.3, 0.8, 1.0, 0, api_name="/read_script")
    with pytest.raises(Exception, match="script is empty"):
        client.predict("", VOICES, None, "en", 0.3, 0.8, 1.0, 0, api_name="/read_script")
    with pytest.raises(Exception, match="line 9 was not spoken"):
        client.predict(read[1][-1], 9, api_name="/play_line")
    assert client.predict(read[1][-1], 1, api_name="/play_line")  # still serving


@pytest.mark.slow
def test_read_script_with_kokoro_and_espeak_voices(client):
    voices = {"headers": ["speaker", "voice"], "data": [["Ada", "kokoro:jf_alpha"], ["Bob", "espeak:male"]]}
    *_, whole, srt, _vtt, lines, _speakers, _csv, _run = client.predict(
        "Ada: Good morning everyone.\nBob: Is the coffee ready yet\n", voices, None, "en", 0.3, 0.8, 1.0, 0,
        api_name="/read_script")
    audio, sr = sf.read(whole, dtype="float32")
    assert sr == 24000 and table(lines)["voice"].tolist() == ["kokoro:jf_alpha", "espeak:male"]
    cues = parse_srt(Path(srt).read_text())
    spans = speech_spans(audio, sr)
    assert [c.speaker for c in cues] == ["Ada", "Bob"] and len(spans) == 2
    for cue, (start, end) in zip(cues, spans):
        assert abs(cue.start - start) <= 0.05 and abs(cue.end - end) <= 0.05
