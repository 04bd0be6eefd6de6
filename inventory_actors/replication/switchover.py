"""A planned switchover: the primary hands its shard to a caught-up follower without failing a
request. It stops taking commands (they are refused with NotPrimary, which routers send again
to the new primary), waits for the batch in flight, checks that the follower has its whole
log, names it in etcd for the next epoch (compare-and-swap), and asks it to take over: the
follower's seal makes this replica step down."""

import asyncio
import time
from collections.abc import Callable
from typing import Any, Protocol

from inventory_actors.replication.epoch_store import EpochStore
from inventory_actors.replication.protocol import ReplicaState
from inventory_actors.replication.shipper import Shipper
from inventory_actors.shard.core import ShardCore
from inventory_actors.shard.errors import NotPrimary


class Primary(Protocol):
    """What a switchover uses of the primary's replica agent."""

    name: str
    core: ShardCore
    shipper: Shipper | None
    epochs: EpochStore
    handle_of: Callable[[str], Any]

    def step_down(self, why: str) -> None: ...


# How long the chosen follower may take to hold the primary's whole log, and then to serve.
CATCH_UP_SECONDS = 5.0
TAKE_OVER_SECONDS = 5.0
POLL_SECONDS = 0.02


class SwitchoverRefused(Exception):
    """The switchover could not start or complete; the shard keeps (or regains) a primary."""


async def hand_over(agent: Primary, target: str | None) -> str:
    """Make `target` (or the most advanced voting follower) the primary; its name."""
    shipper = agent.shipper
    if shipper is None:
        raise SwitchoverRefused(f"{agent.name} is not the primary")
    replica_set = shipper.replica_set
    states = await _follower_states(agent, [m.name for m in replica_set.voters()])
    if target is None:
        if not states:
            raise SwitchoverRefused("no voting follower answers")
        target = max(states, key=lambda name: states[name].last_lsn)
    if target not in states:
        raise SwitchoverRefused(f"{target} is not a voting follower that answers")
    core = agent.core
    handle = agent.handle_of(target)
    # From here on commands are refused, not queued: nothing new goes into the log.
    core.turn_away(NotPrimary(core.shard_id, shipper.epoch, target))
    try:
        await core.drained()
        await _wait_for(lambda: _caught_up(handle, core.last_lsn), CATCH_UP_SECONDS, shipper)
        found = await asyncio.to_thread(agent.epochs.read, core.shard_id)
        if found is None or found[0].epoch != shipper.epoch:
            raise SwitchoverRefused("etcd names another epoch")
        named = found[0].next_epoch(target)
        if not await asyncio.to_thread(agent.epochs.swap, core.shard_id, found[1], named):
            raise SwitchoverRefused("etcd changed meanwhile")
    except BaseException:
        core.resume()  # still the primary: serve again
        raise
    # Named in etcd: whatever happens now, this replica's epoch is over. If the follower does
    # not take over, the followers hear no primary and elect one.
    try:
        await handle.campaign.remote()
        await _wait_for(lambda: _serves(handle), TAKE_OVER_SECONDS, None)
    finally:
        agent.step_down(f"handed over to {target}")
    return target


async def _follower_states(agent: Primary, names: list[str]) -> dict[str, ReplicaState]:
    found = {}
    for name in names:
        if name == agent.name:
            continue
        try:
            role = await asyncio.wait_for(agent.handle_of(name).replica_role.remote(), 2.0)
        except Exception:  # a follower that does not answer is no candidate
            continue
        if role[0] == "follower":
            found[name] = role[1]
    return found


async def _caught_up(handle: Any, last_lsn: int) -> bool:
    state: ReplicaState = (await handle.replica_role.remote())[1]
    return state.last_lsn >= last_lsn


async def _serves(handle: Any) -> bool:
    role: str = (await handle.replica_role.remote())[0]
    return role == "primary"


async def _wait_for(condition: Any, timeout_seconds: float, shipper: Any) -> None:
    deadline = time.monotonic() + timeout_seconds
    while not await condition():
        if time.monotonic() > deadline:
            raise SwitchoverRefused(f"not done within {timeout_seconds} s")
        if shipper is not None:
            shipper.heartbeat()
        await asyncio.sleep(POLL_SECONDS)
