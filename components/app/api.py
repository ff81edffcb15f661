"""The REST API, served by the same process as the UI.

``POST /synthesize_base64`` keeps clients of the original XTTS API server working: JSON in
(text, language, speed, optional base64 reference), a base64 WAV out. Every REST synthesis is
logged as one CSV row of the server session's run (``components.app.serving``: one run per server
process, shared with ``/v1``), judged in the background within the judging backlog cap.
``GET /health`` reports each engine's status. Errors the user can fix are 4xx JSON
``{"detail": message}``; an engine that cannot run here is 503.

Nothing here holds state at module level: the routes are closures over the ``LabContext``.
"""

from __future__ import annotations

import base64
import binascii
import re
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Optional, Sequence

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from experiments.specs import MAX_TEXT_CHARS  # one limit for REST, UI and CLI

from .context import LabContext
from components.engines import LEGACY_CLIENT_ENGINE, REGISTRY, lab_languages
from components.engines import check_overrides
from components.store.voices import resolve_speaker
from components.engines.base import (
    SPEED_MAX, SPEED_MIN, CapabilityError, EngineUnavailable, LabError, check_language,
)

# REST requests waiting for (or using) one engine before new ones get 503. Each waits in a worker
# thread, and the UI's jobs draw on the same pool of 40 threads: a flood must not starve them.
MAX_QUEUED_PER_ENGINE = 12
VALIDATION_SR = 16000       # Hz; the rate references are checked at (cheap, any rate would do)
ENGINE_HEADER = "X-Lab-Engine"  # on every synthesis response: the engine that answered

# Control characters other than tab/newline/carriage return: a NUL silently truncates the text
# inside espeak (C strings) and the others are never meant to be spoken.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_DATA_URL = re.compile(r"^data:[^,]{0,200};base64,", re.IGNORECASE)


class SynthesizeRequest(BaseModel):
    """One synthesis, as the XTTS API server took it (plus ``engine``, ``speaker`` and ``seed``)."""

    model_config = ConfigDict(extra="ignore")  # old clients send fields we do not use

    # The limits are checked by ``_text`` (with the lab's own messages) and documented here.
    text: str = Field(description=f"what to say; 1 to {MAX_TEXT_CHARS} characters, not only whitespace",
                      json_schema_extra={"minLength": 1, "maxLength": MAX_TEXT_CHARS, "pattern": r"\S"})
    lang: Literal[lab_languages()] = Field(  # type: ignore[valid-type]
        "en", description="language code: any an engine speaks; the chosen engine refuses others (400)")
    speed: float = Field(1.0, ge=SPEED_MIN, le=SPEED_MAX, description="1.0 = natural rate; 2.0 = twice as fast")
    speaker_wav_b64: Optional[str] = Field(
        None, description="a reference recording to clone (WAV, FLAC, OGG or MP3 file), base64; "
                          "a data: URL prefix is accepted. Engines that cannot clone refuse it (400).")
    speaker: Optional[str] = Field(None, max_length=100, description="a built-in voice of the engine, or a saved "
                                   "voice (voice:NAME, or NAME when no built-in voice has that name)")
    engine: Optional[Literal[tuple(REGISTRY)]] = Field(  # type: ignore[valid-type]
        None, description=f"engine name; when left out, {LEGACY_CLIENT_ENGINE} answers (what clients of the "
                          "XTTS API server expect) if it can run here, else the lab's default engine does, "
                          f"and `warnings` says why; the {ENGINE_HEADER} response header names the engine")
    strict_engine: bool = Field(
        False, description=f"with no `engine`: answer 503 rather than with another engine when "
                           f"{LEGACY_CLIENT_ENGINE} cannot run (the server's --strict-engine does this for every request)")
    seed: int = Field(0, ge=0, lt=2**32, strict=True,  # JSON true is not a seed
                      description="seed for engines that sample (capabilities.seeded)")
    settings: Optional[dict[str, Any]] = Field(
        None, description="the engine's own settings, e.g. {\"length_scale\": 1.5} for piper or "
                          "{\"temperature\": 0.5} for xtts (`lab.py run synth --engine NAME --help-settings` lists "
                          "them); left out = its defaults. A setting the engine does not have, or a value out of its "
                          "range, is a 422 naming the engine's settings")

    @field_validator("text")
    @classmethod
    def _text(cls, text: str) -> str:
        problem = text_problem(text)
        if problem:
            raise ValueError(problem)
        return text


