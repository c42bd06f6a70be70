"""Errors of the Dataverse Web API client.

Dataverse's error body is ``{"error":{"code","message"}}`` (Microsoft's 'Compose HTTP requests and handle
errors'); the code is frequently empty and unrelated to the HTTP status. The message may quote record values (a
duplicate key's value, a too-long string), and our records are PHI, so ``str(exc)`` carries only the entity set, the operation, the HTTP status and
the Dataverse code; the server's message is kept in :attr:`DataverseError.message` for code that needs it and is
never logged above DEBUG.
"""

from __future__ import annotations


class DataverseError(Exception):
    """A Dataverse request failed. ``status`` is the HTTP status (``None`` when no response came back: timeouts,
    resets), ``code`` Dataverse's error code (``0x80060892``...; ``None`` or ``""`` when it gave none),
    ``message`` the server's free text (may hold PHI: not part of ``str()``), ``request_id`` Dataverse's
    ``REQ_ID``/``x-ms-service-request-id`` for support, ``retry_after`` the last ``Retry-After`` in seconds, and
    ``cause`` a value-free description of what went wrong on our side (e.g. ``"timeout (ReadTimeout)"``)."""

    def __init__(self, status: int | None, code: str | None, message: str | None, entity_set: str,
                 operation: str, *, request_id: str | None = None, retry_after: float | None = None,
                 cause: str | None = None):
        self.status, self.code, self.message = status, code, message
        self.entity_set, self.operation = entity_set, operation
        self.request_id, self.retry_after, self.cause = request_id, retry_after, cause
        super().__init__(self._text())

    def _text(self) -> str:
        parts = [f"{self.entity_set} {self.operation}:"]
        parts.append(f"HTTP {self.status}" if self.status is not None else "no response")
        if self.code:
            parts.append(self.code)
        if self.cause:
            parts.append(f"({self.cause})")
        if self.request_id:
            parts.append(f"[request {self.request_id}]")
        return " ".join(parts)

    def __repr__(self) -> str:  # the default repr would be fine, but be explicit that message stays out
        return f"{type(self).__name__}({self._text()!r})"

    def __reduce__(self):  # picklable (Dagster ships exceptions across processes) despite the keyword-only args
        return (_rebuild, (type(self), self.status, self.code, self.message, self.entity_set, self.operation,
                           self.request_id, self.retry_after, self.cause))


def _rebuild(cls: type[DataverseError], status, code, message, entity_set, operation, request_id, retry_after,
             cause) -> DataverseError:
    return cls(status, code, message, entity_set, operation, request_id=request_id, retry_after=retry_after,
               cause=cause)


class DataverseConflict(DataverseError):
    """412 Precondition Failed: ETag mismatch, ``If-None-Match: *`` on an existing record, or a duplicate
    (alternate key ``0x80060892``, primary key/unique constraint ``0x80040237``). Never retried."""


class DataverseNotFound(DataverseError):
    """404: no record with that id (``0x80040217``) or those key values (``0x80060891``), or an unknown entity
    set. Never retried."""


class DataverseThrottled(DataverseError):
    """429 service protection limit still hit after every retry; ``retry_after`` is the server's last wish."""


__all__ = ["DataverseConflict", "DataverseError", "DataverseNotFound", "DataverseThrottled"]
