"""`gate serve`: run the gRPC server in the foreground until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse

from gate.cli import Context, ExitCode
from gate.config import Settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], settings: Settings) -> None:
    """Add the `serve` command."""
    parser = subparsers.add_parser(
        "serve",
        help="run the gate server",
        description="Run the gate gRPC server until interrupted (SIGINT/SIGTERM).",
    )
    parser.add_argument(
        "--listen",
        default=settings.listen,
        metavar="HOST:PORT",
        help=f"address to listen on (env GATE_LISTEN; default {settings.listen})",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Start the server and block until it shuts down."""
    # Imported here so client commands never pay for (or depend on) the server's store and scanners.
    from gate.server.app import serve

    serve(ctx.settings, str(args.listen))
    return ExitCode.OK
