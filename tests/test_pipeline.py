"""The one run path (experiments.pipeline.run_experiment): rows reach the caller as they land, the
judge columns follow in a last update, the outputs are saved, an experiment's error reaches the
caller with the rows written so far kept, and /v1 rows in the serving run get judged. Real espeak
and piper audio, the real DNSMOS judge."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import experiments
from components.engines import EngineConfig, Engines
from components.engines.base import LabError
from components.judges import Judges
from components.store.results import ResultsStore, read_csv
from experiments.pipeline import run_experiment, run_to_end
from experiments.specs import SpeedSweepSpec, SynthSpec


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    return Engines(EngineConfig(xtts_dir=str(tmp_path_factory.mktemp("no-xtts"))))


@pytest.mark.slow
def test_rows_land_one_by_one_then_the_judged_table_and_the_outputs(engines, tmp_path):
    spec = SpeedSweepSpec(engine="espeak", text="Rows land as they are made.", speeds=(0.8, 1.0, 1.25, 1.5))
    updates = list(run_experiment("speed-sweep", spec, engines=engines, store=ResultsStore(tmp_path),
                                  judges=Judges(), judge_choice="dnsmos"))
    rows = [u for u in updates if not u.done]
    done = [u for u in updates if u.done and not u.judged]
    judged = [u for u in updates if u.judged]
    # The rows came before the experiment was done, in order, more than one update for four rows.
    assert len(rows) >= 2 and updates.index(rows[-1]) < updates.index(done[0])
    counts = [len(u.rows) for u in rows]
    assert counts == sorted(counts) and counts[-1] == 4 and counts[0] < 4
    assert list(rows[-1].rows["row"].astype(int)) == [1, 2, 3, 4]
    assert len(done) == 1 and "dnsmos_ovrl" not in done[0].rows
    # Then once with the judge columns, last.
    assert len(judged) == 1 and updates[-1] is judged[0]
    final = judged[0].rows
    assert len(final) == 4 and final["dnsmos_ovrl"].astype(float).between(1.0, 5.0).all()
    run = judged[0].run
    assert len(read_csv(run.csv_path)) == 4 and len(read_csv(run.dir / "judges.csv")) == 4
    summary = pd.read_csv(run.dir / "summary.csv")  # one row per speed, judged columns included
    assert len(summary) == 4
    assert list(run.plot_dir.glob("*.png")), "the summary figure is saved as the CLI saves it"


def fails_after_two_rows(spec, engines, run, progress):
    """A stand-in experiment (no real one fails midway on demand): two real espeak rows, then an
    error the user could fix."""
    from experiments import synth

    synth.run(spec, engines, run, progress)
    synth.run(spec, engines, run, progress)
    raise LabError("the third row cannot be made: a stand-in failure")


def test_an_experiment_error_reaches_the_caller_and_the_rows_stay(engines, tmp_path, monkeypatch):
    monkeypatch.setitem(experiments.EXPERIMENTS, "fails-midway", (SynthSpec, "test_pipeline:fails_after_two_rows"))
    spec = SynthSpec(engine="espeak", text="Two rows, then an error.")
    seen = []
    with pytest.raises(LabError, match="stand-in failure"):
        for update in run_experiment("fails-midway", spec, engines=engines, store=ResultsStore(tmp_path)):
            seen.append(len(update.rows))
    assert seen and seen[-1] == 2  # the rows reached the caller before the error
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(read_csv(run_dir / "results.csv")) == 2  # and stay on disk


def test_a_run_failing_before_any_row_leaves_no_folder(engines, tmp_path):
    spec = SynthSpec(engine="espeak", text="No such voice.", speaker="nobody-at-all")
    with pytest.raises(LabError):
        run_to_end("synth", spec, engines=engines, store=ResultsStore(tmp_path))
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]


def test_streamed_synthesis_hands_out_chunks_then_its_row(engines, tmp_path):
    spec = SynthSpec(engine="piper", text="Streamed chunk by chunk. Then the row.", stream=True)
    updates = list(run_experiment("synth", spec, engines=engines, store=ResultsStore(tmp_path), stream=True,
                                  save=False))
    chunks = [u.audio for u in updates if u.audio is not None]
    assert chunks and all(sr == chunks[0][0] and len(a) for sr, a in chunks)
    last = updates[-1]
    assert last.done and not last.judged and len(last.rows) == 1
    assert (last.run.csv_path.exists() and len(read_csv(last.run.csv_path)) == 1)
    with pytest.raises(LabError, match="cannot stream"):
        next(run_experiment("speed-sweep", SpeedSweepSpec(engine="espeak"), engines=engines,
                            store=ResultsStore(tmp_path), stream=True))


def test_a_store_or_a_run_not_both(engines, tmp_path):
    store = ResultsStore(tmp_path)
    with pytest.raises(ValueError, match="not both"):
        next(run_experiment("synth", SynthSpec(engine="espeak"), engines=engines, store=store,
                            run=store.new_run("synth")))


@pytest.mark.slow
def test_a_v1_row_gets_its_judge_columns_in_the_serving_run(tmp_path):
    from fastapi.testclient import TestClient

    from components.app.context import LabContext
    from components.app.server import ServerOptions, create_app
    from components.store.results import read_run

    lab = LabContext.create(EngineConfig(xtts_dir=str(tmp_path / "no-weights")), results=str(tmp_path / "results"),
                            judge_choice="dnsmos")
    with TestClient(create_app(lab, ServerOptions())) as c:
        r = c.post("/v1/audio/speech", json={"model": "espeak", "voice": "female", "input": "Judged later.",
                                             "response_format": "wav"})
        assert r.status_code == 200, r.text
        run = lab.serving().run()
        assert r.headers["x-lab-run-id"] == run.run_id
        assert run.wait_for_judges(180)
    row = int(r.headers["x-lab-row"])
    judges = read_csv(run.dir / "judges.csv")
    mine = judges[judges["row"].astype(int) == row]
    assert len(mine) == 1 and 1.0 <= float(mine["dnsmos_ovrl"].iloc[0]) <= 5.0
    assert "dnsmos" in json.loads(mine["judges"].iloc[0])
    merged = read_run(run.dir)
    assert json.loads(merged.loc[merged["row"].astype(int) == row, "extra"].iloc[0])["endpoint"] == "v1"
    assert float(merged.loc[merged["row"].astype(int) == row, "dnsmos_ovrl"].iloc[0]) >= 1.0
