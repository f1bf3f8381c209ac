"""Escalation: absolute deadlines per incident and a ladder of steps fired exactly once."""
