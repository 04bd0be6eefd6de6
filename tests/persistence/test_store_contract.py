"""One contract, two backends: the SQLite file and the in-memory store behave the same."""

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from persistence import (
    IdempotencyRecord,
    LogRecord,
    MemoryShardStore,
    ShardStore,
    SnapshotInfo,
    SqliteShardStore,
    StorageError,
)
from persistence.schema import SCHEMA_VERSION


def record(lsn: int, at_ms: int | None = None) -> LogRecord:
    return LogRecord(lsn, 1000 + lsn if at_ms is None else at_ms, f'["cmd",{lsn}]', "[]")


def idem(key: str, lsn: int | None = None, at_ms: int = 5000) -> IdempotencyRecord:
    return IdempotencyRecord(key, f"fp-{key}", lsn, f'["result","{key}"]', at_ms)


Backend = Callable[[], ShardStore]


@pytest.fixture(params=["sqlite", "memory"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Opens the backend's store; for SQLite every open reads the same file."""
    opened: list[ShardStore] = []
    memory = MemoryShardStore()

    def open_store() -> ShardStore:
        store: ShardStore
        if request.param == "sqlite":
            store = SqliteShardStore(tmp_path / "shard.sqlite3")
        else:
            store = memory
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        store.close()


@pytest.fixture
def store(backend: Backend) -> ShardStore:
    return backend()


def _everything(store: ShardStore) -> tuple[object, ...]:
    """What the store holds, for "nothing changed" checks."""
    keys = [f"k{i}" for i in range(20)]
    return (
        store.read_log(0, 1000),
        sorted(store.find_idempotency(keys).items()),
        store.last_lsn(),
        store.latest_snapshot(),
    )


class TestShardStoreContract:
    def test_a_new_store_is_empty(self, store: ShardStore) -> None:
        assert store.last_lsn() == 0
        assert store.read_log(0, 10) == []
        assert list(store.iter_log(0)) == []
        assert store.latest_snapshot() is None
        assert store.find_idempotency(["k1"]) == {}

    def test_appended_records_are_read_back_in_lsn_order(self, store: ShardStore) -> None:
        store.append([record(1), record(2)], [])
        store.append([record(3)], [])
        assert store.read_log(0, 10) == [record(1), record(2), record(3)]
        assert store.last_lsn() == 3

    def test_the_log_is_read_page_by_page_after_an_lsn(self, store: ShardStore) -> None:
        store.append([record(lsn) for lsn in range(1, 11)], [])
        assert store.read_log(0, 4) == [record(1), record(2), record(3), record(4)]
        assert store.read_log(4, 4) == [record(5), record(6), record(7), record(8)]
        assert store.read_log(8, 4) == [record(9), record(10)]
        assert store.read_log(10, 4) == []
        assert store.read_log(3, 0) == []
        assert store.read_log_events(4, 4) == [(lsn, 1000 + lsn, "[]") for lsn in range(5, 9)]
        assert store.read_log_events(10, 4) == []

    @pytest.mark.parametrize("page_size", [1, 3, 5, 10, 11, 100])
    def test_iterating_the_log_yields_every_record_once_whatever_the_page(
        self, store: ShardStore, page_size: int
    ) -> None:
        store.append([record(lsn) for lsn in range(1, 11)], [])
        assert list(store.iter_log(0, page_size)) == [record(lsn) for lsn in range(1, 11)]
        assert [r.lsn for r in store.iter_log(6, page_size)] == [7, 8, 9, 10]

    def test_an_empty_append_writes_nothing(self, store: ShardStore) -> None:
        store.append([], [])
        assert store.last_lsn() == 0 and store.read_log(0, 10) == []

    def test_an_idempotency_record_is_found_by_its_key(self, store: ShardStore) -> None:
        store.append([record(1)], [idem("k1", lsn=1), idem("k2", lsn=None)])
        found = store.find_idempotency(["k1", "k2", "k3"])
        assert found == {"k1": idem("k1", lsn=1), "k2": idem("k2", lsn=None)}
        assert store.find_idempotency([]) == {}

    def test_idempotency_records_need_no_log_record(self, store: ShardStore) -> None:
        store.append([], [idem("k1")])
        assert store.find_idempotency(["k1"]) == {"k1": idem("k1")}
        assert store.last_lsn() == 0

    def test_many_keys_are_found_at_once(self, store: ShardStore) -> None:
        store.append([], [idem(f"many-{i}") for i in range(2000)])
        keys = [f"many-{i}" for i in range(0, 2500, 3)]
        found = store.find_idempotency(keys)
        assert set(found) == {k for k in keys if int(k.split("-")[1]) < 2000}

    def test_a_batch_with_a_duplicate_lsn_writes_nothing_at_all(self, store: ShardStore) -> None:
        store.append([record(1), record(2)], [idem("k1", 1)])
        before = _everything(store)
        with pytest.raises(StorageError):
            store.append([record(3), record(2)], [idem("k2", 3)])
        assert _everything(store) == before
        assert store.find_idempotency(["k2"]) == {}

    def test_a_batch_with_a_duplicate_lsn_inside_it_writes_nothing(self, store: ShardStore) -> None:
        with pytest.raises(StorageError):
            store.append([record(1), record(1)], [idem("k1", 1)])
        assert store.read_log(0, 10) == [] and store.find_idempotency(["k1"]) == {}

    def test_a_batch_reusing_a_stored_idempotency_key_writes_nothing_at_all(
        self, store: ShardStore
    ) -> None:
        store.append([record(1)], [idem("k1", 1)])
        before = _everything(store)
        with pytest.raises(StorageError):
            store.append([record(2)], [idem("k2", 2), idem("k1", 2)])
        assert _everything(store) == before
        assert store.find_idempotency(["k1"])["k1"] == idem("k1", 1)

    def test_a_batch_with_one_idempotency_key_twice_writes_nothing_at_all(
        self, store: ShardStore
    ) -> None:
        with pytest.raises(StorageError):
            store.append([record(1)], [idem("k1", 1), idem("k1", None)])
        assert store.read_log(0, 10) == [] and store.find_idempotency(["k1"]) == {}

    def test_an_injected_append_failure_raises_storage_error_and_writes_nothing(
        self, store: ShardStore
    ) -> None:
        store.append([record(1)], [idem("k1", 1)])
        before = _everything(store)
        store.failing_appends = 1  # type: ignore[attr-defined]
        with pytest.raises(StorageError):
            store.append([record(2)], [idem("k2", 2)])
        assert _everything(store) == before
        store.append([record(2)], [idem("k2", 2)])
        assert store.last_lsn() == 2 and "k2" in store.find_idempotency(["k2"])

    def test_an_empty_append_leaves_an_injected_failure_for_the_next_real_write(
        self, store: ShardStore
    ) -> None:
        store.failing_appends = 1  # type: ignore[attr-defined]
        store.append([], [])
        with pytest.raises(StorageError):
            store.append([record(1)], [idem("k1", 1)])
        assert store.read_log(0, 10) == [] and store.find_idempotency(["k1"]) == {}

    def test_a_record_at_or_below_the_last_lsn_writes_nothing(self, store: ShardStore) -> None:
        store.append([record(5)], [idem("k1", 5)])
        before = _everything(store)
        with pytest.raises(StorageError):
            store.append([record(3)], [idem("k2", 3)])
        assert _everything(store) == before
        assert [r.lsn for r in store.iter_log(0)] == [5]

    def test_a_snapshot_counts_only_once_finished(self, store: ShardStore) -> None:
        store.append([record(1), record(2)], [])
        snapshot_id = store.begin_snapshot(2, 7000)
        store.add_snapshot_chunk(snapshot_id, "skus", "[1]")
        assert store.latest_snapshot() is None
        store.finish_snapshot(snapshot_id, keep=2)
        assert store.latest_snapshot() == SnapshotInfo(snapshot_id, 2, 7000)

    def test_snapshot_chunks_are_read_in_the_order_they_were_added(self, store: ShardStore) -> None:
        snapshot_id = store.begin_snapshot(0, 1)
        chunks = [("skus" if i % 3 else "holds", f"[{i}]") for i in range(40)]
        for kind, payload in chunks:
            store.add_snapshot_chunk(snapshot_id, kind, payload)
        store.finish_snapshot(snapshot_id, keep=1)
        assert list(store.read_snapshot_chunks(snapshot_id)) == chunks

    def test_the_chunks_of_two_snapshots_do_not_mix(self, store: ShardStore) -> None:
        first = store.begin_snapshot(0, 1)
        second = store.begin_snapshot(0, 2)
        store.add_snapshot_chunk(first, "skus", "[1]")
        store.add_snapshot_chunk(second, "skus", "[2]")
        store.add_snapshot_chunk(first, "holds", "[3]")
        store.finish_snapshot(first, keep=5)
        store.finish_snapshot(second, keep=5)
        assert first != second
        assert list(store.read_snapshot_chunks(first)) == [("skus", "[1]"), ("holds", "[3]")]
        assert list(store.read_snapshot_chunks(second)) == [("skus", "[2]")]

    def test_finishing_a_snapshot_keeps_only_the_newest_complete_ones(
        self, store: ShardStore
    ) -> None:
        ids = []
        for index in range(4):
            snapshot_id = store.begin_snapshot(index, index)
            store.add_snapshot_chunk(snapshot_id, "skus", f"[{index}]")
            store.finish_snapshot(snapshot_id, keep=2)
            ids.append(snapshot_id)
        assert store.latest_snapshot() == SnapshotInfo(ids[3], 3, 3)
        assert list(store.read_snapshot_chunks(ids[2])) == [("skus", "[2]")]
        for dropped in ids[:2]:
            assert list(_chunks_or_nothing(store, dropped)) == []

    def test_keeping_zero_snapshots_still_keeps_the_one_just_finished(
        self, store: ShardStore
    ) -> None:
        snapshot_id = store.begin_snapshot(0, 0)
        store.finish_snapshot(snapshot_id, keep=0)
        assert store.latest_snapshot() == SnapshotInfo(snapshot_id, 0, 0)

    def test_an_abandoned_older_snapshot_is_dropped_when_a_newer_one_finishes(
        self, store: ShardStore
    ) -> None:
        abandoned = store.begin_snapshot(0, 0)
        store.add_snapshot_chunk(abandoned, "skus", "[0]")
        newer = store.begin_snapshot(0, 1)
        store.finish_snapshot(newer, keep=2)
        assert list(_chunks_or_nothing(store, abandoned)) == []
        assert store.latest_snapshot() == SnapshotInfo(newer, 0, 1)

    def test_an_unfinished_newer_snapshot_does_not_hide_the_finished_one(
        self, store: ShardStore
    ) -> None:
        done = store.begin_snapshot(1, 1)
        store.finish_snapshot(done, keep=2)
        store.begin_snapshot(5, 2)
        assert store.latest_snapshot() == SnapshotInfo(done, 1, 1)

    def test_the_last_lsn_of_an_empty_log_is_the_snapshot_start(self, store: ShardStore) -> None:
        snapshot_id = store.begin_snapshot(42, 1)
        assert store.last_lsn() == 0
        store.finish_snapshot(snapshot_id, keep=1)
        assert store.last_lsn() == 42

    def test_the_last_lsn_of_a_log_is_its_highest_record(self, store: ShardStore) -> None:
        store.append([record(1), record(2)], [])
        snapshot_id = store.begin_snapshot(1, 1)
        store.finish_snapshot(snapshot_id, keep=1)
        assert store.last_lsn() == 2

    def test_pruning_forgets_the_oldest_idempotency_records_first(self, store: ShardStore) -> None:
        store.append([], [idem(f"k{i}", at_ms=100 * i) for i in range(10)])
        assert store.prune_idempotency(before_ms=450, limit=3) == 3
        keys = [f"k{i}" for i in range(10)]
        assert sorted(store.find_idempotency(keys)) == [f"k{i}" for i in range(3, 10)]
        assert store.prune_idempotency(before_ms=450, limit=100) == 2
        assert sorted(store.find_idempotency(keys)) == [f"k{i}" for i in range(5, 10)]
        assert store.prune_idempotency(before_ms=450, limit=100) == 0

    def test_closing_twice_is_safe(self, store: ShardStore) -> None:
        store.close()
        store.close()

    def test_a_reopened_store_has_everything(self, backend: Backend) -> None:
        store = backend()
        store.append([record(1), record(2)], [idem("k1", 1)])
        snapshot_id = store.begin_snapshot(1, 9)
        store.add_snapshot_chunk(snapshot_id, "skus", "[[1]]")
        store.finish_snapshot(snapshot_id, keep=1)
        store.close()
        again = backend()
        assert again.read_log(0, 10) == [record(1), record(2)]
        assert again.find_idempotency(["k1"]) == {"k1": idem("k1", 1)}
        assert again.latest_snapshot() == SnapshotInfo(snapshot_id, 1, 9)
        assert list(again.read_snapshot_chunks(snapshot_id)) == [("skus", "[[1]]")]


def _chunks_or_nothing(store: ShardStore, snapshot_id: int) -> list[tuple[str, str]]:
    """The chunks of a snapshot; none for a snapshot the store dropped."""
    try:
        return list(store.read_snapshot_chunks(snapshot_id))
    except KeyError:
        return []


# -- SQLite only ------------------------------------------------------------------------------


def test_the_sqlite_store_writes_ahead_and_syncs_fully(tmp_path: Path) -> None:
    store = SqliteShardStore(tmp_path / "shard.sqlite3")
    try:
        conn = store._conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    finally:
        store.close()


def test_the_sqlite_file_holds_the_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "shard.sqlite3"
    SqliteShardStore(path).close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert {"log", "idempotency", "snapshots", "snapshot_chunks"} <= tables


def test_reopening_a_sqlite_file_migrates_nothing_and_keeps_the_log(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "shard.sqlite3"
    store = SqliteShardStore(path)
    store.append([record(1)], [])
    store.close()
    for _ in range(2):
        store = SqliteShardStore(path)
        assert store.read_log(0, 10) == [record(1)]
        store.close()


def test_a_sqlite_file_of_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "shard.sqlite3"
    SqliteShardStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(RuntimeError, match="newer"):
        SqliteShardStore(path)


def test_the_sqlite_file_reports_its_size(tmp_path: Path) -> None:
    store = SqliteShardStore(tmp_path / "shard.sqlite3")
    try:
        empty = store.file_bytes()
        store.append([record(lsn) for lsn in range(1, 200)], [])
        assert store.file_bytes() > empty > 0
    finally:
        store.close()


def test_a_record_sqlite_cannot_encode_is_a_storage_error(tmp_path: Path) -> None:
    store = SqliteShardStore(tmp_path / "shard.sqlite3")
    try:
        with pytest.raises(StorageError):
            store.append([LogRecord(1, 0, '["cmd","\ud800"]', "[]")], [])
        assert store.read_log(0, 10) == []
    finally:
        store.close()
