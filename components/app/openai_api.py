"""An OpenAI-compatible speech API, so tools written for OpenAI's ``/v1/audio/speech`` use the
lab's engines unchanged (``OpenAI(base_url="http://127.0.0.1:7860/v1", api_key=...)``).

Routes (mounted by ``components.app.server``, behind the same ``--auth``/``--api-key`` guard):

- ``POST /v1/audio/speech``  OpenAI's request: ``model``, ``input``, ``voice``, ``response_format``,
  ``speed``, plus the lab's optional ``language``. Every call is a CSV row (and WAV) of the server
  session's run, judged like every row, as ``POST /synthesize_base64`` (``components.app.serving``).
- ``GET /v1/models``          the engines, and the OpenAI model names that map to the default one.
- ``GET /v1/audio/voices``    saved voices, and the built-in voices of loaded engines (``?model=`` loads one).
- ``POST /v1/audio/voices``   save a voice: multipart ``name`` + ``audio_sample`` (OpenAI's shape).
- ``DELETE /v1/audio/voices/{name}``  remove it.

Mapping (documented in the README):

- ``model``: an engine name (``espeak``, ``xtts``, ...); ``tts-1``, ``tts-1-hd`` and
  ``gpt-4o-mini-tts*`` mean the lab's default engine. The ``X-Lab-Engine`` header says which answered.
- ``voice``: a built-in voice of that engine, a saved voice (``NAME``, ``voice:NAME`` or
  ``{"id": NAME}``; engines that clone only), or one of OpenAI's names (``alloy``, ``nova``...), which
  the lab does not have: they mean the engine's default voice, and the ``X-Lab-Warning`` header
  says so (an OpenAI client that hard-codes ``alloy`` keeps working). Anything else is a 400.
- ``language``: when absent it is guessed from the text's script (:func:`detect_language`).
- ``settings`` (the lab's extension; the ``openai`` client sends it with ``extra_body``): the
  engine's own settings, e.g. ``{"length_scale": 1.5}`` for ``piper``. An unknown setting or a
  value out of range is a 400 (OpenAI's status for an invalid request; ``/synthesize_base64``
  answers 422) with ``param: "settings"`` and a message listing that engine's settings.
- ``response_format``: wav, flac (libsndfile), mp3 and opus (libsndfile, else ffmpeg), aac
  (ffmpeg only), pcm (raw 16-bit little-endian mono at 24 kHz, as OpenAI documents it). A format
  this machine cannot encode is a 400 that says what to install.
- Streaming: for engines that stream, ``wav`` and ``pcm`` bodies are sent chunk by chunk as the
  engine yields audio (the WAV header then declares an unknown length); other formats are encoded
  once the audio is complete.

Errors use OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``: 400 invalid request
(``param`` names the field), 401 missing or wrong key, 404 unknown model or voice to delete, 413 body
over the upload cap, 503 engine unavailable here or too busy. The official ``openai`` client raises
``BadRequestError``, ``AuthenticationError``, ``NotFoundError``, ``APIStatusError`` (413) and
``InternalServerError`` (503) for them.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable, Optional, Union
from urllib.parse import quote

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from .api import ENGINE_HEADER, Admission, TooBusy, TooLarge, text_problem
from .context import LabContext
from .speech_stream import PCM_SAMPLE_RATE, pcm16, resample, streamed_body, wav_stream_header
from components.engines import engine_class
from components.engines import check_overrides
from components.engines.base import SPEED_MAX, SPEED_MIN, CapabilityError, EngineUnavailable, LabError
from components.store.voices import VoiceNotFound, resolve_speaker, saved_name

PREFIX = "/v1"
# OpenAI's speech models: each means "the lab's default engine".
OPENAI_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
# OpenAI's built-in voices: the lab has none of them; each means "the engine's default voice".
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer",
                 "verse", "marin", "cedar")
FORMATS: dict[str, str] = {  # response_format -> Content-Type
    "mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac", "flac": "audio/flac",
    "wav": "audio/wav", "pcm": "audio/pcm",
}
STREAMABLE = ("wav", "pcm")     # formats sent chunk by chunk as a streaming engine yields audio
OPUS_SAMPLE_RATE = 48000        # Hz: Ogg Opus decodes at 48 kHz; libsndfile takes only 8/12/16/24/48 kHz


class OpenAIError(Exception):
    """An error answered in OpenAI's JSON shape."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type = type or ("invalid_request_error" if status < 500 else "server_error")
        self.headers = headers

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def from_lab_error(e: LabError, param: str | None = None) -> OpenAIError:
    """A LabError as the OpenAI error it is (status from its kind)."""
    if isinstance(e, EngineUnavailable):
        return OpenAIError(503, str(e), param="model", code="engine_unavailable")
    if isinstance(e, TooBusy):
        return OpenAIError(503, str(e), code="engine_overloaded")
    if isinstance(e, TooLarge):
        return OpenAIError(413, str(e), param=param, code="request_too_large")
    if isinstance(e, CapabilityError):
        return OpenAIError(400, str(e), param=param, code="unsupported_by_engine")
    return OpenAIError(400, str(e), param=param, code="invalid_value")


