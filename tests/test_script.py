"""The script experiment end to end on real espeak-ng audio: the CLI as a user runs it, then the
stitched WAV read back and its segment boundaries found from the audio itself (the silences between
lines), compared with the subtitle cues; re-rendering one line; bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from components.engines import Engines
from components.engines.base import LabError
from components.store.results import ResultsStore
from experiments import script as script_exp
from experiments.script_format import parse_srt

ROOT = Path(__file__).resolve().parents[1]
PAUSE, PARAGRAPH = 0.3, 0.8

# Three speakers; lines of one voice alternate with others (they must still batch together); a
# continuation line; a paragraph break; a line of only symbols (skipped). No commas inside lines, so
# the only silences longer than 0.2 s are the pauses between lines.
SCRIPT = """# a three-speaker test script
Narrator: The lab opens in the morning.
Ada: Good morning everyone.
Bob: Is the coffee ready yet
Ada: Not yet Bob.
and please be patient.

Narrator: Then the speakers began to read.
Bob: 🎉 !!!
Bob: That took a while.
"""
SPOKEN = [(2, "Narrator"), (3, "Ada"), (4, "Bob"), (5, "Ada"), (6, "Ada"), (8, "Narrator"), (10, "Bob")]
# The pause before each spoken line in the stitched file (none before the first).
PAUSES = [0.0, PAUSE, PAUSE, PAUSE, PAUSE, PARAGRAPH, PAUSE]
VOICES = "Narrator=espeak:male,Ada=espeak:female,Bob=espeak:whisper"


def lab_main(*args: str, capsys) -> tuple[int, str, str]:
    import lab

    rc = lab.main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture(scope="module")
def script_run(tmp_path_factory) -> Path:
    """``lab.py run script`` once, as a subprocess (the user's way); returns the run folder."""
    folder = tmp_path_factory.mktemp("script")
    (folder / "dialogue.txt").write_text(SCRIPT, encoding="utf-8")
    proc = subprocess.run([sys.executable, "lab.py", "run", "script", "--script", str(folder / "dialogue.txt"),
                           "--voices", VOICES, "--pause", str(PAUSE), "--paragraph-pause", str(PARAGRAPH),
                           "--out", str(folder / "results")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    csv_path = Path(proc.stdout.strip().splitlines()[-1])
    assert csv_path.name == "results.csv" and csv_path.is_file(), proc.stdout
    return csv_path.parent


def speech_spans(audio: np.ndarray, sr: int, min_gap: float = 0.2) -> list[tuple[float, float]]:
    """Where there is sound, found from the samples alone: 10 ms frames quieter than -70 dBFS are
    silence; silences shorter than ``min_gap`` are part of the speech around them."""
    frame = int(sr * 0.01)
    n = len(audio) // frame
    rms = np.sqrt(np.mean(audio[: n * frame].astype(np.float64).reshape(n, frame) ** 2, axis=1))
    loud = 20 * np.log10(np.maximum(rms, 1e-12)) > -70
    spans, start, last = [], None, None
    for i, is_loud in enumerate(loud):
        if is_loud:
            if start is None:
                start = i
            elif (i - last - 1) * frame / sr >= min_gap:
                spans.append((start * frame / sr, (last + 1) * frame / sr))
                start = i
            last = i
    if start is not None:
        spans.append((start * frame / sr, (last + 1) * frame / sr))
    return spans


def current(run_dir: Path) -> pd.DataFrame:
    return script_exp.current_lines(pd.read_csv(run_dir / "results.csv"))


def test_cli_writes_a_row_per_line_and_the_files_beside_the_csv(script_run, tmp_path):
    df = script_exp.expand_extra(pd.read_csv(script_run / "results.csv"))
    ok = df[df["status"] == "ok"]
    assert [(int(l), s) for l, s in zip(ok.sort_values("line")["line"], ok.sort_values("line")["speaker"])] == SPOKEN
    skipped = df[df["status"] == "skipped"]
    assert list(skipped["line"]) == [9] and "nothing to say" in skipped["note"].iloc[0]
    assert set(ok["voice"]) == {"espeak:male", "espeak:female", "espeak:whisper"}
    # Lines of one voice were synthesised together: each voice's rows are consecutive.
    order = list(ok.sort_values("row")["voice"])
    assert order == sorted(order, key=order.index)
    for name in ("script.wav", "script.srt", "script.vtt", "speakers.csv", "spec.yaml"):
        assert (script_run / name).is_file(), name
    speakers = pd.read_csv(script_run / "speakers.csv").set_index("speaker")
    assert speakers.loc[["Narrator", "Ada", "Bob"], "lines"].tolist() == [2, 3, 2]
    assert (speakers["rtf"] > 0).all()
    assert speakers["rtf"].tolist() == pytest.approx((speakers["synth_seconds"] / speakers["seconds"]).tolist())
    exported = ResultsStore(script_run.parent).export_run(script_run.name, tmp_path)
    assert all((exported / name).is_file() for name in ("script.wav", "script.srt", "script.vtt", "speakers.csv"))


def assert_cues_match_audio(run_dir: Path, speakers: list[str], pauses: list[float]) -> None:
    """One SRT cue per spoken line, in order, each within 50 ms of a segment found in the stitched
    audio; the silences found between segments are the pauses; total = segments + pauses."""
    audio, sr = sf.read(run_dir / "script.wav", dtype="float32")
    cues = parse_srt((run_dir / "script.srt").read_text())
    texts = current(run_dir)["text"].tolist()
    assert [(c.speaker, c.text) for c in cues] == list(zip(speakers, texts))
    assert [(c.speaker, c.text, round(c.start, 3)) for c in parse_srt((run_dir / "script.vtt").read_text())] == \
        [(c.speaker, c.text, round(c.start, 3)) for c in cues]
    spans = speech_spans(audio, sr)
    assert len(spans) == len(cues), (spans, cues)
    for cue, (start, end) in zip(cues, spans):
        assert abs(cue.start - start) <= 0.05 and abs(cue.end - end) <= 0.05, (cue, start, end)
    gaps = [b[0] - a[1] for a, b in zip(spans, spans[1:])]
    assert gaps == pytest.approx(pauses[1:], abs=0.05)
    segments = sum(c.end - c.start for c in cues)
    assert len(audio) / sr == pytest.approx(segments + sum(pauses), abs=len(cues) * 1e-3)


def test_cues_match_the_segments_found_in_the_stitched_audio(script_run):
    assert_cues_match_audio(script_run, [s for _, s in SPOKEN], PAUSES)


@pytest.mark.slow
def test_kokoro_and_espeak_voices_in_one_script(tmp_path):
    """Kokoro (24 kHz) and espeak (22.05 kHz) voices in one script: one rate, cues on the audio."""
    (tmp_path / "s.txt").write_text("Ada: Good morning everyone.\nKumo: The tea is ready now.\n\n"
                                    "Narrator: Then they sat down.\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, "lab.py", "run", "script", "--script", str(tmp_path / "s.txt"),
                           "--voices", "Ada=kokoro:jf_alpha,Kumo=kokoro:jm_kumo,Narrator=espeak:male",
                           "--out", str(tmp_path / "results")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = Path(proc.stdout.strip().splitlines()[-1]).parent
    df = pd.read_csv(run_dir / "results.csv")
    assert sorted(df["engine"]) == ["espeak", "kokoro", "kokoro"] and (df["status"] == "ok").all()
    assert sf.info(run_dir / "script.wav").samplerate == 24000
    assert_cues_match_audio(run_dir, ["Ada", "Kumo", "Narrator"], [0.0, PAUSE, PARAGRAPH])


def test_loudness_is_matched_across_voices(script_run):
    import pyloudnorm

    audio, sr = sf.read(script_run / "script.wav", dtype="float64")
    meter = pyloudnorm.Meter(sr)
    cues = parse_srt((script_run / "script.srt").read_text())
    stitched = [meter.integrated_loudness(audio[int(c.start * sr):int(c.end * sr)]) for c in cues]
    raw = []
    for wav in current(script_run)["wav_path"]:
        a, r = sf.read(wav, dtype="float64")
        raw.append(pyloudnorm.Meter(r).integrated_loudness(a))
    assert max(raw) - min(raw) > 3  # espeak's whisper voice is much quieter than the others
    assert stitched == pytest.approx([-23.0] * len(cues), abs=1.0)


def test_rerendering_one_line_changes_only_that_segment(script_run, tmp_path):
    root = tmp_path / "results"
    shutil.copytree(script_run, root / script_run.name)
    store = ResultsStore(root)
    run = store.reopen(script_run.name)
    before_audio, sr = sf.read(run.dir / "script.wav", dtype="int16")
    before = parse_srt((run.dir / "script.srt").read_text())
    rows_before = len(run.frame())

    spec = script_exp.open_spec(run.dir)
    row, stitched = script_exp.rerender_line(spec, run, Engines(), 4, text="Is the tea ready now or later")
    after_audio, _ = sf.read(stitched.wav, dtype="int16")
    after = parse_srt(stitched.srt.read_text())

    assert len(run.frame()) == rows_before + 1 and int(run.frame()["row"].max()) == rows_before + 1
    assert [c.text for c in after] == [c.text if i != 2 else "Is the tea ready now or later" for i, c in enumerate(before)]
    changed = 2  # line 4 is the third spoken line

    def cut(audio, cue):
        return audio[int(round(cue.start * sr)):int(round(cue.end * sr))]

    def found(audio, piece, near):
        """``piece`` occurs sample for sample in ``audio`` within 2 ms of ``near`` (cue times are in ms)."""
        at = int(round(near * sr))
        return any(np.array_equal(audio[at + s: at + s + len(piece)], piece) for s in range(-sr // 500, sr // 500 + 1))

    for i, (a, b) in enumerate(zip(before, after)):
        if i != changed:
            assert found(after_audio, cut(before_audio, a), b.start), f"segment {i} changed"
            assert b.end - b.start == pytest.approx(a.end - a.start, abs=2e-3)
    assert not found(after_audio, cut(before_audio, before[changed]), after[changed].start)
    delta = (after[changed].end - after[changed].start) - (before[changed].end - before[changed].start)
    assert len(after_audio) / sr == pytest.approx(len(before_audio) / sr + delta, abs=2e-3)
    assert json.loads(row["extra"])["line"] == 4
    with pytest.raises(LabError, match="not spoken"):
        script_exp.rerender_line(spec, run, Engines(), 9)  # the skipped line
    with pytest.raises(LabError, match="no run"):
        store.reopen("../" + script_run.name)  # only ids of saved runs, never a path


@pytest.mark.parametrize("voices, script, message", [
    ("Narrator=espeak:male", "Narrator: hi\nStranger: hello", "line 2: speaker 'Stranger' has no voice"),
    ("A=espeak:ref={ref}", "A: hello", r"line 1 \(A = espeak:ref=reference.wav\): espeak cannot clone"),
    ("A=espeak:nobody", "A: hello", "line 1 .*espeak has no speaker 'nobody'"),
    ("A=espeak", "A [xx]: hello", "line 1 .*espeak does not speak 'xx'"),
    ("A=nosuchengine:x", "A: hello", "line 1 .*unknown engine 'nosuchengine'"),
    ("A=espeak", "# nothing to say\n\n", "script is empty"),
    ("A=espeak", "\n".join(f"A: line {i}." for i in range(10_000)), "more than 2000 spoken lines"),
])
def test_bad_input_exits_2_naming_the_line(tmp_path, capsys, reference_wav, voices, script, message):
    (tmp_path / "s.txt").write_text(script, encoding="utf-8")
    rc, out, err = lab_main("run", "script", "--script", str(tmp_path / "s.txt"),
                            "--voices", voices.format(ref=reference_wav), "--out", str(tmp_path / "r"), capsys=capsys)
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()[-1:]) == 1
    import re

    assert re.search(message, err), err
    assert not list((tmp_path / "r").glob("*/results.csv"))  # nothing half-done left behind


def test_cli_needs_script_and_voices(tmp_path, capsys):
    rc, _, err = lab_main("run", "script", "--voices", "A=espeak", capsys=capsys)
    assert rc == 2 and "--script FILE" in err
    (tmp_path / "s.txt").write_text("A: hi")
    rc, _, err = lab_main("run", "script", "--script", str(tmp_path / "s.txt"), capsys=capsys)
    assert rc == 2 and "--voices" in err
