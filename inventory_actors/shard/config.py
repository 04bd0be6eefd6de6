"""Settings of a shard, with bounded, explicit defaults."""

from dataclasses import dataclass


@dataclass(frozen=True)
class ShardConfig:
    # Group commit: at most this many commands per transaction; more wait for the next one.
    batch_commands_max: int = 5_000
    # Commands waiting for a transaction; beyond this callers get Overloaded at once.
    queue_commands_max: int = 100_000
    # How often the expiry timer looks for holds past their expiry.
    expiry_interval_seconds: float = 0.2
    # A snapshot starts after this many log records, or this long with any record at all.
    snapshot_every_records: int = 100_000
    snapshot_every_seconds: float = 600.0
    snapshot_chunk_rows: int = 5_000
    snapshots_kept: int = 2
    # Idempotency records and finished holds are kept at least this long.
    idempotency_retention_seconds: float = 86_400.0
    hold_retention_seconds: float = 86_400.0
    # Finished holds kept in memory at most; the oldest go first when there are more.
    finished_holds_max: int = 1_000_000
    housekeeping_interval_seconds: float = 60.0
    # The change feed reads the log: records are kept at least this long (and always those
    # after the newest snapshot). A feed cursor older than this is refused (410).
    event_retention_seconds: float = 7 * 86_400.0
    # Reservations across shards: how often the home retries telling an unreachable shard its
    # decision, and how many decisions go to one shard in one call.
    settle_retry_seconds: float = 1.0
    settle_per_call_max: int = 1_000
    # Decisions made within this long of each other travel to a shard in one call: fewer actor
    # calls and log batches under load, at the cost of participants applying them that much
    # later (the decision itself is already durable and final at the home).
    settle_gather_seconds: float = 0.02
    # After a failed recovery, try again this often.
    recovery_retry_seconds: float = 1.0
    # Checks every invariant over the whole state after recovery (O(state)).
    check_invariants_on_recovery: bool = True
    # Lets tests make the next log writes fail. Never on in production.
    allow_fault_injection: bool = False
