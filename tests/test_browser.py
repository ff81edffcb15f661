"""The real lab in a real browser: start ``lab.py`` as a subprocess, click through it with
Playwright driving Debian's chromium (never a downloaded browser), engine espeak.

Set ``LAB_SCREENSHOTS=<folder>`` to keep full-page screenshots of each step.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,  # a server and a browser: the full suite, not the quick lane
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab_server(tmp_path_factory):
    """``lab.py`` serving on a free port with a fresh results folder; yields (url, its log file);
    stopped afterwards."""
    port = free_port()
    out = tmp_path_factory.mktemp("browser-results")
    log = open(out / "lab.log", "w")
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "lab.py", "--port", str(port), "--out", str(out),
                             "--voices-dir", str(out / "voices")],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 90
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"lab.py exited with {proc.returncode}: {(out / 'lab.log').read_text()[-2000:]}")
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"lab.py did not answer on {url} within 90 s")
                time.sleep(0.3)
        yield url, out / "lab.log"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def lab_url(lab_server):
    return lab_server[0]


@pytest.fixture(scope="module")
def page(lab_url):
    from playwright import sync_api

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1600})
        page.set_default_timeout(30_000)
        page.goto(lab_url)
        page.wait_for_selector("#lab-status")
        yield page
        browser.close()


def shot(page, name: str) -> None:
    folder = os.environ.get("LAB_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def rows_shown(page, table_id: str, rows: int) -> None:
    """Wait until the Dataframe ``table_id`` holds ``rows`` data rows (aria-rowcount counts the header)."""
    page.wait_for_selector(f"#{table_id} [role=grid][aria-rowcount='{rows + 1}']", state="attached")


def expect_audio(page, elem_id: str) -> None:
    page.wait_for_selector(f"#{elem_id} audio", state="attached")
    href = page.locator(f"#{elem_id} a[download]").first.get_attribute("href")
    assert href and href.endswith(".wav"), href


def expect_image(page, elem_id: str) -> None:
    img = page.locator(f"#{elem_id} img").first
    img.wait_for(state="visible")
    assert img.evaluate("i => i.complete && i.naturalWidth > 100"), f"{elem_id} image did not load"


def no_error_toasts(page) -> None:
    errors = page.locator(".toast-body.error")
    assert errors.count() == 0, errors.all_inner_texts()


def test_status_banner_lists_every_engine(page):
    status = page.locator("#lab-status").inner_text()
    assert "espeak" in status and "licence" in status
    # The default engine (piper without XTTS weights) is loaded at start-up; the banner refreshes.
    page.wait_for_function("() => /piper \\(default\\): ready/.test(document.querySelector('#lab-status').innerText)")
    assert "xtts" in status and "melo" in status


def test_every_tab_opens(page):
    expected = {"Speed sweep": "Speeds", "Reference length": "own speaker encoder", "Languages": "Sentence overrides",
                "Benchmark": "Engines to compare", "Results": "Compare two runs", "Synthesize": "Text"}
    for tab, text in expected.items():
        page.get_by_role("tab", name=tab, exact=True).click()
        page.get_by_text(text).first.wait_for(state="visible")
    shot(page, "tabs")


def choose(page, label: str, option: str) -> None:
    """Pick ``option`` in the visible dropdown labelled ``label`` (the first on the open tab)."""
    page.get_by_label(label, exact=True).locator("visible=true").first.click()
    page.get_by_role("option", name=option).first.click()


def visible(page, selector: str) -> bool:
    """True if some element matching ``selector`` is shown (gradio hides with display: none)."""
    return page.locator(selector).locator("visible=true").count() > 0


def test_engine_choice_updates_speakers_and_explains_unavailable_engines(page):
    page.get_by_role("tab", name="Synthesize", exact=True).click()
    choose(page, "Engine", "melo (unavailable")
    page.locator(".toast-body").filter(has_text="melo is unavailable").first.wait_for(state="visible")
    note = page.locator("#synth-engine-note")
    note.wait_for(state="visible")
    assert "melo is unavailable" in note.inner_text()
    button = page.get_by_role("button", name="Synthesize", exact=True)
    page.wait_for_function("b => b.disabled", arg=button.element_handle())  # no run that can only fail
    time.sleep(1.5)  # a second toast would have arrived by now
    assert page.locator(".toast-body").count() == 1, page.locator(".toast-body").all_inner_texts()
    choose(page, "Engine", "espeak")
    page.wait_for_function("b => !b.disabled", arg=button.element_handle())
    assert not visible(page, "#synth-engine-note")
    speaker = page.get_by_label("Speaker", exact=True).locator("visible=true").first
    page.wait_for_function("el => el.value === 'male'", arg=speaker.element_handle())
    speaker.click()
    options = page.get_by_role("option").all_inner_texts()
    assert {"male", "female", "whisper"} <= {o.split("\n")[-1].strip() for o in options}  # "✓\nmale": chosen
    page.keyboard.press("Escape")
    for toast in page.locator(".toast-close").all():  # dismiss the warning before the next steps
        toast.click()


def test_no_empty_boxes_before_a_run(page):
    """Only what the chosen engine (espeak: no cloning, no streaming) can use, and no output boxes
    before anything ran: no reference drop zone, no live player, no empty images or results.csv."""
    page.get_by_role("tab", name="Synthesize", exact=True).click()
    page.get_by_role("button", name="Synthesize", exact=True).wait_for(state="visible")
    for hidden in ("#synth-live", "#synth-waveform", "#synth-spectrogram", "#synth-csv", "#synth-reference"):
        assert not visible(page, hidden), f"{hidden} shows before it has anything to show"
    assert visible(page, "#synth-audio") and visible(page, "#synth-table")
    page.get_by_role("tab", name="Speed sweep", exact=True).click()
    page.get_by_role("button", name="Run speed sweep").wait_for(state="visible")
    for hidden in ("#speed-summary", "#speed-audio", "#speed-waveform", "#speed-csv", "#speed-reference"):
        assert not visible(page, hidden), f"{hidden} shows before it has anything to show"
    shot(page, "before-a-run")


def test_reference_length_says_up_front_that_the_default_engine_cannot_clone(page):
    page.get_by_role("tab", name="Reference length", exact=True).click()
    button = page.get_by_role("button", name="Run reference-length sweep")
    button.wait_for(state="visible")
    note = page.locator("#ref-engine-note")
    assert "piper cannot clone a voice" in note.inner_text()  # the default without XTTS weights
    assert button.is_disabled()
    assert not visible(page, "#ref-reference")  # nothing to upload for an engine that cannot clone
    shot(page, "ref-length-piper")


def test_synthesize_by_clicking(page):
    page.get_by_role("tab", name="Synthesize", exact=True).click()
    page.get_by_label("Text").first.fill("Clicked in a real browser.")
    page.get_by_role("button", name="Synthesize", exact=True).click()
    rows_shown(page, "synth-table", 1)
    expect_audio(page, "synth-audio")
    expect_image(page, "synth-waveform")
    expect_image(page, "synth-spectrogram")
    assert "Clicked in a real browser." in page.locator("#synth-table").inner_text()
    page.locator("#synth-csv").wait_for(state="visible")  # shown once there is a CSV
    no_error_toasts(page)
    shot(page, "synthesize")


def test_synthesize_with_judges_shows_images_then_the_judge_columns(page):
    """With judges on, the tab updates twice (audio first, judge columns next): the waveform,
    spectrogram and CSV still show after the second update."""
    page.get_by_role("tab", name="Synthesize", exact=True).click()
    page.get_by_label("Text").first.fill("Judged in a real browser.")
    page.get_by_label("fast (DNSMOS only)").first.check()
    try:
        page.get_by_role("button", name="Synthesize", exact=True).click()
        page.locator("#synth-table").filter(has_text="dnsmos_ovrl").wait_for(timeout=120_000)
        assert "Judged in a real browser." in page.locator("#synth-table").inner_text()
        expect_image(page, "synth-waveform")
        expect_image(page, "synth-spectrogram")
        page.locator("#synth-csv").wait_for(state="visible")
        no_error_toasts(page)
        shot(page, "synthesize-judged")
    finally:
        page.get_by_label("none").first.check()


def test_speed_sweep_by_clicking(page):
    page.get_by_role("tab", name="Speed sweep", exact=True).click()
    page.get_by_label("Speeds").fill("0.75, 1, 2")
    page.get_by_role("button", name="Run speed sweep").click()
    rows_shown(page, "speed-table", 3)
    expect_audio(page, "speed-audio")
    expect_image(page, "speed-summary")
    expect_image(page, "speed-waveform")
    no_error_toasts(page)
    shot(page, "speed-sweep")


def test_results_tab_shows_the_rows_just_made(page):
    page.get_by_role("tab", name="Results", exact=True).click()  # selecting the tab refreshes it
    rows_shown(page, "results-table", 5)  # 2 syntheses (one judged) + 3 speeds
    expect_image(page, "results-plot")
    page.get_by_role("button", name="Open run").click()
    rows_shown(page, "run-table", 3)  # the newest run: the speed sweep
    expect_audio(page, "run-audio")
    expect_image(page, "run-summary")
    no_error_toasts(page)
    shot(page, "results")


def test_kokoro_offers_its_voices_and_languages_and_speaks(page):
    """Choosing kokoro loads it, fills the speaker and language pickers with its own, hides the
    sampling settings it does not take, and a Japanese synthesis plays."""
    page.get_by_role("tab", name="Synthesize", exact=True).click()
    choose(page, "Engine", "kokoro")
    speaker = page.get_by_label("Speaker", exact=True).locator("visible=true").first
    page.wait_for_function("el => el.value === 'jf_alpha'", arg=speaker.element_handle(), timeout=120_000)
    speaker.click()
    options = {o.split("\n")[-1].strip() for o in page.get_by_role("option").all_inner_texts()}
    assert {"jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo"} <= options
    page.get_by_role("option", name="jm_kumo").first.click()
    assert page.get_by_text("Engine settings").locator("visible=true").count() == 0
    page.get_by_label("Language", exact=True).locator("visible=true").first.click()
    languages = {o.split("\n")[-1].strip() for o in page.get_by_role("option").all_inner_texts()}
    assert {"ja", "en"} <= languages and "ko" not in languages  # kokoro's own languages only
    page.get_by_role("option", name="ja", exact=True).first.click()
    page.get_by_label("Text").first.fill("こんにちは。")
    page.get_by_role("button", name="Synthesize", exact=True).click()
    rows_shown(page, "synth-table", 1)
    page.wait_for_function("() => document.querySelector('#synth-table').innerText.includes('jm_kumo')",
                           timeout=120_000)
    expect_audio(page, "synth-audio")
    no_error_toasts(page)
    shot(page, "kokoro")


def test_voices_tab_saves_plays_and_removes_a_voice(page, tmp_path_factory):
    from serving import espeak_speech, wav_bytes

    recording = tmp_path_factory.mktemp("voice") / "my voice.wav"
    recording.write_bytes(wav_bytes(espeak_speech(6.0), 16000))
    page.get_by_role("tab", name="Voices", exact=True).click()
    page.locator("#voice-name").get_by_role("textbox").fill("alice")
    page.locator("#voice-recording input[type=file]").set_input_files(str(recording))
    page.wait_for_selector("#voice-recording audio", state="attached")  # uploaded
    page.locator("#voice-save").click()
    rows_shown(page, "voices-table", 1)
    assert "Saved alice" in page.locator("#voice-message").inner_text()
    assert "alice" in page.locator("#voices-table").inner_text()
    page.wait_for_selector("#voice-listen audio", state="attached")  # the cleaned reference plays
    no_error_toasts(page)
    shot(page, "voices")
    page.reload()  # a new page lists the saved voices (filled on page load)
    page.get_by_role("tab", name="Voices", exact=True).click()
    rows_shown(page, "voices-table", 1)
    page.locator("#voice-remove").click()
    page.get_by_text("Removed alice").wait_for(state="visible")
    rows_shown(page, "voices-table", 0)


def test_a_user_error_is_one_toast_one_log_line_and_no_stray_badges(page, lab_server):
    """A problem the user can fix: one toast in the UI's words, at most one error badge (on the
    output the run would have filled, where its progress showed), one line in the server log."""
    _, log = lab_server
    page.get_by_role("tab", name="Synthesize", exact=True).click()
    page.get_by_label("Text").first.fill("   ")
    page.get_by_role("button", name="Synthesize", exact=True).click()
    page.locator(".toast-body.error").first.wait_for(state="visible")
    time.sleep(1.5)  # a second toast would have arrived by now
    toasts = page.locator(".toast-body").all_inner_texts()
    assert len(toasts) == 1 and "text is empty" in toasts[0], toasts
    badges = page.locator("[data-testid='status-tracker'] .error").locator("visible=true")
    where = [badges.nth(i).evaluate("e => e.closest('[id]')?.id") for i in range(badges.count())]
    assert set(where) <= {"synth-audio"}, f"error badges on unrelated outputs: {where}"
    shot(page, "user-error")
    deadline = time.monotonic() + 10
    while "text is empty" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    text = log.read_text()
    assert [line for line in text.splitlines() if "text is empty" in line] == \
        ["lab.py: synthesize: text is empty: type something to say"]
    assert "Traceback" not in text, text[-3000:]
