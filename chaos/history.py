"""The history of a chaos run: every operation a client sent, with what came back. An outcome is
`ok` (2xx), `fail` (4xx: nothing changed) or `unknown` (no answer, or a 5xx: the change may or
may not have been made; resolved after the run by sending it again with its key)."""

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    OK = "ok"
    FAIL = "fail"
    UNKNOWN = "unknown"


class Kind(StrEnum):
    ADJUST = "adjust"
    TRANSFER = "transfer"
    RESERVE = "reserve"
    COMMIT = "commit"
    RELEASE = "release"
    EXTEND = "extend"
    READ = "read"
    QUERY = "query"
    # The same request again, with the same key, as a client does when an answer is lost.
    REPLAY = "replay"


MUTATIONS = frozenset(
    {Kind.ADJUST, Kind.TRANSFER, Kind.RESERVE, Kind.COMMIT, Kind.RELEASE, Kind.EXTEND}
)


def outcome_of(status: int) -> Outcome:
    """What an HTTP status says about whether a change was made."""
    if 200 <= status < 300:
        return Outcome.OK
    if 400 <= status < 500:
        # 429 and the rest of 4xx: refused before anything changed.
        return Outcome.FAIL
    # 0 (no answer) and 5xx (a shard call may have timed out after the shard took it).
    return Outcome.UNKNOWN


@dataclass
class Op:
    """One request of one client. Times are seconds on the run's monotonic clock."""

    op_id: int
    client: int
    kind: Kind
    method: str
    path: str
    body: dict[str, Any] | None
    key: str | None
    started: float
    ended: float = 0.0
    status: int = 0
    answer: Any = None
    # For REPLAY: the op sent again.
    replay_of: int | None = None
    # For unknown mutations: the answer to sending it again with its key after the run.
    resolved_status: int = 0
    resolved_answer: Any = None
    resolve_attempts: int = 0

    @property
    def outcome(self) -> Outcome:
        return outcome_of(self.status)

    @property
    def final_outcome(self) -> Outcome:
        """The outcome once resolved: an unknown op takes its resolution's."""
        if self.outcome is Outcome.UNKNOWN and self.resolve_attempts:
            return outcome_of(self.resolved_status)
        return self.outcome

    @property
    def final_answer(self) -> Any:
        return self.resolved_answer if self.outcome is Outcome.UNKNOWN else self.answer

    @property
    def is_mutation(self) -> bool:
        return self.kind in MUTATIONS

    @property
    def hold_id(self) -> str | None:
        """The reservation this op placed (once it is known to have) or acted on."""
        if self.kind is Kind.RESERVE:
            answer = self.final_answer
            placed = self.final_outcome is Outcome.OK and isinstance(answer, dict)
            return answer.get("reservation_id") if placed else None
        if self.kind in (Kind.COMMIT, Kind.RELEASE, Kind.EXTEND):
            return self.path.split("/")[3]
        return None


@dataclass
class FaultRecord:
    """One injected fault: when, what, on what, and what happened."""

    at: float
    kind: str
    target: str
    detail: str = ""
    recovered_seconds: float | None = None


@dataclass
class History:
    ops: list[Op] = field(default_factory=list)
    faults: list[FaultRecord] = field(default_factory=list)

    def mutations(self) -> Iterator[Op]:
        return (op for op in self.ops if op.is_mutation)

    def lines(self) -> Iterator[str]:
        """One JSON object a line: the faults, then the ops (for looking into a failed run)."""
        for fault in self.faults:
            yield json.dumps({"fault": asdict(fault)})
        for op in self.ops:
            yield json.dumps({"op": asdict(op)})

    @classmethod
    def of_lines(cls, lines: Iterable[str]) -> "History":
        history = cls()
        for line in lines:
            item = json.loads(line)
            if "fault" in item:
                history.faults.append(FaultRecord(**item["fault"]))
            else:
                values = item["op"]
                values["kind"] = Kind(values["kind"])
                history.ops.append(Op(**values))
        return history
