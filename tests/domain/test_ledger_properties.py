"""Random command sequences: invariants always hold, and every way of replaying the events
(in memory, through the codec, through a store, over a fuzzy snapshot) gives the live state."""

import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inventory_actors.domain import (
    AdjustStock,
    Command,
    CommitHold,
    DomainError,
    Event,
    ExpireHolds,
    ExtendHold,
    Ledger,
    LineRequest,
    PruneHolds,
    ReleaseHold,
    ReserveStock,
    SetStock,
    SetThreshold,
    TransferStock,
)
from inventory_actors.domain.snapshot_io import HOLD_COLUMNS, SKU_COLUMNS, THRESHOLDS
from inventory_actors.shard.codec import (
    REPLAY_DECODERS,
    decode_events,
    decode_rows,
    encode_command,
    encode_events,
    encode_rows,
)
from inventory_actors.shard.recovery import recover_ledger
from persistence import LogRecord, MemoryShardStore, ShardStore, SqliteShardStore

SKUS = ("A", "B", "C")
LOCATIONS = ("berlin", "paris", "rome")
HOLD_IDS = ("h1", "h2", "h3", "h4")
START_MS = 1_000_000

skus = st.sampled_from(SKUS)
locations = st.sampled_from(LOCATIONS)
hold_ids = st.sampled_from(HOLD_IDS)
ttls = st.sampled_from([1_000, 2_000, 5_000, 30_000])
versions = st.one_of(st.none(), st.integers(0, 6))
lines = st.builds(LineRequest, skus, st.integers(1, 4), st.one_of(st.none(), locations))


class Step(NamedTuple):
    """Advance the clock by `advance_ms`, then run `command` (PruneHolds cutoffs are relative
    to the clock: `finished_before_ms` holds how far back)."""

    advance_ms: int
    command: Command


reserves = st.one_of(
    st.builds(
        ReserveStock,
        hold_ids,
        st.lists(lines, min_size=1, max_size=3).map(tuple),
        ttls,
        st.one_of(st.none(), st.just("cart")),
    ),
    st.builds(ReserveStock, hold_ids, st.tuples(lines), ttls),
)

commands: st.SearchStrategy[Command] = st.one_of(
    st.builds(
        AdjustStock,
        skus,
        locations,
        st.integers(-6, 12).filter(bool),
        st.sampled_from(["received", "damaged", "correction"]),
        st.one_of(st.none(), st.sampled_from(["po-1", "ü-ref"])),
        versions,
    ),
    st.builds(
        SetStock, skus, locations, st.integers(0, 12), st.just("cycle_count"), st.none(), versions
    ),
    st.builds(TransferStock, skus, locations, locations, st.integers(1, 5), st.none(), versions),
    reserves,
    reserves,
    reserves,
    st.builds(CommitHold, hold_ids),
    st.builds(CommitHold, hold_ids),
    st.builds(ReleaseHold, hold_ids),
    st.builds(ExtendHold, hold_ids, ttls),
    st.builds(ExpireHolds, st.integers(0, 3)),
    st.builds(PruneHolds, st.integers(0, 5_000), st.integers(0, 3)),
    st.builds(SetThreshold, skus, locations, st.one_of(st.none(), st.integers(0, 8))),
)

# Most sequences start from a stocked shard, so holds have something to take.
STOCK_UP = [
    Step(0, SetStock(sku, location, 6))
    for sku in SKUS
    for location in LOCATIONS
    if (sku, location) != ("C", "rome")
]
random_steps = st.builds(Step, st.integers(0, 1_500), commands)
steps = st.tuples(st.booleans(), st.lists(random_steps, min_size=8, max_size=40)).map(
    lambda pair: (STOCK_UP if pair[0] else []) + pair[1]
)
more = st.lists(random_steps, max_size=20)


class Applied(NamedTuple):
    at_ms: int
    command: Command
    events: list[Event]


def _concrete(command: Command, now_ms: int) -> Command:
    if isinstance(command, PruneHolds):
        return PruneHolds(now_ms - command.finished_before_ms, command.limit)
    return command


