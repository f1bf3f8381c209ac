"""The service catalogue: what can be reported, and how each type is handled."""
