"""The escalation policy: its file, and the deadlines and steps it gives an incident. Pure."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fieldops.errors import SourceErrors, SourceProblem
from fieldops.tomlsource import read_toml


class Deadline(StrEnum):
    DISPATCH = "dispatch"
    ACKNOWLEDGE = "acknowledge"
    ARRIVE = "arrive"
    RESOLVE = "resolve"


class Action(StrEnum):
    REMIND_CREW = "remind_crew"
    REASSIGN = "reassign"
    NOTIFY_SUPERVISOR = "notify_supervisor"
    RAISE_PRIORITY = "raise_priority"
    REQUEST_MUTUAL_AID = "request_mutual_aid"


class LadderStep(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    deadline: Deadline
    after_s: int = Field(default=0, ge=0)
    action: Action


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    services: list[str] = Field(min_length=1)
    priorities: list[int] = []
    dispatch_s: int = Field(gt=0)
    acknowledge_s: int = Field(gt=0)
    arrive_s: int = Field(gt=0)
    resolve_s: int = Field(gt=0)
    ladder: list[LadderStep] = []

    @model_validator(mode="after")
    def _consistent(self) -> Rule:
        if any(not 1 <= p <= 5 for p in self.priorities):
            raise ValueError("priorities must be between 1 and 5")
        if self.arrive_s > self.resolve_s:
            raise ValueError("arrive_s must not exceed resolve_s")
        return self

    def specificity(self) -> tuple[int, int]:
        return (0 if self.services == ["*"] else 1, 1 if self.priorities else 0)

    def matches(self, service_code: str, priority: int) -> bool:
        service_ok = "*" in self.services or service_code in self.services
        return service_ok and (not self.priorities or priority in self.priorities)

    def window(self, deadline: Deadline) -> timedelta:
        return timedelta(seconds=getattr(self, f"{deadline}_s"))


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...]

    def rule_for(self, service_code: str, priority: int) -> Rule | None:
        """The most specific matching rule; file order breaks ties."""
        matching = [r for r in self.rules if r.matches(service_code, priority)]
        if not matching:
            return None
        return max(enumerate(matching), key=lambda p: (p[1].specificity(), -p[0]))[1]


def read_policy(path: Path) -> Policy:
    """Read and validate a policy file; every problem reported at once with its line."""
    source = read_toml(path)
    raw = source.data
    problems: list[SourceProblem] = []
    rules: list[Rule] = []
    for n, item in enumerate(raw.get("rule", [])):
        where = source.item_location("rule", n, item.get("name", n + 1))
        try:
            rules.append(Rule.model_validate(item))
        except ValidationError as exc:
            for err in exc.errors():
                field = ".".join(str(p) for p in err["loc"]) or "value"
                problems.append(SourceProblem(str(path), where, f"{field}: {err['msg']}"))
    if not raw.get("rule"):
        problems.append(SourceProblem(str(path), "file", "no [[rule]] declared"))
    if problems:
        raise SourceErrors(problems)
    return Policy(tuple(rules))


@dataclass(frozen=True)
class Anchors:
    """The instants deadlines count from."""

    opened_at: datetime
    assigned_at: datetime | None  # the current assignment, if any
    assignment_id: int | None


@dataclass(frozen=True)
class PlannedStep:
    key: str  # unique per incident: a step is planned, and fired, once
    deadline: Deadline
    action: Action
    deadline_at: datetime
    due_at: datetime


def deadlines(rule: Rule, anchors: Anchors, *, factor: float = 1.0) -> dict[Deadline, datetime]:
    """Absolute deadlines; acknowledge exists only while a crew is assigned."""
    found = {
        Deadline.DISPATCH: anchors.opened_at + rule.window(Deadline.DISPATCH) * factor,
        Deadline.ARRIVE: anchors.opened_at + rule.window(Deadline.ARRIVE) * factor,
        Deadline.RESOLVE: anchors.opened_at + rule.window(Deadline.RESOLVE) * factor,
    }
    if anchors.assigned_at is not None:
        found[Deadline.ACKNOWLEDGE] = (
            anchors.assigned_at + rule.window(Deadline.ACKNOWLEDGE) * factor
        )
    return found


def plan_steps(
    rule: Rule, anchors: Anchors, *, factor: float = 1.0, met: Collection[Deadline] = ()
) -> list[PlannedStep]:
    """The ladder's steps for deadlines not met yet.

    A step's key is its deadline, action and rank among the same (deadline, action)
    pairs, not its rule: when a priority change brings another rule, what already
    fired for a deadline does not fire again. Acknowledge steps are keyed by the
    assignment, so a new crew gets a fresh ladder."""
    due = deadlines(rule, anchors, factor=factor)
    steps = []
    rank: Counter[tuple[Deadline, Action]] = Counter()
    for step in rule.ladder:
        rank[(step.deadline, step.action)] += 1
        if step.deadline in met or step.deadline not in due:
            continue
        scope = f"a{anchors.assignment_id}" if step.deadline == Deadline.ACKNOWLEDGE else "i"
        n = rank[(step.deadline, step.action)]
        steps.append(
            PlannedStep(
                key=f"{step.deadline}:{scope}:{step.action}:{n}",
                deadline=step.deadline,
                action=step.action,
                deadline_at=due[step.deadline],
                due_at=due[step.deadline] + timedelta(seconds=step.after_s),
            )
        )
    return steps
