"""Every lab experiment through the CLI on a generated XTTS checkpoint (random weights).

This proves the code paths a user with real weights hits (loading, built-in speakers,
cloning, splitting, logging), never the audio quality: random weights make noise.
"""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def run_xtts(xtts_dir, results_dir, tmp_path, *args) -> pd.DataFrame:
    cmd = [sys.executable, "lab.py", "run", *args, "--engine", "xtts", "--xtts-dir", str(xtts_dir),
           "--cache-dir", str(tmp_path / "latents"), "--out", str(results_dir)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = pd.read_csv(proc.stdout.strip().splitlines()[-1])
    assert "xtts" in set(df["engine"])
    return df


def test_synth_with_builtin_speaker(xtts_dir, results_dir, tmp_path):
    df = run_xtts(xtts_dir, results_dir, tmp_path, "synth", "--text", "Hello there.", "--seed", "1")
    row = df.iloc[0]
    assert row["status"] == "ok" and row["latent_cache"] == "builtin" and row["audio_seconds"] > 0
    for col in ("t_gpt", "t_vocoder", "gpt_tokens", "temperature", "top_k", "precision"):
        assert pd.notna(row[col]), col


def test_speed_sweep(xtts_dir, results_dir, tmp_path):
    df = run_xtts(xtts_dir, results_dir, tmp_path, "speed-sweep", "--speeds", "0.75,1.5", "--text", "Hello there.")
    secs = df.set_index("speed")["audio_seconds"]
    assert secs[0.75] > secs[1.5]


def test_ref_length_clones_each_cut(xtts_dir, results_dir, tmp_path, reference_wav):
    df = run_xtts(xtts_dir, results_dir, tmp_path, "ref-length", "--reference", str(reference_wav),
                  "--lengths", "3,6", "--text", "Hello there.")
    assert list(df["status"]) == ["ok", "ok"]
    assert list(df["reference_seconds"]) == pytest.approx([3, 6], abs=0.01)  # the cuts as asked
    # ... and the speech XTTS kept of each after trimming silence (issue 9: it was overwritten).
    speech = df["reference_speech_seconds"]
    assert speech.notna().all() and (speech <= df["reference_seconds"] + 0.01).all() and speech.iloc[1] > speech.iloc[0]
    assert set(df["latent_cache"]) <= {"miss", "hit-memory", "hit-disk"}


def test_languages(xtts_dir, results_dir, tmp_path):
    df = run_xtts(xtts_dir, results_dir, tmp_path, "languages", "--langs", "en,ja,zh-cn,ko")
    assert list(df["language"]) == ["en", "ja", "zh-cn", "ko"] and (df["status"] == "ok").all()
    # The CLI batches by default (--batch 8): the four languages decoded as one batch.
    extra = df["extra"].map(json.loads)  # batch columns travel in the extra JSON column
    assert set(extra.map(lambda e: e["batch_size"])) == {8} and max(extra.map(lambda e: e["batch_rows"])) == 4


def test_benchmark_xtts_against_espeak(xtts_dir, results_dir, tmp_path):
    df = run_xtts(xtts_dir, results_dir, tmp_path, "benchmark", "--engines", "xtts,espeak", "--repeats", "1")
    ok = df[df["status"] == "ok"]
    assert set(ok["engine"]) == {"xtts", "espeak"}
    assert ok.groupby("engine")["cold"].sum().to_dict() == {"espeak": 1, "xtts": 1}
    xtts = ok[ok["engine"] == "xtts"]
    extra = xtts["extra"].map(json.loads)  # batch columns travel in the extra JSON column
    cold = xtts["cold"].astype(bool)
    assert [e.get("batched", False) for e in extra[cold]] == [False]
    assert len(extra[~cold]) == 3 and all(e["batched"] and e["batch_rows"] == 3 for e in extra[~cold])


def test_script_mixes_a_cloned_voice_a_builtin_voice_and_espeak(xtts_dir, results_dir, tmp_path, reference_wav):
    """Two engines at different rates (XTTS 24 kHz, espeak 22.05 kHz) in one stitched file."""
    import soundfile as sf

    from experiments.script_format import parse_srt

    (tmp_path / "s.txt").write_text("Me: Hello there.\nNarrator: Said the voice.\nHost: Welcome.\n")
    voices = f"Me=xtts:ref={reference_wav},Host=xtts,Narrator=espeak:male"
    proc = subprocess.run([sys.executable, "lab.py", "run", "script", "--script", str(tmp_path / "s.txt"),
                           "--voices", voices, "--xtts-dir", str(xtts_dir), "--cache-dir", str(tmp_path / "latents"),
                           # one take per line: random weights babble, and retakes are test_script_takes.py's
                           "--takes", "1", "--out", str(results_dir)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = Path(proc.stdout.strip().splitlines()[-1]).parent
    df = pd.read_csv(run_dir / "results.csv")
    assert list(df.sort_values("row")["engine"]) == ["xtts", "espeak", "xtts"]  # voices in order of first line
    assert (df["status"] == "ok").all() and df["reference"].notna().sum() == 1
    info = sf.info(run_dir / "script.wav")
    assert info.samplerate == 24000  # the highest engine rate; espeak's line resampled
    cues = parse_srt((run_dir / "script.srt").read_text())
    assert [c.speaker for c in cues] == ["Me", "Narrator", "Host"]
    assert info.frames / info.samplerate == pytest.approx(sum(c.end - c.start for c in cues) + 0.6, abs=0.005)
