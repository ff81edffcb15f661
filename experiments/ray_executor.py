"""The ``ray`` executor of ``evaluate``: rows go to Ray actors, results stream back to this process.

One actor per engine instance (``spec.workers`` per engine), each loading its model once in its
own process and running the rows it is sent through ``experiments.jobs.run_jobs`` (batched
where the engine batches). Ray's ``ActorPool`` decides which actor gets which chunk of rows; this
module only hands chunks to the pools and writes what comes back. Chunks are small (one batch),
so a row is on disk moments after its chunk finishes.

An actor that dies mid-run (killed, out of memory, its node gone) loses no row already written;
the chunk it was working on goes back to the pool, which gives it to another actor of the same
engine. If every actor of an engine dies the run stops with a message saying how to resume it.

Importing this module imports Ray: ``experiments.evaluate`` imports it only for ``--executor ray``.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator, Sequence

# Under `uv run`, Ray by default rebuilds the driver's environment for every job in a fresh venv deep
# inside /tmp/ray/session_*/runtime_resources/..., a path so long that libespeak-ng no longer finds
# its data there (its workers died at start); it would also rebuild a multi-GB torch environment per
# job. Workers use the Python the node was started with instead (README: `uv run ray start ...`).
# Must be set before Ray is imported; RAY_ENABLE_UV_RUN_RUNTIME_ENV=1 restores Ray's default.
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

import ray  # noqa: E402
from ray.util.actor_pool import ActorPool  # noqa: E402

from components.engines import EngineConfig, engine_class  # noqa: E402
from components.engines.base import EngineUnavailable, LabError, Progress, no_progress  # noqa: E402

from .jobs import EngineFacts, Job, Outcome, by_variant, run_jobs  # noqa: E402
from .specs import EvaluateSpec  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = "xtts-lab"      # actors are named <run id>/<engine>/<i> here, so an operator can find them
BATCHING_CHUNK = 8          # rows per task for engines that batch (when the spec sets no batch size)
POLL_S = 0.05               # how long to wait on one engine's pool before looking at the next
MAX_ATTEMPTS = 3            # a chunk whose actor died this many times stops the run (it kills workers)


class EngineWorker:
    """The actor: one engine instance, loaded once. Wrapped by ``ray.remote`` in ``RayExecutor``."""

    def __init__(self, name: str, config: EngineConfig, references: dict[str, bytes]):
        self.engine = engine_class(name)(config)
        self.engine.load()
        ctx = ray.get_runtime_context()
        self.actor_id = ctx.get_actor_id()
        self.worker = f"{ray.util.get_node_ip_address()}/{ctx.get_node_id()[:8]}/actor-{self.actor_id[:8]}"
        # References live on the driver's disk; this node may be another machine: keep a local copy.
        self._refs: dict[str, str] = {}
        folder = Path(tempfile.mkdtemp(prefix="xtts-lab-refs-"))
        for i, (path, data) in enumerate(references.items()):
            local = folder / f"{i:03d}{Path(path).suffix or '.wav'}"
            local.write_bytes(data)
            self._refs[path] = str(local)

    def describe(self) -> tuple[str, str, EngineFacts]:
        """(actor id, worker label, what the driver needs to know about the engine)."""
        return self.actor_id, self.worker, EngineFacts.of(self.engine)

    def run(self, chunk_id: int, jobs: list[Job], batch_size: int | None) -> tuple[int, str, list[Outcome]]:
        """Synthesise ``jobs``; the outcomes name the driver's jobs (original reference paths)."""
        local = [replace(j, request=replace(j.request, reference=self._refs.get(j.request.reference,
                                                                               j.request.reference)))
                 if j.request.reference else j for j in jobs]
        by_index = {j.index: j for j in jobs}
        out = [Outcome(by_index[job.index], result, seconds, self.worker, error)
               for job, result, seconds, error in run_jobs(self.engine, local, batch_size)]
        return chunk_id, self.actor_id, out


