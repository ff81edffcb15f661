"""Blind listening tests (experiments.listen, components.app.listen_api): building from a run, per-rater
scheduling, controls, replace-on-revote, the Bradley-Terry report and judge agreement, REST errors.

Audio: real espeak-ng clips (one "system" per speaking rate). Raters are simulated: each votes by a
Bradley-Terry model with known strengths, so the test knows the right ranking.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from components.app.context import LabContext
from components.engines import EngineConfig
from components.engines.base import LabError, SynthRequest
from components.app.server import ServerOptions, create_app
from experiments.listen.common import Conflict, NotFound
from experiments.listen.report import make_report
from experiments.listen.store import ListenTests

ROOT = Path(__file__).resolve().parent.parent
TEXTS = ("The cat sat on the mat.", "Please call Stella.", "It is raining again today.",
         "Seven red boxes.", "We will meet at noon.")
SPEEDS = {"slow": 0.8, "normal": 1.0, "fast": 1.6}  # system -> espeak rate factor


@pytest.fixture(scope="module")
def espeak_run(tmp_path_factory) -> Path:
    """A run folder (results.csv + wav/) with real espeak clips: 5 texts x 3 systems (speaking rates)."""
    from components.engines.espeak import EspeakEngine

    root = tmp_path_factory.mktemp("listen-results")
    run = root / "20261204-000000-evaluate-abcd"
    (run / "wav").mkdir(parents=True)
    engine = EspeakEngine()
    rows = []
    for system, speed in SPEEDS.items():
        for text in TEXTS:
            n = len(rows) + 1
            audio = engine.synthesize(SynthRequest(text, speed=speed)).audio
            path = run / "wav" / f"{n:04d}.wav"
            sf.write(path, audio, engine.sample_rate)
            rows.append({"run_id": run.name, "row": n, "experiment": "evaluate", "engine": "espeak",
                         "variant": system, "language": "en", "text": text, "status": "ok", "wav_path": str(path)})
    pd.DataFrame(rows).to_csv(run / "results.csv", index=False)
    return run


def fresh(espeak_run: Path, tmp_path: Path) -> tuple[ListenTests, pd.DataFrame]:
    return ListenTests(tmp_path), pd.read_csv(espeak_run / "results.csv")


def simulate(tests: ListenTests, test_id: str, raters: list[str], strengths: dict[str, float] | None,
             seed: int = 0) -> None:
    """Each rater goes through the whole test. ``strengths`` (log10 odds) decide real pairs by a
    Bradley-Terry draw; None votes at random. Controls are answered as an attentive rater would."""
    test = tests.load(test_id)
    clips = test["clips"]
    for rater in raters:
        while True:
            n = tests.next(test_id, rater)
            if n["done"]:
                break
            # Drawn per (seed, rater, pair), never from the serving order (which depends on the random
            # test id): the same votes every time the test runs.
            rng = np.random.default_rng([seed, *(ord(c) for c in rater + (n.get("pair_id") or n.get("item_id")))])
            if test["mode"] != "pairwise":
                clip = clips[n["clip"].rsplit("/", 1)[1]]
                if clip["kind"] == "anchor":
                    score = 1
                elif strengths is None:
                    score = int(rng.integers(1, 6))
                else:
                    score = int(np.clip(np.round(3 + 2 * strengths[clip["system"]] + rng.normal(0, 0.5)), 1, 5))
                tests.vote(test_id, rater, n["item_id"], score=score, seconds_a=1.5, seconds_b=1.0)
                continue
            a, b = clips[n["a"].rsplit("/", 1)[1]], clips[n["b"].rsplit("/", 1)[1]]
            if a["kind"] == "anchor" or b["kind"] == "anchor":
                choice = "b" if a["kind"] == "anchor" else "a"
            elif a["path"] == b["path"]:
                choice = "tie"
            else:  # the draw decides between the systems, whichever side each is on
                first, second = sorted((a["system"], b["system"]))
                p_first = 0.5 if strengths is None else 1 / (1 + 10 ** (strengths[second] - strengths[first]))
                winner = first if rng.random() < p_first else second
                choice = "a" if a["system"] == winner else "b"
            tests.vote(test_id, rater, n["pair_id"], choice=choice, seconds_a=2.0, seconds_b=2.1)


def test_simulated_raters_recover_the_known_ranking(espeak_run, tmp_path):
    tests, frame = fresh(espeak_run, tmp_path)
    test_id = tests.create_from_frame(frame, "variant")
    truth = {"fast": 0.8, "normal": 0.0, "slow": -0.8}
    simulate(tests, test_id, [f"rater{k}" for k in range(8)], truth)
    report = tests.report(test_id)
    assert [s["name"] for s in report["systems"]] == ["fast", "normal", "slow"]
    best, _, worst = report["systems"]
    assert best["ci_low"] > worst["ci_high"]  # a clear preference: intervals apart
    for s in report["systems"]:
        assert s["ci_low"] <= s["strength"] <= s["ci_high"]
        assert s["votes"] == 8 * 5 * 2  # 8 raters x 5 texts x 2 pairs per system
    assert report["matrix"]["fast"]["slow"] > 0.5 > report["matrix"]["slow"]["fast"]
    assert report["votes"] == 8 * (15 + 2)  # 15 real pairs + 2 controls each
    assert all(r["pass_rate"] == 1.0 and r["controls"] == 2 for r in report["raters"])
    assert 0.0 <= report["position_bias"] <= 1.0
    assert report["rater_agreement"] is not None and report["rater_agreement_pairs"] > 0


def test_random_votes_give_overlapping_intervals(espeak_run, tmp_path):
    tests, frame = fresh(espeak_run, tmp_path)
    test_id = tests.create_from_frame(frame, "variant")
    simulate(tests, test_id, [f"r{k}" for k in range(4)], None, seed=3)
    systems = tests.report(test_id)["systems"]
    for a in systems:
        for b in systems:
            assert a["ci_low"] <= b["ci_high"] and b["ci_low"] <= a["ci_high"], (a, b)


def test_mos_mode_scores_each_clip_and_ranks_by_implied_comparisons(espeak_run, tmp_path):
    tests, frame = fresh(espeak_run, tmp_path)
    test_id = tests.create_from_frame(frame, "variant", "mos")
    test = tests.load(test_id)
    assert len(test["units"]) == 15 + 2  # every clip, an anchor and a repeat
    simulate(tests, test_id, ["ann", "bob", "cy"], {"fast": 0.8, "normal": 0.0, "slow": -0.8})
    report = tests.report(test_id)
    names = [s["name"] for s in report["systems"]]
    assert names == ["fast", "normal", "slow"]
    fast, slow = report["systems"][0], report["systems"][-1]
    assert fast["mos"] > slow["mos"] and fast["mos_ci_low"] > slow["mos_ci_high"]
    assert all(r["controls"] == 2 and r["pass_rate"] is not None for r in report["raters"])


def test_each_pair_once_per_rater_with_sides_randomised_and_recorded(espeak_run, tmp_path):
    tests, frame = fresh(espeak_run, tmp_path)
    test_id = tests.create_from_frame(frame, "variant")
    test = tests.load(test_id)
    orders, sides = [], {}
    for rater in ("ann", "bob", "cy", "dee"):
        seen = []
        first = tests.next(test_id, rater)
        assert tests.next(test_id, rater) == first  # a reloaded page shows the same pair, same sides
        while True:
            n = tests.next(test_id, rater)
            if n["done"]:
                break
            assert n["position"] == len(seen) + 1 and n["total"] == len(test["units"])
            seen.append(n["pair_id"])
            sides.setdefault(n["pair_id"], set()).add(n["a"].rsplit("/", 1)[1])
            tests.vote(test_id, rater, n["pair_id"], choice="tie", seconds_a=1, seconds_b=1)
        assert sorted(seen) == sorted(test["units"])  # every pair, once
        orders.append(seen)
    assert len({tuple(o) for o in orders}) > 1  # each rater has an order of their own
    assert any(len(s) == 2 for s in sides.values())  # the same pair shown both ways round
    served = pd.read_csv(tmp_path / "listen" / test_id / "served.csv")
    assert len(served) == 4 * len(test["units"])  # recorded once per rater and pair
    # The browser never sees a system: only pair ids and opaque clip tokens.
    shown = json.dumps(tests.next(test_id, "erin"))
    assert not any(s in shown for s in SPEEDS) and "espeak" not in shown and ".wav" not in shown


def test_a_second_vote_on_a_pair_replaces_the_first(espeak_run, tmp_path):
    tests, frame = fresh(espeak_run, tmp_path)
    test_id = tests.create_from_frame(frame, "variant", controls=False)
    n = tests.next(test_id, "ann")
    tests.vote(test_id, "ann", n["pair_id"], choice="a", strength=-3, seconds_a=1, seconds_b=1)
    tests.vote(test_id, "ann", n["pair_id"], choice="b", strength=2, seconds_a=1, seconds_b=1)
    lines = pd.read_csv(tmp_path / "listen" / test_id / "votes.csv")
    assert len(lines) == 2  # both written (fsynced lines, nothing rewritten) ...
    votes = tests.votes(test_id)
    assert len(votes) == 1 and votes.iloc[0]["choice"] == "b" and votes.iloc[0]["strength"] == "2"  # ... one counts
    assert tests.report(test_id)["votes"] == 1
    assert tests.next(test_id, "ann")["pair_id"] != n["pair_id"]  # voted: the rater moves on


def test_bad_votes_are_refused_with_the_reason(espeak_run, tmp_path):
    tests, frame = fresh(espeak_run, tmp_path)
    test_id = tests.create_from_frame(frame, "variant")
    n = tests.next(test_id, "ann")
    with pytest.raises(NotFound):
        tests.vote("20990101-000000-00000000", "ann", n["pair_id"], choice="a", seconds_a=1, seconds_b=1)
    with pytest.raises(NotFound):
        tests.vote(test_id, "ann", "p999", choice="a", seconds_a=1, seconds_b=1)
    other = next(u for u in tests.load(test_id)["units"] if u != n["pair_id"])
    with pytest.raises(Conflict, match="never served"):
        tests.vote(test_id, "ann", other, choice="a", seconds_a=1, seconds_b=1)
    with pytest.raises(LabError, match="choice must be"):
        tests.vote(test_id, "ann", n["pair_id"], choice="left", seconds_a=1, seconds_b=1)
    with pytest.raises(LabError, match="disagrees"):
        tests.vote(test_id, "ann", n["pair_id"], choice="a", strength=2, seconds_a=1, seconds_b=1)
    with pytest.raises(LabError, match="seconds_b"):
        tests.vote(test_id, "ann", n["pair_id"], choice="a", seconds_a=1, seconds_b=0)
    with pytest.raises(LabError, match="rater"):
        tests.next(test_id, "  ")
    assert tests.votes(test_id).empty  # nothing bad was written
    tests.close(test_id)
    assert not tests.is_open(test_id) and tests.exists(test_id)
    with pytest.raises(Conflict, match="closed"):
        tests.vote(test_id, "ann", n["pair_id"], choice="a", seconds_a=1, seconds_b=1)
    assert tests.next(test_id, "ann")["done"] is True
    assert not tests.is_open("../../etc") and not tests.is_open("20990101-000000-00000000")


def test_control_items_give_each_rater_a_pass_rate(espeak_run, tmp_path):
    tests, frame = fresh(espeak_run, tmp_path)
    test_id = tests.create_from_frame(frame, "variant")
    test = tests.load(test_id)
    while True:  # a careless rater: always "A", whatever they hear
        n = tests.next(test_id, "careless")
        if n["done"]:
            break
        tests.vote(test_id, "careless", n["pair_id"], choice="a", strength=-3, seconds_a=1, seconds_b=1)
    rater = tests.report(test_id)["raters"][0]
    assert rater["controls"] == 2 and rater["passed"] <= 1  # fails the identical pair at least
    anchor_clip = next(c for c in test["clips"].values() if c["kind"] == "anchor")
    noisy, _ = sf.read(anchor_clip["path"])
    base, _ = sf.read(next(c for c in test["clips"].values() if c["kind"] == "copy")["path"])
    assert len(noisy) == len(base) and np.std(noisy - base * (np.abs(noisy).max() / np.abs(base).max())) > 0.05


def test_judge_agreement_and_rank_correlation(espeak_run, tmp_path):
    tests, frame = fresh(espeak_run, tmp_path)
    test_id = tests.create_from_frame(frame, "variant", controls=False)
    test = tests.load(test_id)
    truth = {"fast": 3, "normal": 2, "slow": 1}
    # A judge that agrees with the listeners (higher is better), one that agrees the other way round
    # (cer: lower is better) and one that always disagrees.
    judged = {t: {"dnsmos_ovrl": truth[c["system"]], "cer": -truth[c["system"]], "spk_sim": -truth[c["system"]]}
              for t, c in test["clips"].items()}
    votes = []
    for uid, unit in test["units"].items():
        a, b = (test["clips"][t] for t in unit["clips"])
        votes.append({"rater": "ann", "test": test_id, "pair": uid, "kind": "real", "left": a["system"],
                      "right": b["system"], "choice": "a" if truth[a["system"]] > truth[b["system"]] else "b",
                      "strength": "", "score": "", "left_clip": unit["clips"][0], "right_clip": unit["clips"][1]})
    report = make_report(test, pd.DataFrame(votes), judges=judged, bootstrap=100)
    assert report["judge_agreement"] == {"cer": 1.0, "dnsmos_ovrl": 1.0, "spk_sim": 0.0}
    assert report["judge_rank_correlation"] == {"cer": 1.0, "dnsmos_ovrl": 1.0, "spk_sim": -1.0}


def test_building_needs_two_systems_sharing_a_text(espeak_run, tmp_path):
    tests, frame = fresh(espeak_run, tmp_path)
    with pytest.raises(LabError, match="factor 'engine'"):
        tests.create_from_frame(frame, "engine")  # one engine: nothing to compare
    lonely = frame.assign(text=[f"text {k}" for k in range(len(frame))])
    with pytest.raises(LabError, match="no text was spoken by two"):
        tests.create_from_frame(lonely, "variant")
    with pytest.raises(LabError, match="mode"):
        tests.create_from_frame(frame, "variant", "stars")
    assert tests.tests() == []  # nothing half-built left behind


@pytest.mark.slow
def test_listen_report_cli_writes_csv_and_png(espeak_run, tmp_path):
    tests, frame = fresh(espeak_run, tmp_path)
    test_id = tests.create_from_frame(frame, "variant")
    simulate(tests, test_id, ["ann", "bob"], {"fast": 0.5, "normal": 0.0, "slow": -0.5})
    done = subprocess.run([sys.executable, "lab.py", "run", "listen-report", "--test", test_id, "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    csv_path = Path(done.stdout.strip().splitlines()[-1])
    table = pd.read_csv(csv_path)
    assert list(table["name"]) == [s["name"] for s in tests.report(test_id)["systems"]]
    assert {"strength", "ci_low", "ci_high", "win_rate", "votes"} <= set(table.columns)
    assert (csv_path.parent / "report.png").stat().st_size > 5000
    assert (csv_path.parent / "matrix.csv").exists()
    bad = subprocess.run([sys.executable, "lab.py", "run", "listen-report", "--test", "nope", "--out", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "no listening test 'nope'" in bad.stderr


# -- REST -------------------------------------------------------------------------------------------

@pytest.fixture
def rest(espeak_run, tmp_path):
    """The lab's app (REST only) over a results folder holding the espeak run."""
    import shutil

    results = tmp_path / "results"
    shutil.copytree(espeak_run.parent, results)
    lab = LabContext.create(EngineConfig(xtts_dir=str(tmp_path / "no-weights")), results=str(results))
    with TestClient(create_app(lab, ServerOptions())) as client:
        yield client, espeak_run.name


