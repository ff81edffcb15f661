"""Sharing safely (issue 24): an exposed lab asks for credentials on every route, a rater token
opens one listening test only, and wrong credentials are rate limited.

A real server (uvicorn on a free loopback port) serves the app exactly as ``lab.py`` builds it,
UI mounted, engine espeak. ``share=True`` in the options makes it an exposed lab without making
any link (only ``serve`` asks Gradio for one). The listening-test feature lives in another
branch when these tests were written: a stand-in (``standin_listen_routes``) serves its routes so
the gate's scoping is proven on real HTTP paths; tests/test_listen_access.py does it with a real test.
"""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest

from components.app.access import RATERS_FILE, Access, RateLimiter, RaterStore, folder_test_is_open
from components.app.context import LabContext
from components.engines import EngineConfig
from components.engines.base import LabError
from components.app.server import ServerOptions, create_app, exposure_warnings, with_token
from serving import lab_process, uvicorn_thread

TOKEN = "owner-token-for-tests-0123456789"
KEY = "sk-lab-test-key-0001"
HTML = {"Accept": "text/html"}


def standin_listen_routes(app, results_root) -> None:
    """A STAND-IN for the listening-test feature (built in another branch): its rater routes
    (page, next, vote, clip) and two owner routes (report, close), each answering who it is.
    Inserted before the Gradio mount at "/", as the real routes will be."""
    from fastapi import APIRouter
    from fastapi.responses import HTMLResponse, Response

    r = APIRouter()

    @r.get("/listen/{test_id}", response_class=HTMLResponse)
    def page(test_id: str):
        return f"<!doctype html><title>Listening test</title><h1>Listening test {test_id}</h1>"

    @r.get("/listen/{test_id}/next")
    def next_pair(test_id: str):
        return {"test": test_id, "pair": ["a.wav", "b.wav"]}

    @r.post("/listen/{test_id}/vote")
    def vote(test_id: str):
        return {"test": test_id, "saved": True}

    @r.get("/listen/{test_id}/clip/{name}")
    def clip(test_id: str, name: str):
        return Response(b"RIFF-standin-" + name.encode(), media_type="audio/wav")

    @r.get("/listen/{test_id}/report")
    def report(test_id: str):
        return {"test": test_id, "votes": 0}

    @r.post("/listen/{test_id}/close")
    def close(test_id: str):
        (results_root / "listen" / test_id / "closed").touch()
        return {"closed": True}

    for route in reversed(r.routes):
        app.router.routes.insert(0, route)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """An exposed lab (share, generated token + an API key) with two listening tests t1, t2."""
    from components.app.ui.app import build_app

    root = tmp_path_factory.mktemp("access")
    results = root / "results"
    for test_id in ("t1", "t2"):
        (results / "listen" / test_id).mkdir(parents=True)
    lab = LabContext.create(EngineConfig(xtts_dir=str(root / "no-weights")), results=str(results),
                            voices=str(root / "voices"))
    options = ServerOptions(share=True, token=TOKEN, api_keys=(KEY,))
    app = create_app(lab, options, ui=build_app(lab))
    # The stand-in routes answer before the real ones, and a test is "open" by its folder, so the
    # gate's table is checked on paths alone (tests/test_listen_access.py runs a real test).
    standin_listen_routes(app, results)
    app.state.access.test_is_open = folder_test_is_open(results)
    with uvicorn_thread(app) as url:
        yield {"url": url, "results": results, "lab": lab, "access": app.state.access}


def owner_client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)


def raw_status(url: str, target: str, token: str) -> int:
    """The status of ``GET target`` sent byte for byte (no client-side path clean-up)."""
    import socket

    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
                  "Connection: close\r\n\r\n".encode())
        return int(s.recv(64).split()[1])


def new_rater(url: str, test_id: str) -> dict:
    r = owner_client(url).post(f"/listen/{test_id}/raters")
    assert r.status_code == 200, r.text
    return r.json()


# -- what each credential opens ------------------------------------------------------------------

