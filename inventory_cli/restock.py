"""`inventory restock FILE`: run a restock job from a Parquet or CSV file, with a progress bar,
a summary and a file of the rejected rows.

The job runs as a Ray task named after it, on this machine (the file is read where it is),
owned by this command: if the command is killed, so is the task, and running the command again
resumes the job, applying every row once in total.
"""

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from persistence.jobs_store import JobRecord

if TYPE_CHECKING:
    from inventory_actors.restock.book import JobSpec

POLL_SECONDS = 0.25


class RowsPerSecond(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.speed
        return Text("" if speed is None else f"{speed:,.0f} rows/s", style="cyan")


def restock_command(
    path: Path, data_dir: Path, namespace: str, address: str, *extra: str
) -> list[str]:
    """The command line that runs `path` as a restock job against a running cluster (for
    programs that start it as a process of its own, and can kill it)."""
    return [
        sys.executable,
        "-m",
        "inventory_cli.main",
        "restock",
        str(path),
        "--data-dir",
        str(data_dir),
        "--namespace",
        namespace,
        "--address",
        address,
        *extra,
    ]


def add_restock_parser(commands: Any, default_data_dir: str) -> None:
    restock = commands.add_parser(
        "restock", help="apply a Parquet or CSV file of sku, location, quantity[, reason] rows"
    )
    restock.add_argument("file", type=Path)
    restock.add_argument("--mode", choices=["delta", "set"], default="delta")
    restock.add_argument("--format", choices=["parquet", "csv"], default=None)
    restock.add_argument("--job-id", default=None, help="default: the hash of content and mode")
    restock.add_argument(
        "--rejects", type=Path, default=None, help="default: FILE.rejects.csv, if any row is"
    )
    restock.add_argument("--data-dir", default=default_data_dir)
    restock.add_argument("--address", default="auto", help="the Ray cluster's address")
    restock.add_argument("--namespace", default="inventory", help=argparse.SUPPRESS)
    restock.set_defaults(handler=cmd_restock)


def _spec(args: argparse.Namespace) -> "JobSpec":
    """The job of the file, once the whole file has been read and found sound: a file that
    breaks anywhere is refused here, before the job exists (ValueError naming the row)."""
    from inventory_actors.restock.file_reader import FileFormat, check_file, detect_format
    from inventory_actors.restock.job import job_spec

    file_format = FileFormat(args.format) if args.format else detect_format(args.file.name)
    rows_total = check_file(args.file, file_format)
    spec = job_spec(args.file, args.mode, file_format.value, args.file.name, args.job_id)
    return spec._replace(rows_total=rows_total)


def cmd_restock(args: argparse.Namespace) -> int:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from inventory_actors.cluster.client import InventoryClient
    from inventory_actors.restock.runtime import jobs_actor, restock_task, task_name

    console = Console(stderr=True)
    if not args.file.is_file():
        console.print(f"no such file: {args.file}")
        return 2
    try:
        spec = _spec(args)
    except (ValueError, OSError) as error:
        print(f"{args.file} refused, nothing applied: {error}", file=sys.stderr)
        return 2
    if not ray.is_initialized():
        ray.init(address=args.address, namespace=args.namespace, log_to_driver=False)
    data_dir = str(Path(args.data_dir).resolve())
    # The shards exist before the job looks for them.
    InventoryClient.connect(data_dir, namespace=args.namespace)
    jobs = jobs_actor(data_dir, args.namespace)
    rejects_path = args.rejects or args.file.with_name(args.file.name + ".rejects.csv")
    for _ in range(2):  # a second time only to take over a job whose runner was interrupted
        begun = ray.get(jobs.begin.remote(spec), timeout=60)
        if begun.reused:
            print(_reused(spec, begun.record), file=sys.stderr)
            return 2
        task = None
        if begun.attempt is not None:
            node = ray.get_runtime_context().get_node_id()
            task = restock_task.options(
                name=task_name(spec),
                # Where this command runs: the file is read where it is.
                scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
            ).remote(
                spec,
                begun.attempt,
                str(args.file.resolve()),
                data_dir,
                args.namespace,
                str(rejects_path),
            )
        elif begun.record.status == "running":
            console.print(f"job {spec.job_id} is running elsewhere; following it")
        record = _follow(console, jobs, spec, task)
        if task is not None or record.status != "failed":
            break
    _summarize(console, record, rejects_path if record.rows_rejected and task else None)
    return 0 if record.status == "succeeded" else 1


def _reused(spec: "JobSpec", record: JobRecord) -> str:
    status = "is running" if record.status == "running" else record.status
    return (
        f"job id {spec.job_id} was used before for a different file or mode (that job "
        f"{status}: {record.source}, {record.mode} mode); nothing applied: name this job "
        "with another --job-id"
    )


def _follow(console: Console, jobs: Any, spec: "JobSpec", task: Any) -> JobRecord:
    """Show the job's progress until it ends; its final record."""
    import ray

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RowsPerSecond(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, disable=not console.is_terminal) as bar:
        row_task: TaskID = bar.add_task(spec.job_id, total=spec.rows_total)
        while True:
            record: JobRecord = ray.get(jobs.get.remote(spec.job_id), timeout=60)
            bar.update(row_task, completed=record.rows_read, total=record.rows_total)
            if task is not None:
                done, _ = ray.wait([task], timeout=POLL_SECONDS)
                if done:
                    final: JobRecord | None = ray.get(task)
                    if final is None:  # another runner took the job over: its record
                        final = ray.get(jobs.get.remote(spec.job_id))
                    assert final is not None
                    return final
            elif record.status != "running":
                return record
            else:
                time.sleep(POLL_SECONDS)


def _summarize(console: Console, record: JobRecord, rejects_path: Path | None) -> None:
    seconds = ((record.finished_at_ms or record.updated_at_ms) - record.created_at_ms) / 1000
    print(
        f"job {record.job_id}: {record.status} (attempt {record.attempt}): "
        f"{record.rows_read:,} rows read, {record.rows_applied:,} applied, "
        f"{record.rows_rejected:,} rejected"
    )
    if record.attempt == 1 and seconds > 0:
        print(f"{seconds:.2f} s, {record.rows_read / seconds:,.0f} rows/s")
    for row, reason in record.rejects[:10]:
        print(f"  row {row}: {reason}")
    if rejects_path is not None:
        print(f"every rejected row: {rejects_path}")
    if record.error:
        print(f"error: {record.error}", file=sys.stderr)
