"""The two rounds of taking an epoch, each over every member of the replica set and each done as
soon as a majority of voters answered: the pre-vote (would they promise a new epoch: they hear no
primary) and the seal (they promise it, and say where their logs end)."""

import asyncio
from collections.abc import Callable
from typing import Any

from inventory_actors.replication.membership import ReplicaSet
from inventory_actors.replication.protocol import ReplicaState, SealAnswer
from inventory_actors.replication.quorum import answer_or_none, until_enough

# A member that still hears the old primary refuses to promise; it is asked again this often.
SEAL_RETRY_SECONDS = 0.1


async def prevoted(
    replica_set: ReplicaSet,
    candidate: str,
    handle_of: Callable[[str], Any],
    timeout_seconds: float,
) -> bool:
    """A majority of voters, the candidate included, hear no primary: worth a new epoch."""
    yes = 1
    waiting: dict[asyncio.Future[Any], str] = {
        asyncio.ensure_future(
            answer_or_none(handle_of(m.name).prevote.remote(replica_set.epoch))
        ): m.name
        for m in replica_set.members
        if m.name != candidate
    }

    def enough(name: str, answer: tuple[bool, str] | None) -> bool:
        nonlocal yes
        if answer is not None and answer[0] and replica_set.votes(name, answer[1]):
            yes += 1
        return yes >= replica_set.quorum()

    await until_enough(waiting, timeout_seconds, enough)
    return yes >= replica_set.quorum()


async def sealed(
    replica_set: ReplicaSet,
    candidate: str,
    own: SealAnswer,
    handle_of: Callable[[str], Any],
    timeout_seconds: float,
) -> tuple[str, ReplicaState] | None:
    """Ask every other member to promise the epoch (`own` is the candidate's own answer); the
    member with the best log, by (epoch, LSN), among a majority of voters that promised, or None
    if no majority did in time or a member promised a newer epoch."""
    epoch = replica_set.epoch
    answers: dict[str, ReplicaState] = {}
    if own.ok and replica_set.votes(candidate, own.state.disk_id):
        answers[candidate] = own.state
    waiting: dict[asyncio.Future[Any], str] = {
        asyncio.ensure_future(
            answer_or_none(handle_of(m.name).seal.remote(epoch, candidate))
        ): m.name
        for m in replica_set.members
        if m.name != candidate
    }
    newer = False

    def enough(name: str, answer: SealAnswer | None) -> bool:
        nonlocal newer
        if answer is None:
            return False
        if not answer.ok and answer.state.promised_epoch > epoch:
            newer = True
            return True
        if not answer.ok:
            # It still hears the old primary (for at most `seal_quiet_seconds`).
            retry = _seal_later(handle_of(name), epoch, candidate)
            waiting[asyncio.ensure_future(retry)] = name
        elif replica_set.votes(name, answer.state.disk_id):
            answers[name] = answer.state
        # Any majority will do: every acknowledged batch is on at least one of its members.
        return len(answers) >= replica_set.quorum()

    await until_enough(waiting, timeout_seconds, enough)
    if newer or len(answers) < replica_set.quorum():
        return None
    return max(answers.items(), key=lambda item: (item[1].last_epoch, item[1].last_lsn))


async def _seal_later(handle: Any, epoch: int, candidate: str) -> SealAnswer | None:
    await asyncio.sleep(SEAL_RETRY_SECONDS)
    answer: SealAnswer | None = await answer_or_none(handle.seal.remote(epoch, candidate))
    return answer
