"""What the application services raise when a request cannot be honoured (pure, no I/O).

Services speak in these; each entry point maps them to its own error shape: the
REST API to an HTTP status and ``{"error": {code, message, details}}``
(vbranch.api.errors), the WebSocket to a typed ``error`` message
(vbranch.calls.coordinator). ``code`` is the stable machine-readable part.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    def __init__(self, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


class NotFound(DomainError):
    """The thing named does not exist (or is not the caller's to see)."""


class Invalid(DomainError):
    """The request is well-formed but its content cannot be used (a bad photo, an unknown service)."""


class TooLarge(DomainError):
    """The request carries more than the branch accepts."""


class Conflict(DomainError):
    """The request does not fit the current state."""


class Forbidden(DomainError):
    """The caller may not do this (another agent's call, the wrong role for the request)."""