# -- language from the text ---------------------------------------------------------------------

# (language, Unicode ranges). Kana decides Japanese even though Japanese also writes Han.
_SCRIPTS: tuple[tuple[str, tuple[tuple[int, int], ...]], ...] = (
    ("ja", ((0x3040, 0x309F), (0x30A0, 0x30FF), (0x31F0, 0x31FF), (0xFF66, 0xFF9D))),  # kana
    ("ko", ((0xAC00, 0xD7AF), (0x1100, 0x11FF), (0x3130, 0x318F))),                     # Hangul
    ("zh-cn", ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0xF900, 0xFAFF))),                  # Han
    ("ru", ((0x0400, 0x04FF), (0x0500, 0x052F))),                                        # Cyrillic
    ("ar", ((0x0600, 0x06FF), (0x0750, 0x077F), (0xFB50, 0xFDFF), (0xFE70, 0xFEFF))),   # Arabic
    ("hi", ((0x0900, 0x097F),)),                                                         # Devanagari
)


def _script_of(ch: str) -> str | None:
    cp = ord(ch)
    for lang, ranges in _SCRIPTS:
        if any(lo <= cp <= hi for lo, hi in ranges):
            return lang
    return "en" if ch.isalpha() else None  # any other letter (Latin...) counts as English


def detect_language(text: str, languages: tuple[str, ...] | list[str]) -> tuple[str, str]:
    """Guess the language of ``text`` from its script, among ``languages``: ``(code, how)``.

    Any kana -> ja; otherwise the script with the most letters: Hangul -> ko, Han -> zh-cn,
    Cyrillic -> ru, Arabic -> ar, Devanagari -> hi, anything else (Latin...) -> en. Limits: every
    Latin-script language reads as English and every Cyrillic one as Russian; pass ``language``
    for those. A guess the engine does not speak falls back to en (or its first language).
    """
    counts: dict[str, int] = {}
    for ch in text:
        lang = _script_of(ch)
        if lang:
            counts[lang] = counts.get(lang, 0) + 1
    if counts.get("ja"):
        guess = "ja"
    elif counts:
        guess = max(counts, key=lambda k: counts[k])
    else:
        guess = "en"
    if guess in languages:
        return guess, f"detected {guess} from the text's script"
    fallback = "en" if "en" in languages else languages[0]
    return fallback, f"the text looks {guess}, which this engine does not speak; used {fallback}"


# -- encoding -----------------------------------------------------------------------------------

def _soundfile_can(fmt: str) -> bool:
    import soundfile as sf

    if fmt in ("wav", "flac", "pcm"):
        return True
    if fmt == "mp3":
        return "MPEG_LAYER_III" in sf.available_subtypes("MP3")
    if fmt == "opus":
        return "OPUS" in sf.available_subtypes("OGG")
    return False


