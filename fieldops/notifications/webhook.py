"""The webhook sender: an HTTP POST of the message, signed with a shared secret."""

from __future__ import annotations

import hashlib
import hmac

import httpx
import orjson

from fieldops.notifications.models import Notification

SIGNATURE_HEADER = "X-FieldOps-Signature"


def sign(secret: str, body: bytes) -> str:
    """``sha256=<hex HMAC of the body>``: receivers recompute it to trust the message."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookSender:
    def __init__(self, url: str, secret: str, *, timeout_s: float = 5.0) -> None:
        if not secret:
            raise ValueError("a webhook needs a shared secret to sign with")
        self.url = url
        self.secret = secret
        self._client = httpx.Client(timeout=timeout_s)

    def send(self, notification: Notification) -> None:
        body = orjson.dumps(
            {
                "id": notification.id,
                "recipient": notification.recipient,
                "subject": notification.subject,
                "exercise": notification.exercise,
                "payload": notification.payload,
                "created_at": notification.created_at.isoformat(),
            }
        )
        response = self._client.post(
            self.url,
            content=body,
            headers={"Content-Type": "application/json", SIGNATURE_HEADER: sign(self.secret, body)},
        )
        response.raise_for_status()