# (method, path, kwargs): one request per route class. The owner gets what the route gives; a
# rater of t1 and nobody get refused unless the route is t1's page, next, vote or a clip.
ROUTES = [
    ("GET", "/", {"headers": HTML}),                                   # UI page
    ("GET", "/config", {}),                                            # UI config
    ("GET", "/gradio_api/info", {}),                                   # Gradio API
    ("POST", "/gradio_api/upload", {"files": {"files": ("a.txt", b"hello", "text/plain")}}),  # Gradio files
    ("POST", "/gradio_api/call/download_run", {"json": {"data": [""]}}),  # run downloads
    ("GET", "/health", {}),                                            # REST
    ("POST", "/synthesize_base64", {"json": {"text": "Hi.", "engine": "espeak"}}),
    ("GET", "/openapi.json", {}),
    ("GET", "/docs", {}),
    ("GET", "/v1/models", {}),                                         # /v1
    ("GET", "/v1/audio/voices", {}),
    ("POST", "/v1/audio/speech", {"json": {"model": "espeak", "input": "Hi.", "voice": "female"}}),
    ("GET", "/listen/t2", {}),                                         # another test
    ("GET", "/listen/t1/report", {}),                                  # owner-only listening routes
    ("GET", "/listen/t1/raters", {}),
]
RATER_ROUTES = [
    ("GET", "/listen/t1", {}),
    ("GET", "/listen/t1/next", {}),
    ("POST", "/listen/t1/vote", {"json": {"choice": "a"}}),
    ("GET", "/listen/t1/clip/a.wav", {}),
]


def test_every_route_class_gives_each_credential_exactly_what_the_table_says(served):
    url = served["url"]
    rater = new_rater(url, "t1")
    nobody = httpx.Client(base_url=url, timeout=60)
    as_rater = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {rater['token']}"}, timeout=60)
    owner = owner_client(url)
    for method, path, kw in ROUTES:
        r = nobody.request(method, path, **kw)
        assert r.status_code == 401, (path, r.status_code, r.text[:200])
        assert "Bearer" in r.headers["www-authenticate"]
        r = as_rater.request(method, path, **kw)
        assert r.status_code == 403, (path, r.status_code, r.text[:200])
        assert "/listen/t1" in r.text  # says what the link is for
        r = owner.request(method, path, **kw)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
    for method, path, kw in RATER_ROUTES:
        assert nobody.request(method, path, **kw).status_code == 401, path
        for who in (as_rater, owner):
            r = who.request(method, path, **kw)
            assert r.status_code == 200, (path, r.status_code, r.text[:200])
    # A rater path that climbs out of the test is refused before any route sees it (sent raw:
    # httpx would resolve the dots itself).
    assert raw_status(url, "/listen/t1/clip/../../../config", rater["token"]) == 403
    assert raw_status(url, "/listen/t1/clip/a.wav", rater["token"]) == 200
    # /v1 answers in OpenAI's error shape, so OpenAI clients raise AuthenticationError.
    assert nobody.get("/v1/models").json()["error"]["code"] == "invalid_api_key"
    # An --api-key key is an owner credential in the Authorization header...
    keyed = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
    assert keyed.get("/v1/models").status_code == 200 and keyed.get("/config").status_code == 200
    # ...but never in a URL: only the generated token works as ?token=.
    assert nobody.get("/health", params={"token": KEY}).status_code == 401


def test_gradio_file_routes_and_client_need_the_owner(served):
    url = served["url"]
    owner = owner_client(url)
    (path,) = owner.post("/gradio_api/upload", files={"files": ("note.txt", b"private", "text/plain")}).json()
    file_url = f"/gradio_api/file={path}"
    assert owner.get(file_url).content == b"private"
    assert httpx.get(url + file_url).status_code == 401
    rater = new_rater(url, "t1")
    assert httpx.get(url + file_url, headers={"Authorization": f"Bearer {rater['token']}"}).status_code == 403
    # The whole Gradio API flow (queue, SSE) passes with the token in a header.
    from gradio_client import Client

    client = Client(url, headers={"Authorization": f"Bearer {TOKEN}"}, verbose=False)
    rows, *_ = client.predict("all", "all", "all", api_name="/results")
    assert "headers" in rows
    with pytest.raises(Exception):
        Client(url, verbose=False)  # no token: the client cannot even read the config


