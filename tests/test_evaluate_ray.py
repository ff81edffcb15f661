"""evaluate on a local Ray instance (tests/conftest.py ``ray_local``, 2 CPUs): the same rows as the
local executor, streamed from actors; an actor killed mid-run loses nothing.

espeak is not sample-exact from one call to the next (README), so its rows are compared on what is
stable (keys, text, duration and pitch within a tolerance); the tiny XTTS checkpoint is seeded and
compared on its tokens and duration.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from components.engines import EngineConfig, Engines
from components.store.results import ResultsStore
from experiments.evaluate import KEY_COLUMNS, run as evaluate, summarize
from experiments.specs import EvaluateSpec

pytestmark = pytest.mark.slow


def attach_judges(run, choice: str) -> bool:
    """Judge the run's rows as the CLI does (components.judges)."""
    from components.judges import JudgeConfig, Judges
    from components.store.judging import attach

    return attach(run, Judges(JudgeConfig()), choice) is not None


def run_eval(results_dir, spec: EvaluateSpec, config: EngineConfig | None = None, progress=None, judges=None):
    store = ResultsStore(results_dir)
    with store.running("evaluate", spec) as run:
        if judges:
            attach_judges(run, judges)
        kwargs = {"progress": progress} if progress else {}
        df = evaluate(spec, Engines(config or EngineConfig()), run, **kwargs)
    return df, run


def keyed(df: pd.DataFrame) -> pd.DataFrame:
    d = df.copy()
    d["_key"] = list(d[list(KEY_COLUMNS)].astype(str).replace({"nan": ""}).itertuples(index=False, name=None))
    return d.set_index("_key").sort_index()


def test_ray_gives_the_same_rows_as_local(ray_local, results_dir):
    spec = EvaluateSpec(engines=("espeak",), langs=("en", "ja"), sentences=2, speakers=("female", "male"))
    local, _ = run_eval(results_dir, spec)
    remote, run = run_eval(results_dir, EvaluateSpec(**{**spec.__dict__, "executor": "ray"}))
    assert len(remote) == len(local) == 8 and (remote["status"] == "ok").all()
    a, b = keyed(local), keyed(remote)
    assert list(a.index) == list(b.index)  # the same rows, whatever order they finished in
    assert set(b["executor"]) == {"ray"} and b["worker"].str.contains("/actor-").all()
    assert set(a["executor"]) == {"local"}
    for col, tol in (("audio_seconds", 0.05), ("f0_median_hz", 3.0), ("text_chars", 0)):
        assert np.allclose(a[col].astype(float), b[col].astype(float), atol=tol), col
    # The summary reads the same either way.
    sa, sb = summarize(local), summarize(remote)
    assert list(sa["rows"]) == list(sb["rows"]) == [4, 4]
    assert not list(run.dir.glob("*.tmp"))


def test_kokoro_and_espeak_side_by_side_same_as_local(ray_local, results_dir):
    """Two engines at once, one actor each (the instance's 2 CPUs): kokoro is deterministic, so its
    rows from an actor match this process's; the summary has a line per engine and language."""
    spec = EvaluateSpec(engines=("espeak", "kokoro"), langs=("en", "ja"), sentences=1)
    local, _ = run_eval(results_dir, spec, judges="dnsmos")
    remote, _ = run_eval(results_dir, EvaluateSpec(**{**spec.__dict__, "executor": "ray"}), judges="dnsmos")
    assert len(remote) == len(local) == 4 and (remote["status"] == "ok").all()
    a, b = keyed(local), keyed(remote)
    assert list(a.index) == list(b.index)
    k = a["engine"] == "kokoro"
    assert np.allclose(a[k]["audio_seconds"].astype(float), b[k]["audio_seconds"].astype(float), atol=1e-3)
    assert np.allclose(a[k]["f0_median_hz"].astype(float), b[k]["f0_median_hz"].astype(float), atol=1.0)
    if "dnsmos_ovrl" in a:  # judged (components.judges): the same judge values for the same speech
        assert a[k]["dnsmos_ovrl"].notna().all()
        assert np.allclose(a[k]["dnsmos_ovrl"].astype(float), b[k]["dnsmos_ovrl"].astype(float), atol=0.02)
    s = summarize(remote)
    assert list(zip(s["engine"], s["language"])) == [("espeak", "en"), ("espeak", "ja"), ("kokoro", "en"), ("kokoro", "ja")]


