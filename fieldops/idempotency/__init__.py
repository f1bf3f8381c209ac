"""Idempotency keys: a retried write returns the first answer and creates nothing new."""
