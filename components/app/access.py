"""Who may reach what: one gate (an ASGI middleware) in front of every route of the lab.

Credentials (see docs/sharing.md for the table):

- ``--auth`` users: the owner. HTTP Basic on any route, or the login page (``/login``), which
  leaves an HttpOnly session cookie for the browser UI.
- ``--api-key`` keys: the owner, by ``Authorization: Bearer KEY`` only (never in a URL).
- the access token: the owner. Made at random (``secrets.token_urlsafe``) when the lab is
  exposed (``--share`` or a host other than loopback) and no ``--auth`` is given; printed once as
  ``http://HOST:PORT/?token=...``. Accepted as ``?token=`` on any page (the answer then sets an
  HttpOnly cookie, so Gradio's own XHR/SSE/file requests pass), as ``Authorization: Bearer``, or
  as that cookie.
- rater tokens: one listening test each (``/listen/{test_id}``, ``.../next``, ``.../vote``,
  ``.../clip/...``) while the test is open and the token is not revoked; nothing else.

Wrong credentials count against the client: ``FAILURES_PER_WINDOW`` in ``WINDOW_S`` and the
client gets 429 for ``LOCKOUT_S``. Each client is logged once, by address, never with the secret.

Nothing here imports gradio; the gate only looks at paths, headers and cookies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import html
import json
import os
import re
import secrets
import sys
import threading
import time
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qsl, quote, urlencode

from fastapi import HTTPException, Request  # module level: FastAPI resolves the routes' annotations here

OWNER_COOKIE = "xtts_lab_token"        # the owner's token or login session (path /)
RATER_COOKIE = "xtts_lab_rater"        # a rater's token (path /listen/{test_id} only)
FAILURES_PER_WINDOW = 10
WINDOW_S = 60.0
LOCKOUT_S = 300.0
TEST_ID = r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}"   # never "." or "..": a test id names a folder
# What a rater may reach: the test's page, its next/vote routes and its clips. Not raters,
# report, close or anything else under /listen/{test_id}.
RATER_PATH = re.compile(rf"^/listen/(?P<test>{TEST_ID})(?:/|/next/?|/vote/?|/clip/[^?#]+)?$")
RATERS_FILE = Path(".access") / "raters.json"  # under the results folder


def _log(message: str) -> None:
    print(f"lab.py: {message}", file=sys.stderr, flush=True)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# -- listening tests: is one open? -------------------------------------------------------------


def folder_test_is_open(results_root: str | os.PathLike) -> Callable[[str], bool]:
    """The default ``test_is_open``: ``results/listen/<test_id>/`` exists and holds no ``closed``
    marker. (The listening-test feature replaces it with its own check.)"""
    root = Path(results_root) / "listen"

    def test_is_open(test_id: str) -> bool:
        if not re.fullmatch(TEST_ID, test_id or ""):
            return False
        folder = root / test_id
        return folder.is_dir() and not (folder / "closed").exists()

    return test_is_open


# -- rater tokens ------------------------------------------------------------------------------


class RaterStore:
    """Rater links, persisted in ``results/.access/raters.json`` so they survive a restart.

    Only a SHA-256 of each token is stored: the file never holds a working secret. Each link has a
    short id the owner uses to revoke it without keeping the token.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._raters: dict[str, dict[str, Any]] = {}  # digest -> {"id", "test_id", "created", "revoked"}
        if self.path.exists():
            try:
                self._raters = json.loads(self.path.read_text(encoding="utf-8"))["raters"]
            except (OSError, ValueError, KeyError, TypeError) as e:
                # Refusing every rater is the safe reading of a damaged file; the owner can make new links.
                _log(f"warning: {self.path} cannot be read ({e}); no rater link works until new ones are made")
                self._raters = {}

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"raters": self._raters}, indent=1), encoding="utf-8")
        os.replace(tmp, self.path)  # a crash leaves the old file or the new one, never half of one

    def create(self, test_id: str) -> tuple[str, str]:
        """A new rater link for ``test_id``: (id, token). The token is returned once and not stored."""
        token = secrets.token_urlsafe(24)
        rater_id = "r-" + secrets.token_hex(4)
        with self._lock:
            self._raters[_digest(token)] = {"id": rater_id, "test_id": test_id, "revoked": False,
                                            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            self._save()
        return rater_id, token

    def find(self, token: str) -> dict[str, Any] | None:
        """The live (not revoked) rater entry of ``token``, or None."""
        entry = self.lookup(token)
        return entry if entry and not entry["revoked"] else None

    def lookup(self, token: str) -> dict[str, Any] | None:
        """The entry of ``token``, revoked or not, or None."""
        return self._raters.get(_digest(token))

    def list(self, test_id: str) -> list[dict[str, Any]]:
        """The links of ``test_id`` (ids, never tokens)."""
        with self._lock:
            return [dict(e) for e in self._raters.values() if e["test_id"] == test_id]

    def revoke(self, test_id: str, token_or_id: str) -> dict[str, Any] | None:
        """Revoke a link of ``test_id`` named by its id or its token; None if there is none."""
        with self._lock:
            for digest, entry in self._raters.items():
                if entry["test_id"] == test_id and (entry["id"] == token_or_id or digest == _digest(token_or_id)):
                    entry["revoked"] = True
                    self._save()
                    return dict(entry)
        return None


# -- failures per client -----------------------------------------------------------------------


class RateLimiter:
    """``limit`` failures within ``window_s`` lock a client out for ``lockout_s``. ``clock`` is
    injectable so tests never sleep."""

    def __init__(self, limit: int = FAILURES_PER_WINDOW, window_s: float = WINDOW_S,
                 lockout_s: float = LOCKOUT_S, clock: Callable[[], float] = time.monotonic):
        self.limit, self.window_s, self.lockout_s, self.clock = limit, window_s, lockout_s, clock
        self._lock = threading.Lock()
        self._failures: dict[str, list[float]] = {}
        self._locked_until: dict[str, float] = {}
        self._logged: set[str] = set()

    def retry_after(self, client: str) -> float:
        """Seconds ``client`` must still wait (0 when it is not locked out)."""
        with self._lock:
            return max(0.0, self._locked_until.get(client, 0.0) - self.clock())

    def fail(self, client: str) -> bool:
        """Count one failure; True when this one (the ``limit + 1``-th within the window) locks
        the client out."""
        now = self.clock()
        with self._lock:
            recent = [t for t in self._failures.get(client, []) if now - t < self.window_s] + [now]
            if len(recent) <= self.limit:  # the first `limit` failures are answered 401
                self._failures[client] = recent
                return False
            self._failures.pop(client, None)
            self._locked_until[client] = now + self.lockout_s
            first = client not in self._logged
            self._logged.add(client)
        if first:  # once per client: a flood must not flood the console too
            _log(f"warning: {self.limit} failed logins or bad keys/tokens within {self.window_s:.0f} s from "
                 f"{client}; it gets 429 for {self.lockout_s:.0f} s (logged once per client)")
        return True


# -- who is asking ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Who:
    """The outcome of reading a request's credentials."""

    role: str | None = None          # "owner", "rater" or None (nobody)
    test_id: str | None = None       # a rater's test
    presented: bool = False          # the request carried a credential at all
    bad: bool = False                # ...and it was wrong
    via: str = ""                    # "query", "header" or "cookie"
    secret: str = ""                 # the credential to keep as a cookie (query tokens and logins)
    revoked: bool = False            # a real rater link, revoked: refused, but no guess to count


@dataclass
class Access:
    """The credentials table of one server and the state behind it (sessions, raters, limiter)."""

    pairs: tuple[tuple[str, str], ...] = ()   # --auth users
    keys: tuple[str, ...] = ()                # --api-key keys (Bearer header only)
    token: str | None = None                  # the generated (or LAB_TOKEN) owner token
    raters: RaterStore | None = None
    test_is_open: Callable[[str], bool] = lambda test_id: False
    limiter: RateLimiter = field(default_factory=RateLimiter)
    sessions: dict[str, str] = field(default_factory=dict)  # login cookie -> user

    @property
    def active(self) -> bool:
        """Any credential configured: the gate checks requests (else the lab is open)."""
        return bool(self.pairs or self.keys or self.token)

    @property
    def ui_open(self) -> bool:
        """Only --api-key on a loopback lab: keys guard REST and /v1, the UI stays open (as before
        the gate existed). An exposed lab always has a token or --auth, so this is never true there."""
        return not (self.pairs or self.token)

    def owner_secret(self, secret: str) -> bool:
        """The token or a login session (what ``?token=`` or the owner cookie may hold)."""
        ok = bool(self.token) and secrets.compare_digest(secret.encode(), (self.token or "").encode())
        return ok or secret in self.sessions

    def _bearer(self, value: str) -> bool:
        ok = False
        for key in self.keys + ((self.token,) if self.token else ()):
            ok |= secrets.compare_digest(value.encode(), key.encode())  # no early exit: timing says nothing
        return ok

    def check_password(self, user: str, password: str) -> bool:
        ok = False
        for u, p in self.pairs:
            ok |= secrets.compare_digest(user.encode(), u.encode()) & secrets.compare_digest(password.encode(), p.encode())
        return ok

    def _rater(self, secret: str, via: str) -> Who | None:
        entry = self.raters.lookup(secret) if self.raters else None
        if entry is None:
            return None
        if entry["revoked"]:
            return Who(test_id=entry["test_id"], presented=True, via=via, revoked=True)
        return Who("rater", entry["test_id"], presented=True, via=via, secret=secret)

    def identify(self, query_token: str | None, authorization: str | None, cookies: dict[str, str]) -> Who:
        """Who a request is. An explicit credential (``?token=``, then the Authorization header)
        is judged alone; cookies only when there is none."""
        if query_token is not None:
            if self.token and secrets.compare_digest(query_token.encode(), self.token.encode()):
                return Who("owner", presented=True, via="query", secret=query_token)
            return self._rater(query_token, "query") or Who(presented=True, bad=True, via="query")
        if authorization:
            scheme, _, value = authorization.strip().partition(" ")
            value = value.strip()
            if scheme.lower() == "bearer" and value:
                if self._bearer(value):
                    return Who("owner", presented=True, via="header")
                rater = self._rater(value, "header")
                if rater:
                    return rater
            elif scheme.lower() == "basic" and value:
                try:
                    user, sep, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
                except (binascii.Error, ValueError):
                    sep = ""
                if sep and self.check_password(user, password):
                    return Who("owner", presented=True, via="header")
            return Who(presented=True, bad=True, via="header")
        owner, rater = cookies.get(OWNER_COOKIE), cookies.get(RATER_COOKIE)
        if owner and self.owner_secret(owner):
            return Who("owner", presented=True, via="cookie")
        found = self._rater(rater, "cookie") if rater else None
        if found:
            return found
        if owner or rater:
            return Who(presented=True, bad=True, via="cookie")
        return Who()

    def how(self) -> str:
        """How to authenticate, in words (for 401 messages)."""
        ways = (["HTTP Basic with an --auth user:password, or the login page /login"] if self.pairs else []) + \
            (["'Authorization: Bearer KEY' with an --api-key key"] if self.keys else []) + \
            (["the access link printed in the console (?token=..., or 'Authorization: Bearer TOKEN')"]
             if self.token else [])
        return " or ".join(ways)

    def challenge(self) -> str:
        return ", ".join((['Basic realm="XTTS Lab"'] if self.pairs else []) + ['Bearer realm="XTTS Lab"'])


# -- the gate ---------------------------------------------------------------------------------


def _headers(scope: dict) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _cookies(header: str | None) -> dict[str, str]:
    jar = SimpleCookie()
    try:
        jar.load(header or "")
    except Exception:  # noqa: BLE001 - a malformed Cookie header is no credential
        return {}
    return {k: m.value for k, m in jar.items()}


def _cookie(name: str, value: str, path: str = "/", max_age: int | None = None) -> tuple[bytes, bytes]:
    parts = [f"{name}={value}", f"Path={quote(path)}", "HttpOnly", "SameSite=Lax"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    return b"set-cookie", "; ".join(parts).encode("latin-1")


async def _send(send: Callable, status: int, body: bytes, content_type: str,
                headers: list[tuple[bytes, bytes]] = ()) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode()),
                            (b"cache-control", b"no-store"), *headers]})
    await send({"type": "http.response.body", "body": body})


