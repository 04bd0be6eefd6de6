"""The slotted records a shard's ledger is made of: levels, SKUs, holds and reservations."""

from inventory_actors.domain.events import HoldLine, HoldStatus, ReservationOpened


class Level:
    """One SKU-location. Slots keep a million of them small."""

    __slots__ = ("on_hand", "reserved")

    def __init__(self, on_hand: int, reserved: int) -> None:
        self.on_hand = on_hand
        self.reserved = reserved


class Sku:
    __slots__ = ("levels", "version")

    def __init__(self, version: int, levels: dict[str, Level] | None = None) -> None:
        self.version = version
        self.levels: dict[str, Level] = {} if levels is None else levels


class Hold:
    __slots__ = (
        "coordinated",
        "created_at_ms",
        "expires_at_ms",
        "finished_at_ms",
        "hold_id",
        "lines",
        "reference",
        "status",
    )

    def __init__(
        self,
        hold_id: str,
        lines: tuple[HoldLine, ...],
        expires_at_ms: int,
        reference: str | None,
        created_at_ms: int,
    ) -> None:
        self.hold_id = hold_id
        self.lines = lines
        self.expires_at_ms = expires_at_ms
        self.reference = reference
        self.created_at_ms = created_at_ms
        self.status = HoldStatus.ACTIVE
        self.finished_at_ms: int | None = None
        self.coordinated = False


class Reservation:
    """The home shard's record of a reservation across shards: the one place its state is
    decided. Participants hold their parts as coordinated holds with the same id."""

    __slots__ = (
        "created_at_ms",
        "expires_at_ms",
        "finished_at_ms",
        "lease_until_ms",
        "lines",
        "reference",
        "remote_shards",
        "reservation_id",
        "shards",
        "status",
        "ttl_ms",
        "unsettled",
    )

    def __init__(self, event: ReservationOpened, at_ms: int) -> None:
        self.reservation_id = event.reservation_id
        self.shards = event.shards
        self.remote_shards = event.remote_shards
        self.ttl_ms = event.ttl_ms
        self.lease_until_ms = event.lease_until_ms
        self.reference = event.reference
        self.created_at_ms = at_ms
        self.status = HoldStatus.PENDING
        self.expires_at_ms = event.lease_until_ms
        self.lines: tuple[HoldLine, ...] = ()
        self.finished_at_ms: int | None = None
        # Remote shards not yet told the final decision.
        self.unsettled: tuple[int, ...] = ()

    def status_at(self, now_ms: int) -> HoldStatus:
        """Past its deadline a reservation already counts as finished, before the timer logs
        it: a pending one as released (it never became active), an active one as expired."""
        if self.expires_at_ms <= now_ms:
            if self.status is HoldStatus.PENDING:
                return HoldStatus.RELEASED
            if self.status is HoldStatus.ACTIVE:
                return HoldStatus.EXPIRED
        return self.status
