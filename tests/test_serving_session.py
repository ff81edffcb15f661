"""One results run per server session for REST and ``/v1`` rows, every row judged or marked, and
the judging backlog cap (components.app.serving), through the real app and the real DNSMOS judge."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from components.app.context import LabContext
from components.engines import EngineConfig
from components.app.server import ServerOptions, create_app
from serving import run_dirs, strict_rows


def make_lab(root, backlog: int = 64) -> LabContext:
    return LabContext.create(EngineConfig(xtts_dir=str(root / "no-weights")), results=str(root / "results"),
                             judge_choice="dnsmos", judge_backlog=backlog)


def rest(c, text: str):
    r = c.post("/synthesize_base64", json={"engine": "espeak", "text": text})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.slow
def test_rest_and_v1_rows_share_one_run_and_all_are_judged(tmp_path):
    lab = make_lab(tmp_path)
    with TestClient(create_app(lab, ServerOptions())) as c:
        assert c.get("/health").json()["judging"]["run_id"] is None  # no run before the first row
        first = rest(c, "Hello from the REST API.")
        v1 = c.post("/v1/audio/speech", json={"model": "espeak", "voice": "female", "input": "Hello from v1.",
                                              "response_format": "wav"})
        assert v1.status_code == 200 and v1.headers["x-lab-run-id"] == first["run_id"]
        assert v1.headers["x-lab-row"] == "2"
        streamed = c.post("/v1/audio/speech", json={"model": "espeak", "voice": "male", "input": "Streamed rows.",
                                                    "response_format": "pcm"})
        assert streamed.status_code == 200 and streamed.headers["x-lab-run-id"] == first["run_id"]
        second = rest(c, "And REST again.")
        assert (second["run_id"], second["row"]) == (first["run_id"], 4)
        assert lab.serving().run().wait_for_judges(180)
        health = c.get("/health").json()["judging"]
    (run,) = run_dirs(tmp_path / "results")
    assert run.name == first["run_id"]
    rows = strict_rows(run / "results.csv")
    assert [r["row"] for r in rows] == ["1", "2", "3", "4"]
    assert [json.loads(r["extra"])["endpoint"] for r in rows] == ["rest", "v1", "v1", "rest"]
    judged = {r["row"]: r for r in strict_rows(run / "judges.csv")}
    assert set(judged) == {"1", "2", "3", "4"}  # /v1 rows are judged like every other row
    for r in judged.values():
        assert 1.0 <= float(r["dnsmos_ovrl"]) <= 5.0 and "dnsmos" in json.loads(r["judges"])
    assert health == {"run_id": run.name, "backlog": 0, "max_backlog": 64, "judged": 4,
                      "not_judged_backlog": 0, "judges": ["dnsmos"]}
    spec = (run / "spec.yaml").read_text()
    assert "experiment: serve" in spec and "judge_backlog: 64" in spec


@pytest.mark.slow
def test_rows_past_the_backlog_cap_are_marked_not_held(tmp_path):
    from components.app.ui.status import status_markdown

    lab = make_lab(tmp_path, backlog=2)
    run = lab.serving().run()
    with TestClient(create_app(lab, ServerOptions())) as c:
        with run.judging.held():  # judging stalls (as under load): the backlog fills up
            for i in range(5):
                rest(c, f"Row number {i + 1}.")
            health = c.get("/health").json()["judging"]
            banner = status_markdown(lab)
        assert run.wait_for_judges(180)
        after = c.get("/health").json()["judging"]
    assert (health["backlog"], health["max_backlog"], health["not_judged_backlog"]) == (2, 2, 3)
    assert "2 rows waiting for judges (cap 2)" in banner and "3 not judged: backlog" in banner
    assert (after["backlog"], after["judged"], after["not_judged_backlog"]) == (0, 2, 3)
    judged = {r["row"]: r for r in strict_rows(run.dir / "judges.csv")}
    assert set(judged) == {str(i) for i in range(1, 6)}  # no row lost: each judged or marked
    for n in ("1", "2"):
        assert float(judged[n]["dnsmos_ovrl"]) >= 1.0
    for n in ("3", "4", "5"):
        assert judged[n]["dnsmos_ovrl"] == "" and judged[n]["judge_notes"].startswith("not judged: backlog")


def test_negative_backlog_is_refused_on_the_command_line(tmp_path):
    import subprocess
    import sys

    from serving import REPO

    done = subprocess.run([sys.executable, str(REPO / "lab.py"), "--out", str(tmp_path / "r"), "--judge-backlog", "-1"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 2 and "--judge-backlog must be 0 or more" in done.stderr
