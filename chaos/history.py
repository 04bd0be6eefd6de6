"""The history of a chaos run: every operation a client sent, each attempt with what came back
(status, body, problem type, the headers that matter). An outcome is `ok` (2xx), `fail` (4xx: a
refusal, which the checker must find rightful) or `unknown` (no answer, or a 5xx: resent with
its key, at once during the load and again once the run has settled)."""

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

# Response headers kept in the history: what a retrying client acts on.
KEPT_HEADERS = ("Idempotent-Replayed", "Retry-After")
PROBLEM_PREFIX = "/problems/"


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
    # An acknowledged request's key with another body: the contract answers 422.
    KEY_REUSE = "key-reuse"


MUTATIONS = frozenset(
    {Kind.ADJUST, Kind.TRANSFER, Kind.RESERVE, Kind.COMMIT, Kind.RELEASE, Kind.EXTEND}
)
# Requests whose unknown outcome is resolved by sending them again with their key.
KEYED = MUTATIONS | {Kind.KEY_REUSE}


def outcome_of(status: int) -> Outcome:
    """What an HTTP status says about whether a change was made."""
    if 200 <= status < 300:
        return Outcome.OK
    if 400 <= status < 500:
        return Outcome.FAIL
    # 0 (no answer) and 5xx (a shard call may have timed out after the shard took it).
    return Outcome.UNKNOWN


def problem_type(answer: Any) -> str | None:
    """The slug of a problem+json answer's `type` (None for any other answer)."""
    kind = answer.get("type") if isinstance(answer, dict) else None
    if isinstance(kind, str) and kind.startswith(PROBLEM_PREFIX):
        return kind.removeprefix(PROBLEM_PREFIX)
    return None


@dataclass
class Attempt:
    """One sending of a request with its key after an earlier one got a 5xx or no answer."""

    started: float
    ended: float = 0.0
    status: int = 0
    answer: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    problem: str | None = None
    # Sent once the run had settled, not at once during the load.
    after_load: bool = False

    @property
    def outcome(self) -> Outcome:
        return outcome_of(self.status)


@dataclass
class Op:
    """One request of one client and its attempts. Times are seconds on the run's monotonic
    clock. The first attempt's answer is in `status`, `answer`, `headers` and `problem`."""

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
    headers: dict[str, str] = field(default_factory=dict)
    problem: str | None = None
    # For REPLAY and KEY_REUSE: the acknowledged op whose key this one sends.
    replay_of: int | None = None
    # Every later attempt, in order; the last one is the op's fate if the first was unknown.
    retries: list[Attempt] = field(default_factory=list)

    def record(self, status: int, answer: Any, headers: dict[str, str], ended: float) -> None:
        self.status, self.answer, self.headers = status, answer, headers
        self.problem, self.ended = problem_type(answer), ended

    def attempts(self) -> Iterator[Attempt]:
        """Every attempt, the first included, in the order they were sent."""
        yield Attempt(
            self.started, self.ended, self.status, self.answer, self.headers, self.problem
        )
        yield from self.retries

    @property
    def outcome(self) -> Outcome:
        return outcome_of(self.status)

    @property
    def final(self) -> Attempt:
        """The attempt that decided the op: the last one (no attempt follows a decisive one)."""
        return self.retries[-1] if self.retries else next(self.attempts())

    @property
    def final_outcome(self) -> Outcome:
        return self.final.outcome

    @property
    def final_answer(self) -> Any:
        return self.final.answer

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
    # Replicated mode: the shards whose primary the fault hit, those with no replica where it
    # struck, and when (run seconds) every replica set was whole again.
    primary_shards: list[int] = field(default_factory=list)
    untouched_shards: list[int] = field(default_factory=list)
    whole_at: float | None = None


@dataclass
class History:
    ops: list[Op] = field(default_factory=list)
    faults: list[FaultRecord] = field(default_factory=list)

    def mutations(self) -> Iterator[Op]:
        return (op for op in self.ops if op.is_mutation)

    def keyed(self) -> Iterator[Op]:
        return (op for op in self.ops if op.kind in KEYED)

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
                values["retries"] = [Attempt(**a) for a in values.get("retries", [])]
                history.ops.append(Op(**values))
        return history
