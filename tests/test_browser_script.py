"""The Script tab in a real browser (Debian chromium through Playwright), engine espeak: read the
example script, see the stitched audio, subtitles and rows, then re-render one line.

Its own lab server (the fixtures of test_browser.py), so other browser tests' row counts hold.
Set ``LAB_SCREENSHOTS=<folder>`` to keep the screenshots.
"""

from __future__ import annotations

import pytest

from tests.test_browser import (  # noqa: F401 - fixtures
    CHROMIUM, expect_audio, lab_server, lab_url, no_error_toasts, page, rows_shown, shot,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_read_a_script_and_rerender_a_line(page):  # noqa: F811 - the fixture
    page.get_by_role("tab", name="Script", exact=True).click()
    page.get_by_role("button", name="Read the script aloud").click()
    expect_audio(page, "script-audio")
    rows_shown(page, "script-table", 4)  # the example script's four lines
    table = page.locator("#script-table").inner_text()
    for speaker in ("Narrator", "Ada", "Bob"):
        assert speaker in table
    for elem in ("script-srt", "script-vtt", "script-csv"):
        assert page.locator(f"#{elem} a").first.get_attribute("href")
    assert "Narrator" in page.locator("#script-speakers").inner_text()
    no_error_toasts(page)
    shot(page, "script")

    page.locator("#script-line input").fill("3")
    page.locator("#script-line-text textarea").fill("Yes. Start with the short one instead.")
    page.get_by_role("button", name="Re-render line").click()
    rows_shown(page, "script-table", 5)  # the new rendering of line 3 joins the old one
    expect_audio(page, "script-line-audio")
    assert "short one instead" in page.locator("#script-table").inner_text()
    no_error_toasts(page)
    shot(page, "script-rerender")

    page.locator("#script-line input").fill("99")
    page.get_by_role("button", name="Play line").click()
    page.locator(".toast-body").filter(has_text="line 99 was not spoken").first.wait_for(state="visible")
    shot(page, "script-error")
