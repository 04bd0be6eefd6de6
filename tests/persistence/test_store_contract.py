"""One contract, two backends: the SQLite file and the in-memory store behave the same."""

import sqlite3
import string
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlite_utils

from persistence import (
    IdempotencyRecord,
    LogRecord,
    MemoryShardStore,
    ShardStore,
    SnapshotInfo,
    SqliteShardStore,
    StorageError,
)
from persistence.port import epoch_at
from persistence.schema import MIGRATIONS, SCHEMA_VERSION


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


class TestReplicaStoreContract:
    def test_the_disk_id_is_a_uuid_kept_while_the_storage_lives(self, backend: Backend) -> None:
        store = backend()
        disk_id = store.disk_id()
        assert len(disk_id) == 32 and set(disk_id) <= set(string.hexdigits.lower())
        assert store.disk_id() == disk_id
        store.close()
        assert backend().disk_id() == disk_id

    def test_a_new_store_has_promised_no_epoch_and_has_none(self, store: ShardStore) -> None:
        assert store.promised_epoch() == 0
        assert store.epochs() == []

    def test_the_promised_epoch_never_goes_down(self, store: ShardStore) -> None:
        store.promise_epoch(5)
        assert store.promised_epoch() == 5
        store.promise_epoch(3)
        assert store.promised_epoch() == 5
        store.promise_epoch(5)
        assert store.promised_epoch() == 5
        store.promise_epoch(7)
        assert store.promised_epoch() == 7

    def test_the_promised_epoch_survives_a_reopen(self, backend: Backend) -> None:
        store = backend()
        store.promise_epoch(4)
        store.close()
        again = backend()
        assert again.promised_epoch() == 4
        again.promise_epoch(2)
        assert again.promised_epoch() == 4

    def test_epochs_are_sorted_by_start_and_keep_their_first_start(self, backend: Backend) -> None:
        store = backend()
        store.add_epoch(3, 10)
        store.add_epoch(1, 1)
        store.add_epoch(2, 10)
        store.add_epoch(2, 99)
        store.add_epoch(4, 0)
        assert store.epochs() == [(4, 0), (1, 1), (2, 10), (3, 10)]
        store.close()
        assert backend().epochs() == [(4, 0), (1, 1), (2, 10), (3, 10)]

    def test_putting_idempotency_records_inserts_or_replaces_by_key(
        self, store: ShardStore
    ) -> None:
        store.append([record(1)], [idem("k1", 1)])
        replaced = IdempotencyRecord("k1", "fp-other", None, '["other"]', 9000)
        store.put_idempotency([replaced, idem("k2", 2)])
        store.put_idempotency([])
        assert store.find_idempotency(["k1", "k2"]) == {"k1": replaced, "k2": idem("k2", 2)}
        assert store.read_log(0, 10) == [record(1)]

    def test_idempotency_records_are_read_since_a_time_page_by_page_by_key(
        self, store: ShardStore
    ) -> None:
        store.put_idempotency([idem(f"k{i}", at_ms=100 * i) for i in range(10)])
        assert store.read_idempotency_since(300, "", 3) == [
            idem("k3", at_ms=300),
            idem("k4", at_ms=400),
            idem("k5", at_ms=500),
        ]
        assert store.read_idempotency_since(300, "k5", 3) == [
            idem("k6", at_ms=600),
            idem("k7", at_ms=700),
            idem("k8", at_ms=800),
        ]
        assert store.read_idempotency_since(300, "k8", 3) == [idem("k9", at_ms=900)]
        assert store.read_idempotency_since(300, "k9", 3) == []
        assert store.read_idempotency_since(1000, "", 3) == []
        assert store.read_idempotency_since(0, "", 0) == []

    def test_reading_idempotency_since_a_time_orders_by_key_not_time(
        self, store: ShardStore
    ) -> None:
        store.put_idempotency([idem("a", at_ms=900), idem("b", at_ms=100), idem("c", at_ms=500)])
        assert [r.key for r in store.read_idempotency_since(500, "", 10)] == ["a", "c"]
        assert [r.key for r in store.read_idempotency_since(0, "a", 10)] == ["b", "c"]

    def test_copied_log_records_are_appended_without_idempotency_records(
        self, store: ShardStore
    ) -> None:
        store.append([record(1)], [idem("k1", 1)])
        store.append_copied([record(2), record(3)])
        store.append_copied([])
        assert store.read_log(0, 10) == [record(1), record(2), record(3)]
        assert store.last_lsn() == 3
        assert store.find_idempotency(["k1", "k2"]) == {"k1": idem("k1", 1)}

    def test_a_copied_batch_takes_its_idempotency_records_replacing_equal_keys(
        self, store: ShardStore
    ) -> None:
        store.append([record(1)], [idem("k1", 1)])
        store.append_copied([record(2)], [idem("k1", 1), idem("k2", 2)])
        store.append_copied([], [idem("k3", None)])
        assert store.last_lsn() == 2
        found = store.find_idempotency(["k1", "k2", "k3"])
        assert found == {"k1": idem("k1", 1), "k2": idem("k2", 2), "k3": idem("k3", None)}

    def test_a_copied_batch_refused_for_its_lsns_keeps_its_keys_out_too(
        self, store: ShardStore
    ) -> None:
        store.append([record(1)], [])
        with pytest.raises(StorageError):
            store.append_copied([record(1)], [idem("k9", 1)])
        assert store.find_idempotency(["k9"]) == {}

    @pytest.mark.parametrize("lsns", [[3, 4], [4, 4], [5, 4]])
    def test_a_copied_batch_whose_lsns_do_not_follow_writes_nothing(
        self, store: ShardStore, lsns: list[int]
    ) -> None:
        store.append_copied([record(1), record(2), record(3)])
        before = _everything(store)
        with pytest.raises(StorageError):
            store.append_copied([record(lsn) for lsn in lsns])
        assert _everything(store) == before

    def test_an_injected_failure_of_a_copied_batch_writes_nothing(self, store: ShardStore) -> None:
        store.failing_appends = 1  # type: ignore[attr-defined]
        with pytest.raises(StorageError):
            store.append_copied([record(1)])
        assert store.read_log(0, 10) == []
        store.append_copied([record(1)])
        assert store.last_lsn() == 1

    def test_an_installed_snapshot_is_the_latest_and_the_log_follows_it(
        self, backend: Backend
    ) -> None:
        store = backend()
        chunks = [("skus" if i % 2 else "holds", f"[{i}]") for i in range(40)]
        store.install_snapshot(50, 7000, chunks)
        snapshot = store.latest_snapshot()
        assert snapshot is not None and (snapshot.start_lsn, snapshot.at_ms) == (50, 7000)
        assert list(store.read_snapshot_chunks(snapshot.snapshot_id)) == chunks
        assert store.last_lsn() == 50 and store.first_lsn() == 51
        store.append_copied([record(51)])
        assert store.last_lsn() == 51
        store.close()
        again = backend()
        assert again.latest_snapshot() == snapshot
        assert list(again.read_snapshot_chunks(snapshot.snapshot_id)) == chunks

    def test_an_empty_snapshot_can_be_installed(self, store: ShardStore) -> None:
        store.install_snapshot(7, 1, [])
        snapshot = store.latest_snapshot()
        assert snapshot is not None and snapshot.start_lsn == 7
        assert list(store.read_snapshot_chunks(snapshot.snapshot_id)) == []
        assert store.last_lsn() == 7

    def test_installing_a_snapshot_over_a_log_fails_and_changes_nothing(
        self, store: ShardStore
    ) -> None:
        store.append([record(1)], [idem("k1", 1)])
        before = _everything(store)
        with pytest.raises(StorageError):
            store.install_snapshot(10, 1, [("skus", "[1]")])
        assert _everything(store) == before
        assert store.latest_snapshot() is None

    def test_an_installed_snapshot_replaces_the_earlier_ones(self, store: ShardStore) -> None:
        old = store.begin_snapshot(3, 1)
        store.add_snapshot_chunk(old, "skus", "[old]")
        store.finish_snapshot(old, keep=1)
        store.install_snapshot(9, 2, [("skus", "[new]")])
        snapshot = store.latest_snapshot()
        assert snapshot is not None and snapshot.snapshot_id != old
        assert (snapshot.start_lsn, snapshot.at_ms) == (9, 2)
        assert list(store.read_snapshot_chunks(snapshot.snapshot_id)) == [("skus", "[new]")]
        assert _chunks_or_nothing(store, old) == []

    def test_wiping_forgets_the_data_keeps_the_promise_and_takes_a_new_disk_id(
        self, backend: Backend
    ) -> None:
        store = backend()
        disk_id = store.disk_id()
        store.append([record(1), record(2)], [idem("k1", 1)])
        snapshot_id = store.begin_snapshot(2, 1)
        store.add_snapshot_chunk(snapshot_id, "skus", "[1]")
        store.finish_snapshot(snapshot_id, keep=1)
        store.add_epoch(1, 1)
        store.promise_epoch(3)
        store.wipe()
        store.close()
        again = backend()
        assert again.read_log(0, 10) == [] and again.last_lsn() == 0
        assert again.find_idempotency(["k1"]) == {}
        assert again.read_idempotency_since(0, "", 10) == []
        assert again.latest_snapshot() is None
        assert _chunks_or_nothing(again, snapshot_id) == []
        assert again.epochs() == []
        assert again.promised_epoch() == 3
        # What this disk acknowledged is gone: it is another disk now, for the votes.
        assert again.disk_id() != disk_id
        assert again.disk_id() == store.disk_id()

    def test_a_wiped_store_takes_a_copy_of_another_replica(self, store: ShardStore) -> None:
        store.append([record(1), record(2)], [idem("k1", 1)])
        store.wipe()
        store.install_snapshot(20, 5, [("skus", "[20]")])
        store.append_copied([record(21)])
        store.put_idempotency([idem("k2", 21)])
        store.add_epoch(2, 21)
        assert store.read_log(0, 10) == [record(21)]
        assert store.find_idempotency(["k1", "k2"]) == {"k2": idem("k2", 21)}
        assert store.epochs() == [(2, 21)]


