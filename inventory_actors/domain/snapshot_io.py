"""Snapshot chunks of a ledger's state: their kinds and layouts (part of the on-disk format),
exporting them while the shard runs, loading them during recovery. A mixin of `LedgerState`,
kept apart because it is only about the format."""

from collections.abc import Iterable, Sequence
from typing import Any, Final

from inventory_actors.domain.events import HoldLine, HoldStatus, ReservationOpened
from inventory_actors.domain.records import Hold, Level, Reservation, Sku

# Chunk kinds, as the store records them beside each chunk: part of the on-disk format, never
# rename one. Snapshots are written as SKU and hold columns and as reservation and threshold
# rows; recovery still reads SKU and hold rows, what snapshots held before the columns.
SKU_COLUMNS: Final = "sku-columns"
HOLD_COLUMNS: Final = "hold-columns"
RESERVATIONS: Final = "reservations"  # rows: a home shard's reservations across shards
THRESHOLDS: Final = "thresholds"  # rows: [sku, location, low_stock_below, low]
SKU_ROWS: Final = "skus"
HOLD_ROWS: Final = "holds"

# Snapshot rows, as plain lists so any encoder can carry them:
#   sku row:  [sku, version, [[location, on_hand, reserved], ...]]
#   hold row: [hold_id, status, expires_at_ms, reference, created_at_ms, finished_at_ms,
#              [[sku, location, quantity], ...]]
SnapshotRow = list[object]

# Columnar snapshot chunks: one list per field, so decoding builds a handful of lists per chunk
# instead of one or two per row, and each location name appears once per chunk:
#   sku columns:  [names, sku_ids, versions, level_counts, name_indexes, on_hands, reserveds]
#   hold columns: [names, hold_ids, statuses, expires_at_ms, references, created_at_ms,
#                  finished_at_ms, line_counts, line_skus, line_name_indexes, line_quantities]
# A SKU's levels (a hold's lines) are the next level_counts[i] (line_counts[i]) entries of the
# per-level (per-line) columns.
SnapshotColumns = list[list[Any]]

_STATUSES = {status.value: status for status in HoldStatus}


