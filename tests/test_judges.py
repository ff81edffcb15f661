"""Judges: the lazy registry, the columns every experiment gets, ``lab.py run judge``, and rows that
are never torn or duplicated. Real judges on real espeak audio (the calibration against neural
speech is tests/test_judges_calibration.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

import lab
from components.store import plots
from components.judges import REGISTRY, JudgeConfig, Judges, judge_class, judge_columns
from components.judges.asr import error_rates, normalize
from components.judges.base import CannotJudge, Judge, JudgeInput, LabError
from components.store.judging import JudgingSession
from components.store.results import JUDGES_CSV, ResultsStore, merge_judges, read_csv, read_run

SENTENCE = "The judges listen to every row."


def run_lab(capsys, *args: str) -> Path:
    """``lab.py run ...`` in this process; returns the run folder (the CSV path is the last line)."""
    assert lab.main(["run", *args]) == 0, capsys.readouterr().err
    csv_path = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert csv_path.name == "results.csv" and csv_path.exists()
    return csv_path.parent


def test_importing_judges_imports_no_model_backend():
    code = ("import sys, components.judges as j, components.app.context;"
            "js = j.Judges(); js.available(); js.select('all'); j.judge_columns();"
            "print([m for m in ('torch', 'onnxruntime', 'faster_whisper', 'ctranslate2', 'resemblyzer', 'speechmos')"
            " if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_registered_judge_follows_the_contract():
    for name in REGISTRY:
        judge = judge_class(name)(JudgeConfig())  # cheap: nothing loads here
        assert judge.name == name and isinstance(judge, Judge) and judge.columns
    assert judge_columns() == ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808", "spk_sim",
                               "asr_text", "cer", "wer", "asr_judge")


def test_selection_all_fast_none_and_names():
    judges = Judges()
    assert judges.select("all") == ("dnsmos", "speaker", "asr")  # all three are installed by uv sync
    assert judges.select("fast") == ("dnsmos",)
    assert judges.select("none") == ()
    assert judges.select("asr,dnsmos") == ("asr", "dnsmos")
    with pytest.raises(LabError, match="unknown judge 'utmos'"):
        judges.select("dnsmos,utmos")


def test_error_rates_normalise_case_punctuation_and_cjk_spaces():
    assert normalize("Hello, World!") == "hello world"
    assert error_rates("Hello, world!", "hello world") == {"cer": 0.0, "wer": 0.0}
    r = error_rates("hello world", "hallo world")
    assert r["cer"] == pytest.approx(1 / 11) and r["wer"] == pytest.approx(1 / 2)
    assert error_rates("abc", "abcabcabc")["cer"] == pytest.approx(2.0)  # babble: above 1
    assert error_rates("敏捷的狐狸。", "敏捷 的 狐狸", "zh-cn") == {"cer": 0.0, "wer": None}  # no words in zh
    assert error_rates("빠른 여우", "빠른 여우", "ko") == {"cer": 0.0, "wer": 0.0}  # Korean has words
    assert error_rates("...", "anything") == {"cer": None, "wer": None}
    assert error_rates("hello", "") == {"cer": 1.0, "wer": 1.0}


def test_a_language_whisper_does_not_know_leaves_cer_empty_and_says_why(monkeypatch):
    monkeypatch.delenv("LAB_ASR_MODEL", raising=False)
    judge = judge_class("asr")(JudgeConfig())
    with pytest.raises(CannotJudge, match="does not know the language 'xx'"):
        judge.judge(JudgeInput(0.1 * np.ones(16000, np.float32), 16000, text="Hallo Welt", lang="xx"))


@pytest.mark.slow
def test_synthesis_rows_get_judge_columns_with_names_versions_and_notes(capsys, results_dir):
    run_dir = run_lab(capsys, "synth", "--engine", "espeak", "--text", SENTENCE, "--judges", "all",
                      "--out", str(results_dir))
    raw = read_csv(run_dir / "results.csv")
    assert "dnsmos_ovrl" not in raw  # the synthesis row is written first, without waiting for judges
    df = read_run(run_dir)
    (row,) = df.to_dict("records")
    assert 1.0 <= row["dnsmos_ovrl"] <= 5.0 and 1.0 <= row["dnsmos_p808"] <= 5.0
    assert row["asr_judge"].startswith("whisper") and row["cer"] >= 0 and isinstance(row["asr_text"], str)
    assert np.isnan(row["spk_sim"]) and "no reference" in row["judge_notes"]  # empty and why, never 0
    used = json.loads(row["judges"])
    assert set(used) == {"dnsmos", "asr"} and all(u["version"] and u["seconds"] > 0 for u in used.values())
    assert row["judge_seconds_per_audio_s"] == pytest.approx(row["judge_seconds"] / row["audio_seconds"], rel=1e-3)
    assert not [c for c in df if c.startswith("_")]  # a judge's bookkeeping never becomes a column


@pytest.mark.slow
def test_judge_reference_fills_speaker_similarity_for_built_in_voices(capsys, results_dir, reference_wav):
    run_dir = run_lab(capsys, "speed-sweep", "--engine", "espeak", "--speeds", "0.8,1.25", "--text", SENTENCE,
                      "--judges", "speaker,dnsmos", "--judge-reference", str(reference_wav), "--out", str(results_dir))
    df = read_run(run_dir)
    assert len(df) == 2 and df["spk_sim"].between(0.5, 1.0).all()  # espeak's male voice against itself
    assert df["dnsmos_ovrl"].notna().all() and "cer" not in df  # asr not selected: no column
    assert (run_dir / "plots" / "speed-sweep.png").exists()


def test_judges_none_writes_no_judge_file(capsys, results_dir):
    run_dir = run_lab(capsys, "synth", "--engine", "espeak", "--text", SENTENCE, "--judges", "none",
                      "--out", str(results_dir))
    assert not (run_dir / JUDGES_CSV).exists() and "dnsmos_ovrl" not in read_run(run_dir)


def test_unknown_judge_exits_2_before_synthesis(capsys, results_dir):
    assert lab.main(["run", "synth", "--engine", "espeak", "--judges", "mos9000", "--out", str(results_dir)]) == 2
    assert "unknown judge 'mos9000'" in capsys.readouterr().err
    assert not list(results_dir.iterdir())


@pytest.fixture(scope="module")
def outside_audio(tmp_path_factory) -> Path:
    """Two WAVs 'from another system' (espeak here) and a file that is not audio."""
    from components.engines.base import SynthRequest
    from components.engines.espeak import EspeakEngine

    folder = tmp_path_factory.mktemp("outside")
    engine = EspeakEngine()
    for i, text in enumerate(("Hello from another system.", "Another clip to judge.")):
        r = engine.synthesize(SynthRequest(text=text, speaker="female"))
        sf.write(folder / f"clip{i}.wav", r.audio, r.sample_rate)
    return folder


@pytest.mark.slow
def test_run_judge_on_a_folder(capsys, results_dir, outside_audio):
    run_dir = run_lab(capsys, "judge", "--audio", str(outside_audio), "--text", "Hello from another system.",
                      "--lang", "en", "--judges", "fast", "--out", str(results_dir))
    df = read_run(run_dir)
    assert sorted(Path(p).name for p in df["wav_path"]) == ["clip0.wav", "clip1.wav"]
    assert (df["engine"] == "external").all() and df["dnsmos_ovrl"].between(1, 5).all()


def test_run_judge_from_a_manifest_with_a_bad_row(capsys, results_dir, outside_audio, tmp_path):
    manifest = tmp_path / "m.csv"
    (tmp_path / "notaudio.wav").write_text("this is not audio")
    pd.DataFrame({"audio": [str(outside_audio / "clip0.wav"), "notaudio.wav"],
                  "text": ["Hello from another system.", "x"], "lang": ["en", "en"],
                  "reference": [str(outside_audio / "clip1.wav"), ""]}).to_csv(manifest, index=False)
    run_dir = run_lab(capsys, "judge", "--manifest", str(manifest), "--judges", "speaker,asr", "--out", str(results_dir))
    df = read_run(run_dir).set_index("row")
    assert df.loc[1, "status"] == "ok" and df.loc[1, "spk_sim"] > 0.5 and df.loc[1, "cer"] >= 0
    assert df.loc[2, "status"] == "error" and "not an audio file" in df.loc[2, "note"]


def test_run_judge_needs_audio_or_manifest(capsys, results_dir):
    assert lab.main(["run", "judge", "--out", str(results_dir)]) == 2
    assert "exactly one of audio" in capsys.readouterr().err


class _CountingJudge:
    """Stands in for a model judge: counts calls and fails on request (to test the bookkeeping)."""

    name, columns, version = "counting", ("count",), "1"

    def __init__(self):
        self.calls = 0

    def judge(self, item):
        self.calls += 1
        if item.text == "fail":
            raise RuntimeError("boom")
        return {"count": self.calls}


def test_session_writes_each_row_once_whole_and_survives_a_failing_judge(tmp_path, monkeypatch):
    judges = Judges()
    fake = _CountingJudge()
    monkeypatch.setattr(judges, "get", lambda name: fake)
    monkeypatch.setattr(judges, "score", lambda name, item: (fake.judge(item), fake.version))
    monkeypatch.setattr("components.store.judging.judge_columns", lambda names: ("count",))
    session = JudgingSession(judges, ("counting",), tmp_path, "run1")
    audio = np.zeros(8000, np.float32)
    for row in range(1, 21):
        session.submit(row, JudgeInput(audio, 16000, text="fail" if row == 7 else "ok"))
    assert session.wait(timeout=60) and session.pending == 0
    lines = (tmp_path / JUDGES_CSV).read_text().splitlines()
    assert len(lines) == 21  # header + one line per row, none torn, none twice
    j = pd.read_csv(tmp_path / JUDGES_CSV)
    assert sorted(j["row"]) == list(range(1, 21))
    assert "counting failed: RuntimeError: boom" in j.set_index("row").loc[7, "judge_notes"]


def test_merge_keeps_rows_and_takes_the_last_judging():
    rows = pd.DataFrame({"row": [1, 2, 3], "cer": [np.nan, np.nan, 0.5], "text": ["a", "b", "c"]})
    judged = pd.DataFrame({"run_id": ["r"] * 3, "row": [1, 2, 2], "cer": [0.1, 0.2, 0.3], "dnsmos_ovrl": [3.0, 2.0, 2.5]})
    out = merge_judges(rows, judged)
    assert list(out["row"]) == [1, 2, 3] and list(out["text"]) == ["a", "b", "c"]
    assert out["cer"].tolist() == [0.1, 0.3, 0.5] and out["dnsmos_ovrl"].tolist()[:2] == [3.0, 2.5]


def test_store_reads_old_similarity_as_xtts_spk_sim(tmp_path):
    run_dir = tmp_path / "20260101-000000-ref-length-abcd"
    run_dir.mkdir()
    pd.DataFrame({"run_id": [run_dir.name], "row": [1], "similarity": [0.7], "status": ["ok"]}).to_csv(
        run_dir / "results.csv", index=False)
    df = ResultsStore(tmp_path).load_all()
    assert df["xtts_spk_sim"].tolist() == [0.7] and "similarity" not in df


def test_judge_plot_numeric_and_categorical_parameters():
    df = pd.DataFrame({"engine": ["a", "a", "b", "b"], "speed": [1, 1, 2, 2], "language": ["en", "ko", "en", "ko"],
                       "dnsmos_ovrl": [3.0, 3.2, 2.0, np.nan], "status": ["ok"] * 4})
    fig = plots.judge_plot(df, "dnsmos_ovrl", "speed")
    (ax,) = fig.axes
    assert "DNSMOS" in ax.get_ylabel() and ax.get_xlabel() == "speed" and "3 rows" in ax.get_title()
    plots.close(fig)
    fig = plots.judge_plot(df, "dnsmos_ovrl", "language")
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["en", "ko"]
    plots.close(fig)


def test_held_session_judges_nothing_until_released(tmp_path, monkeypatch):
    """The benchmark holds judging while it measures: rows queue, nothing is judged, then all are."""
    judges = Judges()
    fake = _CountingJudge()
    monkeypatch.setattr(judges, "get", lambda name: fake)
    monkeypatch.setattr(judges, "score", lambda name, item: (fake.judge(item), fake.version))
    monkeypatch.setattr("components.store.judging.judge_columns", lambda names: ("count",))
    session = JudgingSession(judges, ("counting",), tmp_path, "run1")
    with session.held():
        for row in (1, 2, 3):
            session.submit(row, JudgeInput(np.zeros(800, np.float32), 16000, text="ok"))
        assert not session.wait(timeout=0.5) and fake.calls == 0 and session.pending == 3
    assert session.wait(timeout=30) and fake.calls == 3


def test_experiment_summaries_show_quality_beside_speed():
    """Benchmark: the judges' means per engine and text length beside the timings (and a panel);
    speed sweep: a quality-vs-speed panel; languages: CER per language."""
    from experiments.benchmark import summarize

    df = pd.DataFrame({"engine": ["espeak"] * 3 + ["kokoro"] * 3, "text_length": ["short"] * 6,
                       "cold": [True, False, False] * 2, "status": ["ok"] * 6, "text_chars": [12] * 6,
                       "synth_seconds": [0.1, 0.01, 0.01, 2.0, 1.0, 1.2], "rtf": [0.1, 0.01, 0.01, 1, 0.5, 0.6],
                       "audio_seconds": [1.0] * 6, "dnsmos_ovrl": [2.7, 2.8, 2.9, 3.2, 3.3, 3.4],
                       "cer": [0.7, 0.6, 0.8, 0.1, 0.2, 0.0]})
    s = summarize(df).set_index("engine")
    assert s.loc["kokoro", "dnsmos_ovrl_mean"] == pytest.approx(3.35) and s.loc["espeak", "cer_mean"] == pytest.approx(0.7)
    fig = plots.benchmark(summarize(df))
    assert [ax.get_ylabel() for ax in fig.axes] == ["synthesis time (s)", "real-time factor", "DNSMOS overall (1-5)",
                                                   "character error rate"]
    plots.close(fig)
    sweep = pd.DataFrame({"speed": [0.5, 1.0, 2.0], "audio_seconds": [4, 2, 1], "synth_seconds": [1, 1, 1],
                          "dnsmos_ovrl": [2.5, 3.0, 2.0], "status": ["ok"] * 3})
    fig = plots.speed_sweep(sweep)
    assert fig.axes[2].get_ylabel() == "DNSMOS overall (1-5)" and len(fig.axes) == 3  # no cer values: no panel
    plots.close(fig)
    langs = pd.DataFrame({"language": ["en", "ko", "ja"], "rtf": [0.1] * 3, "audio_seconds": [2] * 3,
                          "cer": [0.1, 0.8, np.nan], "status": ["ok"] * 3})
    fig = plots.languages(langs)
    assert "character error rate" in [ax.get_ylabel() for ax in fig.axes]
    plots.close(fig)


def test_a_judge_with_nothing_to_score_is_never_loaded(tmp_path):
    """The speaker judge's class says "no reference" before Resemblyzer is loaded: a built-in voice
    judged without a recording to compare with costs no model load, and the note says why."""
    from components.judges import JudgeConfig, Judges
    from components.judges.base import JudgeInput
    from components.store.judging import JudgingSession

    judges = Judges(JudgeConfig())
    session = JudgingSession(judges, ("speaker",), tmp_path)
    audio = (0.1 * np.sin(np.linspace(0, 2000, 32000))).astype(np.float32)
    out = session.judge_row(1, JudgeInput(audio, 16000, "hello", "en", None))
    assert "spk_sim" not in out and "no reference recording" in out["judge_notes"]
    assert judges._judges == {}  # nothing was loaded


def test_run_judge_gives_the_same_cer_for_23_and_twenty_three(capsys, results_dir, tmp_path):
    """The same clip judged against a text with digits and against the same words spelled out:
    Whisper's transcript is compared after numbers become words on both sides."""
    from components.engines.base import SynthRequest
    from components.engines.espeak import EspeakEngine

    r = EspeakEngine().synthesize(SynthRequest(text="I bought twenty-three apples.", speaker="female"))
    clip = tmp_path / "apples.wav"
    sf.write(clip, r.audio, r.sample_rate)
    cers = []
    for text in ("I bought 23 apples.", "I bought twenty-three apples."):
        run_dir = run_lab(capsys, "judge", "--audio", str(clip), "--text", text, "--lang", "en", "--judges", "asr",
                          "--out", str(results_dir))
        (row,) = read_run(run_dir).to_dict("records")
        assert row["asr_judge"].startswith("whisper (whisper-base")
        cers.append(row["cer"])
    assert cers[0] == cers[1] and cers[0] < 0.8, cers  # espeak's female voice is hard for Whisper base