@pytest.mark.parametrize(
    ("entries", "lsn", "epoch"),
    [
        ([], 5, 0),
        ([(1, 1), (2, 10)], 0, 0),
        ([(1, 1), (2, 10)], -3, 0),
        ([(1, 1), (2, 10)], 1, 1),
        ([(1, 1), (2, 10)], 9, 1),
        ([(1, 1), (2, 10)], 10, 2),
        ([(1, 1), (2, 10)], 1000, 2),
        ([(2, 5)], 4, 0),
        ([(3, 10), (2, 10), (1, 1)], 10, 3),
        ([(2, 10), (3, 10), (1, 1)], 12, 3),
        ([(5, 0), (6, 3)], 2, 5),
    ],
)
def test_the_epoch_at_an_lsn_is_that_of_the_latest_start_at_or_before_it(
    entries: list[tuple[int, int]], lsn: int, epoch: int
) -> None:
    assert epoch_at(entries, lsn) == epoch


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
    assert {
        "log",
        "idempotency",
        "snapshots",
        "snapshot_chunks",
        "replica_meta",
        "epochs",
    } <= tables


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


def test_a_new_sqlite_file_gets_a_new_disk_id(tmp_path: Path) -> None:
    path = tmp_path / "shard.sqlite3"
    first = SqliteShardStore(path)
    disk_id = first.disk_id()
    first.close()
    other = SqliteShardStore(tmp_path / "other.sqlite3")
    assert other.disk_id() != disk_id
    other.close()
    for leftover in tmp_path.glob("shard.sqlite3*"):
        leftover.unlink()
    again = SqliteShardStore(path)
    assert again.disk_id() != disk_id
    again.close()


def test_a_sqlite_file_of_schema_1_is_migrated_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "shard.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    MIGRATIONS[0](sqlite_utils.Database(conn))
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO log VALUES (1, 1001, '[\"cmd\",1]', '[]')")
    conn.execute("INSERT INTO idempotency VALUES ('k1', 'fp-k1', 1, '[\"result\",\"k1\"]', 5000)")
    conn.close()
    store = SqliteShardStore(path)
    try:
        assert store.read_log(0, 10) == [record(1)]
        assert store.find_idempotency(["k1"]) == {"k1": idem("k1", 1)}
        assert store.promised_epoch() == 0 and store.epochs() == []
        store.promise_epoch(2)
        store.add_epoch(2, 2)
        disk_id = store.disk_id()
        assert len(disk_id) == 32
        version = store._conn.execute("PRAGMA user_version").fetchone()[0]
        assert version == SCHEMA_VERSION == 2
    finally:
        store.close()
    again = SqliteShardStore(path)
    try:
        assert again.disk_id() == disk_id
        assert again.promised_epoch() == 2 and again.epochs() == [(2, 2)]
    finally:
        again.close()
