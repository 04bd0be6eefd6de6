"""`POST /v1/restock-jobs` and `GET /v1/restock-jobs/{id}` over real HTTP: the file runs as a
Ray task against the real shards; the same file is the same job; a broken file is refused whole;
a job id names one file; a key's shard or the jobs actor that does not answer is a retryable 503."""

import io
import os
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
import ray

from inventory_actors.restock.file_reader import RestockMode, content_digest, job_id_of
from inventory_actors.restock.job import job_spec
from inventory_actors.restock.runtime import jobs_actor
from serve_app.keys import Role
from serve_app.service import Caller, scoped_key
from tests.http.conftest import HttpApp, assert_problem, bearer, sku_view

pytestmark = pytest.mark.ray

PARQUET = "application/vnd.apache.parquet"
JOB_TIMEOUT_SECONDS = 120.0


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def rows_for(app: HttpApp, count: int, quantity: int = 2) -> tuple[pa.Table, list[str]]:
    skus = [app.sku(prefix="RJ") for _ in range(20)]
    table = pa.table(
        {
            "sku": [skus[i % len(skus)] for i in range(count)],
            "location": [f"L{i % 3}" for i in range(count)],
            "quantity": pa.array([quantity] * count, pa.int64()),
        }
    )
    return table, skus


def submit(
    http: httpx.Client, app: HttpApp, body: bytes, media: str = PARQUET, **params: str
) -> httpx.Response:
    return http.post(
        "/v1/restock-jobs",
        content=body,
        params=params,
        headers={**bearer(app.admin_key), "Content-Type": media},
    )