def test_rest_round_trip_and_errors(rest):
    client, run_id = rest
    assert client.post("/listen", json={"run_id": "no-such-run", "factor": "variant"}).status_code == 404
    assert client.post("/listen", json={"run_id": run_id, "factor": "speed"}).status_code == 422
    assert client.post("/listen", json={"run_id": run_id, "engines": ["espeak", "kokoro"]}).status_code == 422
    r = client.post("/listen", json={"run_id": run_id, "factor": "variant", "mode": "pairwise"})
    assert r.status_code == 200, r.text
    test_id = r.json()["test_id"]

    page = client.get(f"/listen/{test_id}")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "Your name" in page.text and not any(s in page.text for s in SPEEDS)
    assert client.get("/listen/20990101-000000-00000000").status_code == 404
    assert client.get("/listen/20990101-000000-00000000/next", params={"rater": "ann"}).status_code == 404

    n = client.get(f"/listen/{test_id}/next", params={"rater": "ann"}).json()
    assert set(n) >= {"pair_id", "a", "b", "position", "total"} and n["position"] == 1
    assert not any(s in json.dumps(n) for s in (*SPEEDS, "espeak"))
    clip = client.get(n["a"])
    assert clip.status_code == 200 and clip.headers["content-type"] == "audio/wav" and clip.content[:4] == b"RIFF"
    assert client.get(f"/listen/{test_id}/clip/not-a-token").status_code == 404

    def vote(**body):
        return client.post(f"/listen/{test_id}/vote", json={"rater": "ann", "pair_id": n["pair_id"],
                                                            "seconds_a": 1.0, "seconds_b": 1.0, **body})

    assert vote(choice="maybe").status_code == 422
    assert vote(choice="a", strength=5).status_code == 422
    assert vote(choice="a", seconds_b=0).status_code == 422  # clip b never played
    assert vote(choice="a", pair_id="p999").status_code == 404
    assert vote(choice="a", rater="bob").status_code == 409  # never served to bob
    assert vote(choice="a", strength=-2).status_code == 200
    assert vote(choice="tie").status_code == 200  # replaces the first
    report = client.get(f"/listen/{test_id}/report").json()
    assert report["votes"] == 1 and report["position_bias"] is None  # the one vote counted is a tie
    assert {s["name"] for s in report["systems"]} == set(SPEEDS)
    assert {"systems", "position_bias", "judge_agreement", "raters"} <= set(report)
    assert client.get("/listen/20990101-000000-00000000/report").status_code == 404

    assert client.post(f"/listen/{test_id}/close").json() == {"test_id": test_id, "open": False}
    assert vote(choice="b").status_code == 409
    assert client.get(f"/listen/{test_id}/next", params={"rater": "ann"}).json()["done"] is True

    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/listen", "/listen/{test_id}", "/listen/{test_id}/next", "/listen/{test_id}/vote",
                 "/listen/{test_id}/report", "/listen/{test_id}/close", "/listen/{test_id}/clip/{clip}"):
        assert path in paths, path


