"""Entry point of the `gate` command: builds the parser, dispatches, and is the project's only exit.

`main()` is the console script and what `python -m gate` runs; `run()` does the work and returns the
exit code so nothing but `main` ever calls `sys.exit`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn, TextIO, cast

from gate import __version__
from gate.cli import (
    CliError,
    Context,
    ExitCode,
    Handler,
    commands_audit,
    commands_bases,
    commands_check,
    commands_exceptions,
    commands_images,
    commands_ledger,
    commands_policy,
    commands_query,
    commands_scan,
    commands_serve,
    commands_tokens,
    emit_error,
)
from gate.cli.client import client_options
from gate.config import Settings
from gate.errors import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    GateError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)

# Same buckets as the gRPC mapping in client.py, for errors raised in-process (settings, `gate serve`).
_GATE_ERROR_EXITS: tuple[tuple[type[GateError], ExitCode], ...] = (
    (InvalidArgument, ExitCode.BAD_INPUT),
    (NotFound, ExitCode.BAD_INPUT),
    (AlreadyExists, ExitCode.BAD_INPUT),
    (FailedPrecondition, ExitCode.BAD_INPUT),
    (PermissionDenied, ExitCode.NOT_AUTHORIZED),
    (Unauthenticated, ExitCode.NOT_AUTHORIZED),
    (Unavailable, ExitCode.UNAVAILABLE),
    (DeadlineExceeded, ExitCode.UNAVAILABLE),
    (ResourceExhausted, ExitCode.UNAVAILABLE),
)


def exit_code_for_gate_error(error: GateError) -> ExitCode:
    """Map an in-process GateError to the exit code its gRPC status would give."""
    for kind, code in _GATE_ERROR_EXITS:
        if isinstance(error, kind):
            return code
    return ExitCode.UNAVAILABLE


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    """Build the full `gate` parser; defaults for addresses come from `settings`."""
    parser = argparse.ArgumentParser(
        prog="gate",
        description="Promotion gate for container images: scan, check promotions, query findings.",
        epilog="exit codes: 0 ok/allowed, 1 denied, 2 bad input, 3 server or scanner unavailable, "
        "4 not authorized",
    )
    parser.add_argument("--version", action="version", version=f"gate {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    shared = client_options(settings.server, settings)
    commands_serve.register(subparsers, settings)
    commands_scan.register(subparsers, shared)
    commands_check.register(subparsers, shared)
    commands_query.register(subparsers, shared)
    commands_images.register(subparsers, shared)
    commands_bases.register(subparsers, shared)
    commands_exceptions.register(subparsers, shared)
    commands_audit.register(subparsers, shared)
    commands_policy.register(subparsers, shared)
    commands_ledger.register(subparsers, shared)
    commands_tokens.register(subparsers, settings.effective_database_url)
    return parser


def run(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Parse `argv`, run the command and return its exit code; errors are reported on `err`.

    argparse itself still raises SystemExit for --help (0) and usage errors (2).
    """
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    try:
        settings = Settings.from_env()
    except GateError as e:
        emit_error(err, str(e))
        return exit_code_for_gate_error(e)
    parser = build_parser(settings)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_usage(err)
        emit_error(err, "a command is required (see gate --help)")
        return ExitCode.BAD_INPUT
    handler = cast(Handler, args.handler)
    try:
        return handler(args, Context(settings=settings, out=out, err=err))
    except CliError as e:
        emit_error(err, e.message)
        return e.exit_code
    except GateError as e:
        emit_error(err, str(e))
        return exit_code_for_gate_error(e)
    except KeyboardInterrupt:
        emit_error(err, "interrupted")
        return ExitCode.INTERRUPTED


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Console-script entry point: run the CLI and exit with its code (the project's only sys.exit)."""
    sys.exit(run(argv))
