"""What etcd holds for one shard: its epoch, its primary and its members. Pure data."""

import json
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Member:
    """One replica: its actor name, the host whose disk holds its file, and that file's
    identity. A member votes only while its file is the one it had when it joined: a replica
    restarted on a wiped disk has another `disk_id` and must copy the log before it votes."""

    name: str
    host: str
    disk_id: str = ""


@dataclass(frozen=True)
class ReplicaSet:
    """The replica set of one shard in one epoch. Only `primary` writes in `epoch`."""

    epoch: int
    primary: str
    members: tuple[Member, ...]

    def __post_init__(self) -> None:
        names = [member.name for member in self.members]
        assert len(set(names)) == len(names), f"members named twice: {names}"
        assert self.epoch >= 0
        assert not self.primary or self.primary in names, f"{self.primary} is not a member"

    def member(self, name: str) -> Member | None:
        return next((m for m in self.members if m.name == name), None)

    def voters(self) -> tuple[Member, ...]:
        return tuple(m for m in self.members if m.disk_id)

    def quorum(self) -> int:
        """How many voters make a majority: of the members, for a member on a new disk still
        counts (its old disk may have held acknowledged batches) but cannot vote yet."""
        return len(self.members) // 2 + 1

    def votes(self, name: str, disk_id: str) -> bool:
        member = self.member(name)
        return member is not None and bool(disk_id) and member.disk_id == disk_id

    def next_epoch(self, primary: str) -> "ReplicaSet":
        return replace(self, epoch=self.epoch + 1, primary=primary)

    def with_disk(self, name: str, disk_id: str) -> "ReplicaSet":
        members = tuple(replace(m, disk_id=disk_id) if m.name == name else m for m in self.members)
        return replace(self, members=members)

    def to_json(self) -> str:
        members = [[m.name, m.host, m.disk_id] for m in self.members]
        return json.dumps({"epoch": self.epoch, "primary": self.primary, "members": members})

    @classmethod
    def from_json(cls, text: str) -> "ReplicaSet":
        data = json.loads(text)
        members = tuple(Member(*fields) for fields in data["members"])
        return cls(int(data["epoch"]), str(data["primary"]), members)


def replica_name(shard_id: int, index: int) -> str:
    """The actor name of replica `index` of a shard."""
    return f"inventory-shard-{shard_id}-r{index}"