def _page(title: str, body: str) -> bytes:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            "<style>body{font-family:system-ui,sans-serif;max-width:34em;margin:4em auto;padding:0 1em;color:#222}"
            "input{display:block;width:100%;margin:.3em 0 1em;padding:.5em;font-size:1em;box-sizing:border-box}"
            "button{padding:.5em 1.5em;font-size:1em}.error{color:#b00020}</style></head>"
            f"<body><h1>{html.escape(title)}</h1>{body}</body></html>").encode()


class AccessGate:
    """ASGI middleware: every HTTP and websocket request passes :class:`Access` or is refused
    (401 without or with wrong credentials, 403 for a rater outside its test, 429 when locked out).

    ``is_rest(scope)`` says whether a path is one of the lab's own REST routes (rather than the
    Gradio UI); it only matters for a loopback lab guarded by ``--api-key`` alone.
    """

    def __init__(self, app: Any, access: Access, is_rest: Callable[[dict], bool] = lambda scope: True):
        self.app = app
        self.access = access
        self.is_rest = is_rest

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] not in ("http", "websocket") or not self.access.active:
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        headers = _headers(scope)
        client = (scope.get("client") or ("unknown",))[0]
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        query_token = next((v for k, v in query if k == "token"), None)
        if scope["type"] == "http" and path in ("/login", "/logout"):
            return await self._login(scope, receive, send, client, headers)
        who = self.access.identify(query_token, headers.get("authorization"), _cookies(headers.get("cookie")))
        wait = self.access.limiter.retry_after(client) if who.presented else 0.0
        if wait:
            return await self._refuse(scope, send, 429, f"too many failed logins from this client: try again in "
                                      f"{wait:.0f} s", [(b"retry-after", str(int(wait) + 1).encode())])
        if who.revoked:  # not a guess: a link its owner revoked (its browser may still send it for a while)
            clear = [_cookie(RATER_COOKIE, "", path=f"/listen/{who.test_id}", max_age=0)] if who.via == "cookie" else []
            return await self._refuse(scope, send, 401, "this rater link was revoked: ask the lab's owner for a new one",
                                      clear)
        if who.bad:
            locked = self.access.limiter.fail(client)
            clear = []
            if who.via == "cookie":  # forget it, or the browser sends it again with every request
                clear = [_cookie(OWNER_COOKIE, "", max_age=0)]
                here = RATER_PATH.match(path)
                if here:
                    clear.append(_cookie(RATER_COOKIE, "", path=f"/listen/{here['test']}", max_age=0))
            if locked:
                return await self._refuse(scope, send, 429, "too many failed logins from this client: try again in "
                                          f"{self.access.limiter.lockout_s:.0f} s", clear)
            return await self._refuse(scope, send, 401, f"wrong credentials: authenticate with {self.access.how()}",
                                      clear + [(b"www-authenticate", self.access.challenge().encode())])
        rater_path = RATER_PATH.match(path)
        if who.role == "owner":
            allowed = True
        elif who.role == "rater":
            # No dot segments: nothing under the test's paths may name something outside them.
            if not (rater_path and rater_path["test"] == who.test_id) or {".", ".."} & set(path.split("/")):
                return await self._refuse(scope, send, 403, f"this rater link opens the listening test "
                                          f"{who.test_id!r} only, at /listen/{who.test_id}")
            if not self.access.test_is_open(who.test_id):
                return await self._refuse(scope, send, 403, f"the listening test {who.test_id!r} is closed: "
                                          "its rater links no longer work")
            allowed = True
        else:
            allowed = self.access.ui_open and not self.is_rest(scope)
        if not allowed:
            if (scope["type"] == "http" and scope.get("method") == "GET" and self.access.pairs
                    and "text/html" in headers.get("accept", "") and not path.startswith("/listen/")):
                return await _send(send, 303, b"", "text/plain", [(b"location", b"/login")])
            return await self._refuse(scope, send, 401, f"authentication required: {self.access.how()}",
                                      [(b"www-authenticate", self.access.challenge().encode())])
        if who.via != "query":
            return await self.app(scope, receive, send)
        # A ?token= link: keep it as a cookie (Gradio's own requests and the rater page's fetches
        # carry no query), and move a browser off the URL that holds the token.
        if who.role == "owner":
            cookie = _cookie(OWNER_COOKIE, who.secret)
        else:
            cookie = _cookie(RATER_COOKIE, who.secret, path=f"/listen/{who.test_id}")
        if scope["type"] == "http" and scope.get("method") == "GET" and "text/html" in headers.get("accept", ""):
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            location = quote(path) + (f"?{rest}" if rest else "")
            return await _send(send, 303, b"", "text/plain", [(b"location", location.encode("latin-1")), cookie])

        async def with_cookie(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), cookie]}
            await send(message)

        await self.app(scope, receive, with_cookie if scope["type"] == "http" else send)

    async def _refuse(self, scope: dict, send: Callable, status: int, message: str,
                      headers: list[tuple[bytes, bytes]] = ()) -> None:
        if scope["type"] == "websocket":
            # Closing before accept makes the server answer the handshake with 403.
            return await send({"type": "websocket.close", "code": 1008})
        path = scope.get("path", "")
        accept = _headers(scope).get("accept", "")
        if path.startswith("/v1/"):  # OpenAI clients read their own error shape
            code = {401: "invalid_api_key", 403: "forbidden", 429: "rate_limit_exceeded"}.get(status)
            body = json.dumps({"error": {"message": message, "type": "invalid_request_error", "param": None,
                                         "code": code}}).encode()
            return await _send(send, status, body, "application/json", list(headers))
        if scope.get("method") == "GET" and "text/html" in accept:
            extra = "<p><a href='/login'>Log in</a></p>" if status == 401 else ""  # (the form takes the token too)
            return await _send(send, status, _page("XTTS Lab", f"<p>{html.escape(message)}</p>{extra}"),
                               "text/html; charset=utf-8", list(headers))
        await _send(send, status, json.dumps({"detail": message}).encode(), "application/json", list(headers))

    async def _login(self, scope: dict, receive: Callable, send: Callable, client: str,
                     headers: dict[str, str]) -> None:
        """``GET /login``: the form; ``POST /login``: user + password (or token) -> session cookie;
        ``/logout``: forget the session."""
        access = self.access
        if scope["path"] == "/logout":
            secret = _cookies(headers.get("cookie")).get(OWNER_COOKIE, "")
            access.sessions.pop(secret, None)
            return await _send(send, 303, b"", "text/plain", [(b"location", b"/login"), _cookie(OWNER_COOKIE, "", max_age=0)])
        if scope.get("method") != "POST":
            return await _send(send, 200, self._login_form(""), "text/html; charset=utf-8")
        wait = access.limiter.retry_after(client)
        if wait:
            return await _send(send, 429, self._login_form(f"Too many failed logins: try again in {wait:.0f} s."),
                               "text/html; charset=utf-8", [(b"retry-after", str(int(wait) + 1).encode())])
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > 65536:
                return await _send(send, 413, self._login_form("The form is too large."), "text/html; charset=utf-8")
            if not message.get("more_body"):
                break
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        token = form.get("token", "")
        if token and access.token and secrets.compare_digest(token.encode(), access.token.encode()):
            secret = access.token
        elif access.pairs and access.check_password(form.get("username", ""), form.get("password", "")):
            secret = secrets.token_urlsafe(32)
            access.sessions[secret] = form.get("username", "")
        else:
            status = 429 if access.limiter.fail(client) else 400
            return await _send(send, status, self._login_form("Wrong user name, password or token."),
                               "text/html; charset=utf-8")
        return await _send(send, 303, b"", "text/plain", [(b"location", b"/"), _cookie(OWNER_COOKIE, secret)])

    def _login_form(self, error: str) -> bytes:
        fields = ""
        if self.access.pairs:
            fields += ("<label>User name<input name='username' autocomplete='username'></label>"
                       "<label>Password<input name='password' type='password' autocomplete='current-password'></label>")
        if self.access.token:
            fields += ("<label>Access token (the <code>token=</code> of the link printed in the console)"
                       "<input name='token' type='password' autocomplete='off'></label>")
        if not fields:
            fields = "<p>This lab is reached with an API key (<code>Authorization: Bearer</code>), not a login.</p>"
        message = f"<p class='error'>{html.escape(error)}</p>" if error else ""
        return _page("XTTS Lab: log in", f"{message}<form method='post' action='/login'>{fields}"
                                         "<button type='submit'>Log in</button></form>")


