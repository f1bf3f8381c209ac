"""Intake: every report, from any channel, is validated, districted and merged here."""
