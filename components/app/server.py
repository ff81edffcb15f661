"""Serving: ONE FastAPI app holding the REST API and the Gradio UI (mounted at "/"), run by uvicorn.

Exposure is opt-in: the lab binds 127.0.0.1 unless ``--host`` says otherwise, and makes a public
share link only with ``--share`` (and keeps serving locally when the link cannot be made). An
exposed lab always asks for credentials: ``--auth`` users, or else a random access token printed
once as a ``?token=`` link; only ``--no-auth`` opens it to everyone. One gate
(``components.app.access``) checks every route, UI and REST alike. Request bodies and uploads are capped.
"""

from __future__ import annotations

import argparse
import io
import ipaddress
import json
import secrets
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .context import LabContext
from components.judges import JudgeConfig
from .serving import DEFAULT_JUDGE_BACKLOG
from components.engines.base import LabError

# UI jobs running at once (most of them waiting on an engine lock); from the same pool of 40
# worker threads as the REST requests, so not all of it.
UI_JOBS_AT_ONCE = 8
DEFAULT_MAX_UPLOAD_MB = 50.0  # a 10-minute 16 kHz mono WAV is 19 MB; 30 s of 48 kHz stereo is 6 MB


def _warn(message: str) -> None:
    print(f"lab.py: warning: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class ServerOptions:
    """How the lab is exposed."""

    host: str = "127.0.0.1"                       # address to bind; 127.0.0.1 = this machine only
    port: int = 7860
    share: bool = False                           # also ask Gradio for a temporary public link
    auth: tuple[tuple[str, str], ...] = ()        # (user, password) pairs; empty = no login
    api_keys: tuple[str, ...] = ()                # keys REST clients may send as "Authorization: Bearer KEY"
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB  # cap on an uploaded or base64 reference
    strict_engine: bool = False                   # REST without "engine": 503, never another engine
    token: str | None = None                      # the owner's access token (made by with_token)
    no_auth: bool = False                         # an exposed lab without credentials, on purpose

    def __post_init__(self) -> None:
        if self.no_auth and (self.auth or self.api_keys or self.token):
            raise LabError("--no-auth opens the lab to everyone: it cannot be combined with --auth or --api-key")
        if not (0 < self.max_upload_mb <= 2048):
            raise LabError(f"max_upload_mb must be in (0, 2048], got {self.max_upload_mb!r}")
        if not (0 <= self.port < 65536):
            raise LabError(f"port must be 0-65535, got {self.port!r}")

    @property
    def exposed(self) -> bool:
        """Reachable from other machines: a public link or an address other than loopback."""
        return self.share or not is_loopback(self.host)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    @property
    def max_body_bytes(self) -> int:
        """A JSON body may hold one capped upload as base64 (4/3 larger) plus the other fields."""
        return self.max_upload_bytes * 4 // 3 + 2**20


def parse_auth(value: str | None) -> tuple[tuple[str, str], ...]:
    """``user:pass``, or the path of a file with one ``user:pass`` per line (# comments allowed)."""
    if not value:
        return ()
    path = Path(value)
    if path.is_file():
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
        entries = [ln for ln in lines if ln and not ln.startswith("#")]
        where = f"--auth file {value!r}"
    else:
        entries = [value]
        where = "--auth"
    pairs = []
    for entry in entries:
        user, sep, password = entry.partition(":")
        if not sep or not user or not password:
            # Never echo the entry: it may be a password.
            raise LabError(f"{where}: each entry must be user:password with both parts non-empty")
        pairs.append((user, password))
    if not pairs:
        raise LabError(f"{where} has no user:password line")
    return tuple(pairs)


def parse_api_keys(value: str | None) -> tuple[str, ...]:
    """``KEY``, or the path of a file with one key per line (# comments allowed)."""
    if not value:
        return ()
    path = Path(value)
    if path.is_file():
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
        keys = [ln for ln in lines if ln and not ln.startswith("#")]
        if not keys:
            raise LabError(f"--api-key file {value!r} has no key line")
    else:
        keys = [value.strip()]
    for key in keys:
        # Never echo a key. Keys travel in an HTTP header: printable ASCII without spaces only.
        if len(key) < 8 or not all(33 <= ord(c) < 127 for c in key):
            raise LabError("--api-key: each key must be at least 8 printable ASCII characters without spaces")
    return tuple(keys)


def server_config(app: Any, host: str, port: int, graceful_s: float = 5) -> Any:
    """uvicorn's settings for the lab.

    X-Forwarded-For is trusted from loopback peers only, said here rather than left to uvicorn's
    default (which the FORWARDED_ALLOW_IPS variable can widen to any peer). Behind ``--share``
    every visitor arrives from the tunnel client on this machine, which appends the visitor's
    address to that header; uvicorn makes the rightmost untrusted entry the request's client, so
    the failed-login limiter (``access.RateLimiter``) counts each visitor on its own rather than
    locking every rater out with one guesser (tests/test_access.py).
    """
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=graceful_s,
                          proxy_headers=True, forwarded_allow_ips="127.0.0.1,::1")


