"""`gate audit list` and `gate audit verify`: read and check the hash-chained audit log."""

from __future__ import annotations

import argparse

from gate.cli import Context, ExitCode
from gate.cli.client import connect
from gate.cli.formats import json as json_format
from gate.cli.formats.table import render_table, short_id, timestamp_field
from gate.v1 import audit_pb2


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], shared: argparse.ArgumentParser
) -> None:
    """Add the `audit` command group."""
    audit = subparsers.add_parser(
        "audit",
        help="list and verify the audit log",
        description="Every decision, promotion, exception change, base change and breakglass is recorded "
        "with its actor, time, inputs digest, result and policy digest, each record chained to the one "
        "before it by hash. See docs/audit.md.",
    )
    actions = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)

    listing = actions.add_parser(
        "list", parents=[shared], help="list audit records, newest first", description="List audit records."
    )
    listing.add_argument("--digest", default="", metavar="D", help="only records about this digest (or id)")
    listing.add_argument(
        "--kind",
        default="",
        metavar="K",
        help="only this kind: decision, base (every base.*), base.revoke, …",
    )
    listing.add_argument("--limit", type=int, default=100, metavar="N", help="records per page (max 1000)")
    listing.add_argument("--page", type=int, default=0, metavar="P", help="page number, 0 = newest")
    listing.set_defaults(handler=run_list)

    verify = actions.add_parser(
        "verify",
        parents=[shared],
        help="check the audit chain for tampering",
        description="Walk the whole audit log and check every record's hash and link, and the head. "
        "Exit 0 when intact, 1 naming the first bad record otherwise. Keep the printed head hash "
        "somewhere the database's writers cannot reach and pass it as --anchor next time: that also "
        "catches a rewrite of the log together with its head.",
    )
    verify.add_argument(
        "--anchor", default="", metavar="HASH", help="a record hash exported earlier that must still be there"
    )
    verify.set_defaults(handler=run_verify)


def _detail(record: audit_pb2.AuditRecord, key: str) -> str:
    return next((d.value for d in record.details if d.key == key), "")


def render_records(records: list[audit_pb2.AuditRecord]) -> str:
    """Records as a table."""
    rows = [
        [
            str(r.seq),
            timestamp_field(r, "at"),
            r.kind,
            r.actor,
            short_id(r.subject, 19) if r.subject.startswith("sha256:") else r.subject,
            _detail(r, "transition"),
            r.result,
            short_id(r.hash, 12),
        ]
        for r in records
    ]
    headers = ("SEQ", "AT", "KIND", "ACTOR", "SUBJECT", "TRANSITION", "RESULT", "HASH")
    table = render_table(headers, rows) if rows else ""
    return f"{table}{len(rows)} record(s)\n"


def run_list(args: argparse.Namespace, ctx: Context) -> int:
    """Print a page of audit records."""
    with connect(args) as client:
        response = client.list_audit(args.digest, args.kind, args.limit, args.page)
    if args.json:
        json_format.dump_message(response, ctx.out)
    else:
        ctx.out.write(render_records(list(response.records)))
        if response.next_page:
            ctx.err.write(f"more: --page {response.next_page}\n")
    return ExitCode.OK


def run_verify(args: argparse.Namespace, ctx: Context) -> int:
    """Verify the chain; exit 1 when tampering is found."""
    with connect(args) as client:
        result = client.verify_audit(args.anchor)
    if args.json:
        json_format.dump_message(result, ctx.out)
    elif result.ok:
        anchored = f"; anchor found at record {result.anchor_seq}" if result.anchor_seq else ""
        ctx.out.write(
            f"audit log intact: {result.checked} record(s){anchored}\n"
            f"head: {result.head_hash}\n"
            f"(keep it elsewhere as an anchor: gate audit verify --anchor {result.head_hash})\n"
        )
    else:
        ctx.out.write(
            f"audit log TAMPERED at record {result.first_bad_seq}: {result.reason}\n"
            f"{result.checked} record(s) before it verified intact\n"
        )
    return ExitCode.OK if result.ok else ExitCode.DENIED
