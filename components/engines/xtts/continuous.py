"""Continuous batching: requests join a running batch at its next step (one worker thread)."""

from __future__ import annotations

import queue
import threading
from collections import deque
from typing import TYPE_CHECKING, Any, Iterator

from components.core import LabError
from components.engines.xtts.batch import DEFAULT_BATCH, BatchDone, BatchItem, _Slots
from components.engines.xtts.decode import Generation
from components.engines.xtts.precision import _STATE_ATTR, _fast

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch


class BatchDecodeError(LabError):
    """A batched decoding step failed: every request decoding in it at that moment fails."""


class RowHandle:
    """One request's row in a ``BatchDecoder``: its codes and latents as they are sampled, then
    its result. Read it from one thread: ``tokens()`` once per text chunk (streaming) and/or
    ``result()``; either raises the row's error (a LabError) if it failed."""

    def __init__(self) -> None:
        self._events: queue.SimpleQueue = queue.SimpleQueue()  # filled by the decoder's thread
        self._done: BatchDone | None = None
        self._error: BaseException | None = None
        self.generations: list[Generation] = []  # chunks read so far
        self.cancelled = False
        self._notify: "queue.SimpleQueue | None" = None  # gets this handle once the row is over
        # Per-token events only for readers that stream: each one wakes the reading thread, which
        # then takes the GIL from the decoder's thread mid-step.
        self.deliver_tokens = True

    # -- the decoder's side ------------------------------------------------------------------
    def _token(self, code: int, latent: "torch.Tensor") -> None:
        if self.deliver_tokens:
            self._events.put(("token", (code, latent)))

    def _chunk_done(self, generation: Generation) -> None:
        self._events.put(("chunk", generation))

    def _finish(self, done: BatchDone) -> None:
        self._events.put(("done", done))
        if self._notify is not None:
            self._notify.put(self)

    def _fail(self, error: BaseException) -> None:
        self._events.put(("error", error))
        if self._notify is not None:
            self._notify.put(self)

    # -- the request's side ------------------------------------------------------------------
    def _next(self) -> tuple[str, Any]:
        if self._error is not None:
            raise self._error
        kind, value = self._events.get()
        if kind == "error":
            self._error = value
            raise value
        if kind == "chunk":
            self.generations.append(value)
        elif kind == "done":
            self._done = value
        return kind, value

    def tokens(self, timings: dict[str, float] | None = None) -> Iterator[tuple[int, "torch.Tensor"]]:
        """Yield the next text chunk's (code, latent [dim]) as the decoder samples them; the
        chunk's prefill/decode seconds go into ``timings`` when it ends."""
        while self._done is None:
            kind, value = self._next()
            if kind == "token":
                yield value
            elif kind == "chunk":
                if timings is not None:
                    timings.update(value.timings)
                return

    def result(self) -> BatchDone:
        """Wait for the row to finish all its chunks; its ``BatchDone``."""
        while self._done is None:
            self._next()
        return self._done

    def cancel(self) -> None:
        """The request went away (a closed stream): the decoder drops its row at the next step."""
        self.cancelled = True


