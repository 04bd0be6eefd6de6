"""Faults a test can inject into a running shard, and four switches that break it on purpose.

Only a shard whose config has `allow_fault_injection` accepts them (`ShardActor.inject_fault`);
production shards refuse. The broken builds test the chaos checker, which proves nothing unless
it catches them (docs/chaos.md, The checker can fail)."""

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum


class Fault(StrEnum):
    # SIGKILL of the shard's process after the next batch's log commit, before any reply.
    CRASH_AFTER_COMMIT = "crash-after-commit"
    # The next N log writes fail with an I/O error inside their transaction.
    IO_ERROR = "io-error"
    # The shard's file may not grow: the next write that needs a page fails (SQLITE_FULL).
    DISK_FULL = "disk-full"
    # The shard's clock moves by N seconds (forward or back) from now on.
    CLOCK_JUMP = "clock-jump"
    # The shard's clock stands still (1) or runs again (0). Not a fault: the checker's final
    # read freezes every shard's clock, so that no expiry or lease ends a reservation between
    # its reads of the reservations and of the stock they hold.
    CLOCK_FREEZE = "clock-freeze"
    # Broken builds. The shard forgets the idempotency keys it has stored: a retry applies again.
    SKIP_IDEMPOTENCY = "skip-idempotency"
    # The shard answers a batch, then writes it N seconds later: a crash in between loses
    # changes it acknowledged.
    ACK_BEFORE_COMMIT = "ack-before-commit"
    # The shard refuses a key it has stored as if it had been reused with another request
    # (422), instead of answering the stored result: a client's retry, or a cart's retried
    # step, is refused.
    REFUSE_RETRIES = "refuse-retries"
    # No fencing by epochs: a follower takes batches of any epoch, as if no new primary had
    # sealed it, and a primary does not look in etcd for a newer epoch. A frozen old primary,
    # resumed, can then get a batch acknowledged (docs/replication.md, The seal).
    SKIP_SEAL = "skip-seal"


@dataclass
class FaultHooks:
    """What the shard's engine consults on each batch. All off by default."""

    crash_after_commit: bool = False
    clock_offset_ms: int = 0
    # The reading the clock stands still at, or None while it runs.
    frozen_clock_ms: int | None = None
    skip_idempotency: bool = False
    ack_before_commit_seconds: float = 0.0
    refuse_retries: bool = False
    skip_seal: bool = False
    # Called after a batch's log commit (and before its replies) when `crash_after_commit` is
    # set; the actor makes it kill its own process.
    crash: Callable[[], None] = field(default=lambda: None)

    def after_commit(self) -> None:
        if self.crash_after_commit:
            self.crash_after_commit = False
            self.crash()