def _check_listening(address: str, timeout_s: float = 5.0) -> None:
    """LabError unless something accepts connections at HOST:PORT: Ray itself would retry for
    minutes before saying the cluster is not there."""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise LabError(f"--ray-address must be auto or HOST:PORT, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise LabError(f"no Ray cluster answers at {address} ({e}); start one with "
                       "`uv run ray start --head --port=PORT`, or omit --ray-address for a local one") from None


def connect(address: str | None) -> bool:
    """Connect to Ray (``address``: ``auto`` or ``HOST:PORT``) or, with no address, start a local
    instance. Returns True when this call started Ray (and so must shut it down)."""
    if ray.is_initialized():
        return False  # a caller (a test, a notebook) already connected: use that instance
    if address and address != "auto" and "://" not in address:
        _check_listening(address)
    kwargs: dict[str, Any] = {"namespace": NAMESPACE, "log_to_driver": False}
    try:
        if address:
            # Ship this checkout's code to the cluster's nodes (their Python has the dependencies).
            kwargs["runtime_env"] = {"working_dir": str(REPO_ROOT), "excludes": ["results/", "*.wav", "*.pth"]}
            ray.init(address=address, **kwargs)
        else:
            ray.init(include_dashboard=False, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
        raise LabError(f"cannot connect to {where}: {e} (start one with `ray start --head`)") from None
    return True


class RayExecutor:
    """Rows to Ray actors (see the module docstring); the driver writes every row."""

    name = "ray"

    def __init__(self, spec: EvaluateSpec, config: EngineConfig, run_id: str):
        self.spec, self.config, self.run_id = spec, config, run_id
        self.started = connect(spec.ray_address)
        self.actors: dict[str, list[Any]] = {}
        self.ids: dict[str, dict[int, str]] = {}   # engine -> id(handle) -> actor id
        self.facts: dict[str, EngineFacts] = {}
        self._claimed = {"CPU": 0.0, "GPU": 0.0}   # what this run's actors hold so far
        gpus = spec.worker_gpus or (1.0 if str(config.device).startswith("cuda") else 0.0)
        self._resources = {"num_cpus": spec.worker_cpus, "num_gpus": gpus}

    def _room(self, name: str) -> dict[str, float]:
        # Actors hold their CPUs for life: asking for more than the cluster has would leave
        # some pending forever while rows wait on them.
        have = ray.cluster_resources()
        want = {"CPU": self._claimed["CPU"] + self.spec.workers * self._resources["num_cpus"],
                "GPU": self._claimed["GPU"] + self.spec.workers * self._resources["num_gpus"]}
        for kind, n in want.items():
            if n > have.get(kind, 0.0):
                raise LabError(f"{name}: {self.spec.workers} worker(s) would bring the {kind}s asked for to {n:g}, "
                               f"and the Ray cluster has {have.get(kind, 0.0):g}: lower --workers or "
                               f"--worker-{kind.lower()}s, or add nodes")
        return want

    def open(self, name: str, progress: Progress = no_progress) -> EngineFacts:
        """Start this engine's actors (each loads the model once) and return what they report."""
        cls = engine_class(name)
        check = getattr(cls, "unavailable_reason", None)
        reason = check(self.config) if check else None
        if reason:
            raise EngineUnavailable(f"{name} is unavailable: {reason}")
        claimed = self._room(name)
        refs = {p: Path(p).read_bytes() for p in self.spec.reference_list} if cls.capabilities.cloning else {}
        remote = ray.remote(EngineWorker)
        actors = [remote.options(name=f"{self.run_id}/{name}/{i}", **self._resources).remote(name, self.config, refs)
                  for i in range(self.spec.workers)]
        progress(0.0, desc=f"starting {len(actors)} Ray worker(s) for {name}")
        try:
            described = ray.get([a.describe.remote() for a in actors])
        except ray.exceptions.RayError as e:  # died loading, or could not describe itself
            for a in actors:
                ray.kill(a)
            raise EngineUnavailable(f"{name} could not start on a Ray worker: {e}") from None
        self._claimed = claimed
        self.actors[name] = actors
        self.ids[name] = {id(a): actor_id for a, (actor_id, _, _) in zip(actors, described)}
        self.facts[name] = described[0][2]
        return self.facts[name]

    def _chunks(self, jobs: Sequence[Job]) -> list[list[Job]]:
        out = []
        for group in by_variant(jobs):
            batching = getattr(self.facts[group[0].engine].capabilities, "batching", False)
            size = self.spec.batch_size or (BATCHING_CHUNK if batching else 1)
            out += [group[i:i + size] for i in range(0, len(group), size)]
        return out

    def run(self, jobs: Sequence[Job], batch_size: int | None, progress: Progress = no_progress) -> Iterator[Outcome]:
        """Yield outcomes in the order they finish, from every engine's actors at once."""
        chunks = dict(enumerate(self._chunks(jobs)))
        pools = {name: ActorPool(list(actors)) for name, actors in self.actors.items()}
        alive = {name: set(ids.values()) for name, ids in self.ids.items()}
        on_actor: dict[str, set[int]] = {}   # actor id -> chunks sent to it and not yet back

        def submit(chunk_id: int) -> None:
            engine = chunks[chunk_id][0].engine

            def send(actor: Any, cid: int) -> Any:
                on_actor.setdefault(self.ids[engine][id(actor)], set()).add(cid)
                return actor.run.remote(cid, chunks[cid], batch_size)
            pools[engine].submit(send, chunk_id)

        outstanding = set(chunks)  # chunks whose rows have not come back yet

        def resend(cids: Sequence[int], why: str) -> None:
            for cid in sorted(cids):
                chunk = [replace(j, attempt=j.attempt + 1) for j in chunks[cid]]
                if chunk[0].attempt > MAX_ATTEMPTS:
                    raise LabError(f"{chunk[0].engine}: the rows starting with {chunk[0].request.text!r} were lost "
                                   f"{MAX_ATTEMPTS} times ({why}); the rows already written are kept: "
                                   "finish the run with --resume RUN_DIR")
                chunks[cid] = chunk
                progress(0.0, desc=f"{why}: {len(chunk)} row(s) sent to another worker")
                submit(cid)

        for chunk_id in chunks:
            submit(chunk_id)
        while outstanding:
            if not any(pool.has_next() for pool in pools.values()):
                # Nothing in flight yet rows missing: the actor that had them died unnoticed.
                resend(outstanding, "a worker died")
                continue
            for name, pool in pools.items():
                if not pool.has_next():
                    continue
                try:
                    chunk_id, actor_id, outcomes = pool.get_next_unordered(timeout=POLL_S)
                except TimeoutError:
                    continue
                except ray.exceptions.RayActorError as e:
                    # Rows that actor finished were written when they came back; what it held
                    # goes to the pool again, which gives it to another actor of this engine.
                    dead = getattr(e, "actor_id", None)
                    alive[name].discard(dead)
                    if not alive[name]:
                        raise LabError(f"every Ray worker of {name} died (last: {e}); the rows already written "
                                       "are kept: finish the run with --resume RUN_DIR") from None
                    resend(on_actor.pop(dead, set()) & outstanding, f"a {name} worker died")
                    continue
                on_actor.get(actor_id, set()).discard(chunk_id)
                outstanding.discard(chunk_id)
                yield from outcomes

    def close(self) -> None:
        """Stop this run's actors; shut Ray down if this run started it."""
        for actors in self.actors.values():
            for a in actors:
                try:
                    ray.kill(a)
                except Exception:  # noqa: BLE001 - already dead
                    pass
        self.actors.clear()
        if self.started:
            ray.shutdown()
            # Ray's own handlers stay installed after shutdown; the lab's stdout must stay the lab's.
            os.environ.pop("RAY_ADDRESS", None)