def encoder_for(fmt: str) -> str | None:
    """How ``fmt`` is encoded here: "soundfile", "ffmpeg", or None when it cannot be."""
    if _soundfile_can(fmt):
        return "soundfile"
    return "ffmpeg" if shutil.which("ffmpeg") else None


def encode(audio: np.ndarray, sr: int, fmt: str) -> tuple[bytes, int]:
    """``audio`` (mono float32 at ``sr``) as a ``fmt`` file: ``(bytes, its sample rate)``."""
    import soundfile as sf

    audio = np.asarray(audio, dtype=np.float32)
    if fmt == "pcm":
        return pcm16(resample(audio, sr, PCM_SAMPLE_RATE)), PCM_SAMPLE_RATE
    how = encoder_for(fmt)
    if how == "soundfile":
        if fmt == "opus":
            audio, sr = resample(audio, sr, OPUS_SAMPLE_RATE), OPUS_SAMPLE_RATE
        container, subtype = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"),
                              "mp3": ("MP3", "MPEG_LAYER_III"), "opus": ("OGG", "OPUS")}[fmt]
        buf = io.BytesIO()
        sf.write(buf, np.clip(audio, -1.0, 1.0), sr, format=container, subtype=subtype)
        return buf.getvalue(), sr
    if how == "ffmpeg":
        wav = io.BytesIO()
        sf.write(wav, np.clip(audio, -1.0, 1.0), sr, format="WAV", subtype="PCM_16")
        out = {"mp3": ["-f", "mp3"], "opus": ["-c:a", "libopus", "-f", "ogg"], "aac": ["-c:a", "aac", "-f", "adts"],
               "flac": ["-f", "flac"], "wav": ["-f", "wav"]}[fmt]
        done = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", "pipe:0", *out, "pipe:1"],
                              input=wav.getvalue(), capture_output=True, timeout=120)
        if done.returncode != 0:
            raise OpenAIError(500, f"ffmpeg could not encode {fmt}: {done.stderr.decode(errors='replace')[-300:]}",
                              code="encoding_failed")
        return done.stdout, (OPUS_SAMPLE_RATE if fmt == "opus" else sr)
    raise OpenAIError(400, f"response_format {fmt!r} cannot be encoded on this server: its libsndfile has no "
                           f"{fmt} encoder and ffmpeg is not installed (apt-get install ffmpeg); "
                           f"ask for one of: {', '.join(f for f in FORMATS if encoder_for(f) or f == 'pcm')}",
                      param="response_format", code="unsupported_response_format")


# -- request and response shapes ------------------------------------------------------------------

class VoiceRef(BaseModel):
    """OpenAI's custom-voice object: ``{"id": "NAME"}``."""

    id: str = Field(max_length=200)


class SpeechRequest(BaseModel):
    """OpenAI's ``/v1/audio/speech`` body, plus ``language``. Unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(max_length=200, description="an engine name, or tts-1 / tts-1-hd / gpt-4o-mini-tts "
                                                   "(= the lab's default engine)")
    input: str = Field(description="the text to speak; 1 to MAX_TEXT_CHARS characters")
    voice: Union[str, VoiceRef] = Field(description="a built-in voice of the engine, a saved voice (NAME, "
                                                    "voice:NAME or {\"id\": NAME}), or an OpenAI voice name "
                                                    "(= the engine's default voice)")
    response_format: str = Field("mp3", max_length=20, description="mp3, opus, aac, flac, wav or pcm")
    speed: float = Field(1.0, description=f"{SPEED_MIN} to {SPEED_MAX}; 1.0 = natural rate")
    language: Optional[str] = Field(None, max_length=20, description="language code; default: detected "
                                                                     "from the text's script")
    instructions: Optional[str] = Field(None, max_length=10000, description="ignored (no engine here takes it)")
    stream_format: Optional[str] = Field(None, max_length=20, description="audio (default); sse is not supported")
    settings: Optional[dict[str, Any]] = Field(
        None, description="the lab's extension: the engine's own settings, e.g. {\"length_scale\": 1.5} for piper "
                          "(`lab.py run synth --engine NAME --help-settings`); an unknown setting or a value out of "
                          "range is a 400 (OpenAI's invalid-request status) with param \"settings\"")


class ErrorDetail(BaseModel):
    message: str = Field(description="what was wrong, in words the user can act on")
    type: str = Field(description="invalid_request_error, or server_error for 5xx")
    param: Optional[str] = Field(None, description="the request field at fault, if one is")
    code: Optional[str] = Field(None, description="e.g. invalid_value, model_not_found, invalid_api_key")


class ErrorBody(BaseModel):
    """OpenAI's error shape."""

    error: ErrorDetail


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": why} for code, why in (
        (400, "invalid request: param names the field (voice, response_format, input, speed, language...)"),
        (401, "missing or wrong key (--api-key, or --auth's HTTP Basic)"),
        (404, "unknown model, or no such voice to delete"),
        (413, "the request body is over the upload cap"),
        (503, "the engine cannot run here, or too many requests are queued for it"),
    )
}


def _header(value: Any) -> str:
    """A header value in printable ASCII (voice names and warnings may not be)."""
    return quote(" ".join(str(value).split()), safe=" !\"#$&'()*+,-./:;<=>?@[]^_`{|}~")


def install(app: FastAPI, lab: LabContext, *, credentials: Any, max_upload_bytes: int,
            admission: Admission) -> None:
    """Mount the ``/v1`` routes on ``app`` and answer errors under ``/v1`` in OpenAI's shape."""
    install_error_shape(app)
    app.include_router(router(lab, credentials=credentials, max_upload_bytes=max_upload_bytes,
                              admission=admission))