def is_loopback(host: str) -> bool:
    """True when ``host`` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def with_token(options: ServerOptions, environ: dict[str, str] | None = None) -> ServerOptions:
    """``options`` with an owner access token when the lab is exposed and has no ``--auth`` (and
    not ``--no-auth``): ``$LAB_TOKEN`` when set (to keep links working across restarts), else a
    random one. A loopback lab, or one with ``--auth``, is returned unchanged."""
    import dataclasses
    import os

    if not options.exposed or options.auth or options.no_auth or options.token:
        return options
    token = (environ if environ is not None else os.environ).get("LAB_TOKEN", "").strip()
    if token and (len(token) < 16 or not all(c.isalnum() or c in "-_.~" for c in token)):
        # Never echo it: it is a secret.
        raise LabError("$LAB_TOKEN must be at least 16 characters of letters, digits, '-', '_', '.' or '~'")
    return dataclasses.replace(options, token=token or secrets.token_urlsafe(32))


def exposure_warnings(options: ServerOptions) -> list[str]:
    """What the console and the UI banner should say about who can reach the lab (never a secret)."""
    out = []
    guarded = bool(options.auth or options.token)
    if not is_loopback(options.host):
        out.append(f"the lab listens on {options.host}: other machines on your network can reach it"
                   + (" (they need the access token or an --auth login)" if guarded else
                      " and nothing asks them for a password (--no-auth)"))
    if options.share:
        out.append("--share: a public link lets anyone on the internet who has it reach the lab"
                   + (" (they need the access token or an --auth login)" if guarded else
                      " and use every tab, voice and result: nothing asks for a password (--no-auth)"))
    return out


class BodySizeLimit:
    """ASGI middleware: refuse bodies over ``max_bytes`` with 413 before they reach any route.

    Checks Content-Length up front, and counts the bytes of bodies sent without one: past the
    cap the app is told the client left, and whatever it answers is replaced by the 413.
    """

    def __init__(self, app: Any, max_bytes: int, upload_bytes: int | None = None):
        self.app = app
        self.max_bytes = max_bytes
        self.upload_bytes = upload_bytes  # the upload cap the body cap derives from, for the message

    def message(self, size: int | None) -> str:
        """``request body is 76.8 MB; the limit is 67.7 MB (a 50 MB upload as base64, plus 1 MB)``."""
        from .api import megabytes

        why = ""
        if self.upload_bytes:
            why = (f" (the upload cap, --max-upload-mb, is {megabytes(self.upload_bytes)}: as base64 that is "
                   f"{megabytes(self.upload_bytes * 4 // 3)}, plus 1 MB for the other fields)")
        if size:
            return f"request body is {megabytes(size)}; the limit is {megabytes(self.max_bytes)}{why}"
        return f"request body is over the limit of {megabytes(self.max_bytes)}{why}"

    async def _refuse(self, send: Callable, size: int | None = None, path: str = "") -> None:
        if path.startswith("/v1/"):  # the OpenAI-compatible routes answer in OpenAI's error shape
            body = json.dumps({"error": {"message": self.message(size), "type": "invalid_request_error",
                                         "param": None, "code": "request_too_large"}}).encode()
        else:
            body = json.dumps({"detail": self.message(size)}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = False  # the server rejects a malformed length itself
                if too_big:
                    return await self._refuse(send, int(value), scope.get("path", ""))
        received = 0
        over = False
        refused = False

        async def counted_receive() -> dict:
            nonlocal received, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    over = True  # stop reading: the rest of the body is never buffered
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: dict) -> None:
            nonlocal refused
            if not over:
                await send(message)
            elif not refused:
                refused = True
                await self._refuse(send, path=scope.get("path", ""))

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not over:
                raise
        if over and not refused:
            await self._refuse(send, path=scope.get("path", ""))


def create_app(lab: LabContext, options: ServerOptions = ServerOptions(), ui: Any = None, access: Any = None):
    """The one ASGI app: REST routes, their OpenAPI schema and docs, then the Gradio ``ui`` at "/",
    all behind the access gate (``app.state.access``).

    ``ui`` is a ``gr.Blocks`` (``components.app.ui.app.build_app(lab)``); None serves the REST API only.
    ``access`` (a ``components.app.access.Access``) defaults to the one ``options`` describe.
    """
    from fastapi import FastAPI
    from fastapi.openapi.docs import get_swagger_ui_html
    from starlette.routing import Match, Mount

    from experiments.listen.store import ListenTests

    from . import listen_api, openai_api
    from .access import AccessGate, install_rater_routes, make_access
    from .api import Admission, install_error_handlers, router

    if options.exposed and not (options.auth or options.token or options.no_auth):
        raise LabError("an exposed lab (--share or a host other than loopback) needs credentials: "
                       "--auth, a token (server.with_token) or, on purpose, --no-auth")
    # One gate checks every route (UI, Gradio API and files, REST, /v1, listening tests); the
    # routes themselves carry no guard.
    access = access or make_access(options, lab.store.root)
    # The default schema/docs routes are replaced by ours below (the gate covers them like the rest).
    app = FastAPI(title="XTTS Lab", version="0.1.0", openapi_url=None, docs_url=None, redoc_url=None,
                  description="Local text-to-speech experiment lab. The web UI is served at /.")
    install_error_handlers(app)
    admission = Admission()  # one queue bound per engine, whichever REST surface a request came in by
    app.include_router(router(lab, max_upload_bytes=options.max_upload_bytes,
                              admission=admission, strict_engine=options.strict_engine))
    openai_api.install(app, lab, credentials=None, max_upload_bytes=options.max_upload_bytes,
                       admission=admission)
    app.include_router(listen_api.router(lab))  # blind listening tests and their rater page
    install_rater_routes(app, access)
    # A rater link works while its test is open (closed or removed tests end every link).
    access.test_is_open = ListenTests(lab.store.root).is_open
    app.state.access = access

    @app.get("/openapi.json", include_in_schema=False)
    def openapi_schema() -> dict:
        return app.openapi()

    @app.get("/docs", include_in_schema=False)
    def docs():
        return get_swagger_ui_html(openapi_url="/openapi.json", title="XTTS Lab API")

    app.add_middleware(BodySizeLimit, max_bytes=options.max_body_bytes, upload_bytes=options.max_upload_bytes)

    def is_rest(scope: dict) -> bool:  # the lab's own routes, as opposed to the Gradio UI mounted at "/"
        return any(r.matches(scope)[0] != Match.NONE for r in app.router.routes if not isinstance(r, Mount))

    app.add_middleware(AccessGate, access=access, is_rest=is_rest)  # outermost: refuses before any body is read
    if ui is not None:
        import gradio as gr

        # Per-engine locks (Engines.use) are the real queue: jobs for one engine wait there while
        # jobs for another engine run. gradio's limit only caps how many UI jobs hold a worker
        # thread at once (one would make every user wait for every other, whatever the engine).
        ui.queue(default_concurrency_limit=UI_JOBS_AT_ONCE, max_size=64)
        gr.mount_gradio_app(
            app, ui, path="/", server_name=options.host, server_port=options.port,
            auth=None,  # the access gate asks for credentials (its /login page for --auth users)
            max_file_size=options.max_upload_bytes, show_error=True, mcp_server=False,
            footer_links=["api", "settings"],
        )
    return app


def start_share_link(lab: LabContext, options: ServerOptions, ready: threading.Event) -> threading.Thread:
    """Ask Gradio's share server for a public link once serving; on failure keep serving locally.

    Without a network this fails (in seconds); the reason goes to the console and the UI banner.
    """

    def work() -> None:
        from gradio import networking

        ready.wait()
        host = "127.0.0.1" if options.host in ("0.0.0.0", "::") else options.host
        try:
            url = networking.setup_tunnel(host, options.port, secrets.token_urlsafe(32), None, None)
        except Exception as e:  # noqa: BLE001 - any failure means "no link", never "no lab"
            cause = f"{e}" + (f" ({e.__cause__})" if e.__cause__ else "")
            message = (f"--share: no public link could be made: {cause}. The lab keeps serving "
                       f"locally on http://{host}:{options.port}")
            lab.warnings.append(message)
            _warn(message)
            return
        url = url.replace("http://", "https://", 1)
        lab.warnings.append(f"public share link: {url}")
        how = ("; open it with the ?token= of the access link above" if options.token else
               "; log in with an --auth user" if options.auth else "")
        print(f"* Public URL (temporary): {url}{how}", file=sys.stderr, flush=True)

    thread = threading.Thread(target=work, name="share-link", daemon=True)
    thread.start()
    return thread


def serve(args: argparse.Namespace) -> int:
    """Build the lab, start loading the default engine in the background, serve until stopped."""
    import uvicorn

    from experiments.cli import engine_config

    try:
        options = ServerOptions(host=args.host, port=args.port, share=args.share, auth=parse_auth(args.auth),
                                api_keys=parse_api_keys(getattr(args, "api_key", None)),
                                max_upload_mb=getattr(args, "max_upload_mb", None) or DEFAULT_MAX_UPLOAD_MB,
                                strict_engine=bool(getattr(args, "strict_engine", False)),
                                no_auth=bool(getattr(args, "no_auth", False)))
        options = with_token(options)
        backlog = getattr(args, "judge_backlog", None)
        if backlog is not None and backlog < 0:
            raise LabError(f"--judge-backlog must be 0 or more rows, got {backlog}")
        lab = LabContext.create(engine_config(args), results=args.out, voices=getattr(args, "voices_dir", None),
                                judge_choice=getattr(args, "judges", None),
                                judges=JudgeConfig(asr_model=getattr(args, "asr_model", None)),
                                judge_backlog=DEFAULT_JUDGE_BACKLOG if backlog is None else backlog)
    except (LabError, OSError) as e:
        print(f"lab.py: error: {e}", file=sys.stderr)
        return 2
    for warning in exposure_warnings(options):
        lab.warnings.append(warning)
        _warn(warning)
    if options.no_auth and options.exposed:
        loud = ("--no-auth: ANYONE who reaches this lab can use every tab, speak with your saved voices "
                "(recordings of real people), read, download and delete every result")
        lab.warnings.append(loud)
        print("!" * 78 + f"\nlab.py: WARNING: {loud}.\n" + "!" * 78, file=sys.stderr, flush=True)
    default = lab.engines.default()
    lab.engines.preload(default)  # the page is usable while the model loads
    threading.Thread(target=warm_up_outputs, name="warm-up", daemon=True).start()

    from .ui.app import build_app

    app = create_app(lab, options, ui=build_app(lab))
    server = uvicorn.Server(server_config(app, options.host, options.port))
    if options.share:
        ready = threading.Event()
        start_share_link(lab, options, ready)
        threading.Thread(target=_set_when_started, args=(server, ready), daemon=True).start()
    shown = f"[{options.host}]" if ":" in options.host else options.host
    if options.token:  # printed once, here only: never in a warning, /health or the UI banner
        local = "127.0.0.1" if options.host in ("0.0.0.0", "::") else shown
        print(f"* Access link (the token opens the whole lab; give it only to people who may use everything):\n"
              f"    http://{local}:{options.port}/?token={options.token}", file=sys.stderr, flush=True)
    print(f"* XTTS Lab on http://{shown}:{options.port}  (REST: POST /synthesize_base64, GET /health, "
          f"OpenAI-compatible /v1/audio/speech, docs at /docs; engine {default})", file=sys.stderr, flush=True)
    server.run()
    return 0 if server.started else 1


def warm_up_outputs() -> None:
    """Draw and measure a tiny clip once, in the background while the page comes up: the first
    synthesis then does not pay for importing pyplot, building matplotlib's font cache (seconds
    in a new environment) or the metrics' first call. Failures are ignored: the request path
    does the same work and reports its own errors."""
    try:
        import numpy as np

        from components.store import plots
        from components.core.metrics import signal_metrics

        clip = (0.1 * np.sin(np.linspace(0, 2 * np.pi * 150, 16000))).astype(np.float32)
        signal_metrics(clip, 16000, "warm up", "en")
        for draw in (plots.waveform, plots.spectrogram):
            fig = draw(clip, 16000)
            fig.savefig(io.BytesIO(), format="png")
            plots.close(fig)
    except Exception:  # noqa: BLE001 - a warm-up must never stop the lab
        pass


def _set_when_started(server: Any, ready: threading.Event, limit_s: float = 120.0) -> None:
    deadline = time.monotonic() + limit_s
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.1)
    ready.set()
