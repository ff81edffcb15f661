"""The XTTS engine's shared batch: concurrent requests (tabs, REST, ``/v1``) decode their GPT
codes together in one ``BatchDecoder``, each with its own generator, settings and voice."""

from __future__ import annotations

import dataclasses
import queue
import threading
from typing import Any, Callable, Iterator

from components.engines.xtts.batch import BatchDone, BatchItem
from components.engines.xtts.continuous import BatchDecoder, RowHandle


class SharedBatch:
    """One ``BatchDecoder`` for a model at a time, remade when the model's precision changed.

    Call its methods while holding the model shared (the engine's gate): the precision cannot
    change then.
    """

    def __init__(self, slots: int):
        self.slots = slots
        self._decoder: BatchDecoder | None = None
        self._lock = threading.Lock()

    def decoder(self, model: Any) -> BatchDecoder:
        """The decoder for ``model`` in its current precision."""
        with self._lock:
            if self._decoder is None or not self._decoder.serves(model):
                self._decoder = BatchDecoder(model, self.slots)
            return self._decoder

    def submit(self, model: Any, tokens: list[Any], cond_latent: Any, settings: Any, seed: int | None,
               notify: "queue.SimpleQueue | None" = None, stream_tokens: bool = True) -> RowHandle:
        """Queue one request's text chunks to join the running batch; its ``RowHandle``
        (``notify``: a queue that gets the handle when the row is over; ``stream_tokens=False``
        for readers that wait for whole chunks)."""
        import torch

        device = next(model.gpt.parameters()).device
        # Its own generator, seeded as the engine seeds torch's global one for a solo synthesis
        # (the same draws); unseeded requests get a random seed, never the global generator that
        # a solo request beside them may have seeded.
        generator = torch.Generator(device)
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(seed)
        item = BatchItem(chunks=tokens, gpt_cond_latent=cond_latent.to(device), settings=settings, generator=generator)
        return self.decoder(model).submit(item, notify, stream_tokens=stream_tokens)

    def info(self, done: BatchDone) -> dict[str, Any]:
        """A finished row's GPT facts for the result's info."""
        n_tokens = sum(int(g.tokens.shape[-1]) for g in done.generations)
        return {"gpt_tokens": n_tokens, "gpt_ms_per_token": round(1e3 * done.seconds / max(n_tokens, 1), 2),
                "batch_size": self.slots, "batch_rows": done.rows_seen}

    def generate(self, model: Any, tokens: list[Any], cond_latent: Any, settings: Any, seed: int | None,
                 progress: Callable[..., None]) -> tuple[list[Any], dict[str, float], dict[str, Any]]:
        """One request's codes decoded in the batch: (latents per chunk, {"gpt"}, info)."""
        handle = self.submit(model, tokens, cond_latent, settings, seed, stream_tokens=False)
        try:
            for i in range(len(tokens)):
                progress(0.1 + 0.8 * i / len(tokens), desc=f"decoding chunk {i + 1} of {len(tokens)} in the shared batch")
                for _ in handle.tokens():  # returns at the chunk's end (no per-token events asked for)
                    pass
            done = handle.result()
        finally:
            handle.cancel()  # if we are leaving early (an error, an interrupt), free its slot
        return [g.latents for g in done.generations], {"gpt": done.seconds}, self.info(done)

    def rows(self, model: Any, items: list[BatchItem]) -> Iterator[BatchDone]:
        """``generate_batch`` in the shared decoder: ``items`` join the batch (beside whatever
        other users' requests decode there) and come back as they finish, each as a ``BatchDone``
        whose ``index`` is its position in ``items``. If the caller stops early, the rows still
        decoding leave the batch."""
        finished: queue.SimpleQueue = queue.SimpleQueue()
        decoder = self.decoder(model)
        handles = [decoder.submit(item, finished, stream_tokens=False) for item in items]
        position = {id(h): k for k, h in enumerate(handles)}
        try:
            for _ in handles:
                handle = finished.get()
                yield dataclasses.replace(handle.result(), index=position[id(handle)])
        finally:
            for handle in handles:
                handle.cancel()

    def stream(self, model: Any, tokens: list[Any], voice: Any, settings: Any, seed: int | None, speed: float,
               chunk_tokens: int, stats: dict[str, Any], progress: Callable[..., None]) -> Iterator[Any]:
        """One request streamed from the batch: each text chunk is vocoded piece by piece as the
        batch samples its codes (``stream.stream_chunks`` over the row); ``stats`` as there, with
        gpt = the wall time the request spent in the batch, plus ``info``."""
        from components.engines.xtts.stream import stream_chunks

        handle = self.submit(model, tokens, voice.gpt_cond_latent, settings, seed)
        try:
            yield from stream_chunks(model, tokens, None, voice.speaker_embedding, settings, speed=speed,
                                     chunk_tokens=chunk_tokens, stats=stats, progress=progress, handle=handle)
            done = handle.result()
        finally:
            handle.cancel()  # a client that closed its stream frees its slot at the next step
        stats["timings"]["gpt"] = done.seconds
        stats.update(self.info(done))