def finished(http: httpx.Client, app: HttpApp, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + JOB_TIMEOUT_SECONDS
    while True:
        answer = http.get(f"/v1/restock-jobs/{job_id}", headers=bearer(app.reader_key))
        assert answer.status_code == 200, answer.text
        job: dict[str, Any] = answer.json()
        if job["status"] != "running":
            return job
        assert time.monotonic() < deadline, f"job still running: {job}"
        time.sleep(0.1)


def total_on_hand(http: httpx.Client, app: HttpApp, skus: list[str]) -> int:
    return sum(sku_view(http, app, sku)["totals"]["on_hand"] for sku in skus)


def test_a_parquet_file_runs_as_a_job_and_the_same_file_again_applies_nothing(
    http_app: HttpApp, http: httpx.Client
) -> None:
    table, skus = rows_for(http_app, 3_000)
    body = parquet_bytes(table)
    answer = submit(http, http_app, body)
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["job_id"]
    assert answer.json()["status"] == "running"
    assert answer.headers["Location"] == f"/v1/restock-jobs/{job_id}"
    job = finished(http, http_app, job_id)
    assert job["status"] == "succeeded", job
    assert (job["rows_total"], job["rows_applied"], job["rows_rejected"]) == (3_000, 3_000, 0)
    assert total_on_hand(http, http_app, skus) == 6_000

    again = submit(http, http_app, body)
    assert again.status_code == 202
    assert again.json() == {"job_id": job_id, "status": "succeeded"}
    assert total_on_hand(http, http_app, skus) == 6_000


def test_a_csv_in_set_mode_reports_its_bad_rows(http_app: HttpApp, http: httpx.Client) -> None:
    sku = http_app.sku(prefix="RJ")
    body = f"sku,location,quantity\n{sku},L1,7\nbad sku,L1,3\n{sku},L2,x\n{sku},L2,4\n"
    answer = submit(http, http_app, body.encode(), "text/csv", mode="set")
    assert answer.status_code == 202, answer.text
    job = finished(http, http_app, answer.json()["job_id"])
    assert job["status"] == "succeeded"
    assert job["mode"] == "set"
    assert (job["rows_total"], job["rows_applied"], job["rows_rejected"]) == (4, 2, 2)
    assert [reject["row"] for reject in job["rejects"]] == [2, 3]
    assert job["rejects"][0]["reason"].startswith("sku")
    assert job["rejects"][1]["reason"].startswith("quantity")
    view = sku_view(http, http_app, sku)
    assert {level["location"]: level["on_hand"] for level in view["locations"]} == {
        "L1": 7,
        "L2": 4,
    }


def test_a_file_that_cannot_be_a_restock_is_refused_at_once(
    http_app: HttpApp, http: httpx.Client
) -> None:
    unknown = pa.table({"sku": ["A"], "location": ["L"], "quantity": [1], "price": [3.5]})
    assert_problem(submit(http, http_app, parquet_bytes(unknown)), 422, "validation-error")
    missing = pa.table({"sku": ["A"], "quantity": [1]})
    assert_problem(submit(http, http_app, parquet_bytes(missing)), 422, "validation-error")
    assert_problem(submit(http, http_app, b"not parquet at all"), 422, "validation-error")
    assert_problem(submit(http, http_app, b"sku,location\n", "text/plain"), 400, "validation-error")
    assert_problem(submit(http, http_app, b""), 400, "validation-error")
    assert_problem(
        submit(http, http_app, b"sku,location,quantity\nA,L,1\n", "text/csv", mode="add"),
        422,
        "validation-error",
    )


def test_roles_and_unknown_jobs(http_app: HttpApp, http: httpx.Client) -> None:
    table, _ = rows_for(http_app, 10)
    answer = http.post(
        "/v1/restock-jobs",
        content=parquet_bytes(table),
        headers={**bearer(http_app.writer_key), "Content-Type": PARQUET},
    )
    assert_problem(answer, 403, "forbidden")
    assert_problem(http.get("/v1/restock-jobs/rj-nothing"), 401, "unauthorized")
    answer = http.get("/v1/restock-jobs/rj-nothing", headers=bearer(http_app.reader_key))
    assert_problem(answer, 404, "not-found")


def test_an_idempotency_key_names_one_file(http_app: HttpApp, http: httpx.Client) -> None:
    key = f"restock-{uuid.uuid4().hex}"
    first, _ = rows_for(http_app, 10)
    second, skus = rows_for(http_app, 10, quantity=5)
    headers = {**bearer(http_app.admin_key), "Content-Type": PARQUET, "Idempotency-Key": key}
    answer = http.post("/v1/restock-jobs", content=parquet_bytes(first), headers=headers)
    assert answer.status_code == 202, answer.text
    finished(http, http_app, answer.json()["job_id"])
    retry = http.post("/v1/restock-jobs", content=parquet_bytes(first), headers=headers)
    assert retry.status_code == 202
    assert retry.json()["job_id"] == answer.json()["job_id"]
    reused = http.post("/v1/restock-jobs", content=parquet_bytes(second), headers=headers)
    assert_problem(reused, 422, "idempotency-key-reused")
    for sku in skus:
        answer = http.get(f"/v1/skus/{sku}", headers=bearer(http_app.reader_key))
        assert_problem(answer, 404, "not-found")


def job_id_for(body: bytes, mode: str = "delta") -> str:
    return job_id_of(content_digest(body, RestockMode(mode)))


def csv_body(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pa_csv.write_csv(table, sink)
    return sink.getvalue()


def test_a_csv_that_breaks_after_its_first_chunk_is_refused_whole_then_the_fixed_one_applies_once(
    http_app: HttpApp, http: httpx.Client
) -> None:
    """Its last row, past the first 100,000, has a cell too many: nothing of it is applied."""
    rows = 120_000
    skus = [http_app.sku(prefix="RJB") for _ in range(1_000)]
    table = pa.table(
        {
            "sku": [skus[i % len(skus)] for i in range(rows)],
            "location": ["L1"] * rows,
            "quantity": pa.array([1] * rows, pa.int64()),
        }
    )
    fixed = csv_body(table)
    broken = fixed[:-1] + b",9\n"
    answer = submit(http, http_app, broken, "text/csv")
    problem = assert_problem(answer, 422, "validation-error")
    assert problem["row"] == rows
    assert f"at data row {rows}: CSV parse error: Expected 3 columns, got 4" in problem["detail"]
    assert_problem(
        http.get(f"/v1/restock-jobs/{job_id_for(broken)}", headers=bearer(http_app.reader_key)),
        404,
        "not-found",
    )
    for sku in skus[:: len(skus) // 10]:
        answer = http.get(f"/v1/skus/{sku}", headers=bearer(http_app.reader_key))
        assert_problem(answer, 404, "not-found")

    answer = submit(http, http_app, fixed, "text/csv")
    assert answer.status_code == 202, answer.text
    job = finished(http, http_app, answer.json()["job_id"])
    assert (job["status"], job["rows_total"], job["rows_applied"]) == ("succeeded", rows, rows)
    assert total_on_hand(http, http_app, skus) == rows
    again = submit(http, http_app, fixed, "text/csv")
    assert again.json() == {"job_id": job["job_id"], "status": "succeeded"}
    assert total_on_hand(http, http_app, skus) == rows


def test_a_job_id_that_names_another_file_is_refused_with_409_and_nothing_applied(
    http_app: HttpApp, http: httpx.Client, tmp_path: Path
) -> None:
    """An `inventory restock --job-id` may name its job as an upload's would be named: the
    upload is then refused, whatever state that job is in."""
    table, skus = rows_for(http_app, 30)
    body = parquet_bytes(table)
    other = tmp_path / "other.parquet"
    other.write_bytes(parquet_bytes(rows_for(http_app, 30, quantity=7)[0]))
    jobs = jobs_actor(http_app.data_dir, http_app.namespace)
    spec = job_spec(other, "delta", "parquet", other.name, job_id_for(body))
    assert ray.get(jobs.begin.remote(spec)).attempt == 1
    answer = submit(http, http_app, body)
    problem = assert_problem(answer, 409, "job-id-reused")
    assert problem["job_id"] == job_id_for(body)
    assert "used before for a different file" in problem["detail"]
    for sku in skus:
        assert_problem(
            http.get(f"/v1/skus/{sku}", headers=bearer(http_app.reader_key)), 404, "not-found"
        )
    ray.get(
        jobs.finish.remote(spec.job_id, 1, ray.get(jobs.start.remote(spec.job_id, 1)), "stopped")
    )


@contextmanager
def stopped(pid: int) -> Iterator[None]:
    """The process is frozen (SIGSTOP): it neither answers nor dies, until the block ends."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def retried(send: Any, deadline_seconds: float = 60.0) -> httpx.Response:
    """The answer once it is not a 503 (what a client told Retry-After does)."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        answer: httpx.Response = send()
        if answer.status_code != 503 or time.monotonic() > deadline:
            return answer
        time.sleep(float(answer.headers.get("Retry-After", "1")))


def admin_key_ready(http_app: HttpApp, http: httpx.Client) -> tuple[str, str]:
    """A fresh admin key (id, key), once the app knows it."""
    key_id, key = http_app.new_key(Role.ADMIN)
    deadline = time.monotonic() + 30
    while http.get("/v1/restock-jobs/rj-none", headers=bearer(key)).status_code != 404:
        assert time.monotonic() < deadline, "the app did not learn the new key"
        time.sleep(0.1)
    return key_id, key


def test_an_idempotency_key_whose_shard_is_down_is_a_retryable_503_and_is_recorded_once_back(
    http_app: HttpApp, http: httpx.Client
) -> None:
    down, up = 0, 1
    key_id, admin = admin_key_ready(http_app, http)
    caller = Caller(key_id, Role.ADMIN, {})

    def claim_shard(key: str) -> int:
        scoped = scoped_key(caller, key)
        assert scoped is not None
        return http_app.partition.owner(key=scoped)

    keys = (f"restock-{uuid.uuid4().hex}" for _ in range(1_000))
    key = next(key for key in keys if claim_shard(key) == down)
    # The job's rows live on the shard that stays up: only the key's claim needs the other.
    skus = [http_app.sku(shard=up, prefix="RJK") for _ in range(5)]
    table = pa.table({"sku": skus, "location": ["L1"] * 5, "quantity": pa.array([4] * 5)})
    headers = {**bearer(admin), "Content-Type": PARQUET, "Idempotency-Key": key}

    def post(table: pa.Table = table) -> httpx.Response:
        return http.post("/v1/restock-jobs", content=parquet_bytes(table), headers=headers)

    pid = ray.get(http_app.shard_actor(down).status.remote()).pid
    with stopped(pid):
        answer = post()
    problem = assert_problem(answer, 503, "shard-unavailable")
    assert int(answer.headers["Retry-After"]) >= 1
    assert problem["shard"] == down
    job_id = job_id_for(parquet_bytes(table))
    assert_problem(
        http.get(f"/v1/restock-jobs/{job_id}", headers=bearer(http_app.reader_key)),
        404,
        "not-found",
    )
    # The shard is back: the same request goes through, and the key names that file.
    answer = retried(post)
    assert answer.status_code == 202, answer.text
    assert finished(http, http_app, job_id)["status"] == "succeeded"
    other = table.set_column(2, "quantity", pa.array([9] * 5))
    assert_problem(post(other), 422, "idempotency-key-reused")
    assert total_on_hand(http, http_app, skus) == 20


def test_a_jobs_actor_that_does_not_answer_is_a_retryable_503_and_the_same_file_is_one_job(
    http_app: HttpApp, http: httpx.Client
) -> None:
    table, skus = rows_for(http_app, 50)
    body = parquet_bytes(table)
    jobs = jobs_actor(http_app.data_dir, http_app.namespace)
    pid = ray.get(jobs.__ray_call__.remote(lambda _: os.getpid()))
    with stopped(pid):
        answer = submit(http, http_app, body)
    assert_problem(answer, 503, "shard-unavailable")
    assert int(answer.headers["Retry-After"]) >= 1
    # The submission may have reached the actor before it froze: sending it again is safe.
    answer = retried(lambda: submit(http, http_app, body))
    assert answer.status_code == 202, answer.text
    assert answer.json()["job_id"] == job_id_for(body)
    assert finished(http, http_app, job_id_for(body))["status"] == "succeeded"
    assert total_on_hand(http, http_app, skus) == 100