def text_problem(text: str, field: str = "text") -> str | None:
    """Why ``text`` cannot be spoken (empty, over MAX_TEXT_CHARS, a control character), or None.
    Both REST surfaces (this one and ``/v1/audio/speech``) check text with it."""
    if not text.strip():
        return f"{field} is empty: type something to say"
    if len(text) > MAX_TEXT_CHARS:
        return f"{field} has {len(text)} characters; the limit is {MAX_TEXT_CHARS}: split it into several requests"
    bad = _CONTROL.search(text)
    if bad:
        return f"{field} contains the control character U+{ord(bad.group()):04X}; remove it"
    return None


class SynthesizeResponse(BaseModel):
    audio_base64: str = Field(description="a WAV file (16-bit PCM, mono), base64")
    sample_rate: int = Field(description="Hz")
    duration_seconds: float = Field(description="length of the audio")
    synth_seconds: float = Field(description="wall time the engine took")
    engine: str
    run_id: str = Field(description="the results run that logged this synthesis (one per server session)")
    row: int = Field(description="this synthesis's row number in that run")
    warnings: list[str] = Field(default_factory=list, description="things worth knowing, e.g. a reference was cut")


class EngineHealth(BaseModel):
    status: str = Field(description="ready, loading, not loaded, or unavailable: why")
    queued: int = Field(description="REST requests waiting for or using this engine")


class JudgingHealth(BaseModel):
    run_id: Optional[str] = Field(description="the server session's run (REST and /v1 rows); null before the first")
    backlog: int = Field(description="rows waiting for judges")
    max_backlog: int = Field(description="--judge-backlog: past it, rows are marked 'not judged: backlog'")
    judged: int = Field(description="rows judged so far this session")
    not_judged_backlog: int = Field(description="rows marked 'not judged: backlog' so far this session")
    judges: list[str] = Field(description="the judges scoring this session's rows")


class HealthResponse(BaseModel):
    status: Literal["ok"]
    default_engine: str
    engines: dict[str, EngineHealth]
    judging: JudgingHealth
    warnings: list[str] = Field(description="exposure and setup warnings, also shown in the UI banner")
    max_upload_mb: float


class ErrorResponse(BaseModel):
    detail: str = Field(description="what was wrong, in words the user can act on")


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": why} for code, why in (
        (400, "the engine cannot do what was asked (e.g. clone a voice)"),
        (401, "--auth is set and the credentials are missing or wrong"),
        (413, "the request body or the reference is larger than the upload cap"),
        (422, "invalid input: the message names the field"),
        (503, "the engine cannot run here, or too many requests are queued for it"),
    )
}


class TooBusy(LabError):
    """Too many requests are already waiting for this engine."""


class TooLarge(LabError):
    """An upload is over the cap."""