class Live:
    """A ledger driven by steps, checked after every command; remembers what changed state."""

    def __init__(self) -> None:
        self.ledger = Ledger()
        self.now_ms = START_MS
        self.applied: list[Applied] = []

    def step(self, step: Step) -> None:
        self.now_ms += step.advance_ms
        command = _concrete(step.command, self.now_ms)
        before = self.ledger.fingerprint()
        try:
            _, events = self.ledger.execute(command, self.now_ms)
        except DomainError:
            assert self.ledger.fingerprint() == before, f"{command} failed but changed state"
            events = []
        self.ledger.check_invariants()
        if events:
            self.applied.append(Applied(self.now_ms, command, list(events)))
        else:
            assert self.ledger.fingerprint() == before, f"{command} changed state without events"

    def run(self, all_steps: Sequence[Step]) -> None:
        for step in all_steps:
            self.step(step)

    def records(self, first_lsn: int = 1) -> list[LogRecord]:
        return [
            LogRecord(lsn, a.at_ms, encode_command(a.command), encode_events(a.events))
            for lsn, a in enumerate(self.applied[first_lsn - 1 :], start=first_lsn)
        ]


def _fill(store: ShardStore, live: Live) -> None:
    records = live.records()
    if records:
        store.append(records, [])


@settings(max_examples=200, deadline=None)
@given(steps)
def test_no_sequence_of_commands_breaks_an_invariant_and_replay_gives_the_same_state(
    all_steps: list[Step],
) -> None:
    live = Live()
    live.run(all_steps)

    replayed = Ledger()
    for applied in live.applied:
        for event in applied.events:
            replayed.apply(event, applied.at_ms)
    replayed.check_invariants()
    assert replayed.fingerprint() == live.ledger.fingerprint()

    decoded = Ledger()
    for applied in live.applied:
        text = encode_events(applied.events)
        assert decode_events(text) == applied.events
        for event in decode_events(text):
            decoded.apply(event, applied.at_ms)
        # The codec's replay decoders build the same events, of the same types.
        fast = [REPLAY_DECODERS[row[0]](row) for row in decode_rows(text)]
        assert fast == applied.events
        assert [type(e) for e in fast] == [type(e) for e in applied.events]
    assert decoded.fingerprint() == live.ledger.fingerprint()


@settings(max_examples=100, deadline=None)
@given(steps, more)
def test_a_ledger_recovered_from_a_memory_store_is_the_live_ledger_and_stays_so(
    all_steps: list[Step], more_steps: list[Step]
) -> None:
    live = Live()
    live.run(all_steps)
    store = MemoryShardStore()
    _fill(store, live)

    recovered, last_lsn, replayed = recover_ledger(store, check_invariants=True)
    assert recovered.fingerprint() == live.ledger.fingerprint()
    assert last_lsn == replayed == len(live.applied)

    # Both go on the same way: the rebuilt indexes (expiry heap, finish order) are right.
    twin = Live()
    twin.ledger, twin.now_ms = recovered, live.now_ms
    for drawn in more_steps:
        step = drawn
        if isinstance(drawn.command, PruneHolds):
            step = drawn._replace(command=drawn.command._replace(limit=100))
        live.step(step)
        twin.step(step)
        assert twin.ledger.fingerprint() == live.ledger.fingerprint()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(steps)
def test_a_ledger_recovered_from_a_sqlite_store_is_the_live_ledger(all_steps: list[Step]) -> None:
    live = Live()
    live.run(all_steps)
    with tempfile.TemporaryDirectory() as directory:
        store = SqliteShardStore(Path(directory) / "shard.sqlite3")
        try:
            _fill(store, live)
            recovered, last_lsn, _ = recover_ledger(store, check_invariants=True)
        finally:
            store.close()
    assert recovered.fingerprint() == live.ledger.fingerprint()
    assert last_lsn == len(live.applied)


