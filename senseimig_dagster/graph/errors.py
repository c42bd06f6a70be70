"""Errors of the Microsoft Graph drive client.

Graph's error body is ``{"error":{"code","message","innerError":{"code"?,"request-id","date",..}}}``
(OneDrive/onedrive-api-docs concepts/errors). The message may quote item names, and our file names are PHI, so
``str(exc)`` carries only the operation, HTTP status, codes and request id; the server's message stays on
:attr:`GraphError.message` and is never logged.
"""

from __future__ import annotations


class GraphError(Exception):
    """A Graph request failed. ``status`` is the HTTP status (``None`` when no response came back), ``code`` Graph's
    top-level code (``itemNotFound``...), ``inner_code`` the most detailed inner code (``fragmentOverlap``...),
    ``message`` the server's text (may name files: not part of ``str()``), ``request_id`` for support."""

    def __init__(self, status: int | None, code: str | None, message: str | None, request_id: str | None = None,
                 *, operation: str = "graph", inner_code: str | None = None):
        self.status, self.code, self.message, self.request_id = status, code, message, request_id
        self.operation, self.inner_code = operation, inner_code
        super().__init__(self._text())

    def _text(self) -> str:
        parts = [f"{self.operation}:", f"HTTP {self.status}" if self.status is not None else "no response"]
        parts += [c for c in (self.code, self.inner_code) if c]
        if self.request_id:
            parts.append(f"[request {self.request_id}]")
        return " ".join(parts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._text()!r})"

    def __reduce__(self):  # picklable across Dagster processes despite the keyword-only arguments
        return (_rebuild, (type(self), self.status, self.code, self.message, self.request_id, self.operation,
                           self.inner_code))


def _rebuild(cls, status, code, message, request_id, operation, inner_code) -> GraphError:
    return cls(status, code, message, request_id, operation=operation, inner_code=inner_code)


class GraphNotFound(GraphError):
    """404 ``itemNotFound``: no such site, library, item or upload session."""


class GraphConflict(GraphError):
    """409 ``nameAlreadyExists``."""


class GraphThrottled(GraphError):
    """429 or 503 still returned after every retry."""


class UploadVerificationError(GraphError):
    """The stored file's size or quickXorHash differs from the bytes we sent."""


__all__ = ["GraphConflict", "GraphError", "GraphNotFound", "GraphThrottled", "UploadVerificationError"]
