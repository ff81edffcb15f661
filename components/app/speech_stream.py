"""A streamed ``/v1/audio/speech`` body: the engine's chunks as 16-bit PCM (a WAV header first for
``wav``; 24 kHz raw for ``pcm``), sent as the run path (``experiments.pipeline``) hands them out."""

from __future__ import annotations

import struct
import sys
from contextlib import ExitStack
from typing import Any, Iterator

import numpy as np

from components.engines.base import LabError

PCM_SAMPLE_RATE = 24000         # Hz: OpenAI's "pcm" is 24 kHz, 16-bit signed little-endian, mono


def resample(audio: np.ndarray, sr: int, target: int) -> np.ndarray:
    """``audio`` at ``target`` Hz (itself when it already is)."""
    if sr == target:
        return audio
    import soxr

    return soxr.resample(audio, sr, target, quality="HQ").astype(np.float32)


def pcm16(audio: np.ndarray) -> bytes:
    """Float audio as 16-bit signed little-endian samples, clipped."""
    return np.clip(np.round(np.asarray(audio, np.float32) * 32767.0), -32768, 32767).astype("<i2").tobytes()


def wav_stream_header(sr: int) -> bytes:
    """A 16-bit mono WAV header whose sizes say "unknown length" (0xFFFFFFFF), for streaming."""
    unknown = 0xFFFFFFFF
    return (b"RIFF" + struct.pack("<I", unknown) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, sr, sr * 2, 2, 16)
            + b"data" + struct.pack("<I", unknown))


def streamed_body(updates: Iterator[Any], fmt: str, jobs: ExitStack):
    """The response body of a streamed synthesis: WAV header (wav) then 16-bit chunks as the
    engine yields them (``updates``: ``experiments.pipeline.run_experiment(..., stream=True)``);
    ``jobs`` (engine queue slot) is released at the end, also when the client leaves early (the
    engine is then told to stop: the generator closes)."""
    import anyio
    from starlette.concurrency import run_in_threadpool

    end = object()

    def produce() -> Iterator[bytes]:
        resampler = None
        header_sent = False
        for update in updates:
            if update.audio is None:
                break  # the logged row: the stream is complete
            sr, chunk = update.audio
            if fmt == "pcm":
                if resampler is None and sr != PCM_SAMPLE_RATE:
                    import soxr

                    resampler = soxr.ResampleStream(sr, PCM_SAMPLE_RATE, 1, dtype="float32")
                if resampler is not None:
                    chunk = resampler.resample_chunk(chunk)
            elif not header_sent:
                header_sent = True
                yield wav_stream_header(sr)
            yield pcm16(chunk)
        if resampler is not None:
            yield pcm16(resampler.resample_chunk(np.zeros(0, np.float32), last=True))

    chunks = produce()

    async def body():
        try:
            while True:
                data = await run_in_threadpool(next, chunks, end)
                if data is end:
                    break
                yield data
        except LabError as e:  # after the headers went out: the body just ends early
            print(f"lab.py: warning: /v1/audio/speech stream stopped: {e}", file=sys.stderr, flush=True)
        finally:
            with anyio.CancelScope(shield=True):
                await run_in_threadpool(_close, chunks, updates, jobs)

    return body()


def _close(chunks: Any, updates: Any, jobs: ExitStack) -> None:
    try:
        chunks.close()
        updates.close()
    finally:
        jobs.close()
