"""The batch on Ray: the same volumes, outputs, CSV rows and resume rules as ``batch.run_batch``,
spread over a pool of Ray actors (one model per worker, loaded once; CPU workers, or a fraction
of a GPU each). The per-volume work is ``batch.process_volume``, the same function the local batch
runs; the driver plans, schedules and writes the report. A volume that fails, or a worker that
dies, gives a ``failed`` row and the rest go on.

Needs the ``scale`` extra (``pip install samihs[scale]``); every worker machine needs SAMIHS
installed and the inputs and output folder on a shared file system.
"""

import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from SAMIHSLib.batch import (BatchPlan, VolumeJob, failed_row, write_report, plan_batch, weights_sha256,
                             process_volume)
from SAMIHSLib.interaction.predictor import load_predictor
from SAMIHSLib.progress import ProgressCallback

LOCAL = "local"  # --ray local: start a Ray instance on this machine
AUTO = "auto"    # --ray auto: the running cluster (RAY_ADDRESS or this node's), else a local instance


class VolumeWorker:
    """A Ray actor's state: one predictor, loaded once, segmenting one volume per call."""

    def __init__(self, model_spec: str, device: str, engine: str, threads: int) -> None:
        from SAMIHSLib.cpu_tuning import tune_process_for_inference

        tune_process_for_inference()  # a Ray worker process is SAMIHS's own
        self.predictor = load_predictor(model_spec, device, engine, threads)

    def identity(self):
        """(model weights SHA-256, engine name): what the manifests record."""
        return weights_sha256(self.predictor), self.predictor.engine_name

    def process(self, job: VolumeJob) -> Dict[str, str]:
        return process_volume(job, self.predictor)


def _import_ray():
    try:
        import ray
    except ImportError as error:
        raise RuntimeError("--ray needs Ray: pip install 'samihs[scale]' (or pip install ray).") from error
    return ray


def connect(ray, address: str, local_cpus: int) -> bool:
    """Join or start Ray; True when this call started a local instance (then the caller stops it)."""
    options = dict(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
    if address not in (LOCAL, AUTO):
        ray.init(address=address, **options)
        return False
    if address == AUTO:
        try:
            ray.init(address="auto", **options)
            return False
        except ConnectionError:
            pass  # no cluster running: start one here
    ray.init(num_cpus=local_cpus, **options)
    return True


def worker_count(ray, requested: int, cpus_per_worker: float, gpus_per_worker: float, jobs: int) -> int:
    """``requested`` workers, or as many as the cluster's CPUs (and GPUs) hold; never more than jobs."""
    if requested > 0:
        count = requested
    else:
        resources = ray.cluster_resources()
        count = int(resources.get("CPU", 1) // max(cpus_per_worker, 1e-9))
        if gpus_per_worker > 0:
            count = min(count, int(resources.get("GPU", 0) // gpus_per_worker))
    return max(1, min(count, max(jobs, 1)))


def run_batch_on_ray(inputs: Sequence[Path], prompt_spec: str, out_dir: Path, model_spec: str,
                     device: str = "auto", engine: str = "auto", address: str = AUTO, workers: int = 0,
                     cpus_per_worker: float = 1.0, gpus_per_worker: float = 0.0,
                     progress: Optional[ProgressCallback] = None,
                     dicom_seg: bool = False) -> Dict[str, Dict[str, str]]:
    """``run_batch`` with the volumes spread over Ray workers; returns the report rows."""
    ray = _import_ray()
    local_cpus = int(workers * cpus_per_worker) if workers > 0 else (os.cpu_count() or 1)
    started_here = connect(ray, address, max(1, local_cpus))
    try:
        actor_class = ray.remote(num_cpus=cpus_per_worker, num_gpus=gpus_per_worker)(VolumeWorker)
        threads = max(1, int(cpus_per_worker))

        def new_worker():
            return actor_class.remote(model_spec, device, engine, threads)

        first = new_worker()
        model_sha256, engine_name = ray.get(first.identity.remote())
        plan = plan_batch(inputs, prompt_spec, out_dir, model_sha256, engine_name, dicom_seg)
        count = worker_count(ray, workers, cpus_per_worker, gpus_per_worker, len(plan.jobs))
        actors = [first] + [new_worker() for _ in range(count - 1)]
        return _schedule(ray, plan, actors, new_worker, progress)
    finally:
        if started_here:
            ray.shutdown()


def _schedule(ray, plan: BatchPlan, actors: List, new_worker, progress) -> Dict[str, Dict[str, str]]:
    """Hand each idle actor the next volume; record rows as they finish (any order)."""
    from ray.exceptions import RayActorError, RayTaskError

    rows = plan.rows
    write_report(plan.report_path, rows)
    queue, idle, pending = list(plan.jobs), list(actors), {}
    done = plan.total - len(plan.jobs)
    if progress is not None:
        progress(done, plan.total, "started")
    while queue or pending:
        while idle and queue:
            actor, job = idle.pop(), queue.pop(0)
            pending[actor.process.remote(job)] = (actor, job)
        ready, _ = ray.wait(list(pending), num_returns=1)
        actor, job = pending.pop(ready[0])
        try:
            rows[job.name] = ray.get(ready[0])
            idle.append(actor)
        except RayActorError as error:  # the worker died (e.g. out of memory): replace it
            rows[job.name] = failed_row(job.name, f"Ray worker died: {error}")
            idle.append(new_worker())
        except RayTaskError as error:
            rows[job.name] = failed_row(job.name, str(error.cause))
            idle.append(actor)
        write_report(plan.report_path, rows)
        done += 1
        if progress is not None:
            progress(done, plan.total, job.name)
    return rows
