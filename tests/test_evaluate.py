"""The evaluate experiment without Ray: sentence sets, variants, the plan, resume, the summary.

Ray itself (the same rows from actors, an actor killed mid-run) is in test_evaluate_ray.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.engines import EngineConfig, Engines
from components.engines.base import LabError
from components.engines import settings_class
from components.engines.xtts.settings import XttsSettings
from components.engines.espeak import EspeakEngine
from components.engines.xtts.engine import XttsEngine
from components.store.results import ResultsStore
from experiments import save_outputs
from experiments.evaluate import KEY_COLUMNS, format_summary, parse_entry, run as evaluate, summarize, variant_settings
from experiments.sentences import read_sentences, select
from experiments.specs import EvaluateSpec

ROOT = Path(__file__).resolve().parents[1]
# The 17 languages of XTTS v2 (issue 12 asks the built-in set to cover each).
XTTS_LANGUAGES = ("en", "es", "fr", "de", "it", "pt", "pl", "tr", "ru", "nl", "cs", "ar", "zh-cn", "hu", "ko", "ja", "hi")


def keys(df: pd.DataFrame) -> list[tuple[str, ...]]:
    d = df[list(KEY_COLUMNS)].astype(str).replace({"nan": ""})
    return list(d.itertuples(index=False, name=None))


# -- sentence sets --------------------------------------------------------------------------------

def test_builtin_set_covers_every_xtts_language_with_numbers_and_punctuation():
    sets = read_sentences()
    assert set(sets) == set(XTTS_LANGUAGES)
    for lang, sentences in sets.items():
        assert len(sentences) == 20, lang
        assert sum(bool(re.search(r"\d", s)) for s in sentences) >= 15, lang  # numbers
        assert any(s.rstrip().endswith(("?", "？", "؟")) or "?" in s or "？" in s or "؟" in s for s in sentences), lang
        assert any("!" in s or "！" in s for s in sentences), lang
        lengths = [len(s) for s in sentences]
        assert max(lengths) <= 3 * min(lengths), (lang, min(lengths), max(lengths))  # similar lengths


def test_user_sets_from_csv_and_txt_and_first_n(tmp_path):
    csv_file = tmp_path / "mine.csv"
    csv_file.write_text("lang,text\nen,One.\nen,Two.\nde,Eins.\nen,One.\n", encoding="utf-8")
    sets = read_sentences(csv_file)
    assert sets == {"en": ["One.", "Two."], "de": ["Eins."]}  # a repeated sentence counts once
    assert select(sets, ("en",), 1) == {"en": ["One."]}
    txt = tmp_path / "mine.txt"
    txt.write_text("Bonjour.\n\nAu revoir.\n", encoding="utf-8")
    assert read_sentences(txt, "fr") == {"fr": ["Bonjour.", "Au revoir."]}
    with pytest.raises(LabError, match="--lang"):
        read_sentences(txt)
    with pytest.raises(LabError, match="no sentences for ja"):
        select(sets, ("en", "ja"), None)
    bad = tmp_path / "bad.csv"
    bad.write_text("language,sentence\nen,x\n")
    with pytest.raises(LabError, match="lang,text"):
        read_sentences(bad)


# -- variants -------------------------------------------------------------------------------------

def test_variants_are_settings_the_engine_accepts():
    base = {}  # the spec's settings: none changed
    assert parse_entry("xtts:int8") == ("xtts", "int8") and parse_entry("espeak") == ("espeak", "default")
    assert variant_settings(XttsEngine, "xtts", "int8", base).precision == "int8"
    s = variant_settings(XttsEngine, "xtts", "temperature=0.3+top_k=10", base)
    assert (s.temperature, s.top_k) == (0.3, 10)
    assert variant_settings(XttsEngine, "xtts", "default", base) == XttsSettings()
    assert variant_settings(EspeakEngine, "espeak", "default", {"temperature": 0.3}) == settings_class("espeak")()
    with pytest.raises(LabError, match="espeak does not accept the setting.*temperature"):
        variant_settings(EspeakEngine, "espeak", "temperature=0.3", base)
    with pytest.raises(LabError, match="xtts has no variant 'fast'.*int8"):
        variant_settings(XttsEngine, "xtts", "fast", base)
    with pytest.raises(LabError, match="top_k"):
        variant_settings(XttsEngine, "xtts", "top_k=zero", base)
    with pytest.raises(LabError, match="precision"):
        variant_settings(XttsEngine, "xtts", "precision=int2", base)


def test_spec_names_the_bad_field():
    with pytest.raises(LabError, match="executor"):
        EvaluateSpec(executor="spark")
    with pytest.raises(LabError, match="sentences"):
        EvaluateSpec(sentences=0)
    with pytest.raises(LabError, match="langs"):
        EvaluateSpec(langs=("xx",))
    with pytest.raises(LabError, match="engines entry"):
        EvaluateSpec(engines=("xtts:",))


# -- the summary ----------------------------------------------------------------------------------

def test_summary_leaves_unscored_cells_empty_with_the_reason():
    # Input rows as a judged run writes them: en scored, ko not (the recogniser has no Korean).
    df = pd.DataFrame({
        "engine": ["e"] * 5, "variant": ["default"] * 5, "language": ["en", "en", "en", "ko", "ko"],
        "status": ["ok"] * 5, "rtf": [0.1, 0.3, 0.2, 0.5, 0.5],
        "cer": [0.0, 0.25, 0.5, np.nan, np.nan], "dnsmos_ovrl": [3.0, 3.5, 4.0, 2.0, 2.5],
        "judge_notes": [None, None, None, "asr: no recogniser for ko", "asr: no recogniser for ko"],
    })
    s = summarize(df).set_index("language")
    assert s.loc["en", "cer_mean"] == pytest.approx(0.25)
    assert s.loc["en", "cer_nonzero"] == pytest.approx(2 / 3)
    assert s.loc["en", "dnsmos_ovrl_mean"] == pytest.approx(3.5) and s.loc["en", "dnsmos_ovrl_std"] == pytest.approx(0.5)
    assert s.loc["en", "rtf_mean"] == pytest.approx(0.2)
    assert pd.isna(s.loc["ko", "cer_mean"]) and pd.isna(s.loc["ko", "cer_nonzero"])  # empty, never 0
    assert "no recogniser for ko" in s.loc["ko", "notes"]
    assert "speaker similarity" in s.loc["en", "notes"]  # no spk_sim column at all: said, not zero
    text = format_summary(summarize(df))
    assert "3.5 [3.0, 4.0]" in text and "no recogniser for ko" in text  # mean [95% interval], rounded to it
    assert s.loc["en", "cer_ci_low"] <= 0.25 <= s.loc["en", "cer_ci_high"] and s.loc["en", "cer_n"] == 3


def test_verdicts_pair_two_systems_on_the_same_sentences():
    """B is worse on every one of 6 sentences by ~0.1 CER: "A better", on 6 pairs; DNSMOS equal
    within noise: "no detectable difference"; a language with 3 sentences: "too few pairs"."""
    from experiments.evaluate import format_verdicts, verdicts

    rng = np.random.default_rng(0)
    texts = [f"sentence {i}" for i in range(6)]
    base = rng.uniform(0.0, 0.5, 6)
    dn = rng.uniform(2.5, 3.5, 6)
    rows = []
    for engine, shift in (("a", 0.0), ("b", 0.1)):
        for t, c, d in zip(texts, base, dn):
            rows.append({"engine": engine, "variant": "default", "language": "en", "text": t, "status": "ok",
                         "seed": 0, "cer": c + shift + rng.normal(0, 0.005), "dnsmos_ovrl": d + rng.normal(0, 0.3),
                         "rtf": 0.1})
        for t in texts[:3]:
            rows.append({"engine": engine, "variant": "default", "language": "fr", "text": t, "status": "ok",
                         "seed": 0, "cer": 0.2 + shift, "dnsmos_ovrl": 3.0, "rtf": 0.1})
    table = verdicts(pd.DataFrame(rows)).set_index(["language", "column"])
    assert table.loc[("en", "cer"), "verdict"] == "A better" and table.loc[("en", "cer"), "pairs"] == 6
    assert table.loc[("en", "cer"), "ci_high"] < 0
    assert table.loc[("en", "dnsmos_ovrl"), "verdict"] == "no detectable difference"
    assert table.loc[("fr", "cer"), "verdict"] == "too few pairs"
    assert "A=a:default vs B=b:default: A better" in format_verdicts(verdicts(pd.DataFrame(rows)))


# -- end to end, local executor ---------------------------------------------------------------------

def test_local_evaluation_rows_summary_and_files(results_dir):
    spec = EvaluateSpec(engines=("espeak",), langs=("en", "ja"), sentences=2, speakers=("female", "whisper"))
    store = ResultsStore(results_dir)
    with store.running("evaluate", spec) as run:
        df = evaluate(spec, Engines(EngineConfig()), run)
    assert len(df) == 2 * 2 * 2 and (df["status"] == "ok").all()
    assert len(set(keys(df))) == len(df)
    assert set(df["speaker"]) == {"female", "whisper"} and set(df["variant"]) == {"default"}
    assert set(df["executor"]) == {"local"} and df["worker"].str.contains(f"pid-{os.getpid()}").all()
    assert list(df[df["language"] == "en"]["text"].drop_duplicates()) == read_sentences()["en"][:2]
    images = save_outputs("evaluate", df, run)
    assert images and all(p.is_file() for p in images)
    summary = pd.read_csv(run.dir / "summary.csv")
    assert list(summary["language"]) == ["en", "ja"] and list(summary["rows"]) == [4, 4]


def test_language_an_engine_does_not_speak_is_one_unsupported_row(results_dir):
    spec = EvaluateSpec(engines=("kokoro",), langs=("en", "hu"), sentences=1)  # kokoro has no Hungarian
    with ResultsStore(results_dir).running("evaluate", spec) as run:
        df = evaluate(spec, Engines(EngineConfig()), run)
    hu = df[df["language"] == "hu"]
    assert list(hu["status"]) == ["unsupported"] and "does not speak hu" in hu["note"].iloc[0]
    s = summarize(df).set_index("language")
    assert s.loc["hu", "rows"] == 0 and pd.isna(s.loc["hu", "rtf_mean"]) and "does not speak hu" in s.loc["hu", "notes"]


@pytest.mark.slow
def test_resume_after_sigkill_writes_each_row_once(results_dir):
    """A real CLI run killed with SIGKILL mid-way, then resumed: every key exactly once."""
    langs, n = "en,de,fr,es", 20
    cmd = [sys.executable, "lab.py", "run", "evaluate", "--engines", "espeak", "--langs", langs,
           "--sentences", str(n), "--out", str(results_dir)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 600
    csv_path = None
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            found = list(results_dir.glob("*/results.csv"))
            if found and sum(1 for _ in open(found[0], encoding="utf-8")) >= 1 + 5:  # header + 5 rows
                csv_path = found[0]
                break
            time.sleep(0.01)
        assert csv_path is not None, "the run ended or stalled before writing 5 rows"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()
    before = pd.read_csv(csv_path)
    total = 4 * n
    assert 5 <= len(before) < total, "the kill did not land mid-way"
    resumed = subprocess.run([sys.executable, "lab.py", "run", "--resume", str(csv_path.parent)], cwd=ROOT,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.strip().splitlines()[-1] == str(csv_path)
    assert "espeak" in resumed.stdout and "RTF" in resumed.stdout  # the summary, before the path
    after = pd.read_csv(csv_path)
    assert len(after) == total and (after["status"] == "ok").all()
    assert len(set(keys(after))) == total  # each key exactly once
    assert after["row"].is_unique  # row numbers continue after the resumed ones
    assert keys(after)[:len(before)] == keys(before)  # what was written stays as it was
    assert len(list((csv_path.parent / "wav").glob("*.wav"))) >= total


def test_local_run_does_not_import_ray(results_dir):
    code = ("import sys; from components.engines import Engines; from components.store.results import ResultsStore;"
            "from experiments.evaluate import run; from experiments.specs import EvaluateSpec;"
            "spec = EvaluateSpec(engines=('espeak',), langs=('en',), sentences=1);"
            f"r = ResultsStore({str(results_dir)!r}).new_run('evaluate', spec); run(spec, Engines(), r);"
            "print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.parametrize("args, message", [
    (["--engines", "espeak:temperature=0.5"], "espeak does not accept"),
    (["--executor", "ray", "--ray-address", "127.0.0.1:1"], "no Ray cluster answers at 127.0.0.1:1"),
    (["--resume", "/nonexistent-run"], "is not a run folder"),
])
def test_cli_bad_input_exits_2_and_leaves_no_run(results_dir, args, message):
    proc = subprocess.run([sys.executable, "lab.py", "run", "evaluate", *args, "--out", str(results_dir)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not list(results_dir.glob("*/results.csv"))


def test_spec_round_trips_through_yaml(results_dir):
    spec = EvaluateSpec(engines=("espeak", "xtts:int8"), langs=("en", "ko"), sentences=3, seeds=(1, 2),
                        speakers=("female",), executor="ray", workers=2)
    run = ResultsStore(results_dir).new_run("evaluate", spec)
    import yaml

    from experiments import spec_from_dict

    doc = yaml.safe_load((run.dir / "spec.yaml").read_text())
    assert spec_from_dict(EvaluateSpec, doc["spec"]) == spec
    assert json.loads(json.dumps(doc["spec"]))["engines"] == ["espeak", "xtts:int8"]


def test_one_failing_row_does_not_stop_the_others():
    from components.engines.base import SynthRequest
    from experiments.jobs import Job, run_jobs

    engine = EspeakEngine()
    engine.load()
    jobs = [Job(0, "espeak", "default", SynthRequest("One.", speaker="female"), 1),
            Job(1, "espeak", "default", SynthRequest("Two.", speaker="nobody"), 2),  # espeak refuses this voice
            Job(2, "espeak", "default", SynthRequest("Three.", speaker="male"), 3)]
    out = {job.index: (result, error) for job, result, _, error in run_jobs(engine, jobs)}
    assert sorted(out) == [0, 1, 2]
    assert out[0][0].seconds > 0 and out[2][0].seconds > 0 and out[0][1] is None
    assert out[1][0] is None and "nobody" in out[1][1]


def test_an_empty_cell_gives_only_its_own_judges_reason():
    """judge_notes holds every judge's reason; the CER cell names the recogniser's, the speaker
    similarity cell the speaker judge's (a reason may itself contain '; ')."""
    from experiments.evaluate import summarize

    notes = ("speaker: no reference recording to compare with (clone from one; or give one); "
             "asr: Whisper does not know the language 'ja' (say; it does)")
    df = pd.DataFrame({"engine": ["espeak"] * 2, "variant": ["default"] * 2, "language": ["ja"] * 2,
                       "status": ["ok"] * 2, "rtf": [0.01, 0.01], "dnsmos_ovrl": [2.5, 2.7],
                       "cer": [np.nan, np.nan], "spk_sim": [np.nan, np.nan], "judge_notes": [notes, notes]})
    why = summarize(df).iloc[0]["notes"]
    cer = why.split("character error rate: ", 1)[1]
    assert cer.startswith("asr: Whisper does not know the language 'ja' (say; it does)")
    assert "speaker similarity: speaker: no reference" in why
    assert "character error rate: speaker" not in why
