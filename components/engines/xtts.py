"""Coqui XTTS v2: multilingual, voice-cloning, streaming text-to-speech.

The engine is cheap to build; ``load()`` finds the weights (``components.xtts.locate``), loads
them once with coqui-tts's own classes and keeps the model as ``engine.model``. Per request:

    reference clean-up (components.core.audio) -> conditioning latents (cached: components.xtts.latents)
    -> text normalised and split (components.xtts.text) -> GPT -> HiFiGAN -> audio + stage timings

The model runs on the lab's fast path (``components.xtts.fast``: no second GPT forward, packed
GPT weights in the configured precision, batched decoding, linear-time streaming); in fp32 its
codes equal stock coqui ``Xtts.inference``'s for the same seed and its audio equals stock's within
float tolerance (tests compare the two directly). ``synthesize_speeds`` serves speed sweeps from
one GPT pass.

What the tests here cannot show: with random-weight checkpoints the audio is noise, so speech
quality, intelligibility, speaker similarity of clones and the effect of the sampling settings
can only be judged with the real XTTS v2 weights.
"""

from __future__ import annotations

import random
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .base import (
    PRECISIONS, SPEED_MAX, SPEED_MIN, Capabilities, EngineUnavailable, LabError, License, Progress,
    SynthRequest, SynthResult, check_language, no_progress,
)
from .gate import Gate
from .settings import EngineSettings, for_engine, setting

from components.xtts.latents import COND_SAMPLE_RATE
from components.xtts.locate import CPML_URL  # one CPML link everywhere

# The 17 languages XTTS v2 speaks, in the order its documentation lists them.
LANGUAGES: tuple[str, ...] = (
    "en", "es", "fr", "de", "it", "pt", "pl", "tr", "ru",
    "nl", "cs", "ar", "zh-cn", "hu", "ko", "ja", "hi",
)

DEFAULT_CACHE_DIR = "~/.cache/xtts-lab"
STREAM_CHUNK_TOKENS = 40       # GPT tokens per streamed chunk (~1.9 s of audio; coqui's default is 20,
                               # fewer, bigger chunks keep the fast path's per-chunk context cheap)


@dataclass(frozen=True)
class XttsSettings(EngineSettings):
    """XTTS's sampling settings (its GPT sampler), declared with their ranges.

    Defaults are XTTS v2's ``config.json``; they are logged with every row (named columns as well
    as the ``settings`` JSON) because its documentation, code defaults and config disagree.
    """

    engine_name = "xtts"

    temperature: float = setting(0.75, "softmax temperature of the GPT sampler", min=0.05, max=5.0, step=0.05,
                                 column="temperature")
    top_k: int = setting(50, "keep the k most likely audio tokens (1 = greedy)", min=1, max=1000, step=1,
                         column="top_k")
    top_p: float = setting(0.85, "nucleus sampling mass", min=0.01, max=1.0, step=0.01, column="top_p")
    repetition_penalty: float = setting(10.0, "> 1 discourages repeated audio tokens", min=1.0, max=50.0, step=0.5,
                                        column="repetition_penalty")
    length_penalty: float = setting(1.0, "beam-search length penalty (kept for parity with coqui)", min=0.1,
                                    max=10.0, step=0.1, column="length_penalty")
    enable_text_splitting: bool = setting(True, "split long text at sentence ends before the token limit",
                                          column="text_splitting", label="split text at sentence ends")
    # The choices are the engine's capabilities.precisions (below); None = the lab's --precision.
    precision: str | None = setting(None, "GPT precision; empty = the lab's --precision. fp32 is exact; bf16, "
                                          "int8 and int4 are faster", choices=(None, *PRECISIONS))


# Kept so ``from components.engines.xtts import GenerationSettings`` (the old name) still works.
GenerationSettings = XttsSettings


