"""Where eval runs execute: in this process or a local process pool (``local``), or as Ray tasks
(``ray``, on a local Ray instance or a cluster at ``--address``).

Every executor takes the same ``RunSpec`` list and yields each run's result as it completes; the
runner orders them. A run's result depends only on its spec (seeded, a fixed thread count from
the config, not from scheduling), so executors give the same numbers for the same seeds.

A Ray task may run on another machine: it trains into a temporary directory there and returns
the run directory as a tar archive with its result; the driver unpacks it to the spec's
``run_dir`` under ``--out``, so the output tree is the same as a local eval's.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Protocol

from hotcb import require_extra

from . import run_archive
from .run_archive import ArchiveRefused, UnpackLimits, pack
from .train import RunSpec, train

EXECUTORS = ("local", "ray")


class Executor(Protocol):
    def run(self, specs: list[RunSpec]) -> Iterator[dict[str, Any]]: ...


class LocalExecutor:
    """``jobs`` 1: in this process, one after another; more: a pool of spawned processes."""

    def __init__(self, jobs: int = 1):
        self.jobs = jobs

    def run(self, specs: list[RunSpec]) -> Iterator[dict[str, Any]]:
        if self.jobs <= 1:
            for s in specs:
                yield train(s)
            return
        # spawn: a clean interpreter per worker (CUDA cannot be forked once initialized).
        with ProcessPoolExecutor(max_workers=self.jobs, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(train, s) for s in specs]
            for f in as_completed(futures):
                yield f.result()


def train_packed(spec: RunSpec) -> tuple[dict[str, Any], bytes]:
    """A Ray task's body: train into a private temporary run directory, return the result and
    that directory as a gzipped tar (the worker's filesystem may not be the driver's)."""
    work = Path(tempfile.mkdtemp(prefix="hotcb-eval-"))
    try:
        result = train(replace(spec, run_dir=str(work / "run")))
        return result, pack(work / "run")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def unpack(archive: bytes, run_dir: Path, limits: UnpackLimits | None = None) -> None:
    """Unpack a run directory sent back by a task (it comes over the network: hostile input) by
    the rules of ``run_archive``; a refused archive raises ``ArchiveRefused``, leaves nothing
    behind and is recorded next to where the run would have been (``RUN.refused.json``)."""
    try:
        run_archive.unpack(archive, run_dir, limits)
    except ArchiveRefused as e:
        record = {"run_dir": str(run_dir), "member": e.member, "reason": e.reason}
        run_dir.with_name(run_dir.name + ".refused.json").write_text(json.dumps(record) + "\n")
        raise


class RayExecutor:
    """Each run a Ray task with ``cpus`` CPUs, and a GPU where the cluster has them (unless the
    runs are pinned to the CPU with ``--device cpu``)."""

    def __init__(self, address: str | None = None, cpus: int = 1, device: str | None = None):
        self.address = address
        self.cpus = cpus
        self.device = device

    def _init(self) -> Any:
        ray = require_extra("ray", "ray")
        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
        return ray

    def run(self, specs: list[RunSpec]) -> Iterator[dict[str, Any]]:
        ray = self._init()
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 and not (self.device or "").startswith("cpu") else 0
        task = ray.remote(train_packed).options(num_cpus=self.cpus, num_gpus=gpus, max_retries=0)
        pending = {task.remote(s): s for s in specs}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            spec = pending.pop(done[0])
            result, archive = ray.get(done[0])
            unpack(archive, Path(spec.run_dir))
            result["run_dir"] = spec.run_dir  # where it lies now, as with the local executor
            yield result


def make_executor(kind: str, jobs: int, address: str | None, cpus_per_run: int, device: str | None) -> Executor:
    if kind == "ray":
        return RayExecutor(address=address, cpus=cpus_per_run, device=device)
    if kind != "local":
        raise ValueError(f"unknown executor {kind!r}; choose from {', '.join(EXECUTORS)}")
    return LocalExecutor(jobs)