class BatchDecoder:
    """Continuous batching: rows submitted at any time join the running batch at its next step.

    One worker thread (started by ``submit``, ended when no row is left) runs ``generate_batch``'s
    step loop over up to ``slots`` rows, admitting waiting rows into free slots before each step.
    Each ``submit`` returns a ``RowHandle`` that receives the row's codes and latents as they are
    sampled (so a stream can vocode as it goes) and then its result. As in ``generate_batch``,
    each row samples from its own generator with its own processors: in fp32 its codes equal
    ``generate`` alone with the same seed, whenever it joined and whoever decoded beside it.

    Failures stay as small as they can: a row whose inputs cannot be prefilled fails alone (the
    others never see it); a step that raises fails the rows decoding in it with a
    ``BatchDecodeError``, and the decoder starts afresh for the next rows. Create one per model
    and precision (it keeps the ``FastGPT`` it was made with; a precision switch needs a new one).
    """

    def __init__(self, model: Any, slots: int = DEFAULT_BATCH):
        if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
            raise LabError(f"batch size must be at least 1, got {slots!r}")
        self.fast = _fast(model)
        self.slots = slots
        self.busiest = 0          # the most rows that decoded together so far (for tests and logs)
        self._lock = threading.Lock()
        self._waiting: deque[tuple[RowHandle, BatchItem]] = deque()
        self._worker: threading.Thread | None = None
        self._admitted = 0        # rows admitted so far (each row's BatchDone.index)

    def serves(self, model: Any) -> bool:
        """True while ``model`` is still prepared in the precision this decoder was made for."""
        return getattr(model, _STATE_ATTR, None) is self.fast

    def submit(self, item: BatchItem, notify: "queue.SimpleQueue | None" = None, *,
               stream_tokens: bool = True) -> RowHandle:
        """Queue ``item`` to join the batch at its next step; returns its handle at once.
        ``notify`` (if given) receives the handle when the row has finished or failed, so one
        caller can wait for whichever of its rows ends first. ``stream_tokens=False``: the
        handle's ``tokens()`` yields nothing and only returns at each chunk's end (for readers
        that want whole chunks or the result; see ``RowHandle.deliver_tokens``)."""
        if not item.chunks:
            raise LabError("a batch row needs at least one text chunk")
        if item.max_new_tokens is not None and int(item.max_new_tokens) < 1:
            raise LabError(f"max_new_tokens must be at least 1, got {item.max_new_tokens!r}")
        handle = RowHandle()
        handle._notify = notify
        handle.deliver_tokens = stream_tokens
        with self._lock:
            self._waiting.append((handle, item))
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="xtts-batch-decoder", daemon=True)
                self._worker.start()
        return handle

    def _run(self) -> None:
        import torch

        batch = _Slots(self.fast, self.slots)
        try:
            with torch.inference_mode():
                while self._admit(batch):
                    self._step(batch)
        except BaseException as e:  # noqa: BLE001 - nobody would see it on this thread: tell every row
            error = BatchDecodeError(f"the XTTS batch decoder stopped: {type(e).__name__}: {e}")
            for row in batch.active:
                row.sink._fail(error)
            with self._lock:
                waiting, self._worker = list(self._waiting), None
                self._waiting.clear()
            for handle, _item in waiting:
                handle._fail(error)

    def _admit(self, batch: _Slots) -> bool:
        """Drop cancelled rows, prefill waiting rows into free slots; False when nothing is left
        (the worker then ends; the next ``submit`` starts another)."""
        for s in reversed(range(len(batch.active))):
            if batch.active[s].sink.cancelled:
                batch.remove(s)
        with self._lock:
            free = batch.slots - len(batch.active)
            joining = [self._waiting.popleft() for _ in range(min(free, len(self._waiting)))]
            if not joining and not batch.active:
                self._worker = None
                return False
        for handle, item in joining:
            if handle.cancelled:
                continue
            index, self._admitted = self._admitted, self._admitted + 1
            try:
                batch.admit(index, item, sink=handle)
            except Exception as e:  # noqa: BLE001 - this row's inputs only: it fails alone
                handle._fail(e if isinstance(e, LabError) else LabError(
                    f"this request's XTTS inputs could not be decoded: {type(e).__name__}: {e}"))
        return True

    def _step(self, batch: _Slots) -> None:
        if not batch.active:
            return
        self.busiest = max(self.busiest, len(batch.active))
        try:
            _leaving, failed = batch.step()  # finished rows were told through their handles
        except Exception as e:  # noqa: BLE001 - fail the rows in this step, keep serving new ones
            n = len(batch.active)
            for row in batch.active:
                error = BatchDecodeError(
                    f"batched XTTS decoding failed ({type(e).__name__}: {e}); the {n} request(s) "
                    "decoding together were stopped, later requests decode afresh")
                error.__cause__ = e  # what failed, for callers that handle it (CUDA out of memory)
                row.sink._fail(error)
            batch.reset()  # drop the cache too: after an out-of-memory its memory can go back
            return
        for row, e in failed:
            row.sink._fail(e if isinstance(e, LabError) else LabError(
                f"this request's next text chunk could not be decoded: {type(e).__name__}: {e}"))
