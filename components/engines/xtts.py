"""Coqui XTTS v2: multilingual, voice-cloning, streaming text-to-speech.

The engine is cheap to build; ``load()`` finds the weights (``components.xtts.locate``), loads
them once with coqui-tts's own classes and keeps the model as ``engine.model``. Per request:

    reference clean-up (components.audio) -> conditioning latents (cached: components.xtts.latents)
    -> text normalised and split (components.xtts.text) -> GPT -> HiFiGAN -> audio + stage timings

The model-specific pipeline lives in two private methods, ``_run_pipeline`` (whole utterance) and
``_run_stream`` (chunks as they are ready). They mirror stock coqui ``Xtts.inference`` and
``Xtts.inference_stream`` step by step, split only to time each stage, so their output equals
stock coqui's for the same seed (a test checks it). By default (``fast_path``) they run the lab's
fast path instead (``components.xtts.fast``: no second GPT forward, packed GPT weights in the
configured precision, linear-time streaming); in fp32 its codes equal stock's for the same seed
and its audio equals stock's within float tolerance. ``synthesize_speeds`` serves speed sweeps
from one GPT pass.

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
from .settings import EngineSettings, for_engine, setting

from components.xtts.locate import CPML_URL  # one CPML link everywhere

# The 17 languages XTTS v2 speaks, in the order its documentation lists them.
LANGUAGES: tuple[str, ...] = (
    "en", "es", "fr", "de", "it", "pt", "pl", "tr", "ru",
    "nl", "cs", "ar", "zh-cn", "hu", "ko", "ja", "hi",
)

DEFAULT_CACHE_DIR = "~/.cache/xtts-lab"
COND_SAMPLE_RATE = 22050       # Hz: XTTS conditions on 22.05 kHz audio (speaker encoder resamples to 16 kHz)
STREAM_CHUNK_TOKENS = 40       # GPT tokens per streamed chunk (~1.9 s of audio; coqui's default is 20,
                               # fewer, bigger chunks keep the fast path's per-chunk context cheap)
STREAM_OVERLAP_SAMPLES = 1024  # crossfade between streamed chunks (coqui's default)


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


class _ModelGate:
    """Who may use the loaded model now: any number of requests that decode in the shared batch
    (``BatchDecoder``: own KV cache, own generators), or one request alone: solo decoding uses the
    model's own KV cache and torch's global seed, and a precision switch repacks the weights the
    batch reads. A request that needs the model alone goes before requests that arrive after it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0          # holders decoding in the batch
        self._alone = False       # one holder has the model to itself
        self._waiting_alone = 0   # requests waiting for it alone (later shared requests wait behind them)

    def acquire(self, shared: bool) -> None:
        with self._cond:
            if shared:
                self._cond.wait_for(lambda: not self._alone and not self._waiting_alone)
                self._shared += 1
                return
            self._waiting_alone += 1
            try:
                self._cond.wait_for(lambda: not self._alone and not self._shared)
            finally:
                self._waiting_alone -= 1
            self._alone = True

    def share(self) -> None:
        """Alone -> shared, with nobody getting in between (after a precision switch)."""
        with self._cond:
            self._alone, self._shared = False, self._shared + 1
            self._cond.notify_all()

    def release(self, shared: bool) -> None:
        with self._cond:
            if shared:
                self._shared -= 1
            else:
                self._alone = False
            self._cond.notify_all()


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
        # The lab's fast path (components.xtts.fast) by default; False runs stock coqui's steps.
        self.fast_path = True
        self._device: str | None = None
        self._speakers: dict[str, dict[str, Any]] = {}
        self._latents = None                # components.xtts.latents.LatentCache
        self._load_lock = threading.Lock()
        self._gate = _ModelGate()
        self._decoder = None                # components.xtts.fast.BatchDecoder, made on first use
        self._decoder_lock = threading.Lock()

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

    def _conditioning_settings(self) -> dict[str, Any]:
        """The values the latents depend on besides the audio (part of the cache key)."""
        cfg = self.model.config
        return {"gpt_cond_len": int(cfg.gpt_cond_len), "gpt_cond_chunk_len": int(cfg.gpt_cond_chunk_len),
                "max_ref_len": int(cfg.max_ref_len), "sr": COND_SAMPLE_RATE}

    def prepare_reference(self, path: str, progress: Progress = no_progress) -> PreparedReference:
        """Clean ``path`` and compute its conditioning latents, from the cache when it has them.

        Raises LabError for silence, under ~2 s of speech, or a file that is not audio.
        """
        from components.audio import clean_reference
        from components.xtts.latents import Voice, latent_key

        model = self._require_model(progress)
        settings = self._conditioning_settings()
        t0 = time.perf_counter()
        clean = clean_reference(path, COND_SAMPLE_RATE, max_seconds=settings["max_ref_len"])
        t_reference = time.perf_counter() - t0

        key = latent_key(clean.audio, clean.sr, settings, self.model_id or "")
        t0 = time.perf_counter()
        found = self._latents.get(key)
        if found is not None:
            voice, status = found
        else:
            import torch

            progress(0.05, desc=f"conditioning on the reference ({clean.seconds:.1f} s)")
            audio = torch.from_numpy(clean.audio)[None]
            with torch.inference_mode():
                latent = model.get_gpt_cond_latents(audio, clean.sr, length=settings["gpt_cond_len"],
                                                    chunk_length=settings["gpt_cond_chunk_len"])
                embedding = model.get_speaker_embedding(audio, clean.sr)
            voice = Voice(latent.cpu(), embedding.cpu(),
                          {"seconds": clean.seconds, "warnings": clean.warnings})
            self._latents.put(key, voice)
            status = "miss"
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

    # -- text ----------------------------------------------------------------------------------
    def _token_chunks(self, request: SynthRequest) -> tuple[list[Any], list[str]]:
        """Text chunks for ``request`` as token tensors, each under the GPT's text-token limit.

        Returns (token tensors, notes). Splits at sentence ends up to the language's character
        limit; a chunk that still has too many tokens is split again instead of hitting coqui's
        400-token assertion.
        """
        import torch

        from components.xtts import text as xtext

        lang = request.lang
        splitting = self._settings(request).enable_text_splitting
        limit = xtext.char_limit(lang)
        max_tokens = int(self.model.args.gpt_max_text_tokens)
        pending = xtext.prepare(request.text, lang, splitting=splitting, limit=limit)
        if not pending:
            raise LabError("text is empty after normalisation: type something to say")
        notes = []
        if not splitting and len(pending[0]) > limit:
            notes.append(f"text has {len(pending[0])} characters, over the {limit} XTTS handles well in "
                         f"{lang!r}; turn text splitting on if the audio is cut short")
        tokens: list[Any] = []
        while pending:
            chunk = pending.pop(0)
            ids = self.model.tokenizer.encode(chunk.strip().lower(), lang=lang.split("-")[0])
            if len(ids) >= max_tokens:
                if len(chunk) <= 1:
                    raise LabError(f"cannot fit text into XTTS's {max_tokens}-token limit: {chunk!r}")
                pending[:0] = xtext.split_text(chunk, lang, max(1, len(chunk) // 2))
                if not any("token limit" in n for n in notes):
                    notes.append(f"split further to stay under the {max_tokens}-token limit")
                continue
            tokens.append(torch.IntTensor(ids).unsqueeze(0).to(self.device))
        return tokens, notes

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
        """The precision a request runs in: its own, else the lab's (the stock path is fp32 only).

        A request may ask for another precision than the lab was started with, so users can A/B
        them on one loaded model; ``_holding`` switches (repacks the GPT weights once, seconds).
        """
        if not self.fast_path:
            return "fp32"
        return settings.precision or self.config.precision

    @property
    def concurrent(self) -> bool:
        """Several requests may use this engine at once (``Engines.use`` lets them in together):
        with the fast path and ``--batch`` above 1 their rows join one running batch
        (``components.xtts.fast.BatchDecoder``). ``--batch 1`` or the stock path: one at a time."""
        return self.fast_path and self.batch_size > 1

    @contextmanager
    def _holding(self, precision: str, progress: Progress, shared: bool) -> Iterator[None]:
        """Use the model in ``precision``: ``shared`` with the other requests decoding in the batch,
        else alone. Switching precision needs the model alone (the batch reads the packed weights),
        so a request for another precision waits for the batch to drain, switches, then shares."""
        from components.xtts import fast

        def prepared() -> bool:
            return not self.fast_path or fast.precision_of(self.model) == precision

        self._gate.acquire(shared)
        if not prepared():
            if shared:  # trade the shared hold for the model alone, switch, then share again
                self._gate.release(True)
                self._gate.acquire(False)
            try:
                if not prepared():
                    progress(0.05, desc=f"preparing the GPT in {precision}")
                    fast.apply_precision(self.model, precision)
            except BaseException:
                self._gate.release(False)
                raise
            if shared:
                self._gate.share()
        try:
            yield
        finally:
            self._gate.release(shared)

    def _batch_decoder(self):
        """The decoder that batches this engine's concurrent requests, for the model's current
        precision (call while holding the model shared: the precision cannot change then)."""
        from components.xtts import fast

        with self._decoder_lock:
            if self._decoder is None or not self._decoder.serves(self.model):
                self._decoder = fast.BatchDecoder(self.model, self.batch_size)
            return self._decoder

    def _submit(self, tokens: list[Any], voice: Any, request: SynthRequest, notify: Any = None,
                stream_tokens: bool = True):
        """Queue ``request``'s text chunks to join the running batch; its ``RowHandle``
        (``notify``: a queue that gets the handle when the row is over; ``stream_tokens=False``
        for readers that wait for whole chunks)."""
        import torch

        from components.xtts import fast

        # Its own generator, seeded as ``_seed`` seeds torch's global one (the same draws as a
        # solo synthesis); unseeded requests get a random seed, never the global generator that
        # a solo request beside them may have seeded.
        generator = torch.Generator(self.device)
        if request.seed is None:
            generator.seed()
        else:
            generator.manual_seed(request.seed)
        return self._batch_decoder().submit(fast.BatchItem(
            chunks=tokens, gpt_cond_latent=voice.gpt_cond_latent.to(self.device),
            settings=self._settings(request), generator=generator), notify, stream_tokens=stream_tokens)

    def _batch_info(self, done: Any) -> dict[str, Any]:
        n_tokens = sum(int(g.tokens.shape[-1]) for g in done.generations)
        return {"gpt_tokens": n_tokens, "gpt_ms_per_token": round(1e3 * done.seconds / max(n_tokens, 1), 2),
                "batch_size": self.batch_size, "batch_rows": done.rows_seen}

    def _generate_batched(self, tokens: list[Any], voice: Any, request: SynthRequest,
                          progress: Progress) -> tuple[list[Any], dict[str, float], dict[str, Any]]:
        """Like ``_generate_fast``, in the shared batch: (latents per chunk, {"gpt"}, info)."""
        handle = self._submit(tokens, voice, request, stream_tokens=False)
        try:
            for i in range(len(tokens)):
                progress(0.1 + 0.8 * i / len(tokens), desc=f"decoding chunk {i + 1} of {len(tokens)} in the shared batch")
                for _ in handle.tokens():  # returns at the chunk's end (no per-token events asked for)
                    pass
            done = handle.result()
        finally:
            handle.cancel()  # if we are leaving early (an error, an interrupt), free its slot
        return [g.latents for g in done.generations], {"gpt": done.seconds}, self._batch_info(done)

    def _begin(self, request: SynthRequest, progress: Progress):
        self._require_model(progress)
        check_language(self, request.lang)
        precision = self._precision(self._settings(request))
        voice, timings, info = self._voice(request, progress)
        tokens, notes = self._token_chunks(request)
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

    def synthesize(self, request: SynthRequest, progress: Progress = no_progress) -> SynthResult:
        """Synthesise ``request`` whole. Timings: reference, conditioning, gpt, vocoder (seconds)."""
        voice, tokens, timings, info = self._begin(request, progress)
        shared = self.concurrent
        with self._holding(info["precision"], progress, shared), self._oom_guard():
            if shared:  # decode in the batch other requests share; vocode alone
                latents, gpt_timings, stage_info = self._generate_batched(tokens, voice, request, progress)
                audio, t_voc = self._vocode_fast(latents, voice, request.speed)
                stage_timings = {**gpt_timings, "vocoder": t_voc}
            else:
                self._seed(request.seed)
                audio, stage_timings, stage_info = self._run_pipeline(
                    tokens, voice, self._settings(request), request.speed, progress)
        timings.update(stage_timings)
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
            if shared:
                source = self._stream_batched(tokens, voice, request, stats, progress)
            else:
                self._seed(request.seed)
                source = self._run_stream(tokens, voice, self._settings(request), request.speed, stats, progress)
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

    # -- the model pipeline (stock coqui, timed per stage) -------------------------------------
    def _stock_inputs(self, voice: Any, settings: GenerationSettings, speed: float):
        """What coqui's own steps take: model, GPT, voice tensors on the device, latent length
        scale for ``speed`` (stock rescales latents by 1/speed before HiFiGAN), sampling kwargs."""
        return (self.model, self.model.gpt, voice.gpt_cond_latent.to(self.device),
                voice.speaker_embedding.to(self.device), 1.0 / max(speed, 0.05),
                self._sampling_kwargs(settings))

    def _sampling_kwargs(self, settings: GenerationSettings) -> dict[str, Any]:
        return {"temperature": settings.temperature, "top_k": settings.top_k, "top_p": settings.top_p,
                "repetition_penalty": float(settings.repetition_penalty),
                "length_penalty": float(settings.length_penalty), "do_sample": True, "num_beams": 1}

    def _run_pipeline(self, tokens: list[Any], voice: Any, settings: GenerationSettings, speed: float,
                      progress: Progress = no_progress) -> tuple[np.ndarray, dict[str, float], dict[str, Any]]:
        """Text tokens + voice -> (audio, {"gpt", "vocoder"} seconds, {"gpt_tokens"}).

        Step for step what ``Xtts.inference`` does per sentence (generate, second GPT forward for
        the latents, speed rescale, HiFiGAN), with the chunks' audio concatenated.
        """
        if self.fast_path:
            latents, timings, info = self._generate_fast(tokens, voice, settings, progress)
            audio, t_voc = self._vocode_fast(latents, voice, speed)
            return audio, {"gpt": timings["gpt"], "vocoder": t_voc}, info
        import torch
        import torch.nn.functional as F

        model, gpt, cond, embedding, length_scale, sampling = self._stock_inputs(voice, settings, speed)
        t_gpt = t_voc = 0.0
        n_tokens = 0
        wavs = []
        with torch.inference_mode():
            for i, text_tokens in enumerate(tokens):
                progress(0.1 + 0.85 * i / len(tokens), desc=f"generating chunk {i + 1} of {len(tokens)}")
                t0 = time.perf_counter()
                codes = gpt.generate(cond_latents=cond, text_inputs=text_tokens,
                                     num_return_sequences=model.gpt_batch_size,
                                     output_attentions=False, **sampling)
                expected_len = torch.tensor([codes.shape[-1] * gpt.code_stride_len], device=self.device)
                text_len = torch.tensor([text_tokens.shape[-1]], device=self.device)
                latents = gpt(text_tokens, text_len, codes, expected_len, cond_latents=cond,
                              return_attentions=False, return_latent=True)
                if length_scale != 1.0:
                    latents = F.interpolate(latents.transpose(1, 2), scale_factor=length_scale,
                                            mode="linear").transpose(1, 2)
                self._sync()
                t1 = time.perf_counter()
                wavs.append(model.hifigan_decoder(latents, g=embedding).cpu().squeeze())
                self._sync()
                t_gpt += t1 - t0
                t_voc += time.perf_counter() - t1
                n_tokens += int(codes.shape[-1])
        audio = torch.cat(wavs, dim=0).numpy().astype(np.float32, copy=False)
        return audio, {"gpt": t_gpt, "vocoder": t_voc}, {"gpt_tokens": n_tokens}

    def _run_stream(self, tokens: list[Any], voice: Any, settings: GenerationSettings, speed: float,
                    stats: dict[str, Any], progress: Progress = no_progress) -> Iterator[np.ndarray]:
        """Yield audio chunks as ``Xtts.inference_stream`` does; fill ``stats`` with timings and tokens.

        With ``fast_path`` (default) each chunk vocodes only its new frames plus context (linear
        in length; ``components.xtts.fast.stream``). Stock behaviour otherwise: every chunk
        re-vocodes all latents of the sentence so far (quadratic in length) and crossfades
        ``STREAM_OVERLAP_SAMPLES`` into the next chunk.
        """
        if self.fast_path:
            yield from self._stream_fast(tokens, voice, settings, speed, stats, progress)
            return
        import torch
        import torch.nn.functional as F

        model, gpt, cond, embedding, length_scale, sampling = self._stock_inputs(voice, settings, speed)
        t_gpt = t_voc = 0.0
        n_tokens = 0
        with torch.inference_mode():
            for i, text_tokens in enumerate(tokens):
                progress(0.1 + 0.85 * i / len(tokens), desc=f"streaming chunk {i + 1} of {len(tokens)}")
                t0 = time.perf_counter()
                fake_inputs = gpt.compute_embeddings(cond, text_tokens)
                generator = gpt.get_generator(fake_inputs=fake_inputs, num_return_sequences=1,
                                              output_attentions=False, output_hidden_states=True,
                                              return_dict_in_generate=True, **sampling)
                t_gpt += time.perf_counter() - t0
                pending, latents = 0, []
                wav_prev = overlap = None
                done = False
                while not done:
                    t0 = time.perf_counter()
                    try:
                        _token, latent = next(generator)
                        latents.append(latent)
                        pending += 1
                        n_tokens += 1
                    except StopIteration:
                        done = True
                    self._sync()
                    t_gpt += time.perf_counter() - t0
                    if latents and (done or pending >= self.stream_chunk_tokens):
                        t0 = time.perf_counter()
                        z = torch.cat(latents, dim=0)[None, :]
                        if length_scale != 1.0:
                            z = F.interpolate(z.transpose(1, 2), scale_factor=length_scale,
                                              mode="linear").transpose(1, 2)
                        wav = model.hifigan_decoder(z, g=embedding)
                        chunk, wav_prev, overlap = model.handle_chunks(
                            wav.squeeze(), wav_prev, overlap, STREAM_OVERLAP_SAMPLES, is_final=done)
                        out = chunk.cpu().numpy().astype(np.float32, copy=True)
                        self._sync()
                        t_voc += time.perf_counter() - t0
                        pending = 0
                        if len(out):
                            yield out
        stats["timings"] = {"gpt": t_gpt, "vocoder": t_voc}
        stats["gpt_tokens"] = n_tokens

    # -- the fast path (components.xtts.fast) ----------------------------------------------------
    def _generate_fast(self, tokens: list[Any], voice: Any, settings: GenerationSettings,
                       progress: Progress = no_progress) -> tuple[list[Any], dict[str, float], dict[str, Any]]:
        """GPT codes for every text chunk: (latents per chunk, {"gpt"} seconds, {"gpt_tokens"})."""
        from components.xtts import fast

        cond = voice.gpt_cond_latent.to(self.device)
        latents, t_gpt, n_tokens = [], 0.0, 0
        for i, text_tokens in enumerate(tokens):
            progress(0.1 + 0.85 * i / len(tokens), desc=f"generating chunk {i + 1} of {len(tokens)}")
            t0 = time.perf_counter()
            g = fast.generate(self.model, text_tokens, cond, settings)
            self._sync()
            t_gpt += time.perf_counter() - t0
            latents.append(g.latents)
            n_tokens += int(g.tokens.shape[-1])
        return latents, {"gpt": t_gpt}, {"gpt_tokens": n_tokens,
                                         "gpt_ms_per_token": round(1e3 * t_gpt / max(n_tokens, 1), 2)}

    def _vocode_fast(self, latents: list[Any], voice: Any, speed: float) -> tuple[np.ndarray, float]:
        """HiFiGAN over each chunk's latents at ``speed``, concatenated: (audio, seconds)."""
        from components.xtts import fast

        t0 = time.perf_counter()
        wavs = [fast.vocode(self.model, z, voice.speaker_embedding, speed) for z in latents]
        self._sync()
        return np.concatenate(wavs).astype(np.float32, copy=False), time.perf_counter() - t0

    def _stream_fast(self, tokens: list[Any], voice: Any, settings: GenerationSettings, speed: float,
                     stats: dict[str, Any], progress: Progress = no_progress) -> Iterator[np.ndarray]:
        from components.xtts import fast

        cond = voice.gpt_cond_latent.to(self.device)
        t_gpt = t_voc = 0.0
        n_tokens = 0
        for i, text_tokens in enumerate(tokens):
            progress(0.1 + 0.85 * i / len(tokens), desc=f"streaming chunk {i + 1} of {len(tokens)}")
            part: dict[str, Any] = {}
            yield from fast.stream(self.model, text_tokens, cond, voice.speaker_embedding, settings, speed=speed,
                                   first_chunk_tokens=min(fast.STREAM_FIRST_TOKENS, self.stream_chunk_tokens),
                                   chunk_tokens=self.stream_chunk_tokens, stats=part)
            t_gpt += part["timings"]["gpt"]
            t_voc += part["timings"]["vocoder"]
            n_tokens += part["gpt_tokens"]
        stats["timings"] = {"gpt": t_gpt, "vocoder": t_voc}
        stats["gpt_tokens"] = n_tokens
        stats["gpt_ms_per_token"] = round(1e3 * t_gpt / max(n_tokens, 1), 2)

    def _stream_batched(self, tokens: list[Any], voice: Any, request: SynthRequest, stats: dict[str, Any],
                        progress: Progress = no_progress) -> Iterator[np.ndarray]:
        """``_stream_fast`` with the codes decoded in the shared batch: each text chunk is vocoded
        piece by piece as the batch samples its codes (``components.xtts.fast.stream_row``)."""
        from components.xtts import fast

        handle = self._submit(tokens, voice, request)
        t_voc = 0.0
        try:
            for i in range(len(tokens)):
                progress(0.1 + 0.85 * i / len(tokens), desc=f"streaming chunk {i + 1} of {len(tokens)}")
                part: dict[str, Any] = {}
                yield from fast.stream_row(self.model, handle, voice.speaker_embedding, speed=request.speed,
                                           first_chunk_tokens=min(fast.STREAM_FIRST_TOKENS, self.stream_chunk_tokens),
                                           chunk_tokens=self.stream_chunk_tokens, stats=part)
                t_voc += part["timings"]["vocoder"]
            done = handle.result()
        finally:
            handle.cancel()  # a client that closed its stream frees its slot at the next step
        stats["timings"] = {"gpt": done.seconds, "vocoder": t_voc}
        stats.update(self._batch_info(done))

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
            if shared:  # the same decoding as synthesize(), so each speed equals it exactly
                latents, gpt_timings, gpt_info = self._generate_batched(tokens, voice, request, progress)
            else:
                self._seed(request.seed)
                latents, gpt_timings, gpt_info = self._generate_fast(tokens, voice, self._settings(request), progress)
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
        if not self.fast_path or size == 1 or len(requests) <= 1:  # stock path / nothing to batch
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
                rows = self._shared_rows(items)  # in the batch the server's requests share
            else:
                rows = fast.generate_batch(self.model, items, size)
            for row in rows:
                i = indices[row.index]
                voice, _tokens, timings, info = begun[row.index]
                audio, t_voc = self._vocode_fast([g.latents for g in row.generations], voice, requests[i].speed)
                n_tokens = sum(int(g.tokens.shape[-1]) for g in row.generations)
                timings = {**timings, "gpt": row.seconds, "vocoder": t_voc}
                info = {**info, "gpt_tokens": n_tokens, "gpt_ms_per_token": round(1e3 * row.seconds / max(n_tokens, 1), 2),
                        "batch_size": size, "batch_rows": row.rows_seen}
                done += 1
                progress(0.1 + 0.9 * done / len(requests), desc=f"{done} of {len(requests)} rows done")
                yield i, SynthResult(audio=audio, sample_rate=self.sample_rate, timings=timings, info=info)

    def _shared_rows(self, items: list[Any]) -> Iterator[Any]:
        """``generate_batch`` for the engine's own decoder: ``items`` join the shared batch (beside
        whatever other users' requests decode there) and come back as they finish, each as a
        ``BatchDone`` whose ``index`` is its position in ``items``. If the caller stops early, the
        rows still decoding leave the batch."""
        import dataclasses
        import queue

        finished: queue.SimpleQueue = queue.SimpleQueue()
        decoder = self._batch_decoder()
        handles = [decoder.submit(item, finished, stream_tokens=False) for item in items]
        position = {id(h): k for k, h in enumerate(handles)}
        try:
            for _ in handles:
                handle = finished.get()
                yield dataclasses.replace(handle.result(), index=position[id(handle)])
        finally:
            for handle in handles:
                handle.cancel()

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
