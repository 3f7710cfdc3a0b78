"""The `gate` command line: argparse front end over the gate.v1 gRPC API.

Layout: `main.py` builds the parser and is the single exit point (the only `sys.exit` in the
project); `client.py` is the only CLI module that touches grpc; one `commands_*.py` module per command
group; `formats/` renders messages as tables or JSON. The exit-code contract lives here so every
module raises the same `CliError`.
"""

from __future__ import annotations

import argparse
import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from gate.config import Settings


class ExitCode(enum.IntEnum):
    """Process exit codes, a stable contract for CI scripts."""

    OK = 0  # success, or promotion allowed
    DENIED = 1  # promotion denied (a successful answer, not an error)
    BAD_INPUT = 2  # bad CLI usage, INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION
    UNAVAILABLE = 3  # server or scanner unavailable, deadline, internal error, cannot connect
    NOT_AUTHORIZED = 4  # UNAUTHENTICATED, PERMISSION_DENIED
    INTERRUPTED = 130  # Ctrl-C, the shell convention 128 + SIGINT


class CliError(Exception):
    """A failure the CLI reports as one `gate: error: ...` line on stderr and a chosen exit code."""

    def __init__(self, message: str, exit_code: ExitCode) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Context:
    """What a command handler gets besides its arguments: settings and the two output streams."""

    settings: Settings
    out: TextIO  # data: tables and JSON
    err: TextIO  # progress and errors, so `--json > file` stays parseable


Handler = Callable[[argparse.Namespace, Context], int]
"""A command handler: returns the exit code, or raises CliError."""


def emit_error(err: TextIO, message: str) -> None:
    """Write one `gate: error: ...` line, the single error format of the CLI."""
    err.write(f"gate: error: {message}\n")
    err.flush()


__all__ = ["CliError", "Context", "ExitCode", "Handler", "emit_error"]
