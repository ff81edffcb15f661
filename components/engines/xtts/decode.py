"""Single-stream decoding: one text chunk's audio codes and latents, sampled as ``transformers.generate``
samples them (same tokens for the same seed in fp32), plus teacher forcing for measuring precisions."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator

from components.core import LabError
if TYPE_CHECKING:  # the settings type is the xtts engine's own (components.engines.xtts)
    from components.engines.xtts.settings import XttsSettings as GenerationSettings
from components.engines.xtts.gpt import FastGPT
from components.engines.xtts.precision import _fast

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch


@dataclass
class Generation:
    """What ``generate`` returns for one text chunk."""

    tokens: "torch.Tensor"            # [1, n] int64 audio codes (ends with the stop code if sampled)
    latents: "torch.Tensor"           # [1, n, dim] fp32: stock's second-forward latents, from generation
    timings: dict[str, float] = field(default_factory=dict)  # prefill, decode (seconds)


def encode(model: Any, text: str, lang: str) -> "torch.Tensor":
    """Text -> [1, T] int32 token ids exactly as stock ``Xtts.inference`` encodes one sentence."""
    import torch

    ids = model.tokenizer.encode(text.strip().lower(), lang=lang.split("-")[0])
    return torch.IntTensor(ids).unsqueeze(0).to(next(model.gpt.parameters()).device)


def _processors(settings: GenerationSettings, fast: FastGPT, prompt_len: int, min_new_tokens: int):
    """The logits processors ``transformers.generate`` builds for XTTS's sampling call, in its order.

    XTTS calls generate with do_sample=True, num_beams=1 and fake prompt ids (all 1s plus the
    start code), so the repetition penalty also sees those ids, exactly as here.
    """
    import torch
    from transformers.generation.logits_process import (
        LogitsProcessorList, MinNewTokensLengthLogitsProcessor, RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper,
    )

    out = LogitsProcessorList()
    if settings.repetition_penalty != 1.0:
        out.append(RepetitionPenaltyLogitsProcessor(float(settings.repetition_penalty)))
    if min_new_tokens > 0:
        out.append(MinNewTokensLengthLogitsProcessor(
            prompt_len, min_new_tokens, torch.tensor([fast.stop_audio], device=fast.device), device=fast.device))
    if settings.temperature != 1.0:
        out.append(TemperatureLogitsWarper(float(settings.temperature)))
    if settings.top_k != 0:
        out.append(TopKLogitsWarper(top_k=int(settings.top_k), min_tokens_to_keep=1))
    if settings.top_p < 1.0:
        out.append(TopPLogitsWarper(top_p=float(settings.top_p), min_tokens_to_keep=1))
    return out


def _decode(model: Any, text_tokens: "torch.Tensor", gpt_cond_latent: "torch.Tensor",
            settings: GenerationSettings, min_new_tokens: int, max_new_tokens: int | None,
            timings: dict[str, float]) -> Iterator[tuple[int, "torch.Tensor"]]:
    """Yield (audio code, its latent [dim]) one by one; fills ``timings`` (prefill, decode)."""
    import torch

    fast = _fast(model)
    limit = fast.max_new_tokens if max_new_tokens is None else int(max_new_tokens)
    if limit < 1:
        raise LabError(f"max_new_tokens must be at least 1, got {max_new_tokens!r}")
    t0 = time.perf_counter()
    prefix = fast.prompt(gpt_cond_latent.to(fast.device), text_tokens.to(fast.device))
    prompt_len = prefix.shape[0]  # cond + text + start code: the ids transformers would see
    fast._kv(prompt_len + limit)
    ids = torch.ones((1, prompt_len + limit), dtype=torch.long, device=fast.device)
    ids[0, prompt_len - 1] = fast.start_audio
    processors = _processors(settings, fast, prompt_len, min_new_tokens)
    hidden = fast.forward(prefix, 0)[-1:]
    timings["prefill"] = time.perf_counter() - t0
    # Only this generator's own work counts as decode time, not what the consumer does between
    # tokens (streaming vocodes there).
    decode = 0.0
    for n in range(limit):
        t0 = time.perf_counter()
        latent, logits = fast.latent_and_logits(hidden)
        scores = processors(ids[:, : prompt_len + n], logits)
        token = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1)
        ids[0, prompt_len + n] = token[0, 0]
        code = int(token)
        decode += time.perf_counter() - t0
        timings["decode"] = decode
        yield code, latent[0]
        if code == fast.stop_audio or n + 1 == limit:
            break
        t0 = time.perf_counter()
        # Code n sits at audio position n + 1 (the start code is position 0).
        hidden = fast.forward(fast.mel_embedding[token[0]] + fast.mel_pos[n + 1], prompt_len + n)
        decode += time.perf_counter() - t0
    timings["decode"] = decode


def generate(model: Any, text_tokens: "torch.Tensor", gpt_cond_latent: "torch.Tensor",
             settings: GenerationSettings | None = None, *, min_new_tokens: int = 0,
             max_new_tokens: int | None = None) -> Generation:
    """Sample the audio codes of one text chunk and return them with their latents.

    ``text_tokens`` is [1, T] (``encode``), ``gpt_cond_latent`` [1, 32, dim]. Seed torch before
    calling for reproducible output: in fp32 the codes equal stock ``Xtts.inference``'s for the
    same seed, and the latents equal its second GPT forward's (float tolerance) without running
    it. ``min_new_tokens``/``max_new_tokens`` pin the length (timing runs on random weights).
    """
    import torch

    settings = settings or _default_settings()
    timings: dict[str, float] = {}
    codes, latents = [], []
    with torch.inference_mode():
        for code, latent in _decode(model, text_tokens, gpt_cond_latent, settings,
                                    min_new_tokens, max_new_tokens, timings):
            codes.append(code)
            latents.append(latent)
        device = latents[0].device
        out = Generation(tokens=torch.tensor([codes], dtype=torch.long, device=device),
                         latents=torch.stack(latents)[None], timings=timings)
    return out



def teacher_forced_latents(model: Any, text_tokens: "torch.Tensor", gpt_cond_latent: "torch.Tensor",
                           codes: "torch.Tensor") -> "torch.Tensor":
    """The latents [1, n, dim] ``model`` computes for given codes [1, n], in one forward pass.

    This is what stock's second GPT forward computes, here in the model's current precision:
    feeding the same (fp32-sampled) codes to a bf16 or int8 model measures the latent error of
    the precision alone, without the sampling divergence that free-running generation adds.
    """
    import torch
    import torch.nn.functional as F

    fast = _fast(model)
    with torch.inference_mode():
        prefix = fast.prompt(gpt_cond_latent.to(fast.device), text_tokens.to(fast.device))
        fed = codes[0, :-1].to(fast.device)  # the last code is sampled, never fed back
        x = torch.cat([prefix, fast.mel_embedding[fed] + fast.mel_pos[1: 1 + len(fed)]])
        fast._kv(x.shape[0])
        hidden = fast.forward(x, 0)[prefix.shape[0] - 1:]
        latents = F.layer_norm(hidden, (fast.dim,), *fast.final_norm[:2], fast.final_norm[2])
    return latents[None]


def sync(device: Any) -> None:
    """Wait for queued GPU work, so a stage timer measures it (nothing to wait for on a CPU)."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def generate_chunks(model: Any, tokens: list, gpt_cond_latent: "torch.Tensor", settings: GenerationSettings,
                    progress: Any = None) -> tuple[list, dict[str, float], dict[str, Any]]:
    """``generate`` for each text chunk in turn: (latents per chunk, {"gpt": seconds},
    {"gpt_tokens", "gpt_ms_per_token"}). ``progress`` (if given) is told each chunk's start."""
    device = next(model.gpt.parameters()).device
    cond = gpt_cond_latent.to(device)
    latents, t_gpt, n_tokens = [], 0.0, 0
    for i, text_tokens in enumerate(tokens):
        if progress is not None:
            progress(0.1 + 0.85 * i / len(tokens), desc=f"generating chunk {i + 1} of {len(tokens)}")
        t0 = time.perf_counter()
        g = generate(model, text_tokens, cond, settings)
        sync(device)
        t_gpt += time.perf_counter() - t0
        latents.append(g.latents)
        n_tokens += int(g.tokens.shape[-1])
    return latents, {"gpt": t_gpt}, {"gpt_tokens": n_tokens, "gpt_ms_per_token": round(1e3 * t_gpt / max(n_tokens, 1), 2)}


def _default_settings() -> "GenerationSettings":
    """XTTS's default settings, imported when first needed (the engine module imports this one)."""
    from .settings import XttsSettings

    return XttsSettings()
