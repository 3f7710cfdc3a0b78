"""The gate error tree. Every subclass maps to exactly one gRPC status (see gate/server/status.py).

A deny is never an error: it is a Decision with allowed=False.
"""

from __future__ import annotations


class GateError(Exception):
    """Root of all gate errors; `field` names the offending input when there is one."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class InvalidArgument(GateError):
    """Bad input from the caller: names the field and why it is wrong."""


class NotFound(GateError):
    """The named image, scan or object does not exist."""


class AlreadyExists(GateError):
    """The caller tried to create something that exists already (e.g. a base registered twice)."""


class FailedPrecondition(GateError):
    """The request is well-formed but the system is not in a state to serve it."""


class Unavailable(GateError):
    """A dependency (database, scanner, registry) cannot be reached right now; retry later."""


class DeadlineExceeded(GateError):
    """The operation ran out of time."""


class ResourceExhausted(GateError):
    """A limit was hit (queue full, request too large); retry later or send less."""


class PermissionDenied(GateError):
    """The caller is known but not allowed to do this."""


class Unauthenticated(GateError):
    """The caller could not be identified."""
