"""Dispatch: ranking crews for an incident, assigning them, and batch assignment in surges."""
