"""`gate serve`: run the gRPC server in the foreground until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import dataclasses
import os

from gate.cli import Context, ExitCode
from gate.config import Settings, parse_workers
from gate.errors import InvalidArgument


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
    parser.add_argument(
        "--workers",
        type=_workers,
        default=settings.workers,
        metavar="N",
        help="serving processes sharing the port, e.g. one per core (env GATE_WORKERS; default "
        f"{settings.workers}); the first also runs the webhook, metrics, rescans and WAL checkpoints",
    )
    parser.set_defaults(handler=run)


def _workers(raw: str) -> int:
    try:
        return parse_workers(raw, "--workers")
    except InvalidArgument as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Start the server and block until it shuts down."""
    from gate.server.workers import prepare_metrics

    # The flags override the environment for the webhook and the worker count; everything else stays
    # as configured (the secondaries read the same environment; they learn the count from it too).
    settings = dataclasses.replace(
        ctx.settings,
        webhook_listen=str(args.webhook_listen),
        webhook_tls_cert=str(args.webhook_tls_cert),
        webhook_tls_key=str(args.webhook_tls_key),
        workers=int(args.workers),
    )
    os.environ["GATE_WORKERS"] = str(settings.workers)
    # Before the server (and with it prometheus_client) is imported: the metrics mode is fixed then.
    metrics_dir = prepare_metrics(settings.workers)
    # Imported here so client commands never pay for (or depend on) the server's store and scanners.
    from gate.server.app import serve

    serve(settings, str(args.listen), metrics_dir=metrics_dir)
    return ExitCode.OK