@pytest.mark.slow
def test_espeak_against_kokoro_by_rest_with_dnsmos_agreement(tmp_path):
    """The issue's "done": a test built from engines x sentences (real espeak and kokoro audio, judged
    by the real DNSMOS), two raters who prefer kokoro, and a report that ranks kokoro first with
    intervals and says how often DNSMOS agrees."""
    lab = LabContext.create(EngineConfig(xtts_dir=str(tmp_path / "no-weights")), results=str(tmp_path / "results"),
                            judge_choice="dnsmos")
    tests = ListenTests(tmp_path / "results")
    with TestClient(create_app(lab, ServerOptions())) as client:
        r = client.post("/listen", json={"engines": ["espeak", "kokoro"], "sentences": 3, "lang": "en",
                                         "mode": "pairwise"})
        assert r.status_code == 200, r.text
        test_id = r.json()["test_id"]
        test = tests.load(test_id)
        assert test["systems"] == ["espeak", "kokoro"] and len(test["units"]) == 3 + 2
        for rater in ("ann", "bob"):
            while True:
                n = client.get(f"/listen/{test_id}/next", params={"rater": rater}).json()
                if n["done"]:
                    break
                a, b = (test["clips"][n[k].rsplit("/", 1)[1]] for k in ("a", "b"))
                if a["path"] == b["path"]:
                    choice = "tie"
                elif "anchor" in (a["kind"], b["kind"]):
                    choice = "b" if a["kind"] == "anchor" else "a"
                else:
                    choice = "a" if a["system"] == "kokoro" else "b"
                body = {"rater": rater, "pair_id": n["pair_id"], "choice": choice, "seconds_a": 2, "seconds_b": 2}
                assert client.post(f"/listen/{test_id}/vote", json=body).status_code == 200
        deadline = time.monotonic() + 180  # DNSMOS judges in the background; wait for its column
        while True:
            report = client.get(f"/listen/{test_id}/report").json()
            if report["judge_agreement"].get("dnsmos_ovrl") is not None or time.monotonic() > deadline:
                break
            time.sleep(1)
    assert [s["name"] for s in report["systems"]] == ["kokoro", "espeak"]
    kokoro, espeak = report["systems"]
    assert kokoro["win_rate"] == 1.0 and kokoro["ci_low"] > espeak["ci_high"]
    # FACTS: DNSMOS OVRL kokoro 3.25-3.47, espeak 2.30: it sides with these listeners.
    assert report["judge_agreement"]["dnsmos_ovrl"] == 1.0
    assert report["judge_rank_correlation"]["dnsmos_ovrl"] == 1.0
    assert all(r["pass_rate"] == 1.0 for r in report["raters"])