def test_token_link_sets_an_httponly_cookie_that_opens_the_ui_and_rest(served):
    url = served["url"]
    with httpx.Client(base_url=url, timeout=60) as browser:
        r = browser.get("/", params={"token": TOKEN, "view": "api"}, headers=HTML)
        assert r.status_code == 303 and r.headers["location"] == "/?view=api"  # the token leaves the address bar
        cookie = r.headers["set-cookie"]
        assert "xtts_lab_token=" in cookie and "HttpOnly" in cookie and "Path=/" in cookie
        assert browser.get("/", headers=HTML).status_code == 200
        assert browser.get("/config").status_code == 200
        assert browser.get("/health").status_code == 200
    # A program may put ?token= on any request: it is answered directly (no redirect).
    assert httpx.get(f"{url}/health", params={"token": TOKEN}).status_code == 200
    # Without it a browser gets a page that says how to get in, never the UI, never the token.
    r = httpx.get(url + "/", headers=HTML)
    assert r.status_code == 401 and "access link printed in the console" in r.text and TOKEN not in r.text


def test_rater_link_opens_its_test_only_revocable_and_dies_when_the_test_closes(served):
    url, results = served["url"], served["results"]
    rater = new_rater(url, "t1")
    assert rater["url"] == f"{url}/listen/t1?token={rater['token']}"
    with httpx.Client(timeout=60) as browser:
        r = browser.get(rater["url"], headers=HTML, follow_redirects=True)
        assert r.status_code == 200 and "Listening test t1" in r.text
        assert str(r.url) == f"{url}/listen/t1"  # moved off the token URL, a cookie kept for the test's path
        assert browser.get(f"{url}/listen/t1/next").json()["test"] == "t1"
        assert browser.post(f"{url}/listen/t1/vote", json={}).status_code == 200
        assert browser.get(f"{url}/listen/t1/clip/a.wav").content.startswith(b"RIFF")
        # The cookie is scoped to /listen/t1: elsewhere the rater is nobody.
        assert browser.get(f"{url}/", headers=HTML).status_code == 401
        assert browser.get(f"{url}/listen/t2").status_code == 401
        # The owner's raters list shows the link by id, never by token.
        listed = owner_client(url).get("/listen/t1/raters").json()["raters"]
        assert rater["id"] in [e["id"] for e in listed] and rater["token"] not in json.dumps(listed)
        # Revoked: it stops at once.
        assert owner_client(url).delete(f"/listen/t1/raters/{rater['id']}").json()["revoked"] is True
        r = browser.get(f"{url}/listen/t1/next")
        assert r.status_code == 401 and "revoked" in r.json()["detail"]
        assert 'xtts_lab_rater=""' in r.headers["set-cookie"] or "Max-Age=0" in r.headers["set-cookie"]
    # A revoked link is no guess: however often its page asks, nobody gets locked out.
    for _ in range(15):
        assert httpx.get(f"{url}/listen/t1/next", headers={"Authorization": f"Bearer {rater['token']}"}).status_code == 401
    assert owner_client(url).get("/health").status_code == 200
    # Another link, then the test closes (the stand-in's close writes the marker the default hook reads).
    second = new_rater(url, "t2")
    as_second = {"Authorization": f"Bearer {second['token']}"}
    assert httpx.get(f"{url}/listen/t2/next", headers=as_second).status_code == 200
    assert owner_client(url).post("/listen/t2/close").status_code == 200
    r = httpx.get(f"{url}/listen/t2/next", headers=as_second)
    assert r.status_code == 403 and "closed" in r.json()["detail"]
    assert owner_client(url).post("/listen/t2/raters").status_code == 404  # no new links for a closed test
    assert owner_client(url).post("/listen/nope/raters").status_code == 404
    # The store on disk holds hashes only.
    stored = (results / RATERS_FILE).read_text()
    assert second["token"] not in stored and rater["token"] not in stored


def test_rater_tokens_survive_a_restart(tmp_path):
    (tmp_path / "listen" / "t1").mkdir(parents=True)
    store = RaterStore(tmp_path / RATERS_FILE)
    rater_id, token = store.create("t1")
    again = RaterStore(tmp_path / RATERS_FILE)
    assert again.find(token)["test_id"] == "t1"
    assert again.revoke("t1", token)["id"] == rater_id  # by token as well as by id
    assert RaterStore(tmp_path / RATERS_FILE).find(token) is None
    (tmp_path / RATERS_FILE).write_text("{not json")
    assert RaterStore(tmp_path / RATERS_FILE).find(token) is None  # a damaged file opens nothing


