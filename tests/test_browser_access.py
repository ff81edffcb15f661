"""Sharing in a real browser: an exposed lab shows its UI only to a browser that opened the
printed ``?token=`` link (which leaves an HttpOnly cookie), and a rater link shows its test only.
Playwright drives Debian's chromium; the server is the app ``lab.py`` builds, on loopback.

Set ``LAB_SCREENSHOTS=<folder>`` to keep the screenshots.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from components.app.context import LabContext
from components.engines import EngineConfig
from components.app.server import ServerOptions, create_app
from serving import uvicorn_thread
from components.app.access import folder_test_is_open
from test_access import TOKEN, standin_listen_routes
from test_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = [
    pytest.mark.browser, pytest.mark.slow,
]


def test_token_link_opens_the_ui_and_nothing_else_does(tmp_path):
    from components.app.ui.app import build_app

    from playwright import sync_api
    shots = Path(os.environ.get("LAB_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    results = tmp_path / "results"
    (results / "listen" / "t1").mkdir(parents=True)
    lab = LabContext.create(EngineConfig(xtts_dir=str(tmp_path / "no-weights")), results=str(results))
    app = create_app(lab, ServerOptions(share=True, token=TOKEN), ui=build_app(lab))
    standin_listen_routes(app, results)  # a stand-in page (the real one: tests/test_browser_listen.py)
    app.state.access.test_is_open = folder_test_is_open(results)
    with uvicorn_thread(app) as url, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            stranger = browser.new_page(viewport={"width": 1280, "height": 900})
            r = stranger.goto(url + "/")
            assert r.status == 401
            assert "access link printed in the console" in stranger.inner_text("body")
            assert stranger.locator("#lab-status").count() == 0
            stranger.screenshot(path=str(shots / "access-without-token.png"))
            # The page's "Log in" leads to a form that takes the token (pasted by hand).
            stranger.get_by_role("link", name="Log in").click()
            stranger.fill("input[name=token]", "not-the-token")
            stranger.get_by_role("button", name="Log in").click()
            assert "Wrong user name, password or token" in stranger.inner_text("body")
            stranger.fill("input[name=token]", TOKEN)
            stranger.screenshot(path=str(shots / "access-login.png"))
            stranger.get_by_role("button", name="Log in").click()
            stranger.wait_for_selector("#lab-status", timeout=60_000)

            owner = browser.new_page(viewport={"width": 1280, "height": 900})
            owner.set_default_timeout(60_000)
            owner.goto(f"{url}/?token={TOKEN}")
            owner.wait_for_selector("#lab-status")  # the Gradio UI, whose own requests pass by the cookie
            assert owner.url == url + "/"  # the token left the address bar
            owner.get_by_role("tab", name="Results", exact=True).click()
            owner.get_by_text("Compare two runs").first.wait_for(state="visible")
            (cookie,) = [c for c in owner.context.cookies() if c["name"] == "xtts_lab_token"]
            assert cookie["httpOnly"] and TOKEN not in owner.content()
            owner.screenshot(path=str(shots / "access-with-token.png"))

            rater = httpx.post(f"{url}/listen/t1/raters", headers={"Authorization": f"Bearer {TOKEN}"}).json()
            context = browser.new_context()  # the rater's own browser: no owner cookie
            listener = context.new_page()
            listener.goto(rater["url"])
            assert "Listening test t1" in listener.inner_text("body")
            listener.screenshot(path=str(shots / "access-rater.png"))
            assert listener.goto(url + "/").status == 401  # the lab itself stays closed to the rater
        finally:
            browser.close()
