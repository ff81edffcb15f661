"""HiFiGAN: GPT latents to audio, one utterance or a batch of them, in the model's precision."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from components.engines.xtts.precision import precision_of

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

HOP_SAMPLES = 256              # HiFiGAN output samples per input frame (8*8*2*2 upsampling)


def _vocoder_autocast(model: Any):
    """bf16 autocast for HiFiGAN in the bf16/int8/int4 modes; nothing (exact fp32) otherwise."""
    import contextlib

    import torch

    if precision_of(model) == "fp32":
        return contextlib.nullcontext()
    device_type = next(model.hifigan_decoder.parameters()).device.type
    return torch.autocast(device_type, dtype=torch.bfloat16)


def _rescale(latents: "torch.Tensor", speed: float) -> "torch.Tensor":
    """Stock's speed control: stretch the latents [1, n, dim] in time by 1/speed (linear)."""
    import torch.nn.functional as F

    length_scale = 1.0 / max(speed, 0.05)
    if length_scale == 1.0:
        return latents
    return F.interpolate(latents.transpose(1, 2), scale_factor=length_scale, mode="linear").transpose(1, 2)


def vocode(model: Any, latents: "torch.Tensor", speaker_embedding: "torch.Tensor", speed: float = 1.0) -> np.ndarray:
    """GPT latents [1, n, dim] -> mono float32 audio at the model's output rate, as stock does.

    ``speed`` rescales the latents first (stock ``inference()``'s ``speed``). In fp32 this is
    exactly stock's HiFiGAN call; bf16/int8/int4 modes run it under bf16 autocast.
    """
    import torch

    device = next(model.hifigan_decoder.parameters()).device
    with torch.inference_mode(), _vocoder_autocast(model):
        wav = model.hifigan_decoder(_rescale(latents.to(device), speed), g=speaker_embedding.to(device))
    return wav.float().cpu().squeeze().numpy().astype(np.float32, copy=False)


def vocode_speeds(model: Any, latents: "torch.Tensor", speaker_embedding: "torch.Tensor",
                  speeds: Sequence[float]) -> list[np.ndarray]:
    """One GPT pass, many speeds: ``vocode`` the same latents once per speed, in order.

    Speed only rescales the latents before HiFiGAN, so each result equals a separate synthesis
    at that speed with the same seed.
    """
    return [vocode(model, latents, speaker_embedding, speed) for speed in speeds]


def _frames(model: Any, latents: "torch.Tensor", speed: float) -> "torch.Tensor":
    """latents [1, n, dim] -> HiFiGAN input frames [dim, F] exactly as ``HifiDecoder.forward``
    computes them (speed rescale, x4 to 256-sample hops, 22.05 -> 24 kHz)."""
    import torch.nn.functional as F

    dec = model.hifigan_decoder
    z = F.interpolate(_rescale(latents, speed).transpose(1, 2),
                      scale_factor=[dec.ar_mel_length_compression / dec.output_hop_length], mode="linear")
    if dec.output_sample_rate != dec.input_sample_rate:
        z = F.interpolate(z, scale_factor=[dec.output_sample_rate / dec.input_sample_rate], mode="linear")
    return z[0]


def _masked_generator(gen: Any, x: "torch.Tensor", g: "torch.Tensor", lengths: "torch.Tensor") -> "torch.Tensor":
    """coqui ``HifiganGenerator.forward`` over right-padded rows x [B, C, F] whose row b is
    ``lengths[b]`` frames long; returns [B, 1, F * HOP_SAMPLES].

    A convolution pads its input with zeros at each end. Alone, a row's last frame sees zeros
    beyond it at every layer; in a padded batch it would see the layers' response to the padding
    instead (biases, the speaker conditioning), which changes its last ~14 frames. Zeroing every
    position past a row's length after each layer restores exactly the zeros it sees alone, so
    each row's samples equal its solo vocoding (up to float rounding of batched kernels).
    """
    import torch
    import torch.nn.functional as F

    def masked(o: "torch.Tensor") -> "torch.Tensor":
        scale = o.shape[-1] // x.shape[-1]  # the upsampling so far
        keep = torch.arange(o.shape[-1], device=o.device)[None] < (lengths * scale)[:, None]
        return o * keep[:, None, :].to(o.dtype)

    def resblock(block: Any, o: "torch.Tensor") -> "torch.Tensor":
        pairs = zip(block.convs1, block.convs2) if hasattr(block, "convs1") else ((c, None) for c in block.convs)
        for c1, c2 in pairs:
            t = masked(c1(F.leaky_relu(o, 0.1)))
            if c2 is not None:
                t = masked(c2(F.leaky_relu(t, 0.1)))
            o = t + o
        return o

    if hasattr(gen, "lin_pre"):
        raise NotImplementedError("HiFiGAN with a pre-linear layer is not used by XTTS")
    o = gen.conv_pre(x)
    if hasattr(gen, "cond_layer"):
        o = o + gen.cond_layer(g)
    o = masked(o)
    for i in range(gen.num_upsamples):
        o = gen.ups[i](F.leaky_relu(o, 0.1))
        if gen.cond_in_each_up_layer:
            o = o + gen.conds[i](g)
        o = masked(o)
        z_sum = None
        for j in range(gen.num_kernels):
            r = resblock(gen.resblocks[i * gen.num_kernels + j], o)
            z_sum = r if z_sum is None else z_sum + r
        o = z_sum / gen.num_kernels
    return torch.tanh(gen.conv_post(F.leaky_relu(o)))