def test_default_test_is_open_reads_the_folder_and_refuses_odd_ids(tmp_path):
    is_open = folder_test_is_open(tmp_path)
    (tmp_path / "listen" / "t1").mkdir(parents=True)
    assert is_open("t1") and not is_open("t2")
    for odd in ("..", ".", "", "t1/..", "../results"):
        assert not is_open(odd), odd
    (tmp_path / "listen" / "t1" / "closed").touch()
    assert not is_open("t1")


@pytest.mark.slow
def test_saved_voices_stay_with_the_owner_and_list_names_only(served, tmp_path):
    from serving import espeak_speech, wav_bytes

    url = served["url"]
    owner = owner_client(url)
    r = owner.post("/v1/audio/voices", data={"name": "grandma"},
                   files={"audio_sample": ("g.wav", wav_bytes(espeak_speech(6.0), 16000), "audio/wav")})
    assert r.status_code == 200, r.text
    (voice,) = [v for v in owner.get("/v1/audio/voices").json()["data"] if v["type"] == "audio_sample"]
    assert set(voice) == {"id", "object", "name", "type", "created_at", "engines"}  # no fingerprint, no path
    rater = new_rater(url, "t1")
    for headers in ({}, {"Authorization": f"Bearer {rater['token']}"}):
        assert httpx.get(f"{url}/v1/audio/voices", headers=headers).status_code in (401, 403)
        assert httpx.delete(f"{url}/v1/audio/voices/grandma", headers=headers).status_code in (401, 403)
    assert owner.delete("/v1/audio/voices/grandma").status_code == 200


# -- rate limits -------------------------------------------------------------------------------


