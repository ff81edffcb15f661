"""The experiment loop (experiments.loop.run_plan) on real engines: rows in plan order, a failing
row written as an error row while the rest go on, a one-row plan failing with its own error,
languages an engine does not speak as unsupported rows, and one generation pass per text for an
engine that renders several speeds from one (XTTS, random-weight checkpoint: the audio is noise,
the lengths and the pass count are what is checked)."""

from __future__ import annotations

import json

import pytest

from components.engines import EngineConfig, Engines
from components.engines.base import LabError, SynthRequest
from components.store.results import ResultsStore, read_csv
from experiments.loop import Planned, run_plan


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    return Engines(EngineConfig(xtts_dir=str(tmp_path_factory.mktemp("no-xtts"))))


def plan_of(*langs: str) -> list[Planned]:
    return [Planned(SynthRequest(text=f"Row {i} of the plan.", lang=lang), fields={"repeat": i}, label=f"row {i}")
            for i, lang in enumerate(langs)]


def test_a_failing_row_is_an_error_row_and_the_rest_go_on_in_plan_order(engines, tmp_path):
    with ResultsStore(tmp_path).running("languages", {}) as run, engines.use("espeak") as engine:
        rows = run_plan(engine, plan_of("en", "xx", "de"), run, engines=engines)
    assert [r["repeat"] for r in rows] == [0, 1, 2]
    assert [r["status"] for r in rows] == ["ok", "error", "ok"]
    assert "xx" in rows[1]["note"] and not rows[1].get("wav_path")
    on_disk = read_csv(run.dir / "results.csv")
    assert list(on_disk["status"]) == ["ok", "error", "ok"]
    assert all((run.dir / "wav").joinpath(p.split("/")[-1]).exists() for p in on_disk["wav_path"].dropna())


def test_a_one_row_plan_fails_with_its_own_error_and_writes_nothing(engines, tmp_path):
    with ResultsStore(tmp_path).running("synth", {}) as run, engines.use("espeak") as engine:
        with pytest.raises(LabError, match="xx"):
            run_plan(engine, plan_of("xx"), run, engines=engines)
        assert run.frame().empty


def test_when_every_row_fails_the_first_error_is_raised_after_the_rows_are_written(engines, tmp_path):
    with ResultsStore(tmp_path).running("languages", {}) as run, engines.use("espeak") as engine:
        with pytest.raises(LabError, match="xx"):
            run_plan(engine, plan_of("xx", "yy"), run, engines=engines)
        assert list(run.frame()["status"]) == ["error", "error"]


def test_unspoken_languages_become_unsupported_rows_when_asked(engines, tmp_path):
    with ResultsStore(tmp_path).running("languages", {}) as run, engines.use("espeak") as engine:
        rows = run_plan(engine, plan_of("en", "xx"), run, engines=engines, unsupported_rows=True)
    assert [r["status"] for r in rows] == ["ok", "unsupported"]
    assert rows[1]["note"] == "espeak does not speak xx"


def test_measure_adds_columns_and_joins_its_note(engines, tmp_path):
    def measure(item, result):
        return {"repeat": len(result.audio), "note": "measured"}  # repeat: any known column

    plan = [Planned(SynthRequest(text="Measured.", lang="en"), note="planned")]
    with ResultsStore(tmp_path).running("synth", {}) as run, engines.use("espeak") as engine:
        (row,) = run_plan(engine, plan, run, engines=engines, measure=measure)
    assert row["repeat"] > 1000
    assert row["note"].split("; ")[-2:] == ["planned", "measured"]  # after the engine's own note


@pytest.mark.slow
def test_speeds_of_one_text_share_one_generation_pass(xtts_dir, tmp_path):
    engines = Engines(EngineConfig(xtts_dir=str(xtts_dir), batch=1))
    plan = [Planned(SynthRequest(text="One pass, three speeds.", lang="en", speed=s, seed=3)) for s in (0.8, 1.0, 1.25)]
    with ResultsStore(tmp_path).running("speed-sweep", {}) as run, engines.use("xtts") as engine:
        passes = []
        original = engine.synthesize_speeds
        engine.synthesize_speeds = lambda base, speeds, *a, **k: passes.append(list(speeds)) or original(base, speeds, *a, **k)
        rows = run_plan(engine, plan, run, engines=engines)
    assert passes == [[0.8, 1.0, 1.25]]  # one pass for the three rows
    assert [r["speed"] for r in rows] == [0.8, 1.0, 1.25] and all(json.loads(r["extra"])["one_pass"] for r in rows)
    lengths = [r["audio_seconds"] for r in rows]
    assert lengths[0] > lengths[1] > lengths[2]  # slower speed, longer audio
