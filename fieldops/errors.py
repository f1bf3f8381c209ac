"""Domain exceptions. They carry no HTTP: ``fieldops.api.errors`` maps each to a status."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldProblem:
    """One thing wrong with one input field."""

    field: str
    reason: str


class FieldOpsError(Exception):
    """Base of every error the domain raises on purpose."""

    title = "FieldOps error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidInput(FieldOpsError):
    """The input breaks a rule; ``problems`` names every field at fault."""

    title = "Invalid input"

    def __init__(self, detail: str, problems: list[FieldProblem] | None = None) -> None:
        super().__init__(detail)
        self.problems = problems or []

    @classmethod
    def for_field(cls, field_name: str, reason: str) -> InvalidInput:
        return cls(f"{field_name}: {reason}", [FieldProblem(field_name, reason)])


class OutsideServiceArea(InvalidInput):
    """A location lies outside every district the city serves."""

    title = "Outside the service area"


class NotFound(FieldOpsError):
    title = "Not found"


class Conflict(FieldOpsError):
    """The request clashes with the current state (stale action, reused idempotency key)."""

    title = "Conflict"


class Unauthenticated(FieldOpsError):
    title = "Unauthenticated"


class Forbidden(FieldOpsError):
    title = "Forbidden"


@dataclass
class SourceProblem:
    """A problem in an input file, with where it is: loaders collect these, then raise once."""

    path: str
    location: str  # "line 12", "feature 40", ...
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.location}: {self.message}"


class SourceErrors(FieldOpsError):
    """Every problem found in one or more input files, reported together."""

    title = "Invalid input file"

    def __init__(self, problems: list[SourceProblem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems
