"""Notifications: a durable outbox, delivered by senders (webhook, log) with retries."""
