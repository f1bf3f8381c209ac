"""Incidents: what the city responds to, the reports behind them, and their event log."""
