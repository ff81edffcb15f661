"""Streaming in linear time: each chunk vocodes only its new frames plus HiFiGAN's receptive field."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from components.core import LabError
if TYPE_CHECKING:  # the settings type is the xtts engine's own (components.engines.xtts)
    from components.engines.xtts.settings import XttsSettings as GenerationSettings
from components.engines.xtts.decode import _decode
from components.engines.xtts.vocoder import HOP_SAMPLES, _rescale, _vocoder_autocast

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

    from components.engines.xtts.continuous import RowHandle

CONTEXT_FRAMES = 16            # HiFiGAN receptive-field radius is ~14 frames (measured); margin of 2
STREAM_FIRST_TOKENS = 10       # first streamed chunk after ~0.46 s of audio's worth of tokens
STREAM_CHUNK_TOKENS = 40       # later chunks: bigger, so the context overhead stays small
STREAM_CROSSFADE = 256         # samples blended at each join (insurance: joins are already exact)


def _final_count(n_final_in: int, scale: float, n_out: int) -> int:
    """How many outputs of a linear ``F.interpolate`` (align_corners=False) can no longer change.

    Output k reads inputs floor(src) and floor(src)+1 with src = (k + 0.5) / scale - 0.5; once
    both lie among the ``n_final_in`` inputs that are final (and the last input is not being
    clamped), later inputs cannot change it. One output is held back against float rounding.
    """
    if n_final_in < 2:
        return 0
    return max(0, min(n_out, math.ceil((n_final_in - 0.5) * scale - 0.5) - 1))


class _FrameStream:
    """HiFiGAN's input frames for a growing list of latents, computed with stock's exact ops.

    Stock ``HifiDecoder.forward`` interpolates the latents x4 (1024-sample codes -> 256-sample
    hops) and then by 24000/22050, and the speed control interpolates before that. Each output
    depends on two neighbouring inputs only, so all frames but the last few are final long
    before the utterance ends; ``frames()`` says how many.
    """

    def __init__(self, model: Any, speed: float):
        dec = model.hifigan_decoder
        self.dec = dec
        self.length_scale = 1.0 / max(speed, 0.05)
        self.up = dec.ar_mel_length_compression / dec.output_hop_length
        self.resample = dec.output_sample_rate / dec.input_sample_rate

    def frames(self, latents: "torch.Tensor", done: bool) -> tuple["torch.Tensor", int]:
        """latents [1, n, dim] so far -> (frames [dim, F], how many of them are final)."""
        import torch.nn.functional as F

        n = latents.shape[1]
        z = _rescale(latents, 1.0 / self.length_scale)
        final = n if self.length_scale == 1.0 else _final_count(n, self.length_scale, z.shape[1])
        z = F.interpolate(z.transpose(1, 2), scale_factor=[self.up], mode="linear").squeeze(1)
        final = _final_count(final, self.up, z.shape[-1])
        if self.resample != 1.0:
            z = F.interpolate(z, scale_factor=[self.resample], mode="linear")
            final = _final_count(final, self.resample, z.shape[-1])
        z = z.squeeze(0)
        return z, (z.shape[-1] if done else final)


def frames_per_token(model: Any, speed: float = 1.0) -> float:
    """HiFiGAN input frames per GPT token (~4.35 at speed 1: 1024 samples at 22.05 kHz)."""
    dec = model.hifigan_decoder
    return (dec.ar_mel_length_compression / dec.output_hop_length
            * dec.output_sample_rate / dec.input_sample_rate / max(speed, 0.05))


def stream(model: Any, text_tokens: "torch.Tensor", gpt_cond_latent: "torch.Tensor",
           speaker_embedding: "torch.Tensor", settings: GenerationSettings | None = None, *,
           speed: float = 1.0, first_chunk_tokens: int = STREAM_FIRST_TOKENS,
           chunk_tokens: int = STREAM_CHUNK_TOKENS, crossfade: int = STREAM_CROSSFADE,
           min_new_tokens: int = 0, max_new_tokens: int | None = None,
           stats: dict[str, Any] | None = None) -> Iterator[np.ndarray]:
    """Return an iterator of float32 audio chunks of one text chunk while its codes are being generated.

    Each chunk vocodes only frames not yet played plus ``CONTEXT_FRAMES`` on each side (more
    than HiFiGAN's receptive field), so its samples equal those of vocoding the whole utterance
    and the total work grows linearly with length (stock re-vocodes everything each chunk).
    Joins are additionally crossfaded over ``crossfade`` samples. The first chunk comes after
    ``first_chunk_tokens`` codes, later ones every ``chunk_tokens``. Same seed, same codes as
    ``generate``. ``stats`` (if given) receives timings (gpt, vocoder), gpt_tokens,
    ttfa_seconds (call to first chunk) and chunks.
    """
    import torch

    if first_chunk_tokens < 1 or chunk_tokens < 1:
        raise LabError(f"chunk sizes must be at least 1 token, got {first_chunk_tokens!r}, {chunk_tokens!r}")
    if crossfade < 0:
        raise LabError(f"crossfade must be >= 0 samples, got {crossfade!r}")
    # The decorator form of inference_mode re-enters it around each step of a generator, so the
    # caller's code between chunks does not run in inference mode.
    return torch.inference_mode()(_stream)(
        model, text_tokens, gpt_cond_latent, speaker_embedding, settings or _default_settings(),
        speed, first_chunk_tokens, chunk_tokens, crossfade, min_new_tokens, max_new_tokens, stats)


def stream_row(model: Any, handle: RowHandle, speaker_embedding: "torch.Tensor", *, speed: float = 1.0,
               first_chunk_tokens: int = STREAM_FIRST_TOKENS, chunk_tokens: int = STREAM_CHUNK_TOKENS,
               crossfade: int = STREAM_CROSSFADE, stats: dict[str, Any] | None = None) -> Iterator[np.ndarray]:
    """``stream`` for the next text chunk of a ``BatchDecoder`` row: its audio, chunk by chunk, as
    the batch samples its codes (the same vocoding and the same samples as ``stream``)."""
    import torch

    if first_chunk_tokens < 1 or chunk_tokens < 1:
        raise LabError(f"chunk sizes must be at least 1 token, got {first_chunk_tokens!r}, {chunk_tokens!r}")
    return torch.inference_mode()(_stream)(
        model, None, None, speaker_embedding, None, speed, first_chunk_tokens, chunk_tokens, crossfade,
        0, None, stats, handle.tokens)


def _stream(model, text_tokens, gpt_cond_latent, speaker_embedding, settings, speed, first_chunk_tokens,
            chunk_tokens, crossfade, min_new_tokens, max_new_tokens, stats, decoded=None) -> Iterator[np.ndarray]:
    """The body of ``stream`` and ``stream_row`` (a generator; see there). ``decoded``: a callable
    that takes the timings dict and returns the (code, latent) iterator (a decoder row's
    ``tokens``) instead of decoding here."""
    import torch

    t_start = time.perf_counter()
    device = next(model.hifigan_decoder.parameters()).device
    g = speaker_embedding.to(device)
    frames = _FrameStream(model, speed)
    fpt = frames_per_token(model, speed)
    first_frames = max(1, math.ceil(first_chunk_tokens * fpt))
    later_frames = max(1, math.ceil(chunk_tokens * fpt))
    gen_timings: dict[str, float] = {}
    latents: list[Any] = []
    tail = None          # samples computed but held back to crossfade with the next chunk
    pos = 0              # samples emitted so far (the tail starts here)
    t_voc = 0.0
    n_chunks = 0
    ttfa = None

    def render(done: bool) -> "np.ndarray | None":
        nonlocal tail, pos, t_voc
        wanted = first_frames if pos == 0 else later_frames
        # Cheap estimate first (a few frames at the end are never final): the exact count below
        # interpolates all latents so far, which is only worth doing when a chunk may be due.
        if not done and (len(latents) * fpt - 4 - CONTEXT_FRAMES) * HOP_SAMPLES - pos < wanted * HOP_SAMPLES:
            return None
        t0 = time.perf_counter()
        z, n_final = frames.frames(torch.stack(latents)[None], done)
        end = z.shape[-1] if done else n_final - CONTEXT_FRAMES  # frames before this have final audio
        if not done and end * HOP_SAMPLES - pos < wanted * HOP_SAMPLES:
            t_voc += time.perf_counter() - t0
            return None
        a = max(0, pos // HOP_SAMPLES - CONTEXT_FRAMES)
        b = z.shape[-1] if done else min(n_final, end + CONTEXT_FRAMES)
        # Window lengths vary from chunk to chunk; oneDNN's per-shape set-up measured ~0.03 s at
        # most, less than padding windows to a few fixed lengths would cost.
        with _vocoder_autocast(model):
            wav = frames.dec.waveform_decoder(z[:, a:b], g=g).float().reshape(-1)
        seg = wav[pos - a * HOP_SAMPLES: end * HOP_SAMPLES - a * HOP_SAMPLES].clone()
        k = min(len(tail), len(seg)) if tail is not None else 0
        if k:  # both chunks computed these samples; blend the old into the new
            fade = torch.linspace(0.0, 1.0, k, device=seg.device)
            seg[:k] = tail[:k] * (1.0 - fade) + seg[:k] * fade
        hold = 0 if done else min(crossfade, len(seg))
        out, tail = seg[: len(seg) - hold], seg[len(seg) - hold:]
        pos += len(out)
        t_voc += time.perf_counter() - t0
        return out.cpu().numpy().astype(np.float32, copy=False)

    source = (decoded(gen_timings) if decoded is not None else
              _decode(model, text_tokens, gpt_cond_latent, settings, min_new_tokens, max_new_tokens, gen_timings))
    for _code, latent in source:
        latents.append(latent)
        chunk = render(done=False)
        if chunk is not None and len(chunk):
            ttfa = time.perf_counter() - t_start if ttfa is None else ttfa
            n_chunks += 1
            yield chunk
    chunk = render(done=True)
    if chunk is not None and len(chunk):
        ttfa = time.perf_counter() - t_start if ttfa is None else ttfa
        n_chunks += 1
        yield chunk
    if stats is not None:
        stats["timings"] = {"gpt": gen_timings.get("prefill", 0.0) + gen_timings.get("decode", 0.0),
                            "vocoder": t_voc}
        stats["gpt_tokens"] = len(latents)
        stats["ttfa_seconds"] = ttfa
        stats["chunks"] = n_chunks


def stream_chunks(model: Any, tokens: list, gpt_cond_latent: "torch.Tensor", speaker_embedding: "torch.Tensor",
                  settings: GenerationSettings, *, speed: float = 1.0, chunk_tokens: int = STREAM_CHUNK_TOKENS,
                  stats: dict[str, Any], progress: Any = None, handle: "RowHandle | None" = None) -> Iterator[np.ndarray]:
    """``stream`` each text chunk in turn (or, with ``handle``, each chunk of a ``BatchDecoder``
    row as the batch samples its codes: ``stream_row``); ``stats`` gets the summed timings (gpt,
    vocoder), gpt_tokens and gpt_ms_per_token (without ``handle``: the batch reports those)."""
    cond = None if handle is not None else gpt_cond_latent.to(next(model.gpt.parameters()).device)
    first = min(STREAM_FIRST_TOKENS, chunk_tokens)
    t_gpt = t_voc = 0.0
    n_tokens = 0
    for i, text_tokens in enumerate(tokens):
        if progress is not None:
            progress(0.1 + 0.85 * i / len(tokens), desc=f"streaming chunk {i + 1} of {len(tokens)}")
        part: dict[str, Any] = {}
        if handle is not None:
            yield from stream_row(model, handle, speaker_embedding, speed=speed, first_chunk_tokens=first,
                                  chunk_tokens=chunk_tokens, stats=part)
        else:
            yield from stream(model, text_tokens, cond, speaker_embedding, settings, speed=speed,
                              first_chunk_tokens=first, chunk_tokens=chunk_tokens, stats=part)
        t_gpt += part["timings"]["gpt"]
        t_voc += part["timings"]["vocoder"]
        n_tokens += part["gpt_tokens"]
    stats["timings"] = {"gpt": t_gpt, "vocoder": t_voc}
    if handle is None:
        stats["gpt_tokens"] = n_tokens
        stats["gpt_ms_per_token"] = round(1e3 * t_gpt / max(n_tokens, 1), 2)


def _default_settings() -> "GenerationSettings":
    """XTTS's default settings, imported when first needed (the engine module imports this one)."""
    from .settings import XttsSettings

    return XttsSettings()
