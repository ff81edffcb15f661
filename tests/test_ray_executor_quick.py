"""experiments/ray_executor without a Ray instance (quick lane): a local Ray instance takes 6-8 s
to start here, so its own tests (tests/test_evaluate_ray.py, slow) run in the full suite. These
cover what runs without a cluster: the address check, the chunking of rows into Ray tasks, and
the actor's body (``EngineWorker.run``) driven directly on a real espeak engine."""

from __future__ import annotations

import socket
from dataclasses import replace

import numpy as np
import pytest

from components.core import LabError
from components.engines.base import SynthRequest
from components.engines.espeak import EspeakEngine
from experiments import ray_executor
from experiments.jobs import EngineFacts, Job
from experiments.ray_executor import EngineWorker, RayExecutor, _check_listening, connect
from experiments.specs import EvaluateSpec


def jobs(engine: str, variants: dict[str, int]) -> list[Job]:
    out, i = [], 0
    for variant, n in variants.items():
        for k in range(n):
            out.append(Job(i, engine, variant, SynthRequest(f"Sentence {k} of {variant}.", speaker="female"), k + 1))
            i += 1
    return out


def executor(spec: EvaluateSpec, facts: dict[str, EngineFacts]) -> RayExecutor:
    """A RayExecutor as ``open`` leaves it, without connecting to Ray (only ``_chunks`` is used)."""
    ex = RayExecutor.__new__(RayExecutor)
    ex.spec, ex.facts = spec, facts
    return ex


@pytest.mark.parametrize("address", ["nowhere", ":6379", "host:port", "host:"])
def test_a_malformed_address_is_a_lab_error(address):
    with pytest.raises(LabError, match="HOST:PORT"):
        _check_listening(address)


def test_an_address_nobody_listens_on_is_refused_before_ray_starts(monkeypatch):
    # In the full suite a local Ray instance may already run in this process (the ray_local
    # fixture), and connect() would then use it: pretend none runs, and fail if ray.init is reached.
    monkeypatch.setattr(ray_executor.ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray_executor.ray, "init", lambda *a, **k: pytest.fail("ray.init was reached"))
    with socket.socket() as s:  # a port that was free a moment ago and has no listener
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(LabError, match=f"no Ray cluster answers at 127.0.0.1:{port}"):
        connect(f"127.0.0.1:{port}")


def test_rows_are_chunked_per_variant_one_per_task_unless_the_engine_batches():
    espeak = EngineFacts.of(EspeakEngine())
    rows = jobs("espeak", {"a": 3, "b": 2})
    chunks = executor(EvaluateSpec(engines=("espeak",)), {"espeak": espeak})._chunks(rows)
    assert [[j.index for j in c] for c in chunks] == [[0], [1], [2], [3], [4]]

    batching = replace(espeak, capabilities=replace(espeak.capabilities, batching=True))
    rows = jobs("espeak", {"a": ray_executor.BATCHING_CHUNK + 2, "b": 1})
    chunks = executor(EvaluateSpec(engines=("espeak",)), {"espeak": batching})._chunks(rows)
    assert [len(c) for c in chunks] == [ray_executor.BATCHING_CHUNK, 2, 1]  # a chunk never mixes variants
    assert {j.variant for j in chunks[-1]} == {"b"}

    chunks = executor(EvaluateSpec(engines=("espeak",), batch_size=2), {"espeak": espeak})._chunks(jobs("espeak", {"a": 5}))
    assert [len(c) for c in chunks] == [2, 2, 1]  # the spec's batch size wins


def test_the_actor_body_synthesises_its_chunk_on_a_real_engine():
    worker = EngineWorker.__new__(EngineWorker)  # what __init__ sets, without a Ray runtime context
    worker.engine = EspeakEngine()
    worker.engine.load()
    worker.actor_id, worker.worker, worker._refs = "actor-1", "127.0.0.1/node/actor-1", {}
    rows = jobs("espeak", {"default": 2})
    chunk_id, actor_id, outcomes = worker.run(7, rows, None)
    assert (chunk_id, actor_id) == (7, "actor-1")
    assert [o.job for o in outcomes] == rows and all(o.error is None for o in outcomes)
    assert all(o.worker == "127.0.0.1/node/actor-1" for o in outcomes)
    assert all(np.abs(o.result.audio).max() > 0.01 for o in outcomes)  # real speech, not silence
