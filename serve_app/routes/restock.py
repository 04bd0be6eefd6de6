"""`POST /v1/restock-jobs` and `GET /v1/restock-jobs/{id}`: a Parquet or CSV body becomes a
restock job that runs as a Ray task; its progress is read from the jobs actor."""

import asyncio
from typing import Annotated, Any, Literal

import ray
from fastapi import FastAPI, Path, Query, Request
from ray.exceptions import RayError
from starlette.responses import Response

from inventory_actors.cluster.coordinator import step_key
from inventory_actors.domain import ClaimKey, DomainError, KeyClaimed
from inventory_actors.restock.book import Begun, JobSpec
from inventory_actors.restock.file_reader import FileFormat, RestockFileError, check_file
from inventory_actors.restock.job import job_spec
from inventory_actors.restock.runtime import jobs_actor
from inventory_actors.shard.errors import IdempotencyKeyReused, ServiceError
from inventory_actors.shard.protocol import Submission
from persistence.jobs_store import JobRecord
from serve_app.problems import Problem, not_found, problem_of, validation
from serve_app.render import rfc3339
from serve_app.routing import (
    COMMON_RESPONSES,
    Admin,
    IdempotencyKeyHeader,
    Reader,
    json_response,
    responses_with,
    service_of,
)
from serve_app.service import Caller, Service, fingerprint, scoped_key

MEDIA_TYPES = {
    "application/vnd.apache.parquet": FileFormat.PARQUET,
    "text/csv": FileFormat.CSV,
}
JOBS_CALL_TIMEOUT_SECONDS = 10.0
JobIdPath = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:/-]+$")]


def job_body(record: JobRecord) -> dict[str, Any]:
    return {
        "job_id": record.job_id,
        "status": record.status,
        "mode": record.mode,
        "format": record.file_format,
        "rows_total": record.rows_total,
        "rows_read": record.rows_read,
        "rows_applied": record.rows_applied,
        "rows_rejected": record.rows_rejected,
        "rejects": [{"row": row, "reason": reason} for row, reason in record.rejects],
        "error": record.error,
        "attempt": record.attempt,
        "created_at": rfc3339(record.created_at_ms),
        "updated_at": rfc3339(record.updated_at_ms),
        "finished_at": None if record.finished_at_ms is None else rfc3339(record.finished_at_ms),
    }


def _format_of(request: Request) -> FileFormat:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    file_format = MEDIA_TYPES.get(media_type)
    if file_format is None:
        raise validation(
            "Content-Type must be application/vnd.apache.parquet or text/csv", status=400
        )
    return file_format


def _checked_spec(body: bytes, mode: str, file_format: FileFormat) -> JobSpec:
    """The job this body is, once the whole file has been read and found sound
    (RestockFileError if not): nothing of a file that breaks anywhere is applied."""
    rows_total = check_file(body, file_format)
    return job_spec(body, mode, file_format.value, "http upload")._replace(rows_total=rows_total)


def _refused(error: RestockFileError) -> Problem:
    detail = f"the file is refused whole: {error}"
    if error.row is None:
        return Problem("validation-error", 422, detail)
    return Problem("validation-error", 422, detail, row=error.row)


async def _claim(service: Service, caller: Caller, key: str | None, request_print: str) -> None:
    """An Idempotency-Key names one file: reused with another, 422 (the job's own id already
    makes a re-submission of the same file harmless). Unlike an ordinary command's claim
    (`Service._claim_keys`), this one is the key's only record: a submission whose claim was
    not recorded is refused (503, retryable), or the key could later name another file."""
    scoped = scoped_key(caller, key)
    if scoped is None:
        return
    shard_id = service.client.partition.owner(key=scoped)
    claim = Submission(ClaimKey(shard_id), step_key(scoped, "claim"), request_print)
    [outcome] = await service.coalescer.submit(shard_id, [claim])
    value = outcome.value
    if isinstance(value, IdempotencyKeyReused):
        raise problem_of(IdempotencyKeyReused(key or ""))
    if isinstance(value, DomainError | ServiceError):
        raise problem_of(value)
    if not isinstance(value, KeyClaimed):
        raise _unavailable("the Idempotency-Key could not be recorded")


def _unavailable(detail: str) -> Problem:
    return Problem("shard-unavailable", 503, detail, retry_after_seconds=1.0)


async def _jobs(service: Service) -> Any:
    return jobs_actor(service.settings.data_dir, service.settings.namespace)


async def _submit(service: Service, spec: JobSpec, body: bytes) -> JobRecord:
    """The job's record once the jobs actor has it: 503 when the actor does not answer in
    time (it may have begun the job: the same file again is the same job), 409 when the job
    id belongs to another file."""
    try:
        jobs = await _jobs(service)
        data = ray.put(body)
        begun: Begun = await asyncio.wait_for(
            jobs.submit.remote(spec, [data]), JOBS_CALL_TIMEOUT_SECONDS
        )
    except (TimeoutError, RayError):
        detail = "the book of restock jobs did not answer in time; the same file again is safe"
        raise _unavailable(detail) from None
    record = begun.record
    if begun.reused:
        detail = (
            f"job id {record.job_id} was used before for a different file or mode (that job "
            f"is {record.status}); nothing of this file was applied"
        )
        raise Problem("job-id-reused", 409, detail, job_id=record.job_id)
    return record


def add_restock_routes(app: FastAPI) -> None:
    @app.post(
        "/v1/restock-jobs",
        status_code=202,
        responses=COMMON_RESPONSES,
        summary="Apply a Parquet or CSV file of restock rows, exactly once",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    media: {"schema": {"type": "string", "format": "binary"}}
                    for media in MEDIA_TYPES
                },
            }
        },
    )
    async def submit_restock(
        request: Request,
        caller: Admin,
        idempotency_key: IdempotencyKeyHeader = None,
        mode: Annotated[Literal["delta", "set"], Query()] = "delta",
    ) -> Response:
        file_format = _format_of(request)
        body = await request.body()
        if not body:
            raise validation("the body must be a Parquet or CSV file", status=400)
        try:
            spec = await asyncio.to_thread(_checked_spec, body, mode, file_format)
        except RestockFileError as error:
            raise _refused(error) from None
        service = service_of(request)
        request_print = fingerprint("POST", request.url.path, spec.digest.encode())
        await _claim(service, caller, idempotency_key, request_print)
        record = await _submit(service, spec, body)
        headers = {**caller.headers, "Location": f"/v1/restock-jobs/{record.job_id}"}
        return json_response({"job_id": record.job_id, "status": record.status}, 202, headers)

    @app.get(
        "/v1/restock-jobs/{job_id}",
        responses=responses_with(404),
        summary="A restock job's progress, counts and first rejected rows",
    )
    async def get_restock_job(request: Request, job_id: JobIdPath, caller: Reader) -> Response:
        try:
            jobs = await _jobs(service_of(request))
            record = await asyncio.wait_for(jobs.get.remote(job_id), JOBS_CALL_TIMEOUT_SECONDS)
        except (TimeoutError, RayError):
            raise _unavailable("the book of restock jobs did not answer in time") from None
        if record is None:
            raise not_found(f"no restock job {job_id!r}")
        return json_response(job_body(record), headers=caller.headers)