@pytest.mark.slow  # imports scipy / librosa: seconds
def test_interval_helpers_match_scipy():
    from scipy import stats

    from experiments.listen.stats import spearman, t975

    for df in (1, 2, 5, 10, 11, 30, 200):
        assert abs(t975(df) - stats.t.ppf(0.975, df)) < 0.0025
    x, y = [3.1, 2.2, 2.2, 4.0, 1.0], [10, 8, 9, 12, 3]
    assert abs(spearman(x, y) - stats.spearmanr(x, y).statistic) < 1e-12


@pytest.mark.slow  # imports scipy / librosa: seconds
def test_smos_plays_the_reference_beside_each_clip(espeak_run, tmp_path, reference_wav):
    tests, frame = fresh(espeak_run, tmp_path)
    with pytest.raises(LabError, match="no reference recording"):
        tests.create_from_frame(frame, "variant", "smos")  # built-in voices: nothing to be like
    # Stand-in for a cloning run: the rows name the (real, espeak) recording they would have cloned.
    test_id = tests.create_from_frame(frame.assign(reference=str(reference_wav)), "variant", "smos")
    test = tests.load(test_id)
    assert len(test["units"]) == 15 + 1  # every clip and a repeat (noise is no test of likeness)
    n = tests.next(test_id, "ann")
    assert set(n) >= {"item_id", "clip", "reference"}
    reference = tests.clip_path(test_id, n["reference"].rsplit("/", 1)[1])
    assert reference == Path(reference_wav) and "reference" not in n["reference"]
    with pytest.raises(LabError, match="seconds_b"):  # the reference must be heard too
        tests.vote(test_id, "ann", n["item_id"], score=4, seconds_a=2)
    simulate(tests, test_id, ["ann", "bob"], {"fast": -0.8, "normal": 0.8, "slow": 0.0})
    report = tests.report(test_id)
    assert [s["name"] for s in report["systems"]] == ["normal", "slow", "fast"]
    assert all(s["mos"] is not None for s in report["systems"]) and report["mode"] == "smos"