class InvalidField(LabError):
    """A request field that fails the lab's own checks (422, shaped like pydantic's errors)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def megabytes(n: int) -> str:
    """``76.8 MB`` (MiB, as the cap is given)."""
    return f"{n / 2**20:.1f}".removesuffix(".0") + " MB"


class Admission:
    """Counts REST requests per engine so a flood is refused (503) instead of piling up threads.

    The engine's own lock (``Engines.use``) is the queue; this only bounds its length.
    """

    def __init__(self, limit: int = MAX_QUEUED_PER_ENGINE):
        self.limit = limit
        self._lock = threading.Lock()
        self._count: dict[str, int] = {}

    def queued(self, engine: str) -> int:
        with self._lock:
            return self._count.get(engine, 0)

    @contextmanager
    def enter(self, engine: str) -> Iterator[None]:
        with self._lock:
            if self._count.get(engine, 0) >= self.limit:
                raise TooBusy(f"{engine} already has {self.limit} requests queued; try again shortly")
            self._count[engine] = self._count.get(engine, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._count[engine] -= 1


def decode_reference(data: str, max_bytes: int) -> bytes:
    """Decode ``speaker_wav_b64`` (plain base64 or a data: URL); LabError if it is not base64."""
    text = _DATA_URL.sub("", data.strip(), count=1)
    text = re.sub(r"\s+", "", text)
    if len(text) * 3 // 4 > max_bytes:
        raise TooLarge(f"speaker_wav_b64 decodes to {megabytes(len(text) * 3 // 4)}; "
                       f"the upload cap is {megabytes(max_bytes)}")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise InvalidField("speaker_wav_b64", f"speaker_wav_b64 is not valid base64 ({e})") from None
    if not raw:
        raise InvalidField("speaker_wav_b64", "speaker_wav_b64 is empty: give the base64 of an audio file, or leave it out")
    return raw


def status_for(error: LabError) -> int:
    """HTTP status of a user-fixable error."""
    if isinstance(error, (EngineUnavailable, TooBusy)):
        return 503
    if isinstance(error, TooLarge):
        return 413
    if isinstance(error, CapabilityError):
        return 400
    return 422


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": message, **extra}, status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    """LabError -> 4xx/503 and request validation -> 422, each as ``{"detail": "message"}``;
    every 422 also carries ``errors``: ``[{"loc", "msg", "type"}]``, whichever check refused it."""

    @app.exception_handler(LabError)
    async def lab_error(request: Request, exc: LabError) -> JSONResponse:
        status = status_for(exc)
        if status != 422:
            return _error(status, str(exc))
        loc = [exc.field] if isinstance(exc, InvalidField) else []
        return _error(422, str(exc), errors=[{"loc": loc, "msg": str(exc), "type": "value_error"}])

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for e in exc.errors():
            loc = [str(p) for p in e.get("loc", ()) if p != "body"]
            msg = str(e.get("msg", "")).removeprefix("Value error, ")  # our validators' own words
            if e.get("type") == "json_invalid":  # loc is a character offset: say what it means
                why = (e.get("ctx") or {}).get("error", "")
                loc = []
                msg = (f"the request body is not valid JSON ({why} at character {e['loc'][-1]}); send a JSON "
                       'object such as {"text": "Hello.", "lang": "en"} with Content-Type: application/json')
            errors.append({"loc": loc, "msg": msg, "type": str(e.get("type", ""))})
        message = "; ".join(e["msg"] if e["type"] == "json_invalid" else f"{'.'.join(e['loc']) or 'body'}: {e['msg']}"
                            for e in errors)
        # The raw input is left out on purpose: it can be megabytes, or a secret.
        return _error(422, message or "invalid request", errors=errors)


def router(lab: LabContext, *, max_upload_bytes: int, dependencies: Sequence[Callable] = (),
           admission: Admission | None = None, strict_engine: bool = False) -> APIRouter:
    """The REST routes over ``lab``. ``dependencies`` (e.g. HTTP Basic auth) guard every route;
    ``strict_engine`` makes every request without ``engine`` strict (see :func:`choose_engine`)."""
    admission = admission or Admission()
    api = APIRouter(dependencies=[Depends(d) for d in dependencies])

    @api.get("/health", response_model=HealthResponse, responses={401: ERRORS[401]}, tags=["lab"])
    async def health() -> HealthResponse:
        """Engines and model status; cheap: it loads nothing (async: answers even when every
        worker thread is busy synthesising)."""
        return HealthResponse(
            status="ok",
            default_engine=lab.engines.default(),
            engines={n: EngineHealth(status=lab.engines.status(n), queued=admission.queued(n))
                     for n in lab.engines.names()},
            judging=JudgingHealth(**lab.serving().health()),
            warnings=list(lab.warnings),
            max_upload_mb=max_upload_bytes / 2**20,
        )

    @api.post("/synthesize_base64", response_model=SynthesizeResponse, responses=ERRORS, tags=["lab"])
    def synthesize_base64(request: SynthesizeRequest, response: Response) -> SynthesizeResponse:
        """Synthesise ``text``; the WAV comes back base64 and is logged as one results row.
        The ``X-Lab-Engine`` header names the engine that answered."""
        # A sync route: FastAPI runs it in its thread pool and the engine lock queues it.
        result = synthesize(lab, request, max_upload_bytes=max_upload_bytes, admission=admission,
                            strict_engine=strict_engine)
        response.headers[ENGINE_HEADER] = result.engine
        return result

    return api


def choose_engine(lab: LabContext, request: SynthesizeRequest, strict: bool) -> tuple[str, list[str]]:
    """The engine that answers ``request`` and the warnings that go with the choice.

    A named engine answers (or fails) itself. With none named, the engine a client of the XTTS API
    server expects answers when it can run here; otherwise the lab's default engine answers and a
    warning says why, unless ``strict`` (the server's --strict-engine or the request's
    ``strict_engine``): then the request is refused with 503, so such a client never gets
    another voice without asking for it.
    """
    if request.engine:
        return request.engine, []
    expected = LEGACY_CLIENT_ENGINE
    reason = lab.engines.unavailable_reason(expected)
    if reason is None:
        try:
            lab.engines.get(expected)  # loads once; a load that fails here falls back like the rest
            return expected, []
        except EngineUnavailable as e:
            reason = str(e)
    fallback = lab.engines.default()
    if fallback == expected or lab.engines.unavailable_reason(fallback):
        raise EngineUnavailable(f"{expected} cannot answer ({reason}) and no other engine can run here")
    if strict:
        raise EngineUnavailable(
            f"{expected} cannot answer: {reason}. The request named no engine and strict engine choice is on "
            f"(--strict-engine or \"strict_engine\": true), so no other engine answered; "
            f"name one with \"engine\" to use it")
    return fallback, [f"{expected} did not answer: {reason}. {fallback} answered instead; send \"engine\" "
                      f"to choose one, or \"strict_engine\": true to get a 503 instead"]


def synthesize(lab: LabContext, request: SynthesizeRequest, *, max_upload_bytes: int,
               admission: Admission, strict_engine: bool = False) -> SynthesizeResponse:
    """Validate everything first (no run folder, no row for a bad request), then run ``synth``."""
    import soundfile as sf

    from experiments.pipeline import run_to_end
    from experiments.specs import SynthSpec

    name, warnings = choose_engine(lab, request, strict_engine or request.strict_engine)
    try:
        check_overrides([name], request.settings)
    except LabError as e:
        raise InvalidField("settings", str(e)) from None
    spec = SynthSpec(engine=name, speaker=request.speaker, text=request.text, lang=request.lang,
                     speed=request.speed, seed=request.seed, settings=request.settings or {})
    with admission.enter(name):
        engine = lab.engines.get(name)  # loads once per process; EngineUnavailable -> 503
        check_language(engine, spec.lang)
        _, saved = resolve_speaker(lab.voices, name, engine.capabilities, spec.speaker, engine.speakers())
        if saved is not None:  # a saved voice: its cleaned reference is cloned
            if request.speaker_wav_b64 is not None:
                raise LabError("give speaker (a saved voice) or speaker_wav_b64 (a recording), not both")
            spec = replace(spec, speaker=None, reference=saved.path)
        elif spec.speaker is not None and spec.speaker not in engine.speakers():
            voices = engine.speakers()
            shown = ", ".join(voices[:20]) + (", ..." if len(voices) > 20 else "")
            raise LabError(f"{name} has no speaker {spec.speaker!r}; choose one of: {shown}")
        with tempfile.TemporaryDirectory(prefix="xtts-lab-ref-") as tmp:
            reference = None
            if request.speaker_wav_b64 is not None:
                # The file name is ours: nothing the client sends becomes part of a path.
                reference = Path(tmp) / "reference"
                reference.write_bytes(decode_reference(request.speaker_wav_b64, max_upload_bytes))
                try:
                    warnings += check_reference(reference)
                except LabError as e:  # the message names our temporary path: do not expose it
                    raise LabError(str(e).replace(str(reference), reference.name)) from None
                if not engine.capabilities.cloning:
                    raise CapabilityError(
                        f"{name} cannot clone a voice: leave out speaker_wav_b64 and pick one of its "
                        f"speakers ({', '.join(engine.speakers()[:10])}), or use an engine that clones "
                        f"({', '.join(lab.engines.with_capability('cloning')) or 'none registered'})")
            serving = lab.serving()
            if reference is not None:  # kept so the row names a reference that still exists
                spec = replace(spec, reference=str(serving.keep_reference(reference, _audio_suffix(reference))))
            # Rows go into the session's run and are judged in the background (within the backlog
            # cap): the response never waits for a judge; the columns land in its judges.csv.
            run = serving.run()
            frame = run_to_end("synth", spec, engines=lab.engines, run=run, wait_for_judges=False, save=False,
                               fields={"endpoint": "rest"}).rows
            serving.save_row_spec(int(frame["row"].iloc[0]), spec)
    row = frame.iloc[0]
    wav = Path(row["wav_path"])
    return SynthesizeResponse(
        audio_base64=base64.b64encode(wav.read_bytes()).decode("ascii"),
        sample_rate=int(sf.info(str(wav)).samplerate),
        duration_seconds=float(row["audio_seconds"]),
        synth_seconds=float(row["synth_seconds"]),
        engine=name,
        run_id=run.run_id,
        row=int(row["row"]),
        warnings=warnings,
    )


def check_reference(path: Path) -> list[str]:
    """Refuse a reference that is not audio, is silent or too short (LabError); return warnings.

    Uses the same cleaning every engine applies before conditioning, so REST clients get the
    same messages as the UI, whatever the engine.
    """
    from components.core.audio import clean_reference

    return list(clean_reference(path, target_sr=VALIDATION_SR).warnings)


def _audio_suffix(path: Path) -> str:
    """``.wav``/``.flac``/``.ogg``/``.mp3`` from the file's content, never from a client's name."""
    import soundfile as sf

    try:
        fmt = sf.info(str(path)).format.lower()
    except Exception:  # noqa: BLE001 - decodable by librosa only: keep a neutral suffix
        return ".audio"
    return {"wav": ".wav", "flac": ".flac", "ogg": ".ogg", "mpeg": ".mp3", "mp3": ".mp3"}.get(fmt, ".audio")