@pytest.mark.slow
def test_judges_remember_an_item_judged_before(monkeypatch):
    """Judges are deterministic, so ``Judges`` answers an item it judged before (the same samples
    and the fields that judge reads) from memory: a script take checked by the asr judge and then
    judged by the run's judges costs one transcript. Anything else still runs the model."""
    import dataclasses

    from components.engines.base import SynthRequest
    from components.engines.espeak import EspeakEngine
    from components.judges import JudgeConfig, Judges, _key
    from components.judges.base import JudgeInput

    def spied(judges: Judges) -> list[int]:
        """The sizes of the calls ``judges``' loaded DNSMOS model gets from now on (the real model runs)."""
        model, calls = judges.get("dnsmos"), []
        real = model.judge_many
        monkeypatch.setattr(model, "judge_many", lambda items: calls.append(len(items)) or real(items))
        return calls

    espeak = EspeakEngine()
    a, b = (espeak.synthesize(SynthRequest(text=t)) for t in ("One clip.", "Another, longer clip of speech."))
    item_a = JudgeInput(a.audio, a.sample_rate, "One clip.", "en")
    item_b = JudgeInput(b.audio, b.sample_rate, "Another, longer clip of speech.", "en")
    judges = Judges(JudgeConfig())
    first, _ = judges.score("dnsmos", item_a)
    calls = spied(judges)
    # DNSMOS reads the audio alone: A with another text and a copy of its samples is the same item.
    again = dataclasses.replace(item_a, audio=a.audio.copy(), text="some other text")
    results, _ = judges.score_many("dnsmos", [again, item_b])
    assert results[0] == first and calls == [1]  # only B went to the model
    assert results[1]["dnsmos_ovrl"] != first["dnsmos_ovrl"]
    # One changed sample is another item.
    changed = a.audio.copy()
    changed[len(changed) // 2] += 0.01
    judges.score("dnsmos", dataclasses.replace(item_a, audio=changed))
    assert calls == [1, 1]
    # The asr judge reads text and language, not the reference voice.
    from components.judges import judge_class

    asr, speaker = judge_class("asr"), judge_class("speaker")  # the classes: nothing loaded
    assert _key("asr", asr, item_a) != _key("asr", asr, dataclasses.replace(item_a, text="One clap."))
    assert _key("asr", asr, item_a) == _key("asr", asr, dataclasses.replace(item_a, reference="voice.wav"))
    assert _key("speaker", speaker, item_a) != _key("speaker", speaker, dataclasses.replace(item_a, reference="v.wav"))
    # A Judges told to remember nothing runs the model every time.
    forgetful = Judges(JudgeConfig(), remembered=0)
    forgetful.score("dnsmos", item_a)
    seen = spied(forgetful)
    forgetful.score("dnsmos", item_a)
    assert seen == [1]