class SnapshotIO:
    """Chunks in and out; the state itself is `LedgerState`'s."""

    skus: dict[str, Sku]
    holds: dict[str, Hold]
    reservations: dict[str, Reservation]
    location_names: dict[str, str]
    level_count: int

    def export_skus(self, sku_ids: Iterable[str]) -> list[SnapshotRow]:
        rows: list[SnapshotRow] = []
        for sku_id in sku_ids:
            sku = self.skus.get(sku_id)
            if sku is not None:
                levels = [[name, lv.on_hand, lv.reserved] for name, lv in sku.levels.items()]
                rows.append([sku_id, sku.version, levels])
        return rows

    def export_holds(self, hold_ids: Iterable[str]) -> list[SnapshotRow]:
        rows: list[SnapshotRow] = []
        for hold_id in hold_ids:
            h = self.holds.get(hold_id)
            if h is not None:
                lines = [list(line) for line in h.lines]
                rows.append(
                    [
                        h.hold_id,
                        h.status.value,
                        h.expires_at_ms,
                        h.reference,
                        h.created_at_ms,
                        h.finished_at_ms,
                        lines,
                    ]
                )
        return rows

    def load_skus(self, rows: Iterable[SnapshotRow]) -> None:
        """Load row-format chunks (the format before columns; still read)."""
        shared = self.shared_name
        for sku_id, version, levels in rows:
            sku = self.skus[sku_id] = Sku(version)  # type: ignore[index,arg-type]
            for name, on_hand, reserved in levels:  # type: ignore[attr-defined]
                sku.levels[shared(name)] = Level(on_hand, reserved)
            self.level_count += len(sku.levels)

    def load_holds(self, rows: Iterable[SnapshotRow]) -> None:
        for hold_id, status, expires_at, reference, created_at, finished_at, lines in rows:
            hold_lines = tuple(HoldLine(*line) for line in lines)  # type: ignore[attr-defined]
            hold = Hold(hold_id, hold_lines, expires_at, reference, created_at)  # type: ignore[arg-type]
            hold.status = HoldStatus(str(status))
            hold.finished_at_ms = finished_at  # type: ignore[assignment]
            self.holds[hold_id] = hold  # type: ignore[index]

    def shared_name(self, name: str) -> str:
        """The one string object kept for this location name."""
        return self.location_names.setdefault(name, name)

    def export_sku_columns(
        self, sku_ids: Sequence[str], start: int, max_levels: int
    ) -> tuple[SnapshotColumns, int]:
        """SKUs from `sku_ids[start:]` until `max_levels` levels (at least one SKU, so chunks
        stay even whatever the locations per SKU), and where the next chunk starts. SKUs no
        longer present are skipped."""
        names: dict[str, int] = {}
        ids: list[str] = []
        versions: list[int] = []
        counts: list[int] = []
        where: list[int] = []
        on_hands: list[int] = []
        reserveds: list[int] = []
        skus, end, total = self.skus, start, len(sku_ids)
        while end < total and len(where) < max_levels:
            sku_id = sku_ids[end]
            end += 1
            sku = skus.get(sku_id)
            if sku is None:
                continue
            ids.append(sku_id)
            versions.append(sku.version)
            counts.append(len(sku.levels))
            for name, level in sku.levels.items():
                where.append(names.setdefault(name, len(names)))
                on_hands.append(level.on_hand)
                reserveds.append(level.reserved)
        return [list(names), ids, versions, counts, where, on_hands, reserveds], end

    def load_sku_columns(self, columns: SnapshotColumns) -> None:
        names, sku_ids, versions, counts, where, on_hands, reserveds = columns
        shared = [self.shared_name(name) for name in names]
        located = [shared[index] for index in where]
        # map() builds the levels without a Python-level loop around each constructor call.
        levels = list(map(Level, on_hands, reserveds))
        skus = self.skus
        if len(levels) == len(sku_ids):  # one location per SKU: no slicing needed
            for sku_id, version, name, level in zip(
                sku_ids, versions, located, levels, strict=True
            ):
                skus[sku_id] = Sku(version, {name: level})
        else:
            position = 0
            for sku_id, version, count in zip(sku_ids, versions, counts, strict=True):
                end = position + count
                skus[sku_id] = Sku(
                    version, dict(zip(located[position:end], levels[position:end], strict=True))
                )
                position = end
        self.level_count += len(levels)

    def export_hold_columns(self, hold_ids: Iterable[str]) -> SnapshotColumns:
        names: dict[str, int] = {}
        columns: SnapshotColumns = [[] for _ in range(12)]
        _, ids, statuses, expires, references, created, finished = columns[:7]
        counts, line_skus, where, quantities, coordinated = columns[7:]
        for hold_id in hold_ids:
            hold = self.holds.get(hold_id)
            if hold is None:
                continue
            if hold.coordinated:
                coordinated.append(len(ids))
            ids.append(hold_id)
            statuses.append(hold.status.value)
            expires.append(hold.expires_at_ms)
            references.append(hold.reference)
            created.append(hold.created_at_ms)
            finished.append(hold.finished_at_ms)
            counts.append(len(hold.lines))
            for sku_id, location, quantity in hold.lines:
                line_skus.append(sku_id)
                where.append(names.setdefault(location, len(names)))
                quantities.append(quantity)
        columns[0] = list(names)
        return columns

    def load_hold_columns(self, columns: SnapshotColumns) -> None:
        names, ids, statuses, expires, references, created, finished = columns[:7]
        counts, line_skus, where, quantities = columns[7:11]
        # Chunks written before reservations across shards have no twelfth column.
        coordinated = columns[11] if len(columns) > 11 else ()
        shared = [self.shared_name(name) for name in names]
        lines = list(map(HoldLine, line_skus, [shared[index] for index in where], quantities))
        holds, position = self.holds, 0
        for hold_id, status, expires_at, reference, created_at, finished_at, count in zip(
            ids, statuses, expires, references, created, finished, counts, strict=True
        ):
            end = position + count
            hold = Hold(hold_id, tuple(lines[position:end]), expires_at, reference, created_at)
            hold.status = _STATUSES[status]
            hold.finished_at_ms = finished_at
            holds[hold_id] = hold
            position = end
        for index in coordinated:
            holds[ids[index]].coordinated = True

    def export_reservations(self, reservation_ids: Iterable[str]) -> list[SnapshotRow]:
        """Reservation rows (a home shard has few: they end and are pruned like holds)."""
        rows: list[SnapshotRow] = []
        for reservation_id in reservation_ids:
            r = self.reservations.get(reservation_id)
            if r is not None:
                rows.append(
                    [
                        r.reservation_id,
                        list(r.shards),
                        list(r.remote_shards),
                        r.ttl_ms,
                        r.lease_until_ms,
                        r.reference,
                        r.created_at_ms,
                        r.status.value,
                        r.expires_at_ms,
                        [list(line) for line in r.lines],
                        r.finished_at_ms,
                        list(r.unsettled),
                    ]
                )
        return rows

    def load_reservations(self, rows: Iterable[list[Any]]) -> None:
        for row in rows:
            rid, shards, remote, ttl_ms, lease_until_ms, reference, created_at_ms = row[:7]
            status, expires_at_ms, lines, finished_at_ms, unsettled = row[7:]
            opened = ReservationOpened(
                rid, tuple(shards), tuple(remote), ttl_ms, lease_until_ms, reference
            )
            reservation = Reservation(opened, created_at_ms)
            reservation.status = _STATUSES[status]
            reservation.expires_at_ms = expires_at_ms
            reservation.lines = tuple(HoldLine(*line) for line in lines)
            reservation.finished_at_ms = finished_at_ms
            reservation.unsettled = tuple(unsettled)
            self.reservations[rid] = reservation
