"""Many requests at once on the XTTS engine (``XttsEngine.iter_batch``): grouped by precision,
their GPT steps shared in one batch, each row vocoded as soon as it is decoded."""

from __future__ import annotations

from typing import Any, Iterator

from components.core import LabError, Progress, no_progress
from components.engines.base import SynthRequest, SynthResult

from .device import oom_guard


def iter_batch(engine: Any, requests: list[SynthRequest], progress: Progress = no_progress,
               batch_size: int | None = None) -> Iterator[tuple[int, SynthResult]]:
    """Yield ``(index, SynthResult)`` for ``requests`` as each one finishes (see
    ``XttsEngine.iter_batch``)."""
    requests = list(requests)
    size = int(batch_size or engine.batch_size)
    if size < 1:
        raise LabError(f"batch size must be at least 1, got {batch_size!r}")
    if size == 1 or len(requests) <= 1:  # nothing to batch
        for i, request in enumerate(requests):
            yield i, engine.synthesize(request, progress)
        return
    engine._require_model(progress)
    groups: dict[str, list[int]] = {}
    for i, request in enumerate(requests):
        groups.setdefault(engine._settings(request).precision or engine.config.precision, []).append(i)
    done = 0
    for precision, indices in groups.items():
        begun = [engine._begin(requests[i], progress) for i in indices]
        # Shared: the rows join the engine's batch beside other users' requests (or, at another
        # batch size, generate_batch runs with a cache of its own); only a precision switch waits.
        with engine._holding(precision, progress, shared=True):
            yield from _decode_group(engine, requests, indices, begun, size, progress, done)
        done += len(indices)
    progress(1.0, desc="done")


def _decode_group(engine: Any, requests, indices, begun, size, progress, done) -> Iterator[tuple[int, SynthResult]]:
    """Decode one precision's requests as batches."""
    import torch

    from . import fast

    items = []
    for i, (voice, tokens, _timings, _info) in zip(indices, begun):
        seed = requests[i].seed
        items.append(fast.BatchItem(
            chunks=tokens, gpt_cond_latent=voice.gpt_cond_latent.to(engine.device),
            settings=engine._settings(requests[i]),
            generator=None if seed is None else torch.Generator(engine.device).manual_seed(seed)))
    progress(0.1, desc=f"decoding {len(items)} rows, {min(size, len(items))} at a time")
    with oom_guard():
        if engine.concurrent and size == engine.batch_size:
            rows = engine._batch().rows(engine.model, items)  # in the batch the server's requests share
        else:
            rows = fast.generate_batch(engine.model, items, size)
        # Each row vocoded once decoded (a GPU takes several finished rows in one HiFiGAN call).
        for row, audio, t_voc in fast.vocode_rows(engine.model, rows, [b[0].speaker_embedding for b in begun],
                                                  [requests[i].speed for i in indices]):
            i = indices[row.index]
            voice, _tokens, timings, info = begun[row.index]
            n_tokens = sum(int(g.tokens.shape[-1]) for g in row.generations)
            timings = {**timings, "gpt": row.seconds, "vocoder": t_voc}
            info = {**info, "gpt_tokens": n_tokens, "gpt_ms_per_token": round(1e3 * row.seconds / max(n_tokens, 1), 2),
                    "batch_size": size, "batch_rows": row.rows_seen}
            done += 1
            progress(0.1 + 0.9 * done / len(requests), desc=f"{done} of {len(requests)} rows done")
            yield i, SynthResult(audio=audio, sample_rate=engine.sample_rate, timings=timings, info=info)