class Clock:
    """A settable clock for the limiter: the test moves time, it never sleeps."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failures_are_limited_per_client_and_logged_once_without_the_secret(tmp_path, capfd):
    clock = Clock()
    lab = LabContext.create(EngineConfig(xtts_dir=str(tmp_path / "no-weights")), results=str(tmp_path / "results"))
    options = ServerOptions(share=True, token=TOKEN, auth=(("alice", "wonder"),))
    access = Access(pairs=options.auth, token=TOKEN, limiter=RateLimiter(clock=clock),
                    raters=RaterStore(tmp_path / "r.json"))
    app = create_app(lab, options, access=access)
    with uvicorn_thread(app) as url:
        wrong = [{"headers": {"Authorization": "Bearer guess-%d" % i}} for i in range(5)] + \
                [{"params": {"token": "guess-q"}}, {"auth": ("alice", "guess-pw")}] + \
                [{"headers": {"Cookie": "xtts_lab_token=guess-cookie"}}]
        for i in range(10):
            r = httpx.get(f"{url}/health", **wrong[i % len(wrong)])
            assert r.status_code == 401, i
        assert httpx.post(f"{url}/login", data={"username": "alice", "password": "guess-pw"}).status_code == 429
        # Locked out: even the right token is refused (a guesser learns nothing), with Retry-After.
        r = httpx.get(f"{url}/health", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
        assert httpx.get(f"{url}/v1/models", auth=("alice", "wonder")).json()["error"]["code"] == "rate_limit_exceeded"
        # Asking without credentials is no failure and no lockout message: just 401.
        assert httpx.get(f"{url}/health").status_code == 401
        clock.now += 301
        assert httpx.get(f"{url}/health", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert httpx.get(f"{url}/health", auth=("alice", "wonder")).status_code == 200
        for _ in range(11):  # locked again: logged once per client all the same
            httpx.get(f"{url}/health", params={"token": "again"})
    printed = capfd.readouterr().err
    assert printed.count("failed logins or bad keys/tokens") == 1 and "127.0.0.1" in printed
    assert "guess" not in printed and TOKEN not in printed and "wonder" not in printed


def test_behind_a_share_tunnel_each_visitor_is_its_own_client(tmp_path):
    """Every visitor of a share link reaches the server from the tunnel client on this machine
    (127.0.0.1), which appends the visitor's address to X-Forwarded-For. With the lab's uvicorn
    settings (``server_config``) that address is the client the limiter counts, so one guesser
    locks out only itself, and an address it forges in front of the tunnel's gets it no fresh
    count."""
    clock = Clock()
    lab = LabContext.create(EngineConfig(xtts_dir=str(tmp_path / "no-weights")), results=str(tmp_path / "results"))
    options = ServerOptions(share=True, token=TOKEN)
    access = Access(token=TOKEN, limiter=RateLimiter(clock=clock))
    guesser, rater = "203.0.113.5", "198.51.100.7"
    with uvicorn_thread(create_app(lab, options, access=access)) as url:
        for i in range(11):  # the 11th failure locks the guesser out
            forged = f"10.0.0.{i}, {guesser}"  # what it sent, then what the tunnel appended
            httpx.get(f"{url}/health", headers={"X-Forwarded-For": forged, "Authorization": f"Bearer guess-{i}"})
        locked = httpx.get(f"{url}/health", headers={"X-Forwarded-For": guesser, "Authorization": f"Bearer {TOKEN}"})
        assert locked.status_code == 429
        other = httpx.get(f"{url}/health", headers={"X-Forwarded-For": rater, "Authorization": f"Bearer {TOKEN}"})
        assert other.status_code == 200
        assert httpx.get(f"{url}/health", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200  # local
    from components.app.server import server_config

    assert server_config(None, "0.0.0.0", 1).forwarded_allow_ips == "127.0.0.1,::1"  # not FORWARDED_ALLOW_IPS


# -- options, console, --auth -------------------------------------------------------------------


def test_exposed_labs_get_a_token_unless_auth_or_no_auth():
    assert with_token(ServerOptions()).token is None  # loopback: open as before
    assert with_token(ServerOptions(host="::1")).token is None
    shared = with_token(ServerOptions(share=True), environ={})
    assert shared.token and len(shared.token) >= 40
    assert with_token(ServerOptions(share=True), environ={}).token != shared.token  # random each start
    assert with_token(ServerOptions(host="0.0.0.0"), environ={"LAB_TOKEN": TOKEN}).token == TOKEN
    assert with_token(ServerOptions(host="0.0.0.0", auth=(("a", "b"),)), environ={}).token is None
    assert with_token(ServerOptions(share=True, no_auth=True), environ={}).token is None
    # --api-key alone does not open the UI of an exposed lab: it gets a token too.
    assert with_token(ServerOptions(share=True, api_keys=(KEY,)), environ={}).token
    with pytest.raises(LabError, match="LAB_TOKEN") as e:
        with_token(ServerOptions(share=True), environ={"LAB_TOKEN": "short"})
    assert "short" not in str(e.value)
    with pytest.raises(LabError, match="--no-auth"):
        ServerOptions(no_auth=True, auth=(("a", "b"),))
    (warning,) = exposure_warnings(ServerOptions(share=True, no_auth=True))
    assert "nothing asks for a password" in warning


def test_an_exposed_app_without_credentials_is_refused(tmp_path):
    lab = LabContext.create(EngineConfig(xtts_dir=str(tmp_path / "no-weights")), results=str(tmp_path / "results"))
    with pytest.raises(LabError, match="needs credentials"):
        create_app(lab, ServerOptions(host="0.0.0.0"))
    app = create_app(lab, ServerOptions(host="0.0.0.0", no_auth=True))  # on purpose: open
    assert not app.state.access.active


def test_api_key_alone_on_loopback_guards_rest_and_leaves_the_ui_open(tmp_path):
    from components.app.ui.app import build_app

    lab = LabContext.create(EngineConfig(xtts_dir=str(tmp_path / "no-weights")), results=str(tmp_path / "results"))
    with uvicorn_thread(create_app(lab, ServerOptions(api_keys=(KEY,)), ui=build_app(lab))) as url:
        assert httpx.get(f"{url}/config").status_code == 200  # as before: this machine only
        assert httpx.get(f"{url}/health").status_code == 401
        assert httpx.get(f"{url}/v1/models").status_code == 401
        assert httpx.get(f"{url}/health", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200


@pytest.mark.slow
def test_share_without_internet_serves_locally_and_asks_for_the_printed_token(tmp_path):
    """The issue's "done when": ``lab.py --share`` with no way to make a link keeps serving on
    loopback, refuses requests without the token it printed, accepts them with it, and a rater
    link opens its test only."""
    from listen_runs import espeak_run

    results = tmp_path / "results"
    run_id = espeak_run(results)
    env = {"GRADIO_SHARE_SERVER_ADDRESS": "127.0.0.1:9", "HOME": str(tmp_path), "LAB_TOKEN": ""}
    log = tmp_path / "share.log"
    with lab_process(results, "--share", env=env, log=log, ready_status=401) as (proc, url):
        printed = log.read_text()
        (token,) = re.findall(r"\?token=([\w-]+)", printed)
        assert printed.count(token) == 1  # printed once
        assert httpx.get(f"{url}/health").status_code == 401
        assert httpx.get(url + "/", headers=HTML).status_code == 401
        owner = {"Authorization": f"Bearer {token}"}
        health = httpx.get(f"{url}/health", headers=owner).json()
        assert any("anyone on the internet" in w for w in health["warnings"])
        assert token not in json.dumps(health)  # never in a warning or the banner
        r = httpx.post(f"{url}/synthesize_base64", json={"text": "Still here.", "engine": "espeak"},
                       headers=owner, timeout=60)
        assert r.status_code == 200
        with httpx.Client(timeout=30) as browser:  # the printed link in a browser: the UI, with a cookie
            assert browser.get(f"{url}/?token={token}", headers=HTML, follow_redirects=True).status_code == 200
            assert browser.get(f"{url}/config").status_code == 200
        test_id = httpx.post(f"{url}/listen", json={"run_id": run_id, "factor": "variant"}, headers=owner,
                             timeout=60).json()["test_id"]
        rater = httpx.post(f"{url}/listen/{test_id}/raters", headers=owner).json()
        as_rater = {"Authorization": f"Bearer {rater['token']}"}
        assert httpx.get(f"{url}/listen/{test_id}", headers=as_rater).status_code == 200  # its page
        pair = httpx.get(f"{url}/listen/{test_id}/next", params={"rater": "ann"}, headers=as_rater).json()
        assert httpx.get(url + pair["a"], headers=as_rater).status_code == 200  # its clips
        for path in ("/", "/health", "/config", "/v1/models", f"/listen/{test_id}/raters",
                     f"/listen/{test_id}/report"):
            assert httpx.get(url + path, headers=as_rater).status_code == 403, path
        deadline = time.monotonic() + 60
        while "no public link could be made" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.5)
    assert "keeps serving locally" in log.read_text()


def test_auth_users_log_in_on_the_login_page_and_by_basic(tmp_path):
    from components.app.ui.app import build_app

    lab = LabContext.create(EngineConfig(xtts_dir=str(tmp_path / "no-weights")), results=str(tmp_path / "results"))
    app = create_app(lab, ServerOptions(host="0.0.0.0", auth=(("alice", "wonder"),)), ui=build_app(lab))
    with uvicorn_thread(app) as url, httpx.Client(base_url=url, timeout=60) as browser:
        r = browser.get("/", headers=HTML)
        assert r.status_code == 303 and r.headers["location"] == "/login"
        form = browser.get("/login").text
        assert "name='username'" in form and "name='token'" not in form  # no token: --auth is the login
        assert browser.post("/login", data={"username": "alice", "password": "no"}).status_code == 400
        r = browser.post("/login", data={"username": "alice", "password": "wonder"})
        assert r.status_code == 303 and "HttpOnly" in r.headers["set-cookie"]
        assert browser.get("/config").status_code == 200 and browser.get("/health").status_code == 200
        browser.get("/logout")
        assert browser.get("/config").status_code == 401
        assert httpx.get(f"{url}/health", auth=("alice", "wonder")).status_code == 200
        zipped = httpx.post(f"{url}/gradio_api/call/download_run", json={"data": [""]}, auth=("alice", "wonder"))
        assert zipped.status_code == 200


@pytest.mark.slow
def test_no_auth_opens_a_shared_lab_on_purpose_and_says_so_loudly(tmp_path):
    env = {"GRADIO_SHARE_SERVER_ADDRESS": "127.0.0.1:9", "HOME": str(tmp_path), "LAB_TOKEN": ""}
    log = tmp_path / "open.log"
    with lab_process(tmp_path / "results", "--share", "--no-auth", env=env, log=log) as (proc, url):
        health = httpx.get(f"{url}/health").json()  # no credentials asked
        assert any("ANYONE who reaches this lab" in w for w in health["warnings"])  # the UI banner too
        assert httpx.get(url + "/config").status_code == 200
    printed = log.read_text()
    assert "WARNING: --no-auth" in printed and "!!!!!!!!" in printed and "token=" not in printed


def test_no_auth_with_credentials_is_a_one_line_error(tmp_path, capsys):
    from lab import main

    assert main(["--share", "--no-auth", "--auth", "a:b", "--out", str(tmp_path / "r")]) == 2
    assert "--no-auth opens the lab to everyone" in capsys.readouterr().err
