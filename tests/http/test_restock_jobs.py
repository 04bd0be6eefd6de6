"""`POST /v1/restock-jobs` and `GET /v1/restock-jobs/{id}` over real HTTP: the file runs as a
Ray task against the real shards; the same file is the same job."""

import io
import time
import uuid
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

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
