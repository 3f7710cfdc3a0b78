"""`gate exceptions …`: accept a vulnerability for a while, in a scope; list, revoke, OpenVEX in and out."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

from gate.cli import CliError, Context, ExitCode
from gate.cli.client import GateClient, connect
from gate.cli.formats import json as json_format
from gate.cli.formats.table import render_fields, render_table, timestamp_field
from gate.v1 import exceptions_pb2 as pb
from gate.v1 import exceptions_pb2_grpc as pb_grpc

__all__ = ["ExceptionsClient", "register"]


class ExceptionsClient:
    """The gate.v1.Exceptions calls, over a GateClient's channel and error mapping."""

    def __init__(self, client: GateClient) -> None:
        self._client = client
        factory = cast(Callable[[Any], Any], pb_grpc.ExceptionsStub)
        self._stub = factory(client._channel)

    def call(self, method: str, request: Any, response_type: type[Any]) -> Any:
        """One unary call; failures arrive as CliError with the exit code of their status."""
        return self._client._unary(method, request, response_type, stub=self._stub)


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], shared: argparse.ArgumentParser
) -> None:
    """Add the `exceptions` command group."""
    group = subparsers.add_parser(
        "exceptions",
        help="manage vulnerability exceptions",
        description="Accept a vulnerability (and its aliases) in a scope until an expiry: digest:D, "
        "repo:R, base:B (every image built on base B) or transition:s2->p. Verdicts list the exceptions "
        "they applied; expired ones stop applying and are reported.",
    )
    actions = group.add_subparsers(dest="exceptions_command", metavar="ACTION", required=True)

    add = actions.add_parser("add", parents=[shared], help="create an exception")
    add.add_argument("vulnerability", metavar="VULN", help="a CVE, GHSA or other id (aliases are covered)")
    add.add_argument(
        "--scope", required=True, metavar="S", help="digest:D, repo:R, base:B or transition:A->B"
    )
    add.add_argument(
        "--expires",
        required=True,
        metavar="DATE",
        help="YYYY-MM-DD (through that day, UTC) or RFC 3339; at most the policy's max_exception_days",
    )
    add.add_argument("--reason", required=True, metavar="R", help="why the risk is accepted")
    add.add_argument("--ticket", required=True, metavar="T", help="where the decision is tracked")
    add.add_argument("--owner", required=True, metavar="O", help="who answers for it")
    add.add_argument("--approver", required=True, metavar="A", help="who approved it (not you)")
    add.add_argument("--justification", default="", metavar="J", help="OpenVEX justification for exports")
    add.set_defaults(handler=run_add)

    listing = actions.add_parser("list", parents=[shared], help="list exceptions")
    listing.add_argument("--expired", action="store_true", help="only expired ones")
    listing.add_argument(
        "--unused", action="store_true", help="only active ones no current finding matches (removable)"
    )
    listing.add_argument("--all", action="store_true", help="include revoked ones")
    listing.set_defaults(handler=run_list)

    revoke = actions.add_parser("revoke", parents=[shared], help="revoke an exception")
    revoke.add_argument("id", metavar="ID", help="the exception id (ex-…)")
    revoke.set_defaults(handler=run_revoke)

    imp = actions.add_parser(
        "import",
        parents=[shared],
        help="import OpenVEX not_affected statements",
        description="Each not_affected statement becomes an exception scoped to each product's image digest; "
        "other statuses and products that name no image are reported and skipped.",
    )
    imp.add_argument("file", metavar="FILE", help="an OpenVEX JSON document ('-' for stdin)")
    imp.add_argument("--expires", required=True, metavar="DATE", help="expiry of every imported exception")
    imp.add_argument("--approver", required=True, metavar="A", help="who approved the import (not you)")
    imp.add_argument("--owner", default="", metavar="O", help="owner (default vex-import)")
    imp.add_argument("--ticket", default="", metavar="T", help="ticket (default vex-import)")
    imp.set_defaults(handler=run_import)

    exp = actions.add_parser("export", parents=[shared], help="export active exceptions as OpenVEX")
    exp.add_argument("--out", default="", metavar="FILE", help="write the document here (default stdout)")
    exp.add_argument("--author", default="", metavar="NAME", help="document author (default: --actor)")
    exp.set_defaults(handler=run_export)


