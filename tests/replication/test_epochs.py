"""The epoch authority on a real etcd, and the replica-set rules it stores."""

import uuid

import pytest

from harness.etcd import LocalEtcd
from inventory_actors.replication.epoch_store import EpochStore
from inventory_actors.replication.membership import Member, ReplicaSet


def three(epoch: int = 1, primary: str = "a") -> ReplicaSet:
    members = (Member("a", "h1", "d1"), Member("b", "h2", "d2"), Member("c", "h3", "d3"))
    return ReplicaSet(epoch, primary, members)


@pytest.fixture
def epochs(etcd: LocalEtcd) -> EpochStore:
    return EpochStore(etcd.url, f"test-{uuid.uuid4().hex[:8]}")


class TestReplicaSet:
    def test_json_round_trips(self) -> None:
        replica_set = three(4, "b")
        assert ReplicaSet.from_json(replica_set.to_json()) == replica_set

    def test_a_majority_is_of_the_members_even_while_one_cannot_vote(self) -> None:
        replica_set = three().with_disk("c", "")
        assert replica_set.quorum() == 2
        assert [m.name for m in replica_set.voters()] == ["a", "b"]

    def test_only_the_disk_a_member_joined_with_votes(self) -> None:
        replica_set = three()
        assert replica_set.votes("b", "d2")
        assert not replica_set.votes("b", "a-new-disk")
        assert not replica_set.votes("z", "d2")
        assert replica_set.with_disk("b", "a-new-disk").votes("b", "a-new-disk")

    def test_the_next_epoch_names_its_primary(self) -> None:
        assert three(7).next_epoch("c") == three(8, "c")

    def test_a_primary_must_be_a_member(self) -> None:
        with pytest.raises(AssertionError):
            three(1, "z")


class TestEpochStore:
    def test_a_shard_without_a_replica_set_reads_as_none(self, epochs: EpochStore) -> None:
        assert epochs.read(0) is None

    def test_the_first_replica_set_is_created_once(self, epochs: EpochStore) -> None:
        assert epochs.create(0, three())
        assert not epochs.create(0, three(5, "b"))
        found = epochs.read(0)
        assert found is not None and found[0] == three()

    def test_a_swap_from_what_was_read_succeeds_once(self, epochs: EpochStore) -> None:
        epochs.create(0, three())
        found = epochs.read(0)
        assert found is not None
        _, text = found
        assert epochs.swap(0, text, three(2, "b"))
        # A second candidate that read the same epoch loses: one primary per epoch.
        assert not epochs.swap(0, text, three(2, "c"))
        again = epochs.read(0)
        assert again is not None and again[0] == three(2, "b")

    def test_every_shard_is_read_at_once(self, epochs: EpochStore) -> None:
        epochs.create(0, three())
        epochs.create(11, three(3, "c"))
        assert epochs.read_all() == {0: three(), 11: three(3, "c")}

    def test_clusters_sharing_an_etcd_do_not_see_each_other(self, etcd: LocalEtcd) -> None:
        first = EpochStore(etcd.url, f"one-{uuid.uuid4().hex[:6]}")
        second = EpochStore(etcd.url, f"two-{uuid.uuid4().hex[:6]}")
        first.create(0, three())
        assert second.read(0) is None
