"""Drills: a scenario file drives the real intake, dispatch and escalation on a simulated
clock, then writes an after-action report."""