def render_exceptions(items: Sequence[pb.VulnException]) -> str:
    """Exceptions as a table."""
    rows = [
        [
            e.id,
            e.vulnerability_id,
            e.scope,
            timestamp_field(e, "expires_at"),
            "removable" if e.unused else e.state,
            e.owner,
            e.ticket,
            str(len(e.matching_digests)) if e.state == "active" else "",
        ]
        for e in items
    ]
    headers = ("ID", "VULNERABILITY", "SCOPE", "EXPIRES", "STATE", "OWNER", "TICKET", "IMAGES")
    table = render_table(headers, rows) if rows else ""
    return f"{table}{len(rows)} exception(s)\n"


def render_exception(e: pb.VulnException) -> str:
    """One exception as `label: value` lines."""
    return render_fields(
        [
            ("id", e.id),
            ("vulnerability", e.vulnerability_id),
            ("scope", e.scope),
            ("expires", timestamp_field(e, "expires_at")),
            ("state", e.state),
            ("owner", e.owner),
            ("ticket", e.ticket),
            ("reason", e.reason),
            ("approver", e.approver),
            ("requested by", e.requested_by),
            ("revoked at", timestamp_field(e, "revoked_at")),
            ("revoked by", e.revoked_by),
        ]
    )


def _show(args: argparse.Namespace, ctx: Context, e: pb.VulnException) -> int:
    if args.json:
        json_format.dump_message(e, ctx.out)
    else:
        ctx.out.write(render_exception(e))
    return ExitCode.OK


def run_add(args: argparse.Namespace, ctx: Context) -> int:
    """`gate exceptions add`."""
    request = pb.AddExceptionRequest(
        vulnerability_id=args.vulnerability,
        scope=args.scope,
        expires=args.expires,
        owner=args.owner,
        ticket=args.ticket,
        reason=args.reason,
        approver=args.approver,
        justification=args.justification,
    )
    with connect(args) as client:
        return _show(args, ctx, ExceptionsClient(client).call("AddException", request, pb.VulnException))


def run_list(args: argparse.Namespace, ctx: Context) -> int:
    """`gate exceptions list`."""
    request = pb.ListExceptionsRequest(expired=args.expired, unused=args.unused, include_revoked=args.all)
    with connect(args) as client:
        reply = ExceptionsClient(client).call("ListExceptions", request, pb.ListExceptionsResponse)
    if args.json:
        json_format.dump_message(reply, ctx.out)
    else:
        ctx.out.write(render_exceptions(list(reply.exceptions)))
    return ExitCode.OK


def run_revoke(args: argparse.Namespace, ctx: Context) -> int:
    """`gate exceptions revoke`."""
    with connect(args) as client:
        reply = ExceptionsClient(client).call(
            "RevokeException", pb.RevokeExceptionRequest(id=args.id), pb.VulnException
        )
    return _show(args, ctx, reply)


def _read(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise CliError(f"cannot read {path}: {e.strerror or e}", ExitCode.BAD_INPUT) from None


def run_import(args: argparse.Namespace, ctx: Context) -> int:
    """`gate exceptions import`."""
    request = pb.ImportVexRequest(
        document=_read(args.file),
        expires=args.expires,
        owner=args.owner,
        ticket=args.ticket,
        approver=args.approver,
    )
    with connect(args) as client:
        reply = ExceptionsClient(client).call("ImportVex", request, pb.ImportVexResponse)
    if args.json:
        json_format.dump_message(reply, ctx.out)
    else:
        ctx.out.write(render_exceptions(list(reply.added)))
        for line in reply.ignored:
            ctx.out.write(f"ignored: {line}\n")
    return ExitCode.OK


def run_export(args: argparse.Namespace, ctx: Context) -> int:
    """`gate exceptions export`."""
    with connect(args) as client:
        reply = ExceptionsClient(client).call(
            "ExportVex", pb.ExportVexRequest(author=args.author), pb.ExportVexResponse
        )
    if args.out:
        try:
            Path(args.out).write_bytes(reply.document)
        except OSError as e:
            raise CliError(f"cannot write {args.out}: {e.strerror or e}", ExitCode.BAD_INPUT) from None
    if args.json:
        json_format.dump_message(reply, ctx.out)
    elif not args.out:
        ctx.out.write(reply.document.decode())
    for ident in reply.skipped:
        ctx.err.write(f"gate: exception {ident} covers no known image; left out of the document\n")
    return ExitCode.OK
