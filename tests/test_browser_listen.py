"""A listening test in a real browser: ``lab.py`` serving, a test of espeak against kokoro built over
REST (real audio), one rater taken through the standalone rater page by clicking (clips really
play in chromium), then the owner's Listen tab showing the report.

Set ``LAB_SCREENSHOTS=<folder>`` to keep screenshots of each step.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from test_browser import CHROMIUM, CHROMIUM_ARGS, ROOT, free_port

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
]


def shot(page, name: str) -> None:
    folder = os.environ.get("LAB_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"listen-{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """``lab.py`` serving on a free port; yields (its URL, its results folder)."""
    port = free_port()
    out = tmp_path_factory.mktemp("listen-browser")
    log = open(out / "lab.log", "w")
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "LAB_JUDGES": "none"}
    proc = subprocess.Popen([sys.executable, "lab.py", "--port", str(port), "--out", str(out / "results")],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"lab.py exited with {proc.returncode}: {(out / 'lab.log').read_text()[-2000:]}")
            try:
                urllib.request.urlopen(url + "/health", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"lab.py did not answer on {url} within 90 s")
                time.sleep(0.3)
        yield url, out / "results"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as r:
        return json.loads(r.read())


def test_one_rater_through_the_page_then_the_report_in_the_tab(lab):
    lab_url = lab[0]
    from playwright import sync_api
    test_id = post(lab_url + "/listen", {"engines": ["espeak", "kokoro"], "sentences": 2, "lang": "en"})["test_id"]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=[*CHROMIUM_ARGS, "--autoplay-policy=no-user-gesture-required"])
        page = browser.new_page(viewport={"width": 1000, "height": 800})
        page.goto(f"{lab_url}/listen/{test_id}")
        page.get_by_label("Your name").fill("Ana")
        shot(page, "0-name")
        page.get_by_role("button", name="Start").click()
        page.locator("#progress").filter(has_text="1 of 4").wait_for()
        html = page.content()
        assert "espeak" not in html and "kokoro" not in html  # blind: no system name on the page
        for k in range(1, 5):
            page.locator("#progress").filter(has_text=f"{k} of 4").wait_for()
            vote_b = page.get_by_role("button", name="B is better")
            assert vote_b.is_disabled()  # nothing counts before both clips are played
            for side in ("a", "b"):
                page.locator(f"#play-{side}").click()
                page.wait_for_function(f"document.getElementById('audio-{side}').ended", timeout=30_000)
            vote_b.wait_for(state="visible")
            page.wait_for_function("!document.getElementById('vote-b').disabled")
            if k == 1:
                page.get_by_label("clearly").check()
                shot(page, "1-pair")
            vote_b.click()
        page.locator("#done").filter(has_text="That was everything").wait_for()
        shot(page, "2-done")
        with urllib.request.urlopen(f"{lab_url}/listen/{test_id}/report", timeout=60) as r:
            report = json.loads(r.read())
        assert report["votes"] == 4 and report["raters"][0]["name"] == "Ana"
        assert report["raters"][0]["controls"] == 2
        assert all(s["votes"] == 2 for s in report["systems"])  # two real pairs, each between both systems

        # The owner's tab: pick the test, read the report.
        page.set_viewport_size({"width": 1280, "height": 1600})  # as tests/test_browser.py: every tab in view
        page.goto(lab_url + "/")
        shot(page, "3-app")
        page.get_by_role("tab", name="Listen", exact=True).click()
        page.get_by_label("Test", exact=True).click()
        page.get_by_role("option", name=test_id).click()
        page.locator("#listen-link").wait_for()
        page.get_by_role("button", name="Show report").click()
        page.locator("#listen-summary").filter(has_text="4 votes").wait_for(timeout=60_000)
        page.locator("#listen-systems").filter(has_text="kokoro").wait_for()
        shot(page, "4-tab")
        browser.close()


def test_mos_rater_scores_each_clip_after_playing_it(lab):
    """MOS mode on the page: one player, 1-5; built from the run the first test synthesised."""
    from playwright import sync_api
    lab_url, results = lab
    runs = sorted(p.name for p in results.glob("*-evaluate-*"))
    assert runs, "the pairwise test above synthesised an evaluate run"
    test_id = post(lab_url + "/listen", {"run_id": runs[-1], "factor": "engine", "mode": "mos"})["test_id"]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=[*CHROMIUM_ARGS, "--autoplay-policy=no-user-gesture-required"])
        page = browser.new_page(viewport={"width": 1000, "height": 700})
        page.goto(f"{lab_url}/listen/{test_id}")
        page.get_by_label("Your name").fill("Bo")
        page.get_by_role("button", name="Start").click()
        total = 4 + 2  # two sentences x two engines, the noisy anchor and a repeat
        for k in range(1, total + 1):
            page.locator("#progress").filter(has_text=f"{k} of {total}").wait_for()
            good = page.get_by_role("button", name="4 Good")
            assert good.is_disabled()
            page.locator("#play-m").click()
            page.wait_for_function("document.getElementById('audio-m').ended", timeout=30_000)
            page.wait_for_function("!document.querySelector('button.score').disabled")
            if k == 1:
                shot(page, "5-mos")
            good.click()
        page.locator("#done").filter(has_text="That was everything").wait_for()
        browser.close()
    with urllib.request.urlopen(f"{lab_url}/listen/{test_id}/report", timeout=60) as r:
        report = json.loads(r.read())
    assert report["votes"] == total and all(s["mos"] == 4.0 for s in report["systems"])