def vocode_batch(model: Any, latents: Sequence["torch.Tensor"], speaker_embeddings: Sequence["torch.Tensor"],
                 speeds: Sequence[float] | None = None, rows_per_call: int | None = None) -> list[np.ndarray]:
    """Many rows' latents ([1, n_i, dim] each) -> their audio, ``rows_per_call`` rows per HiFiGAN call.

    Rows are sorted by length and vocoded together in groups, right-padded and masked
    (``_masked_generator``), then each is trimmed to its own length: row i's audio equals
    ``vocode(model, latents[i], speaker_embeddings[i], speeds[i])`` within float rounding. Same
    precision as ``vocode`` (bf16 autocast outside fp32). ``rows_per_call`` defaults to
    ``rows_per_vocoder_call`` for the model's device.
    """
    import torch

    n = len(latents)
    if len(speaker_embeddings) != n or (speeds is not None and len(speeds) != n):
        raise ValueError(f"{n} rows of latents need as many speaker embeddings and speeds, got "
                         f"{len(speaker_embeddings)} and {len(speeds) if speeds is not None else n}")
    speeds = [1.0] * n if speeds is None else list(speeds)
    device = next(model.hifigan_decoder.parameters()).device
    per_call = rows_per_call or rows_per_vocoder_call(device.type)
    out: list[np.ndarray | None] = [None] * n
    gen = model.hifigan_decoder.waveform_decoder
    with torch.inference_mode(), _vocoder_autocast(model):
        frames = [_frames(model, z.to(device).float(), s) for z, s in zip(latents, speeds)]
        order = sorted(range(n), key=lambda i: frames[i].shape[-1])  # similar lengths pad little
        for k in range(0, n, per_call):
            group = order[k:k + per_call]
            longest = max(frames[i].shape[-1] for i in group)
            x = torch.zeros(len(group), frames[group[0]].shape[0], longest, device=device)
            for b, i in enumerate(group):
                x[b, :, :frames[i].shape[-1]] = frames[i]
            g = torch.cat([speaker_embeddings[i].to(device).reshape(1, -1, 1) for i in group])
            lengths = torch.tensor([frames[i].shape[-1] for i in group], device=device)
            if len(group) == 1:  # alone: stock's own forward, nothing to mask
                wav = gen(x, g=g)
            else:
                wav = _masked_generator(gen, x, g, lengths)
            for b, i in enumerate(group):
                row = wav[b, 0, : int(lengths[b]) * HOP_SAMPLES]
                out[i] = row.float().cpu().numpy().astype(np.float32, copy=False)
    return out  # type: ignore[return-value]


# HiFiGAN is convolution-bound: on a 2-core AMD EPYC (Zen 4, AVX512-BF16) one row already runs
# at ~1.07 ms per frame in bf16 (~0.55 TFLOP/s, about the cores' peak), and 8 rows in one call
# took 1.7 ms per frame (activations of 8 rows outgrow the caches). So on a CPU rows go through
# one at a time; a GPU, which one row leaves mostly idle, takes the whole batch in one call.
ROWS_PER_CALL = {"cpu": 1}
ROWS_PER_CALL_GPU = 32


def rows_per_vocoder_call(device_type: str) -> int:
    """How many rows ``vocode_batch`` puts in one HiFiGAN call on ``device_type`` by default."""
    return ROWS_PER_CALL.get(device_type, ROWS_PER_CALL_GPU)


def vocode_rows(model: Any, rows: Iterator[Any], speaker_embeddings: Sequence["torch.Tensor"],
                speeds: Sequence[float]) -> Iterator[tuple[Any, np.ndarray, float]]:
    """(row, audio, vocoder seconds) for each finished batch row (``BatchDone``: all its text
    chunks' latents; ``speaker_embeddings[row.index]``, ``speeds[row.index]``).

    On a CPU each row is vocoded as soon as it is decoded; elsewhere rows are gathered in groups
    of ``rows_per_vocoder_call`` and vocoded in one padded call (the same audio: ``vocode_batch``),
    the group's time shared out by audio length.
    """
    from components.engines.xtts.decode import sync

    device = next(model.hifigan_decoder.parameters()).device
    per_call, group = rows_per_vocoder_call(device.type), []
    for row in rows:
        group.append(row)
        if len(group) == per_call:
            yield from _vocode_group(model, group, speaker_embeddings, speeds, sync)
            group = []
    if group:
        yield from _vocode_group(model, group, speaker_embeddings, speeds, sync)


def _vocode_group(model, group, speaker_embeddings, speeds, sync) -> Iterator[tuple[Any, np.ndarray, float]]:
    import time

    parts = [(row, g.latents) for row in group for g in row.generations]
    t0 = time.perf_counter()
    wavs = vocode_batch(model, [z for _, z in parts], [speaker_embeddings[r.index] for r, _ in parts],
                        [speeds[r.index] for r, _ in parts])
    sync(next(model.hifigan_decoder.parameters()).device)
    seconds, total = time.perf_counter() - t0, max(sum(len(w) for w in wavs), 1)
    for row in group:
        audio = np.concatenate([w for (r, _), w in zip(parts, wavs) if r is row]).astype(np.float32, copy=False)
        yield row, audio, seconds * len(audio) / total