@pytest.mark.slow
def test_listen_tab_builds_from_a_run_and_reports(espeak_run, tmp_path):
    """The Listen tab's endpoints through gradio_client: build from a saved run, then the report."""
    import shutil

    from serving import ui_client

    results = tmp_path / "results"
    shutil.copytree(espeak_run.parent, results)
    lab = LabContext.create(EngineConfig(xtts_dir=str(tmp_path / "no-weights")), results=str(results))
    with ui_client(lab) as client:
        picked, link = client.predict(espeak_run.name, "variant", "pairwise", api_name="/listen_build_run")
        test_id = picked["value"]  # a dropdown update: the new test, chosen
        assert f'href="/listen/{test_id}"' in link and "<iframe" in link
        simulate(ListenTests(results), test_id, ["ann", "bob"], {"fast": 0.8, "normal": 0.0, "slow": -0.8})
        summary, table, plot, matrix, _ = client.predict(test_id, api_name="/listen_report")
        assert "34 votes" in summary and "ann" in summary
        names = [row[0] for row in table["data"]]
        assert names == ["fast", "normal", "slow"] and Path(plot).stat().st_size > 5000
        assert len(matrix["data"]) == 3
        with pytest.raises(Exception, match="pick a run first"):
            client.predict(None, "variant", "pairwise", api_name="/listen_build_run")
