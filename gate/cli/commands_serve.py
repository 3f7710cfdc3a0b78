"""`gate serve`: run the gRPC server in the foreground until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import dataclasses

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
    parser.add_argument(
        "--webhook-listen",
        default=settings.webhook_listen,
        metavar="HOST:PORT",
        help="serve the Kubernetes admission webhook (HTTPS POST /validate) here (env GATE_WEBHOOK_LISTEN)",
    )
    parser.add_argument(
        "--webhook-tls-cert",
        default=settings.webhook_tls_cert,
        metavar="FILE",
        help="the webhook's PEM certificate chain (env GATE_WEBHOOK_TLS_CERT)",
    )
    parser.add_argument(
        "--webhook-tls-key",
        default=settings.webhook_tls_key,
        metavar="FILE",
        help="the webhook's PEM private key (env GATE_WEBHOOK_TLS_KEY)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Start the server and block until it shuts down."""
    # Imported here so client commands never pay for (or depend on) the server's store and scanners.
    from gate.server.app import serve

    # The flags override the environment for the webhook; everything else stays as configured.
    settings = dataclasses.replace(
        ctx.settings,
        webhook_listen=str(args.webhook_listen),
        webhook_tls_cert=str(args.webhook_tls_cert),
        webhook_tls_key=str(args.webhook_tls_key),
    )
    serve(settings, str(args.listen))
    return ExitCode.OK
