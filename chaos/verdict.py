"""What the checker of a chaos run reads and what it answers: the final state the service holds
once the run has settled, and the verdict (the violations found)."""

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

Level = tuple[str, str]
# Violations of one check listed in the report at most (all are counted).
DETAILS_PER_CHECK_MAX = 20


@dataclass
class FinalState:
    """What the service holds once the run is over and everything has settled."""

    skus: dict[str, dict[str, Any] | None]
    holds: dict[str, dict[str, Any] | None]
    feed: list[dict[str, Any]]
    integrity: dict[str, str]
    initial: dict[Level, int]
    # Each restock job's record, with `added`: the units it added per SKU-location, or None
    # when only some of its rows were applied (conservation then cannot be checked). A file the
    # run expected refused is one too, with `expect: "refused"` (see `state_checks.restocks`).
    restock_jobs: list[dict[str, Any]] = field(default_factory=list)
    # Each reservation's home shard, which decides its status and writes its expiry.
    home_shards: dict[str, int] = field(default_factory=dict)
    # Pages read during the load from cursors taken earlier (`chaos.feed_watch`).
    cursor_reads: list[dict[str, Any]] = field(default_factory=list)
    # Why the follower of the feed stopped early, if it did: `feed` is then not the whole feed.
    feed_broken: str | None = None

    @property
    def restocked(self) -> Counter[Level] | None:
        added: Counter[Level] = Counter()
        for job in self.restock_jobs:
            if job["added"] is None:
                return None
            added.update(job["added"])
        return added


@dataclass
class Violation:
    check: str
    detail: str


@dataclass
class Verdict:
    violations: list[Violation]
    checked: Counter[str]

    @property
    def ok(self) -> bool:
        return not self.violations

    def by_check(self) -> dict[str, int]:
        return dict(Counter(v.check for v in self.violations))

    def details(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = defaultdict(list)
        for violation in self.violations:
            if len(found[violation.check]) < DETAILS_PER_CHECK_MAX:
                found[violation.check].append(violation.detail)
        return dict(found)
