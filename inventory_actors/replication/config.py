"""How a replicated deployment is set up, and the timings of failure detection."""

from dataclasses import dataclass


@dataclass(frozen=True)
class ReplicationConfig:
    """`etcd_url` holds the epochs of cluster `cluster`; every shard has `replicas` replicas,
    each on a different one of `hosts` (a host is a Ray node resource `inventory_host_<name>`
    with a data directory `<data_root>/<name>`)."""

    etcd_url: str
    cluster: str
    hosts: tuple[str, ...]
    data_root: str
    replicas: int = 3
    # A primary with nothing to ship tells its followers it is alive this often.
    heartbeat_seconds: float = 0.1
    # A follower that heard nothing from a primary for this long (plus up to `jitter`) tries
    # to take a new epoch.
    failover_after_seconds: float = 0.6
    failover_jitter_seconds: float = 0.2
    # A follower promises no other candidate for this long after it heard from the primary,
    # and the primary serves reads for `read_lease_seconds` after a majority answered a
    # message (measured from when it sent it): the rest is room for clocks that run apart.
    seal_quiet_seconds: float = 0.45
    read_lease_seconds: float = 0.35
    # A primary that cannot get a majority for a batch within this steps down.
    ack_timeout_seconds: float = 2.0
    # A candidate waits this long for a majority to promise its epoch.
    seal_timeout_seconds: float = 1.0
    # Batches shipped to one follower and not yet answered; past it, that follower is skipped.
    outstanding_ships_max: int = 64

    def __post_init__(self) -> None:
        assert self.replicas >= 1
        assert len(self.hosts) >= self.replicas, "each replica needs a host of its own"
        assert self.heartbeat_seconds * 3 <= self.failover_after_seconds
        assert self.read_lease_seconds < self.seal_quiet_seconds <= self.failover_after_seconds


def host_resource(host: str) -> str:
    """The Ray custom resource that marks the node of `host`."""
    return f"inventory_host_{host}"
