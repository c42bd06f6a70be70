"""Errors of the Sensei layer. Each names the object, the place (page, line) and the cause; none carries a value
from a record or a secret, so they are safe to show in Dagster's UI and logs."""

from __future__ import annotations


class SenseiError(Exception):
    """Base class: something about the source stops an extraction."""

    def __init__(self, object_name: str, where: str, cause: str):
        self.object_name, self.where, self.cause = object_name, where, cause
        super().__init__(f"{object_name} {where}: {cause}")


class SenseiAuthError(SenseiError):
    """401/403: the API key is missing, wrong, revoked or expired. Never retried."""


class SenseiPageError(SenseiError):
    """A page could not be fetched or parsed after all retries (5xx, timeouts, resets, malformed JSON)."""


class SenseiExportError(SenseiError):
    """A CSV export file is missing, truncated or not the object's file."""