@dataclass
class PreparedReference:
    """A cleaned, conditioned reference recording (what ``prepare_reference`` returns)."""

    voice: Any                          # components.xtts.latents.Voice
    cache: str                          # "hit-memory" | "hit-disk" | "miss"
    seconds: float                      # speech length after clean-up
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)   # "reference", "conditioning"


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
        from . import EngineConfig

        self.config = config or EngineConfig()
        self.model = None                   # the loaded coqui ``Xtts``
        self.weights = None                 # components.xtts.locate.Weights
        self.model_id: str | None = None    # fingerprint of the checkpoint (cache keys, CSV versions)
        self.load_seconds: float | None = None
        self.stream_chunk_tokens = STREAM_CHUNK_TOKENS
        self._device: str | None = None
        self._speakers: dict[str, dict[str, Any]] = {}
        self._latents = None                # components.xtts.latents.LatentCache
        self._load_lock = threading.Lock()
        self._gate = Gate()
        self._shared = None                 # components.xtts.shared.SharedBatch, made on first use

    # -- discovery (light: no torch) -----------------------------------------------------------
    @classmethod
    def unavailable_reason(cls, config) -> str | None:
        """What is missing and how to get it, or None when XTTS can load (or download)."""
        from components.xtts import locate

        return locate.unavailable_reason(getattr(config, "xtts_dir", None), getattr(config, "agree_cpml", False))

    @property
    def sample_rate(self) -> int:
        if self.model is not None:
            return int(self.model.args.output_sample_rate)
        return int(self._release_config().get("model_args", {}).get("output_sample_rate", 24000))

    @property
    def device(self) -> str:
        return self._device or self.config.device

    def _release_config(self) -> dict[str, Any]:
        import json

        from components.xtts import locate

        try:
            weights = self.weights or locate.find_weights(self.config.xtts_dir)
        except LabError:
            weights = None
        if weights is None:
            return {}
        return json.loads((weights.path / "config.json").read_text())

    # -- loading -------------------------------------------------------------------------------
    def load(self, progress: Progress = no_progress) -> None:
        """Find (or, with the CPML accepted, download) the weights and load them once."""
        with self._load_lock:
            if self.model is not None:
                return
            reason = self.unavailable_reason(self.config)
            if reason:
                raise EngineUnavailable(reason)
            from components.xtts import locate

            t0 = time.perf_counter()
            weights = locate.find_weights(self.config.xtts_dir)
            if weights is None:  # unavailable_reason said a download is allowed
                weights = locate.download(progress)
            device = self._resolve_device()
            progress(0.1, desc=f"loading XTTS v2 from {weights.path} onto {device}")

            from components.xtts import fast

            try:
                # Same coqui ``Xtts`` as load_checkpoint builds, without random initialisation,
                # memory-mapped, GPT prepared in the configured precision (stock stays callable).
                model = fast.load_fast(weights.path, device=device, precision=self.config.precision)
            except Exception as e:  # noqa: BLE001 - corrupt or foreign files: tell the user which folder
                raise EngineUnavailable(
                    f"could not load XTTS v2 from {str(weights.path)!r} ({weights.source}): "
                    f"{type(e).__name__}: {str(e).strip()[:200]}; is it a complete, unmodified XTTS v2 "
                    "release (config.json, model.pth, vocab.json, speakers_xtts.pth)?"
                ) from e
            progress(0.9, desc="XTTS v2 loaded; preparing the voice cache")

            from components.xtts.latents import LatentCache

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

    def _resolve_device(self) -> str:
        import torch

        wanted = self.config.device
        if wanted == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if wanted.startswith("cuda") and not torch.cuda.is_available():
            raise EngineUnavailable(f"device {wanted!r} was asked for but no CUDA GPU is available; "
                                    "use --device cpu or auto")
        return wanted

    def _require_model(self, progress: Progress) -> Any:
        if self.model is None:
            self.load(progress)
        return self.model

    def max_chars(self, lang: str) -> int:
        """Characters per chunk XTTS handles well in ``lang`` (coqui's per-language limits); callers
        that split long text themselves (the script experiment) split to this."""
        from components.xtts import text as xtext

        return xtext.char_limit(lang)

    # -- voices --------------------------------------------------------------------------------
    def speakers(self) -> list[str]:
        """Built-in voices of speakers_xtts.pth, the file's first voice first."""
        if self.model is None and self.weights is None:
            from components.xtts import locate

            try:
                weights = locate.find_weights(self.config.xtts_dir)
            except LabError:
                return []
            if weights is None or not (weights.path / "speakers_xtts.pth").is_file():
                return []
            import torch

            return list(torch.load(weights.path / "speakers_xtts.pth", map_location="cpu", weights_only=True))
        return list(self._speakers)

    def prepare_reference(self, path: str, progress: Progress = no_progress) -> PreparedReference:
        """Clean ``path`` and compute its conditioning latents, from the cache when it has them.

        Raises LabError for silence, under ~2 s of speech, or a file that is not audio.
        """
        from components.core.audio import clean_reference
        from components.xtts.latents import condition, conditioning_settings

        model = self._require_model(progress)
        t0 = time.perf_counter()
        clean = clean_reference(path, COND_SAMPLE_RATE, max_seconds=conditioning_settings(model)["max_ref_len"])
        t_reference = time.perf_counter() - t0
        t0 = time.perf_counter()
        voice, status = condition(model, clean.audio, clean.sr, self._latents, self.model_id or "", progress,
                                  meta={"seconds": clean.seconds, "warnings": clean.warnings})
        self._sync()
        return PreparedReference(voice=voice, cache=status, seconds=clean.seconds, warnings=clean.warnings,
                                 timings={"reference": t_reference, "conditioning": time.perf_counter() - t0})

    def _voice(self, request: SynthRequest, progress: Progress) -> tuple[Any, dict[str, float], dict[str, Any]]:
        """Conditioning for ``request``: (voice, timings, info) from a reference or a built-in speaker."""
        from components.xtts.latents import Voice

        if request.reference:
            ref = self.prepare_reference(request.reference, progress)
            # Speech left after clean-up (trimmed, capped): experiments log the cut they asked for as
            # reference_seconds, so this has its own column.
            info = {"latent_cache": ref.cache, "reference_speech_seconds": round(ref.seconds, 3)}
            if request.speaker:
                ref.warnings.append(f"speaker {request.speaker!r} ignored: the reference recording was cloned")
            if ref.warnings:
                info["note"] = "; ".join(ref.warnings)
            return ref.voice, dict(ref.timings), info
        if not self._speakers:
            raise LabError("this XTTS checkpoint has no built-in speakers (no speakers_xtts.pth): "
                           "give a reference recording to clone")
        name = request.speaker or next(iter(self._speakers))
        if name not in self._speakers:
            known = list(self._speakers)
            raise LabError(f"xtts has no speaker {name!r}; choose one of: {', '.join(known[:12])}"
                           + (f" ... ({len(known)} in all)" if len(known) > 12 else ""))
        entry = self._speakers[name]
        voice = Voice(entry["gpt_cond_latent"], entry["speaker_embedding"], {"speaker": name})
        return voice, {"reference": 0.0, "conditioning": 0.0}, {"latent_cache": "builtin"}

    # -- synthesis -----------------------------------------------------------------------------
    def _seed(self, seed: int | None) -> None:
        """Seed every generator the sampler may touch, right before generation."""
        if seed is None:
            return
        import torch

        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        if torch.cuda.is_available():
            torch.cuda.manual_seed_all(seed)

    def _sync(self) -> None:
        """Wait for queued GPU work so the stage timers measure it."""
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()

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
        (``components.xtts.fast.BatchDecoder``). ``--batch 1``: one at a time."""
        return self.batch_size > 1

    @contextmanager
    def _holding(self, precision: str, progress: Progress, shared: bool) -> Iterator[None]:
        """Use the model in ``precision``: ``shared`` with the other requests decoding in the batch,
        else alone. Switching precision needs the model alone (the batch reads the packed weights),
        so a request for another precision waits for the batch to drain, switches, then shares."""
        from components.xtts import fast

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
        from components.xtts.text import token_chunks

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
        from components.xtts.decode import generate_chunks

        self._seed(request.seed)
        return generate_chunks(self.model, tokens, voice.gpt_cond_latent, self._settings(request), progress)

    def synthesize(self, request: SynthRequest, progress: Progress = no_progress) -> SynthResult:
        """Synthesise ``request`` whole. Timings: reference, conditioning, gpt, vocoder (seconds)."""
        voice, tokens, timings, info = self._begin(request, progress)
        shared = self.concurrent
        with self._holding(info["precision"], progress, shared), self._oom_guard():
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
        with self._holding(info["precision"], progress, shared), self._oom_guard():
            if shared:  # codes from the batch other requests share, vocoded as they come
                source = self._batch().stream(self.model, tokens, voice, self._settings(request), request.seed, request.speed,
                                              self.stream_chunk_tokens, stats, progress)
            else:
                from components.xtts.stream import stream_chunks

                self._seed(request.seed)
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

    def _oom_guard(self):
        """Turn CUDA out-of-memory into a LabError; the engine stays usable afterwards."""
        import contextlib

        import torch

        @contextlib.contextmanager
        def guard():
            try:
                yield
            except (torch.cuda.OutOfMemoryError, LabError) as e:
                # The shared batch reports a failed step as a LabError caused by the OOM.
                if not isinstance(e, torch.cuda.OutOfMemoryError) and not isinstance(
                        e.__cause__, torch.cuda.OutOfMemoryError):
                    raise
                torch.cuda.empty_cache()
                raise LabError(
                    "GPU out of memory while synthesising: try shorter text (text splitting on), "
                    "close other GPU programs, or restart the lab with --device cpu"
                ) from e

        return guard()

    # -- the fast path (components.xtts.fast) ----------------------------------------------------
    def _vocode_fast(self, latents: list[Any], voice: Any, speed: float) -> tuple[np.ndarray, float]:
        """HiFiGAN over each chunk's latents at ``speed``, concatenated: (audio, seconds)."""
        from components.xtts import fast

        t0 = time.perf_counter()
        wavs = [fast.vocode(self.model, z, voice.speaker_embedding, speed) for z in latents]
        self._sync()
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
        with self._holding(info["precision"], progress, shared), self._oom_guard():
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
        """The shared batch concurrent requests decode in (``components.xtts.shared``)."""
        from components.xtts.shared import SharedBatch

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
        decode in (``components.xtts.fast.BatchDecoder``), otherwise they decode as a batch of
        their own (``generate_batch``). Each keeps its own voice, text chunks, sampling
        settings and seed (its own ``torch.Generator``, seeded as ``synthesize`` seeds torch),
        and is vocoded by HiFiGAN on its own as soon as its last chunk is decoded. Timings per
        result: reference, conditioning, gpt (wall time the request spent in the batch) and
        vocoder; ``info`` adds ``batch_size`` and ``batch_rows`` (the most rows decoded beside
        it). All references are prepared before decoding starts, so a bad one fails the call
        before any GPT work. Requests asking for different precisions run as separate batches.
        """
        requests = list(requests)
        size = int(batch_size or self.batch_size)
        if size < 1:
            raise LabError(f"batch size must be at least 1, got {batch_size!r}")
        if size == 1 or len(requests) <= 1:  # nothing to batch
            for i, request in enumerate(requests):
                yield i, self.synthesize(request, progress)
            return
        self._require_model(progress)
        groups: dict[str, list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault(self._settings(request).precision or self.config.precision, []).append(i)
        done = 0
        for precision, indices in groups.items():
            begun = [self._begin(requests[i], progress) for i in indices]
            # Shared: the rows join the engine's batch beside other users' requests (or, at another
            # batch size, generate_batch runs with a cache of its own); only a precision switch waits.
            with self._holding(precision, progress, shared=True):
                yield from self._decode_group(requests, indices, begun, size, progress, done)
            done += len(indices)
        progress(1.0, desc="done")

    def _decode_group(self, requests, indices, begun, size, progress, done) -> Iterator[tuple[int, SynthResult]]:
        """Decode one precision's requests as batches (see ``iter_batch``)."""
        import torch

        from components.xtts import fast

        items = []
        for i, (voice, tokens, _timings, _info) in zip(indices, begun):
            seed = requests[i].seed
            items.append(fast.BatchItem(
                chunks=tokens, gpt_cond_latent=voice.gpt_cond_latent.to(self.device),
                settings=self._settings(requests[i]),
                generator=None if seed is None else torch.Generator(self.device).manual_seed(seed)))
        progress(0.1, desc=f"decoding {len(items)} rows, {min(size, len(items))} at a time")
        with self._oom_guard():
            if self.concurrent and size == self.batch_size:
                rows = self._batch().rows(self.model, items)  # in the batch the server's requests share
            else:
                rows = fast.generate_batch(self.model, items, size)
            # Each row vocoded once decoded (a GPU takes several finished rows in one HiFiGAN call).
            for row, audio, t_voc in fast.vocode_rows(self.model, rows, [b[0].speaker_embedding for b in begun],
                                                      [requests[i].speed for i in indices]):
                i = indices[row.index]
                voice, _tokens, timings, info = begun[row.index]
                n_tokens = sum(int(g.tokens.shape[-1]) for g in row.generations)
                timings = {**timings, "gpt": row.seconds, "vocoder": t_voc}
                info = {**info, "gpt_tokens": n_tokens, "gpt_ms_per_token": round(1e3 * row.seconds / max(n_tokens, 1), 2),
                        "batch_size": size, "batch_rows": row.rows_seen}
                done += 1
                progress(0.1 + 0.9 * done / len(requests), desc=f"{done} of {len(requests)} rows done")
                yield i, SynthResult(audio=audio, sample_rate=self.sample_rate, timings=timings, info=info)

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
