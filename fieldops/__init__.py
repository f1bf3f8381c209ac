"""FieldOps: intake, dispatch and escalation for a city's field and crisis operations."""

__version__ = "0.1.0"
