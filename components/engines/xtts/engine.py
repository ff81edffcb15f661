"""Coqui XTTS v2: multilingual, voice-cloning, streaming text-to-speech.

The engine is cheap to build; ``load()`` finds the weights (``components.engines.xtts.locate``), loads
them once with coqui-tts's own classes and keeps the model as ``engine.model``. Per request:

    reference clean-up (components.core.audio) -> conditioning latents (cached: components.engines.xtts.latents)
    -> text normalised and split (components.engines.xtts.text) -> GPT -> HiFiGAN -> audio + stage timings

The model runs on the lab's fast path (``components.engines.xtts.fast``: no second GPT forward, packed
GPT weights in the configured precision, batched decoding, linear-time streaming); in fp32 its
codes equal stock coqui ``Xtts.inference``'s for the same seed and its audio equals stock's within
float tolerance (tests compare the two directly). ``synthesize_speeds`` serves speed sweeps from
one GPT pass.

What the tests here cannot show: with random-weight checkpoints the audio is noise, so speech
quality, intelligibility, speaker similarity of clones and the effect of the sampling settings
can only be judged with the real XTTS v2 weights.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from components.engines.base import (
    PRECISIONS, SPEED_MAX, SPEED_MIN, Capabilities, EngineConfig, EngineUnavailable, LabError, License, Progress,
    SynthRequest, SynthResult, check_language, no_progress,
)
from components.engines.gate import Gate
from components.engines.settings import for_engine

from . import locate
from .batched import iter_batch
from .device import oom_guard, resolve_device, seed_all, sync
from .locate import CPML_URL  # one CPML link everywhere
from .settings import DEFAULT_CACHE_DIR, LANGUAGES, STREAM_CHUNK_TOKENS, GenerationSettings, XttsSettings
from .voices import PreparedReference, builtin_voice, prepare_reference, reference_voice

class XttsEngine:
    """XTTS v2 through coqui-tts: 17 languages, built-in speakers, cloning, streaming, seeds."""

    name = "xtts"
    languages: tuple[str, ...] = LANGUAGES   # load() narrows them to the checkpoint's own list
    capabilities = Capabilities(cloning=True, streaming=True, seeded=True, speeds=True,
                                batching=True, concurrent=True, precisions=PRECISIONS, speaker_encoder=True)
    preference = 100  # the lab's subject: the default whenever its weights are present
    Settings = XttsSettings
    license = License("Coqui Public Model License (CPML)", CPML_URL, acceptance_required=True,
                      config_field="agree_cpml", note="non-commercial use only")

    # Named settings for evaluations (``lab.py run evaluate --engines xtts:int8,xtts:fp32``).
    variants = {
        "fp32": {"precision": "fp32"},   # exact: the same tokens as stock coqui
        "bf16": {"precision": "bf16"},
        "int8": {"precision": "int8"},
        "int4": {"precision": "int4"},
        "greedy": {"top_k": 1},          # always the most likely token: no sampling noise across seeds
    }

    def __init__(self, config=None):
        self.config = config or EngineConfig()
        self.model = None                   # the loaded coqui ``Xtts``
        self.weights = None                 # components.engines.xtts.locate.Weights
        self.model_id: str | None = None    # fingerprint of the checkpoint (cache keys, CSV versions)
        self.load_seconds: float | None = None
        self.stream_chunk_tokens = STREAM_CHUNK_TOKENS
        self._device: str | None = None
        self._speakers: dict[str, dict[str, Any]] = {}
        self._latents = None                # components.engines.xtts.latents.LatentCache
        self._load_lock = threading.Lock()
        self._gate = Gate()
        self._shared = None                 # components.engines.xtts.shared.SharedBatch, made on first use

    # -- discovery (light: no torch) -----------------------------------------------------------
    @classmethod
    def unavailable_reason(cls, config) -> str | None:
        """What is missing and how to get it, or None when XTTS can load (or download)."""
        return locate.unavailable_reason(getattr(config, "xtts_dir", None), getattr(config, "agree_cpml", False))

    @property
    def sample_rate(self) -> int:
        if self.model is not None:
            return int(self.model.args.output_sample_rate)
        return int(locate.release_config(self.weights, self.config.xtts_dir).get("model_args", {})
                   .get("output_sample_rate", 24000))

    @property
    def device(self) -> str:
        return self._device or self.config.device

    # -- loading -------------------------------------------------------------------------------
    def load(self, progress: Progress = no_progress) -> None:
        """Find (or, with the CPML accepted, download) the weights and load them once."""
        with self._load_lock:
            if self.model is not None:
                return
            reason = self.unavailable_reason(self.config)
            if reason:
                raise EngineUnavailable(reason)
            t0 = time.perf_counter()
            weights = locate.find_weights(self.config.xtts_dir)
            if weights is None:  # unavailable_reason said a download is allowed
                weights = locate.download(progress)
            device = resolve_device(self.config.device)
            progress(0.1, desc=f"loading XTTS v2 from {weights.path} onto {device}")

            from .load import open_weights  # torch and coqui-tts: only when loading

            model = open_weights(weights, device, self.config.precision)
            progress(0.9, desc="XTTS v2 loaded; preparing the voice cache")

            from .latents import LatentCache

            self.model_id = locate.fingerprint(weights.path)
            cache_root = Path(self.config.cache_dir or DEFAULT_CACHE_DIR).expanduser()
            self._latents = LatentCache(cache_root / "latents")
            manager = getattr(model, "speaker_manager", None)
            self._speakers = dict(manager.speakers) if manager is not None else {}
            self.weights, self._device = weights, device
            self.languages = tuple(model.config.languages)  # this checkpoint's own list
            self.model = model
            self.load_seconds = time.perf_counter() - t0
            progress(1.0, desc=f"XTTS v2 ready ({self.load_seconds:.1f} s)")

    def _require_model(self, progress: Progress) -> Any:
        if self.model is None:
            self.load(progress)
        return self.model

    def max_chars(self, lang: str) -> int:
        """Characters per chunk XTTS handles well in ``lang`` (coqui's per-language limits); callers
        that split long text themselves (the script experiment) split to this."""
        from . import text as xtext

        return xtext.char_limit(lang)

    # -- voices --------------------------------------------------------------------------------
    def speakers(self) -> list[str]:
        """Built-in voices of speakers_xtts.pth, the file's first voice first."""
        if self.model is None and self.weights is None:
            return locate.speaker_names(self.config.xtts_dir)
        return list(self._speakers)

    def prepare_reference(self, path: str, progress: Progress = no_progress) -> PreparedReference:
        """Clean ``path`` and compute its conditioning latents, from the cache when it has them.

        Raises LabError for silence, under ~2 s of speech, or a file that is not audio.
        """
        model = self._require_model(progress)
        return prepare_reference(model, path, self._latents, self.model_id or "", self.device, progress)

    def _voice(self, request: SynthRequest, progress: Progress) -> tuple[Any, dict[str, float], dict[str, Any]]:
        """Conditioning for ``request``: (voice, timings, info) from a reference or a built-in speaker."""
        if request.reference:
            return reference_voice(self.prepare_reference(request.reference, progress), request.speaker)
        return builtin_voice(self._speakers, request.speaker)

    # -- synthesis -----------------------------------------------------------------------------
    def _settings(self, request: SynthRequest) -> XttsSettings:
        """The request's settings as XTTS's own (None = the defaults; a mapping = overrides)."""
        return for_engine(self, request.settings)

    def _precision(self, settings: GenerationSettings) -> str:
        """The precision a request runs in: its own, else the lab's.

        A request may ask for another precision than the lab was started with, so users can A/B
        them on one loaded model; ``_holding`` switches (repacks the GPT weights once, seconds).
        """
        return settings.precision or self.config.precision

    @property
    def concurrent(self) -> bool:
        """Several requests may use this engine at once (``Engines.use`` lets them in together):
        with ``--batch`` above 1 their rows join one running batch
        (``components.engines.xtts.fast.BatchDecoder``). ``--batch 1``: one at a time."""
        return self.batch_size > 1

    @contextmanager
    def _holding(self, precision: str, progress: Progress, shared: bool) -> Iterator[None]:
        """Use the model in ``precision``: ``shared`` with the other requests decoding in the batch,
        else alone. Switching precision needs the model alone (the batch reads the packed weights),
        so a request for another precision waits for the batch to drain, switches, then shares."""
        from . import fast

        def prepared() -> bool:
            return fast.precision_of(self.model) == precision

        self._gate.acquire(shared)
        if not prepared():
            if shared:  # trade the shared hold for the model alone, switch, then share again
                self._gate.release()
                self._gate.acquire(False)
            try:
                if not prepared():
                    progress(0.05, desc=f"preparing the GPT in {precision}")
                    fast.apply_precision(self.model, precision)
            except BaseException:
                self._gate.release()
                raise
            if shared:
                self._gate.share()
        try:
            yield
        finally:
            self._gate.release()

    def _begin(self, request: SynthRequest, progress: Progress):
        self._require_model(progress)
        check_language(self, request.lang)
        precision = self._precision(self._settings(request))
        voice, timings, info = self._voice(request, progress)
        from .text import token_chunks

        tokens, notes = token_chunks(self.model, request.text, request.lang, self._settings(request).enable_text_splitting)
        if notes:
            info["note"] = "; ".join(x for x in (info.get("note"), *notes) if x)
        s = self._settings(request)
        info.update({
            "temperature": s.temperature, "top_k": s.top_k, "top_p": s.top_p,
            "repetition_penalty": s.repetition_penalty, "length_penalty": s.length_penalty,
            "text_splitting": s.enable_text_splitting, "precision": precision,
            "text_chunks": len(tokens),
        })
        return voice, tokens, timings, info

    def _decode(self, tokens: list[Any], voice: Any, request: SynthRequest, shared: bool,
                progress: Progress) -> tuple[list[Any], dict[str, float], dict[str, Any]]:
        """GPT latents per text chunk: in the batch other requests share, or alone (seeded torch)."""
        if shared:
            return self._batch().generate(self.model, tokens, voice.gpt_cond_latent, self._settings(request),
                                          request.seed, progress)
        from .decode import generate_chunks

        seed_all(request.seed)
        return generate_chunks(self.model, tokens, voice.gpt_cond_latent, self._settings(request), progress)

    def synthesize(self, request: SynthRequest, progress: Progress = no_progress) -> SynthResult:
        """Synthesise ``request`` whole. Timings: reference, conditioning, gpt, vocoder (seconds)."""
        voice, tokens, timings, info = self._begin(request, progress)
        shared = self.concurrent
        with self._holding(info["precision"], progress, shared), oom_guard():
            latents, gpt_timings, stage_info = self._decode(tokens, voice, request, shared, progress)
            audio, t_voc = self._vocode_fast(latents, voice, request.speed)
        timings.update({**gpt_timings, "vocoder": t_voc})
        info.update(stage_info)
        progress(1.0, desc="done")
        return SynthResult(audio=audio, sample_rate=self.sample_rate, timings=timings, info=info)

    def stream(self, request: SynthRequest, progress: Progress = no_progress) -> Iterator[np.ndarray | SynthResult]:
        """Yield float32 audio chunks as they are generated, then the complete SynthResult.

        ``info["ttfa_seconds"]`` is the time from this call to the first chunk (including
        reference clean-up and conditioning). The chunks concatenated are the result's audio.
        """
        t_start = time.perf_counter()
        voice, tokens, timings, info = self._begin(request, progress)
        stats: dict[str, Any] = {}
        chunks: list[np.ndarray] = []
        ttfa = None
        shared = self.concurrent
        with self._holding(info["precision"], progress, shared), oom_guard():
            if shared:  # codes from the batch other requests share, vocoded as they come
                source = self._batch().stream(self.model, tokens, voice, self._settings(request), request.seed, request.speed,
                                              self.stream_chunk_tokens, stats, progress)
            else:
                from .stream import stream_chunks

                seed_all(request.seed)
                source = stream_chunks(self.model, tokens, voice.gpt_cond_latent, voice.speaker_embedding,
                                       self._settings(request), speed=request.speed, chunk_tokens=self.stream_chunk_tokens,
                                       stats=stats, progress=progress)
            for chunk in source:
                if ttfa is None:
                    ttfa = time.perf_counter() - t_start
                chunks.append(chunk)
                yield chunk
        timings.update(stats.pop("timings", {}))
        info.update(stats)
        info["ttfa_seconds"] = ttfa
        info["stream_chunks"] = len(chunks)
        audio = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
        yield SynthResult(audio=audio, sample_rate=self.sample_rate, timings=timings, info=info)

    # -- the fast path (components.engines.xtts.fast) ----------------------------------------------------
    def _vocode_fast(self, latents: list[Any], voice: Any, speed: float) -> tuple[np.ndarray, float]:
        """HiFiGAN over each chunk's latents at ``speed``, concatenated: (audio, seconds)."""
        from . import fast

        t0 = time.perf_counter()
        wavs = [fast.vocode(self.model, z, voice.speaker_embedding, speed) for z in latents]
        sync(self.device)
        return np.concatenate(wavs).astype(np.float32, copy=False), time.perf_counter() - t0

    def synthesize_speeds(self, request: SynthRequest, speeds: list[float],
                          progress: Progress = no_progress) -> list[SynthResult]:
        """``request`` at each of ``speeds`` from one GPT pass (speed only rescales the latents).

        Each result equals ``synthesize(replace(request, speed=s))`` with the same seed; its
        timings carry the shared GPT time and its own vocoder time (info["gpt_shared"] says so).
        """
        speeds = [float(s) for s in speeds]
        if not speeds:
            raise LabError("speeds is empty: give at least one speed")
        for s in speeds:
            if not (SPEED_MIN <= s <= SPEED_MAX):
                raise LabError(f"speed must be between {SPEED_MIN} and {SPEED_MAX}, got {s}")
        voice, tokens, timings, info = self._begin(request, progress)
        shared = self.concurrent
        with self._holding(info["precision"], progress, shared), oom_guard():
            # the same decoding as synthesize(), so each speed equals it exactly
            latents, gpt_timings, gpt_info = self._decode(tokens, voice, request, shared, progress)
            results = []
            for s in speeds:
                audio, t_voc = self._vocode_fast(latents, voice, s)
                results.append(SynthResult(
                    audio=audio, sample_rate=self.sample_rate,
                    timings={**timings, **gpt_timings, "vocoder": t_voc},
                    info={**info, **gpt_info, "speed": s, "gpt_shared": len(speeds) > 1}))
        progress(1.0, desc="done")
        return results

    # -- batches -------------------------------------------------------------------------------
    def _batch(self):
        """The shared batch concurrent requests decode in (``components.engines.xtts.shared``)."""
        from .shared import SharedBatch

        with self._load_lock:
            if self._shared is None:
                self._shared = SharedBatch(self.batch_size)
            return self._shared

    @property
    def batch_size(self) -> int:
        """Rows decoded together when a caller does not say (``--batch``, default 8)."""
        return int(getattr(self.config, "batch", 1) or 1)

    def synthesize_batch(self, requests: list[SynthRequest], progress: Progress = no_progress,
                         batch_size: int | None = None) -> list[SynthResult]:
        """Synthesise ``requests`` decoding up to ``batch_size`` of them together; results in order.

        Each result equals ``synthesize`` of its request alone with the same seed: the same
        codes, and in fp32 the same audio within float tolerance (see ``iter_batch``).
        """
        out: list[SynthResult | None] = [None] * len(requests)
        for i, result in self.iter_batch(requests, progress, batch_size):
            out[i] = result
        return out  # type: ignore[return-value]

    def iter_batch(self, requests: list[SynthRequest], progress: Progress = no_progress,
                   batch_size: int | None = None) -> Iterator[tuple[int, SynthResult]]:
        """Yield ``(index, SynthResult)`` for ``requests`` as each one finishes.

        Up to ``batch_size`` (default ``self.batch_size``) requests share each GPT step; at the
        engine's own batch size they join the batch that concurrent requests (other tabs, REST)
        decode in (``components.engines.xtts.fast.BatchDecoder``), otherwise they decode as a batch of
        their own (``generate_batch``). Each keeps its own voice, text chunks, sampling
        settings and seed (its own ``torch.Generator``, seeded as ``synthesize`` seeds torch),
        and is vocoded by HiFiGAN on its own as soon as its last chunk is decoded. Timings per
        result: reference, conditioning, gpt (wall time the request spent in the batch) and
        vocoder; ``info`` adds ``batch_size`` and ``batch_rows`` (the most rows decoded beside
        it). All references are prepared before decoding starts, so a bad one fails the call
        before any GPT work. Requests asking for different precisions run as separate batches.
        """
        return iter_batch(self, requests, progress, batch_size)

    def speaker_embedding(self, audio: np.ndarray, sr: int) -> np.ndarray:
        """XTTS's speaker embedding of ``audio`` (mono float, any rate) as a 1-D float32 vector.

        Calls ``model.get_speaker_embedding`` (the step of ``get_conditioning_latents`` that yields
        the speaker embedding) on samples read by the lab, so no file goes through torchaudio.
        """
        import torch

        if self.model is None:
            raise EngineUnavailable("xtts is not loaded: its speaker encoder needs the model")
        x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)).reshape(1, -1)
        with torch.inference_mode():
            emb = self.model.get_speaker_embedding(x, int(sr))
        return emb.detach().float().cpu().numpy().reshape(-1)

    def versions(self) -> dict[str, str]:
        """coqui-tts, torch, transformers and onnxruntime (int8/int4 decode on it) versions, plus
        which checkpoint is loaded."""
        from importlib.metadata import PackageNotFoundError, version

        out = {}
        for package in ("coqui-tts", "torch", "transformers", "onnxruntime"):
            try:
                out[package] = version(package)
            except PackageNotFoundError:
                pass
        if self.model_id:
            out["xtts_model"] = self.model_id
        return out
