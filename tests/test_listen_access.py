"""A rater link on a real listening test (issues 21 + 24 together): on a shared lab the link opens
its test's page, pairs, clips and votes, and nothing else; closing the test ends it."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from components.app.context import LabContext
from components.engines import EngineConfig
from components.app.server import ServerOptions, create_app
from listen_runs import espeak_run

TOKEN = "owner-token-for-listen-tests-0123"


@pytest.fixture
def shared(tmp_path):
    results = tmp_path / "results"
    run_id = espeak_run(results)
    lab = LabContext.create(EngineConfig(xtts_dir=str(tmp_path / "no-weights")), results=str(results))
    app = create_app(lab, ServerOptions(share=True, token=TOKEN))
    with TestClient(app) as client:
        yield client, run_id


def test_a_rater_link_opens_its_test_and_nothing_else(shared):
    client, run_id = shared
    owner = {"Authorization": f"Bearer {TOKEN}"}
    assert client.post("/listen", json={"run_id": run_id, "factor": "variant"}).status_code == 401
    make = lambda: client.post("/listen", json={"run_id": run_id, "factor": "variant"}, headers=owner).json()["test_id"]
    test_id, other = make(), make()
    link = client.post(f"/listen/{test_id}/raters", headers=owner).json()
    assert link["url"].endswith(f"/listen/{test_id}?token={link['token']}") or "token=" in link["url"]
    rater = {"Authorization": f"Bearer {link['token']}"}

    assert client.get(f"/listen/{test_id}", headers=rater).status_code == 200
    n = client.get(f"/listen/{test_id}/next", params={"rater": "ann"}, headers=rater).json()
    assert client.get(n["a"], headers=rater).status_code == 200 and client.get(n["b"], headers=rater).status_code == 200
    vote = {"rater": "ann", "pair_id": n["pair_id"], "choice": "a", "seconds_a": 1.0, "seconds_b": 1.0}
    assert client.post(f"/listen/{test_id}/vote", json=vote, headers=rater).status_code == 200

    for method, path in (("get", f"/listen/{test_id}/report"), ("post", f"/listen/{test_id}/close"),
                         ("get", f"/listen/{other}"), ("get", f"/listen/{other}/next?rater=ann"),
                         ("post", "/listen"), ("get", "/health"), ("get", "/"), ("get", "/v1/audio/voices"),
                         ("get", f"/listen/{test_id}/raters")):
        assert getattr(client, method)(path, headers=rater).status_code == 403, (method, path)
    assert client.get(f"/listen/{test_id}/report", headers=owner).json()["votes"] == 1

    assert client.post(f"/listen/{test_id}/close", headers=owner).status_code == 200
    assert client.get(f"/listen/{test_id}", headers=rater).status_code in (401, 403)  # the link ended with the test