def _row_chunks(
    ledger: Ledger,
    store: ShardStore,
    snapshot_id: int,
    sku_ids: list[str],
    hold_ids: list[str],
    size: int,
) -> Iterator[None]:
    """Write the snapshot in the row format of older snapshots, one chunk per step."""
    for kind, ids in (("skus", sku_ids), ("holds", hold_ids)):
        for i in range(0, len(ids), size):
            chunk = ids[i : i + size]
            rows = ledger.export_skus(chunk) if kind == "skus" else ledger.export_holds(chunk)
            store.add_snapshot_chunk(snapshot_id, kind, encode_rows(rows))
            yield
    yield from _threshold_chunks(ledger, store, snapshot_id, size)


def _threshold_chunks(
    ledger: Ledger, store: ShardStore, snapshot_id: int, size: int
) -> Iterator[None]:
    """The thresholds as they are when each chunk is written, as the Snapshotter does: the
    keys are listed first, so keys set later are left to the log."""
    keys = list(ledger.thresholds)
    for i in range(0, len(keys), size):
        rows = ledger.export_thresholds(keys[i : i + size])
        store.add_snapshot_chunk(snapshot_id, THRESHOLDS, encode_rows(rows))
        yield


def _columnar_chunks(
    ledger: Ledger,
    store: ShardStore,
    snapshot_id: int,
    sku_ids: list[str],
    hold_ids: list[str],
    size: int,
) -> Iterator[None]:
    """Write the snapshot as the Snapshotter does, one chunk per step."""
    start = 0
    while start < len(sku_ids):
        columns, start = ledger.export_sku_columns(sku_ids, start, size)
        store.add_snapshot_chunk(snapshot_id, SKU_COLUMNS, encode_rows(columns))
        yield
    for i in range(0, len(hold_ids), size):
        columns = ledger.export_hold_columns(hold_ids[i : i + size])
        store.add_snapshot_chunk(snapshot_id, HOLD_COLUMNS, encode_rows(columns))
        yield
    yield from _threshold_chunks(ledger, store, snapshot_id, size)


def _fuzzy_snapshot_then_recover(data: st.DataObject, store: ShardStore) -> None:
    live = Live()
    live.run(data.draw(steps, label="before the snapshot"))
    _fill(store, live)
    start_lsn = len(live.applied)

    snapshot_id = store.begin_snapshot(start_lsn, live.now_ms)
    size = data.draw(st.integers(1, 3), label="chunk rows")
    columnar = data.draw(st.booleans(), label="columnar chunks")
    sku_ids, hold_ids = list(live.ledger.skus), list(live.ledger.holds)
    write = _columnar_chunks if columnar else _row_chunks
    chunks = write(live.ledger, store, snapshot_id, sku_ids, hold_ids, size)

    during = data.draw(more, label="during the snapshot")
    for step in during:
        for _ in range(data.draw(st.integers(0, 2), label="chunks now")):
            next(chunks, None)
        written = len(live.applied)
        live.step(step)
        if len(live.applied) > written:
            store.append(live.records(first_lsn=len(live.applied)), [])
    for _ in chunks:
        pass
    store.finish_snapshot(snapshot_id, keep=1)

    after = data.draw(more, label="after the snapshot")
    for step in after:
        written = len(live.applied)
        live.step(step)
        if len(live.applied) > written:
            store.append(live.records(first_lsn=len(live.applied)), [])

    info = store.latest_snapshot()
    assert info is not None and info.start_lsn == start_lsn
    recovered, last_lsn, replayed = recover_ledger(store, check_invariants=True)
    assert recovered.fingerprint() == live.ledger.fingerprint()
    assert last_lsn == len(live.applied)
    assert replayed == len(live.applied) - start_lsn


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_a_fuzzy_snapshot_taken_while_commands_run_recovers_the_live_state(
    data: st.DataObject,
) -> None:
    _fuzzy_snapshot_then_recover(data, MemoryShardStore())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_fuzzy_snapshot_in_sqlite_recovers_the_live_state(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as directory:
        store = SqliteShardStore(Path(directory) / "shard.sqlite3")
        try:
            _fuzzy_snapshot_then_recover(data, store)
        finally:
            store.close()