# -- owner routes: rater links ------------------------------------------------------------------


def install_rater_routes(app: Any, access: Access) -> None:
    """``POST /listen/{test_id}/raters`` -> ``{"url", "token", "id"}``; ``GET`` lists the links
    (ids only); ``DELETE /listen/{test_id}/raters/{token_or_id}`` revokes one. Owner only (the
    gate lets no rater reach them)."""
    def open_test(test_id: str) -> None:
        if not re.fullmatch(TEST_ID, test_id) or not access.test_is_open(test_id):
            raise HTTPException(404, detail=f"no open listening test {test_id!r}")

    @app.post("/listen/{test_id}/raters", tags=["listen"])
    def new_rater(test_id: str, request: Request) -> dict[str, str]:
        """A new rater link for one open listening test. The token is shown here only."""
        open_test(test_id)
        if access.raters is None:
            raise HTTPException(503, detail="rater links need a results folder")
        rater_id, token = access.raters.create(test_id)
        base = str(request.base_url).rstrip("/")
        return {"url": f"{base}/listen/{test_id}?token={token}", "token": token, "id": rater_id}

    @app.get("/listen/{test_id}/raters", tags=["listen"])
    def list_raters(test_id: str) -> dict[str, Any]:
        """The rater links of a test: id, created, revoked (never the tokens)."""
        return {"raters": access.raters.list(test_id) if access.raters else []}

    @app.delete("/listen/{test_id}/raters/{token_or_id}", tags=["listen"])
    def revoke_rater(test_id: str, token_or_id: str) -> dict[str, Any]:
        """Revoke a rater link by its id (or its token); it stops working at once."""
        entry = access.raters.revoke(test_id, token_or_id) if access.raters else None
        if entry is None:
            raise HTTPException(404, detail=f"test {test_id!r} has no rater link {token_or_id[:8]!r}...")
        return {**entry, "revoked": True}


def make_access(options: Any, results_root: str | os.PathLike | None,
                test_is_open: Callable[[str], bool] | None = None,
                limiter: RateLimiter | None = None) -> Access:
    """The :class:`Access` of a server's ``options`` (``server.ServerOptions``)."""
    raters = RaterStore(Path(results_root) / RATERS_FILE) if results_root is not None else None
    return Access(pairs=tuple(options.auth), keys=tuple(options.api_keys), token=options.token, raters=raters,
                  test_is_open=test_is_open or (folder_test_is_open(results_root) if results_root is not None
                                                else (lambda test_id: False)),
                  limiter=limiter or RateLimiter())