def test_killed_actor_loses_no_row_and_its_rows_go_to_another(ray_local, results_dir):
    # kokoro, not espeak: an espeak row takes a millisecond, so both actors could finish every row
    # before the driver has written the 3rd and the kill would find nothing left to retry.
    spec = EvaluateSpec(engines=("kokoro",), langs=("en", "ja"), sentences=6, executor="ray", workers=2)
    killed: list[str] = []
    run_ids: list[str] = []

    def progress(fraction=0.0, desc="", **_):
        # After the 3rd row is written, kill worker 0 (it is always holding a chunk: all
        # chunks were submitted up front, so the pool keeps both actors busy).
        if desc.startswith("3/") and not killed:
            actor = ray_local.get_actor(f"{run_ids[0]}/kokoro/0", namespace="xtts-lab")
            ray_local.kill(actor)
            killed.append(desc)

    store = ResultsStore(results_dir)
    with store.running("evaluate", spec) as run:
        run_ids.append(run.run_id)
        df = evaluate(spec, Engines(EngineConfig()), run, progress)
    assert killed, "the kill never happened"
    assert len(df) == 12 and (df["status"] == "ok").all()
    assert len(set(keyed(df).index)) == 12  # each row exactly once
    attempts = [json.loads(e).get("attempt", 1) if isinstance(e, str) else 1 for e in df["extra"]]
    assert max(attempts) == 2  # the dead actor's chunk was sent again...
    workers = df["worker"].tolist()
    retried = {w for w, n in zip(workers, attempts) if n == 2}
    assert len(retried) == 1 and len(set(workers)) == 2  # one survivor took the dead actor's rows
    # ray.kill takes effect a moment later (rows the actor finished meanwhile are kept); once its
    # chunk came back from another actor, every later row is the survivor's.
    first_retry = attempts.index(2)
    assert set(workers[first_retry:]) == retried


def test_xtts_tiny_checkpoint_same_tokens_from_an_actor(ray_local, results_dir, xtts_dir, tmp_path):
    """The seeded tiny checkpoint (fp32 variant): the same tokens and duration from an actor as here."""
    config = EngineConfig(xtts_dir=str(xtts_dir), cache_dir=str(tmp_path / "latents"))
    rows = {}
    for executor in ("local", "ray"):
        spec = EvaluateSpec(engines=("xtts:fp32",), langs=("en", "ja"), sentences=1, seeds=(1, 2), executor=executor)
        df, _ = run_eval(results_dir, spec, config)
        assert len(df) == 4 and (df["status"] == "ok").all() and set(df["variant"]) == {"fp32"}
        assert set(df["precision"]) == {"fp32"} and set(df["seed"].astype(int)) == {1, 2}
        rows[executor] = keyed(df)
    a, b = rows["local"], rows["ray"]
    assert list(a.index) == list(b.index)
    assert list(a["gpt_tokens"]) == list(b["gpt_tokens"])
    assert np.allclose(a["audio_seconds"].astype(float), b["audio_seconds"].astype(float), atol=1e-6)


def test_more_workers_than_the_cluster_has_is_refused(ray_local, results_dir):
    from components.engines.base import LabError

    spec = EvaluateSpec(engines=("espeak",), langs=("en",), sentences=1, executor="ray", workers=3)
    with pytest.raises(LabError, match="CPUs asked for to 3.*has 2"):
        run_eval(results_dir, spec)
    assert not list(results_dir.glob("*/results.csv"))  # refused before any row: no run left behind
    assert not ray_local.util.list_named_actors()  # and no actor left running


def test_evaluate_tab_runs_on_ray(ray_local, tmp_path):
    """The Evaluate tab through gradio_client with the ray executor: its summary is the run's."""
    from serving import ui_client


    from components.app.context import LabContext
    from components.store.results import read_csv
    from experiments.evaluate import summary_view

    lab = LabContext.create(results=str(tmp_path / "results"))
    with ui_client(lab) as client:
        summary, *_, rows, csv, _verdicts = client.predict(["espeak"], ["en", "ja"], 1, None, "", "", "0", None, "ray", "", 1,
                                                api_name="/evaluate")
    df = read_csv(csv)
    assert len(df) == 2 and set(df["executor"]) == {"ray"} and df["worker"].str.contains("/actor-").all()
    shown = pd.DataFrame(summary["data"], columns=summary["headers"])
    assert shown.astype(str).values.tolist() == summary_view(summarize(df)).astype(str).values.tolist()
    assert ray_local.is_initialized()  # the tab used the running instance and left it running
