"""Experiments end to end with real espeak-ng audio: metric columns filled on every row, benchmark
memory and time to first audio, runs reproduced from their spec, exported, re-opened and compared."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import soundfile as sf

import lab
from components.engines import EngineConfig, Engines
from components.store.results import COLUMNS, ResultsStore, read_csv

ROOT = Path(__file__).resolve().parents[1]
SIGNAL = ("audio_seconds", "f0_median_hz", "f0_range_hz", "loudness_lufs", "lead_silence_s",
          "trail_silence_s", "clipping_fraction", "runaway")


def run_lab(capsys, *args: str) -> Path:
    """``lab.py run ...`` in this process; returns the run folder."""
    assert lab.main(["run", *args]) == 0, capsys.readouterr().err
    csv_path = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert csv_path.name == "results.csv"
    return csv_path.parent


def ok_rows(run_dir: Path) -> pd.DataFrame:
    df = read_csv(run_dir / "results.csv")
    assert list(df.columns) == list(COLUMNS)
    return df[df["status"] == "ok"]


@pytest.mark.parametrize("args", [
    ["synth", "--text", "Metrics on every row."],
    ["speed-sweep", "--speeds", "0.5,1,2"],
    ["languages", "--langs", "en,ja,zh-cn,ko,ar"],
])
def test_signal_metrics_on_every_row(capsys, results_dir, args, monkeypatch):
    monkeypatch.delenv("LAB_ASR_MODEL", raising=False)
    df = ok_rows(run_lab(capsys, *args, "--engine", "espeak", "--out", str(results_dir)))
    assert len(df)
    for col in SIGNAL:
        assert df[col].notna().all(), col
    assert (df["f0_median_hz"].between(70, 200)).all()  # espeak's male voice
    assert (df["loudness_lufs"].between(-40, -5)).all()
    assert (df["clipping_fraction"] == 0).all()
    assert not df["runaway"].astype(bool).any()  # speed 0.5 is slow, not a runaway
    assert "cer" not in df  # CER comes from the asr judge (judges.csv), off the synthesis row


def test_benchmark_memory_and_time_to_first_audio(capsys, results_dir, monkeypatch):
    monkeypatch.delenv("MELO_PYTHON", raising=False)
    run_dir = run_lab(capsys, "benchmark", "--engines", "espeak,melo", "--repeats", "2", "--out", str(results_dir))
    df = read_csv(run_dir / "results.csv")
    melo = df[df["engine"] == "melo"]
    assert list(melo["status"]) == ["unavailable"] and "MELO_PYTHON" in melo["note"].iloc[0]
    ok = df[df["status"] == "ok"]
    assert (ok["peak_rss_mb"] > 50).all()  # this Python process alone is well above 50 MB
    assert ok["peak_vram_mb"].isna().all()  # CPU: no VRAM column invented
    # espeak does not stream: no time to first audio is invented (issue 9: it copied synth_seconds).
    assert "ttfa_seconds" not in ok or ok["ttfa_seconds"].isna().all()
    extras = [json.loads(e) for e in ok["extra"]]
    assert all(e["streamed"] is False for e in extras)
    assert all(0 < e["rss_start_mb"] <= p + 1e-6 for e, p in zip(extras, ok["peak_rss_mb"]))
    summary = pd.read_csv(run_dir / "summary.csv")
    row = summary[summary["engine"] == "espeak"].iloc[0]
    for col in ("peak_rss_mb", "rtf_mean", "cold_first_run_seconds"):
        assert pd.notna(row[col]), col
    espeak = summary[summary["engine"] == "espeak"]
    for col in ("ttfa_mean", "ttfa_std", "ttfa_min", "ttfa_max"):
        assert col not in summary or espeak[col].isna().all(), col  # not a copy of synth_*
    # The unavailable engine is one status row with its reason, not a row of NaNs.
    melo = summary[summary["engine"] == "melo"]
    assert len(melo) == 1 and melo["status"].iloc[0] == "unavailable"
    assert "MELO_PYTHON" in melo["note"].iloc[0]
    assert (espeak["status"] == "ok").all()


def run_lab_process(*args: str) -> Path:
    """``lab.py run ...`` in a fresh process, as a user reproducing a run would; returns the run folder."""
    proc = subprocess.run([sys.executable, "lab.py", "run", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip().splitlines()[-1]).parent


@pytest.mark.slow
def test_reproduce_from_spec_gives_the_same_rows(results_dir):
    """espeak-ng's default voices are deterministic from a fresh process (its variants with breath
    noise, and later calls in a long-lived process, are not sample-exact), so a reproduced run must
    give the same audio and therefore the same metric values, row for row."""
    first = run_lab_process("languages", "--engine", "espeak", "--langs", "de,ja,hi", "--speed", "1.25",
                            "--out", str(results_dir))
    again = run_lab_process("--spec", str(first / "spec.yaml"), "--out", str(results_dir))
    a, b = read_csv(first / "results.csv"), read_csv(again / "results.csv")
    assert a["run_id"].iloc[0] != b["run_id"].iloc[0]
    same = ["language", "text", "speaker", "speed", "status", *SIGNAL]
    pd.testing.assert_frame_equal(a[same], b[same])
    for wa, wb in zip(a["wav_path"], b["wav_path"]):
        assert (sf.read(wa)[0] == sf.read(wb)[0]).all()


@pytest.mark.slow
def test_export_reopen_and_reproduce_from_the_export(capsys, results_dir, reference_wav, tmp_path, xtts_dir):
    # ref-length clones, so it runs on the tiny generated XTTS checkpoint (espeak is refused).
    xtts = ("--engine", "xtts", "--xtts-dir", str(xtts_dir), "--text", "Short.")
    run_dir = run_lab(capsys, "ref-length", *xtts, "--reference", str(reference_wav),
                      "--lengths", "3,6", "--out", str(results_dir))
    store = ResultsStore(results_dir)
    opened = store.open_run(run_dir.name)
    assert opened.experiment == "ref-length" and len(opened.frame) == 2
    assert {"0001-reference-3s.wav", "0002-reference-6s.wav"} <= {p.name for p in opened.wavs}

    out = store.export_run(run_dir.name, tmp_path / "export")
    assert out == tmp_path / "export" / run_dir.name
    exported = read_csv(out / "results.csv")
    assert list(exported["reference"]) == ["wav/0001-reference-3s.wav", "wav/0002-reference-6s.wav"]
    spec = (out / "spec.yaml").read_text()
    assert "reference: reference/reference.wav" in spec and (out / "reference" / "reference.wav").is_file()
    # Moved elsewhere, the export still reproduces: its spec names the copied reference.
    moved = out.rename(tmp_path / "moved")
    again = run_lab(capsys, "--spec", str(moved / "spec.yaml"), "--xtts-dir", str(xtts_dir), "--out", str(results_dir))
    assert list(read_csv(again / "results.csv")["reference_seconds"]) == pytest.approx([3.0, 6.0], abs=0.01)

    archive = store.export_run(run_dir.name, tmp_path / "zips", as_zip=True)
    names = zipfile.ZipFile(archive).namelist()
    assert f"{run_dir.name}/results.csv" in names and f"{run_dir.name}/spec.yaml" in names
    with pytest.raises(Exception, match="no run"):
        store.open_run("../etc")


def test_compare_runs_side_by_side(capsys, results_dir):
    male = run_lab(capsys, "languages", "--engine", "espeak", "--langs", "en,fr", "--speaker", "male",
                   "--out", str(results_dir))
    female = run_lab(capsys, "languages", "--engine", "espeak", "--langs", "en,fr", "--speaker", "female",
                     "--out", str(results_dir))
    table = ResultsStore(results_dir).compare_runs(male.name, female.name)
    assert list(table["language"]) == ["en", "fr"]  # lined up on what the runs varied
    assert (table["rows_a"] == 1).all() and (table["rows_b"] == 1).all()
    assert (table["f0_median_hz_delta"] > 30).all()  # espeak's female variant is pitched higher
    assert table["f0_median_hz_delta"].tolist() == pytest.approx(
        (table["f0_median_hz_b"] - table["f0_median_hz_a"]).tolist())
    assert table.attrs["runs"] == {"a": male.name, "b": female.name}


@pytest.mark.slow
def test_ref_length_similarity_with_xtts(xtts_dir, reference_wav, results_dir):
    """With the tiny random-weight XTTS checkpoint: every row gets a similarity (plumbing only, the
    weights are random) and the weight-free comparison; repeats give a spread per length."""
    from experiments import runner
    from experiments.ref_length import summarize
    from experiments.specs import RefLengthSpec

    engines = Engines(EngineConfig(xtts_dir=str(xtts_dir), device="cpu"))
    spec = RefLengthSpec(engine="xtts", reference=str(reference_wav), text="Short.", lengths=(3.0, 6.0), repeats=2)
    run = ResultsStore(results_dir).new_run("ref-length", spec)
    df = runner("ref-length")(spec, engines, run)
    assert len(df) == 4 and (df["status"] == "ok").all()
    assert df["xtts_spk_sim"].between(-1, 1).all() and df["envelope_distance"].notna().all()
    summary = summarize(df)
    assert list(summary["reference_seconds"]) == pytest.approx([3.0, 6.0], abs=0.01)
    assert (summary["outputs"] == 2).all() and summary["xtts_spk_sim_std"].notna().all()
