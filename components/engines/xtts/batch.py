"""Static batching: many rows share each GPT step (one read of the weights for all of them).

``_Slots`` is the step loop that ``generate_batch`` and the continuous ``BatchDecoder`` share."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from components.core import LabError
if TYPE_CHECKING:  # the settings type is the xtts engine's own (components.engines.xtts)
    from components.engines.xtts.settings import XttsSettings as GenerationSettings
from components.engines.xtts.decode import Generation, _processors
from components.engines.xtts.gpt import FastGPT
from components.engines.xtts.precision import _fast

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch


DEFAULT_BATCH = 8  # rows decoded together by default (bench/xtts_speed.py --batch measures it)


@dataclass
class BatchItem:
    """One row of a batch: its text chunks (decoded one after another in the row's slot), its
    conditioning, sampling settings and random generator (``None``: torch's global one)."""

    chunks: list                      # [1, T] text tokens per chunk (``encode``)
    gpt_cond_latent: "torch.Tensor"   # [1, 32, dim]
    settings: "GenerationSettings" = field(default_factory=lambda: _default_settings())
    generator: "torch.Generator | None" = None
    min_new_tokens: int = 0
    max_new_tokens: int | None = None


@dataclass
class BatchDone:
    """What ``generate_batch`` yields when a row has decoded all its chunks."""

    index: int                        # position of the row in ``items``
    generations: list                 # one ``Generation`` per chunk
    seconds: float                    # wall time from the row's first prefill to its last token
    rows_seen: int                    # the most rows that decoded beside it (itself included)


class _Row:
    """Decoding state of one batch row (one chunk at a time)."""

    def __init__(self, index: int, item: BatchItem):
        self.index, self.item = index, item
        self.chunk = 0
        self.generations: list[Generation] = []
        self.t_start = time.perf_counter()
        self.rows_seen = 1
        self.sink: Any = None  # continuous.RowHandle, BatchDecoder's per-request delivery; None in generate_batch


def _start_chunk(fast: FastGPT, row: _Row, cache: tuple, slot: int) -> None:
    """Prefill the row's current chunk into cache ``slot`` (all of the prompt but its last
    position, the start code, which the next batched step feeds like any other token)."""
    import torch

    item = row.item
    limit = fast.max_new_tokens if item.max_new_tokens is None else int(item.max_new_tokens)
    t0 = time.perf_counter()
    prefix = fast.prompt(item.gpt_cond_latent.to(fast.device), item.chunks[row.chunk].to(fast.device))
    row.prompt_len = prefix.shape[0]
    row.limit = limit
    row.ids = torch.ones((1, row.prompt_len + limit), dtype=torch.long, device=fast.device)
    row.ids[0, row.prompt_len - 1] = fast.start_audio
    row.processors = _processors(item.settings, fast, row.prompt_len, item.min_new_tokens)
    fast.forward(prefix[:-1], 0, cache, slot)
    row.next_x, row.pos = prefix[-1], row.prompt_len - 1
    row.codes, row.latents = [], []
    row.timings = {"prefill": time.perf_counter() - t0, "decode": 0.0}


def generate_batch(model: Any, items: Sequence[BatchItem], batch_size: int = DEFAULT_BATCH) -> Iterator[BatchDone]:
    """Decode many rows together, yielding each row as soon as all its chunks are done.

    Up to ``batch_size`` rows share every GPT step (one read of the weights for all of them);
    each has its own conditioning, text, length, sampling settings and generator, and draws its
    tokens from its own generator in the same order as ``generate`` would alone. So in fp32 row
    i's codes equal ``generate`` of that row alone with the same seed, and its latents are equal
    within float tolerance (batched matrix products round differently than single rows). A row
    that samples its stop code (or reaches its length limit) leaves the batch at once; its next
    chunk, or the next waiting row, takes its place at the following step.
    """
    import torch

    if batch_size < 1:
        raise LabError(f"batch size must be at least 1, got {batch_size!r}")
    fast = _fast(model)
    for item in items:
        if item.max_new_tokens is not None and int(item.max_new_tokens) < 1:
            raise LabError(f"max_new_tokens must be at least 1, got {item.max_new_tokens!r}")
    # The decorator form of inference_mode re-enters it around each step of the generator, so
    # the caller's code between rows (vocoding, logging) does not run in inference mode.
    return torch.inference_mode()(_generate_batch)(fast, list(items), batch_size)


def _generate_batch(fast: FastGPT, items: list[BatchItem], batch_size: int) -> Iterator[BatchDone]:
    """The body of ``generate_batch`` (a generator; see there)."""
    if not items:
        return
    batch = _Slots(fast, min(batch_size, len(items)))
    # One cache for the whole call, sized for its longest row (BatchDecoder grows its own).
    batch.reserve(max(_positions(fast, item) for item in items))
    waiting = list(range(len(items)))[::-1]
    while waiting or batch.active:
        while waiting and len(batch.active) < batch.slots:
            batch.admit(waiting[-1], items[waiting.pop()])
        leaving, failed = batch.step()
        if failed:
            raise failed[0][1]
        yield from leaving


def _positions(fast: FastGPT, item: BatchItem) -> int:
    """KV-cache positions ``item`` needs: its longest prompt (cond + [START] text [STOP] + start
    code) plus its token limit."""
    limit = fast.max_new_tokens if item.max_new_tokens is None else int(item.max_new_tokens)
    return max(item.gpt_cond_latent.shape[1] + int(c.shape[-1]) + 3 for c in item.chunks) + limit


class _Slots:
    """The rows decoding together and their KV cache: the step loop ``generate_batch`` and
    ``BatchDecoder`` share. Row ``active[s]`` decodes in cache slot ``s``; slots stay dense
    (a leaving row's slot is taken by the last row)."""

    def __init__(self, fast: FastGPT, slots: int):
        self.fast, self.slots = fast, slots
        self.capacity = 0
        self.cache: tuple | None = None
        self.touched = [0] * slots  # per slot: positions below this hold finite values (written or zeroed)
        self.active: list[_Row] = []

    def reserve(self, capacity: int) -> None:
        """Make every slot hold at least ``capacity`` positions, keeping what active rows cached.

        Growing copies the active rows' keys/values into a bigger cache. Capacity grows in
        steps of 128 positions, so a decoder whose rows' prompts differ by a few tokens grows
        rarely; ``torch.empty`` pages cost nothing until a row writes them.
        """
        if capacity <= self.capacity:
            return
        capacity = -(-capacity // 128) * 128
        old = self.cache
        self.cache = self.fast.new_cache(self.slots, capacity)
        self.touched = [0] * self.slots
        if old is not None:
            for s, row in enumerate(self.active):
                for new, prev in zip((*self.cache[0], *self.cache[1]), (*old[0], *old[1])):
                    new[s, :, :row.pos] = prev[s, :, :row.pos]
                self.touched[s] = row.pos
        self.capacity = capacity

    def admit(self, index: int, item: BatchItem, sink: Any = None) -> _Row:
        """Prefill ``item``'s first chunk into the next free slot; it decodes from the next step.
        Raises (and takes no slot) if its inputs are unusable."""
        self.reserve(_positions(self.fast, item))
        slot = len(self.active)
        row = _Row(index, item)
        row.sink = sink
        try:
            _start_chunk(self.fast, row, self.cache, slot)
        except BaseException:
            # A prefill that failed part-way may have left non-finite keys where the next row in
            # this slot reads masked padding (NaN survives the mask): zero what it could reach.
            end = min(self.capacity, _positions(self.fast, item))
            for layer in (*self.cache[0], *self.cache[1]):
                layer[slot, :, :end] = 0.0
            self.touched[slot] = max(self.touched[slot], end)
            raise
        self.touched[slot] = max(self.touched[slot], row.pos)
        self.active.append(row)
        return row

    def remove(self, s: int) -> None:
        """Take the row in slot ``s`` out; the last row moves into its slot."""
        last = self.active.pop()
        if s < len(self.active):
            _move_slot(self.cache, len(self.active), s, last.pos)
            self.touched[s] = max(self.touched[s], last.pos)
            self.active[s] = last

    def reset(self) -> None:
        """Forget every row and the cache (after a failed step its contents are unknown)."""
        self.active, self.cache, self.capacity = [], None, 0
        self.touched = [0] * self.slots

    def step(self) -> tuple[list[BatchDone], list[tuple[_Row, BaseException]]]:
        """One token for every active row. Returns (rows that finished all their chunks, in
        index order; rows whose next chunk could not start, with the error)."""
        import torch

        fast, cache, active = self.fast, self.cache, self.active
        n = len(active)
        for row in active:
            row.rows_seen = max(row.rows_seen, n)
        t0 = time.perf_counter()
        x = torch.stack([row.next_x for row in active])
        pos = torch.tensor([row.pos for row in active], device=fast.device)
        _clear_padding(cache, self.touched, n, max(row.pos for row in active) + 1, self.capacity)
        latent, logits = fast.latent_and_logits(fast.step(x, pos, cache))
        finished = []
        for s, row in enumerate(active):
            k = len(row.codes)
            scores = row.processors(row.ids[:, : row.prompt_len + k], logits[s: s + 1])
            token = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1,
                                      generator=row.item.generator)
            code = int(token)
            row.ids[0, row.prompt_len + k] = code
            row.codes.append(code)
            row.latents.append(latent[s])
            row.pos += 1
            if row.sink is not None:
                row.sink._token(code, latent[s])
            if code == fast.stop_audio or k + 1 == row.limit:
                finished.append(s)
            else:  # code k sits at audio position k + 1 (the start code is position 0)
                row.next_x = fast.mel_embedding[code] + fast.mel_pos[k + 1]
        step_seconds = time.perf_counter() - t0
        for row in active:
            row.timings["decode"] += step_seconds
        # Highest slot first: a row moved down from the end is never one still to remove.
        leaving, failed = [], []
        for s in reversed(finished):
            row = active[s]
            generation = Generation(tokens=torch.tensor([row.codes], dtype=torch.long, device=fast.device),
                                    latents=torch.stack(row.latents)[None], timings=row.timings)
            row.generations.append(generation)
            if row.sink is not None:
                row.sink._chunk_done(generation)
            row.chunk += 1
            if row.chunk < len(row.item.chunks):
                try:
                    _start_chunk(fast, row, cache, s)
                    self.touched[s] = max(self.touched[s], row.pos)
                    continue
                except Exception as e:  # noqa: BLE001 - this row's next chunk only; the batch goes on
                    failed.append((row, e))
            self.remove(s)
            if not failed or failed[-1][0] is not row:
                leaving.append((row, BatchDone(row.index, row.generations, time.perf_counter() - row.t_start,
                                               row.rows_seen)))
        leaving.sort(key=lambda pair: pair[1].index)  # rows done at the same step: in order
        for row, done in leaving:
            if row.sink is not None:
                row.sink._finish(done)
        return [done for _row, done in leaving], failed


def _clear_padding(cache: tuple, touched: list[int], n: int, length: int, capacity: int) -> None:
    """Zero never-written cache positions that rows 0..n-1 are about to read as masked padding.

    Masking is not enough on its own: fresh memory may hold NaN bit patterns, and NaN stays NaN
    under a -inf mask (NaN - inf, 0 * NaN). Zeroing ahead in blocks of 64 positions keeps this
    rare without touching (making resident) the whole cache up front.
    """
    for s in range(n):
        if touched[s] < length:
            end = min(capacity, length + 64)
            for layer in (*cache[0], *cache[1]):
                layer[s, :, touched[s]:end] = 0.0
            touched[s] = end


def _move_slot(cache: tuple, src: int, dst: int, length: int) -> None:
    """Copy a sequence's cached keys/values from slot ``src`` to ``dst`` (keeps rows 0..n-1 dense)."""
    for layer in (*cache[0], *cache[1]):
        layer[dst, :, :length] = layer[src, :, :length]


def _default_settings() -> "GenerationSettings":
    """XTTS's default settings, imported when first needed (the engine module imports this one)."""
    from .settings import XttsSettings

    return XttsSettings()
