"""Restock jobs on Ray: each job runs as a task named after it (so operators find it in the
dashboard), and a detached jobs actor keeps the book of jobs in the data directory."""

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import ray

from inventory_actors.cluster.client import InventoryClient
from inventory_actors.observability import json_logging
from inventory_actors.restock.book import Begun, JobBook, JobProgress, JobSpec, progress_of
from inventory_actors.restock.job import ROWS_PER_CHUNK, JobFailed, JobRunner, Source
from inventory_actors.restock.rejects import RejectsFile
from persistence.jobs_store import JOBS_FILE, JobRecord, JobsStore

log = logging.getLogger(__name__)

JOBS_ACTOR_NAME = "inventory-restock-jobs"
REPORT_TIMEOUT_SECONDS = 10.0
# Reading and splitting a file is one core's work at most; half a CPU lets a job be scheduled
# next to the shards and replicas of a small node.
TASK_CPUS = 0.5


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def task_name(spec: JobSpec) -> str:
    return f"restock {spec.job_id} ({spec.source}, {spec.mode})"


# Retried if its worker dies: a job is safe to run again (a retry resumes after the chunks the
# book counts done, and a chunk sent again applies once by its key).
@ray.remote(num_cpus=TASK_CPUS, max_retries=3)
def restock_task(
    spec: JobSpec,
    attempt: int,
    source: Source,
    data_dir: str,
    namespace: str,
    rejects_path: str | None,
) -> JobRecord | None:
    """Run a job to its end and record how it ended; the final record (None when `attempt`
    no longer runs the job: it ended, or another attempt took it over)."""
    json_logging.configure("restock-job")
    jobs: Any = ray.get_actor(JOBS_ACTOR_NAME, namespace=namespace)
    start: JobProgress | None = ray.get(
        jobs.start.remote(spec.job_id, attempt), timeout=REPORT_TIMEOUT_SECONDS
    )
    if start is None:
        return None
    client = InventoryClient.connect(data_dir, namespace=namespace)

    def report(progress: JobProgress) -> bool:
        ref = jobs.report.remote(spec.job_id, attempt, progress)
        return bool(ray.get(ref, timeout=REPORT_TIMEOUT_SECONDS))

    rejects = None
    if rejects_path is not None:
        rejects = RejectsFile(Path(rejects_path), start.chunks_done * ROWS_PER_CHUNK + 1)
    runner = JobRunner(
        spec,
        client.partition,
        lambda part: client.shards[part.shard_id].restock.remote(part),
        report,
        None if rejects is None else rejects.write,
        start=start,
    )
    error = None
    try:
        progress = runner.run(source)
    except JobFailed as failure:
        error, progress = str(failure), runner.progress
    except Exception as failure:
        # A bug or a broken environment: the job is recorded as failed, not left running.
        log.exception("job %s: runner failed", spec.job_id)
        error, progress = f"runner failed: {failure!r}", runner.progress
    finally:
        if rejects is not None:
            rejects.close()
    log.info("job %s ended: %s %s", spec.job_id, error or "succeeded", progress)
    record: JobRecord | None = ray.get(
        jobs.finish.remote(spec.job_id, attempt, progress, error), timeout=REPORT_TIMEOUT_SECONDS
    )
    return record


@ray.remote(
    # Bookkeeping only: no CPU reserved.
    num_cpus=0,
    # Restarted if it dies; the book is on disk. Its calls are safe to retry (a begin that
    # ran twice shows the job running, and the runner's reports carry their attempt).
    max_restarts=-1,
    max_task_retries=3,
)
class RestockJobs:
    """The book of restock jobs, and the owner of the tasks of jobs submitted over HTTP."""

    def __init__(self, data_dir: str, namespace: str) -> None:
        self._data_dir = data_dir
        self._namespace = namespace
        self._book = JobBook(JobsStore(Path(data_dir) / JOBS_FILE), _now_ms)
        self._watchers: dict[str, asyncio.Task[None]] = {}

    async def begin(self, spec: JobSpec) -> Begun:
        return self._book.begin(spec)

    async def start(self, job_id: str, attempt: int) -> JobProgress | None:
        return self._book.start(job_id, attempt)

    async def report(self, job_id: str, attempt: int, progress: JobProgress) -> bool:
        return self._book.report(job_id, attempt, progress)

    async def finish(
        self, job_id: str, attempt: int, progress: JobProgress, error: str | None
    ) -> JobRecord | None:
        return self._book.finish(job_id, attempt, progress, error)

    async def get(self, job_id: str) -> JobRecord | None:
        return self._book.get(job_id)

    async def recent(self, limit: int) -> list[JobRecord]:
        return self._book.recent(limit)

    async def submit(self, spec: JobSpec, data: list[Any]) -> Begun:
        """Run the job whose file is `data[0]` (an object ref; in a list so that it reaches
        the task unread) unless it has succeeded, is running or its id is another file's."""
        begun = self._book.begin(spec)
        if begun.attempt is None:
            return begun
        ref = restock_task.options(name=task_name(spec)).remote(
            spec, begun.attempt, data[0], self._data_dir, self._namespace, None
        )
        watcher = asyncio.get_running_loop().create_task(self._watch(spec, begun.attempt, ref))
        self._watchers[spec.job_id] = watcher
        watcher.add_done_callback(lambda _: self._watchers.pop(spec.job_id, None))
        return begun

    async def _watch(self, spec: JobSpec, attempt: int, ref: Any) -> None:
        """A task that dies for good (its retries spent, or its file lost) fails its job."""
        try:
            await ref
        except Exception as error:
            log.error("job %s: runner failed: %r", spec.job_id, error)
            record = self._book.get(spec.job_id)
            progress = JobProgress() if record is None else progress_of(record)
            self._book.finish(spec.job_id, attempt, progress, f"runner failed: {error}")


def jobs_actor(data_dir: str | Path, namespace: str) -> Any:
    """The jobs actor of `data_dir`, created on first use."""
    return RestockJobs.options(  # type: ignore[attr-defined]
        name=JOBS_ACTOR_NAME, namespace=namespace, lifetime="detached", get_if_exists=True
    ).remote(str(Path(data_dir).resolve()), namespace)