def install_error_shape(app: FastAPI) -> None:
    """Errors of requests under ``/v1`` in OpenAI's shape; the lab's other routes keep theirs."""
    from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler

    previous_validation = app.exception_handlers.get(RequestValidationError, request_validation_exception_handler)
    previous_http = app.exception_handlers.get(StarletteHTTPException, http_exception_handler)
    previous_lab = app.exception_handlers.get(LabError)

    def ours(request: Request) -> bool:
        return request.url.path.startswith(PREFIX + "/") or request.url.path == PREFIX

    @app.exception_handler(OpenAIError)
    async def openai_error(request: Request, exc: OpenAIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        if not ours(request):
            return await previous_validation(request, exc)
        errors = exc.errors()
        first = errors[0] if errors else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "form")]
        param = loc[0] if loc else None
        message = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p not in ('body', 'query', 'path', 'form')) or 'body'}: "
            f"{str(e.get('msg', '')).removeprefix('Value error, ')}" for e in errors) or "invalid request"
        return OpenAIError(400, message, param=param, code="invalid_value").response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if not ours(request):
            return await previous_http(request, exc)
        code = {401: "invalid_api_key", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return OpenAIError(exc.status_code, str(exc.detail), code=code, headers=getattr(exc, "headers", None),
                           type="invalid_request_error" if exc.status_code < 500 else "server_error").response()

    @app.exception_handler(LabError)
    async def lab_error(request: Request, exc: LabError):
        if ours(request) or previous_lab is None:
            return from_lab_error(exc).response()
        return await previous_lab(request, exc)


def router(lab: LabContext, *, credentials: Any = None, max_upload_bytes: int = 50 * 2**20,
           admission: Admission | None = None) -> APIRouter:
    """The ``/v1`` routes over ``lab``; ``credentials`` (``server.Credentials``) guard them."""
    admission = admission or Admission()
    guards: list[Callable] = []
    if credentials:
        def guard(request: Request) -> None:
            if not credentials.accepts(request.headers.get("authorization")):
                raise OpenAIError(401, f"Incorrect or missing API key: authenticate with {credentials.how()}",
                                  code="invalid_api_key", headers=credentials.challenge())
        guards.append(guard)
    api = APIRouter(prefix=PREFIX, dependencies=[Depends(g) for g in guards], tags=["openai"])

    @api.get("/models")
    def models() -> dict[str, Any]:
        """The engines (with their status) and the OpenAI model names that mean the default engine."""
        default = lab.engines.default()
        data = []
        for name in lab.engines.names():
            try:
                caps = engine_class(name).capabilities
                caps_d = {"cloning": caps.cloning, "streaming": caps.streaming}
            except Exception:  # noqa: BLE001 - an engine that cannot import still gets listed, with its status
                caps_d = {}
            data.append({"id": name, "object": "model", "created": 0, "owned_by": "xtts-lab",
                         "status": lab.engines.status(name), "capabilities": caps_d})
        data += [{"id": alias, "object": "model", "created": 0, "owned_by": "xtts-lab", "alias_of": default}
                 for alias in OPENAI_MODELS]
        return {"object": "list", "data": data}

    @api.get("/audio/voices")
    def list_voices(model: Optional[str] = Query(None, max_length=200,
                                                 description="also list this engine's built-in voices (loads it)")):
        """Saved voices (``type`` audio_sample) and built-in voices of loaded engines (``type`` builtin)."""
        cloning = [n for n in lab.engines.names() if _clones(n)]
        data: list[dict[str, Any]] = [
            # Names only: a saved voice is a recording of a real person; its details stay with the owner's UI.
            {"id": v.name, "object": "audio.voice", "name": v.name, "type": "audio_sample",
             "created_at": v.created_at, "engines": cloning}
            for v in (lab.voices.list() if lab.voices else [])]
        wanted = {_engine_name(lab, model)} if model else set()
        for name in lab.engines.names():
            if lab.engines.status(name) != "ready" and name not in wanted:
                continue
            try:
                speakers = lab.engines.get(name).speakers()
            except LabError as e:
                raise from_lab_error(e, "model") from None
            data += [{"id": s, "object": "audio.voice", "name": s, "type": "builtin", "engines": [name]}
                     for s in speakers]
        return {"object": "list", "data": data,
                "openai_voices": {v: "the engine's default voice" for v in OPENAI_VOICES}}

    @api.post("/audio/voices")
    def create_voice(name: str = Form(..., max_length=200, description="the voice's name"),
                     audio_sample: UploadFile = File(..., description="the reference recording"),
                     consent: Optional[str] = Form(None, max_length=200, description="accepted and ignored"),
                     replace_existing: bool = Form(False, alias="replace", description="replace a voice of that name")):
        """Save a voice (OpenAI's multipart shape); the cloning engines that are loaded condition on it now."""
        if lab.voices is None:
            raise OpenAIError(404, "saved voices are not enabled on this server", code="not_found")
        with tempfile.TemporaryDirectory(prefix="xtts-lab-voice-") as tmp:
            path = Path(tmp) / "upload"  # our name: nothing the client sends becomes a path
            size = 0
            with open(path, "wb") as out:
                while chunk := audio_sample.file.read(2**20):
                    size += len(chunk)
                    if size > max_upload_bytes:
                        raise OpenAIError(413, f"audio_sample is over the upload cap of "
                                               f"{max_upload_bytes / 2**20:g} MB",
                                          param="audio_sample", code="request_too_large")
                    out.write(chunk)
            try:
                voice = lab.voices.add(name, path, replace=replace_existing, engines=lab.engines, load=False)
            except LabError as e:
                message = str(e).replace(str(path), "audio_sample").replace(repr(path.name), "audio_sample")
                param = "audio_sample" if "audio" in message or "silent" in message or "sound" in message else "name"
                raise OpenAIError(400, message, param=param, code="invalid_value") from None
        return {"id": voice.name, "object": "audio.voice", "name": voice.name, "type": "audio_sample",
                "created_at": voice.created_at, **{k: x for k, x in voice.public().items() if k != "name"}}

    @api.delete("/audio/voices/{voice_id}")
    def delete_voice(voice_id: str):
        """Remove a saved voice; 404 if there is none of that name."""
        if lab.voices is None:
            raise OpenAIError(404, "saved voices are not enabled on this server", code="not_found")
        try:
            voice = lab.voices.remove(saved_name(voice_id) or voice_id)
        except VoiceNotFound as e:
            raise OpenAIError(404, str(e), param="voice_id", code="voice_not_found") from None
        return {"id": voice.name, "object": "audio.voice.deleted", "deleted": True}

    @api.post("/audio/speech", response_class=Response,
              responses={200: {"content": {t: {} for t in FORMATS.values()}, "description": "the audio"}, **ERRORS})
    def speech(request: SpeechRequest):
        """Speak ``input``; the audio comes back in ``response_format`` and is logged as one results row."""
        return _speech(lab, request, admission)

    return api


def _clones(name: str) -> bool:
    try:
        return bool(engine_class(name).capabilities.cloning)
    except Exception:  # noqa: BLE001 - an engine that cannot import cannot clone
        return False


def _speech(lab: LabContext, request: SpeechRequest, admission: Admission) -> Response:
    """Validate everything first (no run, no row for a bad request), then synthesise and log."""
    from experiments.pipeline import run_experiment, run_to_end
    from experiments.specs import SynthSpec

    fmt = request.response_format.lower()
    if fmt not in FORMATS:
        raise OpenAIError(400, f"response_format {request.response_format!r} is not one of: {', '.join(FORMATS)}",
                          param="response_format", code="invalid_value")
    if fmt != "pcm" and encoder_for(fmt) is None:
        encode(np.zeros(1, np.float32), 24000, fmt)  # raises the "cannot be encoded here" error
    problem = text_problem(request.input, "input")
    if problem:
        code = "string_above_max_length" if "limit" in problem else "invalid_value"
        raise OpenAIError(400, problem, param="input", code=code)
    if not (SPEED_MIN <= request.speed <= SPEED_MAX):
        raise OpenAIError(400, f"speed must be between {SPEED_MIN} and {SPEED_MAX}, got {request.speed}",
                          param="speed", code="invalid_value")
    if request.stream_format not in (None, "audio"):
        raise OpenAIError(400, f"stream_format {request.stream_format!r} is not supported here; use audio",
                          param="stream_format", code="invalid_value")
    name = _engine_name(lab, request.model)
    try:
        check_overrides([name], request.settings)
    except LabError as e:
        raise OpenAIError(400, str(e), param="settings", code="invalid_value") from None
    warnings: list[str] = []
    if request.instructions:
        warnings.append("instructions ignored: no engine here takes them")
    jobs = ExitStack()
    try:
        jobs.enter_context(admission.enter(name))
        engine = lab.engines.get(name)  # loads once per process; EngineUnavailable -> 503
        languages = tuple(engine.languages)
        if request.language:
            if request.language not in languages:
                raise OpenAIError(400, f"{name} does not speak {request.language!r}; choose one of: "
                                       f"{', '.join(languages)}", param="language", code="invalid_value")
            lang, lang_how = request.language, "given"
        else:
            lang, lang_how = detect_language(request.input, languages)
            if "does not speak" in lang_how:
                warnings.append(lang_how)
        speaker, saved, voice_label = _voice(lab, engine, name, request.voice, warnings)
        stream = fmt in STREAMABLE and engine.capabilities.streaming
        spec = SynthSpec(engine=name, speaker=speaker, reference=saved.path if saved else None,
                         text=request.input, lang=lang, speed=float(request.speed), seed=0, stream=stream,
                         settings=request.settings or {})
        run = lab.serving().run()  # the session's run, judged within the backlog cap
        headers = {ENGINE_HEADER: name, "X-Lab-Voice": _header(voice_label), "X-Lab-Language": lang,
                   "X-Lab-Language-Source": _header(lang_how), "X-Lab-Run-Id": run.run_id}
        if saved is not None:
            headers["X-Lab-Reference-Sha256"] = saved.fingerprint
        if warnings:
            headers["X-Lab-Warning"] = _header("; ".join(warnings))
        # Rows go into the session's run, judged in the background within the backlog cap.
        path = dict(engines=lab.engines, run=run, wait_for_judges=False, save=False, fields={"endpoint": "v1"})
        if stream:
            body = streamed_body(run_experiment("synth", spec, stream=True, **path), fmt, jobs.pop_all())
            headers["X-Lab-Sample-Rate"] = str(PCM_SAMPLE_RATE if fmt == "pcm" else engine.sample_rate)
            return StreamingResponse(body, media_type=FORMATS[fmt], headers=headers)
        with jobs:
            frame = run_to_end("synth", spec, **path).rows
            lab.serving().save_row_spec(int(frame["row"].iloc[0]), spec)
    except LabError as e:
        jobs.close()
        raise from_lab_error(e, "voice" if isinstance(e, (VoiceNotFound, CapabilityError)) else None) from None
    except BaseException:
        jobs.close()
        raise
    import soundfile as sf

    wav = Path(frame["wav_path"].iloc[0])
    if fmt == "wav":  # the logged WAV itself, byte for byte
        data, sr = wav.read_bytes(), sf.info(str(wav)).samplerate
    else:
        audio, sr = sf.read(str(wav), dtype="float32")
        data, sr = encode(audio, sr, fmt)
    headers["X-Lab-Sample-Rate"] = str(sr)
    headers["X-Lab-Row"] = str(int(frame["row"].iloc[0]))
    return Response(data, media_type=FORMATS[fmt], headers=headers)


def _engine_name(lab: LabContext, model: str) -> str:
    if model in lab.engines.names():
        return model
    if model in OPENAI_MODELS or model.startswith("gpt-4o-mini-tts"):
        return lab.engines.default()
    raise OpenAIError(404, f"The model {model!r} does not exist here; use an engine "
                           f"({', '.join(lab.engines.names())}) or one of {', '.join(OPENAI_MODELS)} "
                           f"(= the default engine, {lab.engines.default()})", param="model", code="model_not_found")


def _voice(lab: LabContext, engine: Any, name: str, voice: str | VoiceRef,
           warnings: list[str]) -> tuple[str | None, Any, str]:
    """``(built-in speaker, saved voice, label for the header)`` for OpenAI's ``voice``."""
    wanted = voice.id if isinstance(voice, VoiceRef) else voice
    wanted = (wanted or "").strip()
    builtins = list(engine.speakers())
    if not wanted:
        raise OpenAIError(400, "voice is empty: name a voice", param="voice", code="invalid_value")
    speaker, saved = resolve_speaker(lab.voices, name, engine.capabilities, wanted, builtins)
    if saved is not None:
        return None, saved, f"voice:{saved.name}"
    if speaker in builtins:
        return speaker, None, speaker
    if speaker.lower() in OPENAI_VOICES:
        default = builtins[0] if builtins else None
        warnings.append(f"voice {speaker!r} is OpenAI's; this lab has no such voice, so {name} spoke with its "
                        f"default voice{f' ({default})' if default else ''}")
        return default, None, default or "default"
    saved_names = lab.voices.names() if lab.voices is not None and engine.capabilities.cloning else []
    choices = builtins[:20] + [f"voice:{v}" for v in saved_names[:20]]
    raise OpenAIError(400, f"{name} has no voice {speaker!r}; choose one of: {', '.join(choices) or '(none)'}"
                           + ("" if engine.capabilities.cloning else f" ({name} cannot clone saved voices)"),
                      param="voice", code="voice_not_found")


__all__ = ["OPENAI_MODELS", "OPENAI_VOICES", "FORMATS", "OpenAIError", "SpeechRequest", "detect_language",
           "encode", "install", "router", "wav_stream_header"]
