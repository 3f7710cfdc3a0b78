"""`gate promote`, `gate promotions list` and `gate receipts pubkey|verify`: the promotion ledger.

`gate promote` exits like `gate check` (0 promoted, 1 denied). `gate receipts verify` runs offline: it
reads the receipt file and a public key and never contacts a server.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from gate.cli import CliError, Context, ExitCode
from gate.cli.client import connect
from gate.cli.commands_check import render_decision
from gate.cli.formats import json as json_format
from gate.cli.formats.ci import add_report_options, write_reports
from gate.cli.formats.table import EMPTY, render_fields, render_table, short_id, timestamp_field
from gate.receipts import load_public_key, verify_receipt


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], shared: argparse.ArgumentParser
) -> None:
    """Add `promote`, `promotions` and `receipts`."""
    promote = subparsers.add_parser(
        "promote",
        parents=[shared],
        help="check and record a promotion, with a signed receipt",
        description="Judge IMAGE exactly like `gate check` and, when allowed, record the promotion in the "
        "ledger and print its signed receipt. Exit 0 when promoted, 1 when denied (nothing recorded).",
    )
    promote.add_argument("image", metavar="IMAGE", help="image reference")
    promote.add_argument("--from", dest="from_stage", required=True, metavar="STAGE", help="current stage")
    promote.add_argument("--to", dest="to_stage", required=True, metavar="STAGE", help="target stage")
    promote.add_argument("--target", default="", metavar="REF", help="the reference promoted to (recorded)")
    promote.add_argument(
        "--breakglass",
        default=None,
        metavar="REASON",
        help="allow despite violations (only for actors in GATE_BREAKGLASS_ACTORS); always audited",
    )
    promote.add_argument("--receipt-out", default="", metavar="FILE", help="write the receipt to FILE")
    add_report_options(promote)
    promote.set_defaults(handler=run_promote)

    promotions = subparsers.add_parser("promotions", help="the promotion ledger")
    actions = promotions.add_subparsers(dest="promotions_command", metavar="ACTION", required=True)
    listing = actions.add_parser("list", parents=[shared], help="recorded promotions, newest first")
    listing.add_argument("--stage", default="", metavar="S", help="only promotions into stage S")
    listing.add_argument("--digest", default="", metavar="D", help="only promotions of digest D")
    listing.add_argument("--limit", type=int, default=100, metavar="N", help="at most N (default 100)")
    listing.set_defaults(handler=run_list)

    receipts = subparsers.add_parser("receipts", help="promotion receipts")
    raction = receipts.add_subparsers(dest="receipts_command", metavar="ACTION", required=True)
    pubkey = raction.add_parser(
        "pubkey", parents=[shared], help="print the server's receipt public key (PEM)"
    )
    pubkey.set_defaults(handler=run_pubkey)
    verify = raction.add_parser(
        "verify",
        help="verify a receipt offline",
        description="Verify FILE's Ed25519 signature over its canonical payload with the public key, "
        "without contacting a server. Exit 0 valid, 1 invalid (each failed check is named).",
    )
    verify.add_argument("file", metavar="FILE", help="the receipt (from gate promote --receipt-out)")
    verify.add_argument(
        "--pubkey",
        default="",
        metavar="PEM",
        help="the server's public key (from gate receipts pubkey); default: the public half of this "
        "host's signing key (GATE_SIGNING_KEY or <data dir>/keys/receipt-ed25519.pem), if present",
    )
    verify.add_argument(
        "--ignore-expiry", action="store_true", help="accept a receipt whose expires_at has passed"
    )
    verify.add_argument("--json", action="store_true", help="print the result as JSON")
    verify.set_defaults(handler=run_verify)


def run_promote(args: argparse.Namespace, ctx: Context) -> int:
    """Promote; print the verdict and the receipt; the exit code carries the verdict."""
    reason = args.breakglass
    if reason is not None and not reason.strip():
        raise CliError("--breakglass needs a reason", ExitCode.BAD_INPUT)
    with connect(args) as client:
        reply = client.promote(args.image, args.from_stage, args.to_stage, args.target, reason or "")
    if reply.promoted and args.receipt_out:
        Path(args.receipt_out).write_text(reply.receipt, encoding="utf-8")
    write_reports(args, [reply.decision], args.image)
    if args.json:
        json_format.dump_message(reply, ctx.out)
    else:
        ctx.out.write(render_decision(reply.decision))
        if reply.promoted:
            p = reply.promotion
            ctx.out.write(f"\nPROMOTED: {p.digest} {p.from_stage} -> {p.to_stage} (promotion {p.id})\n")
            ctx.out.write(
                render_fields(
                    [
                        ("target", p.target or EMPTY),
                        ("findings", p.findings_digest),
                        ("decision", p.decision_id),
                        ("expires at", timestamp_field(p, "expires_at")),
                        ("receipt", args.receipt_out or "(below)"),
                    ]
                )
            )
            if not args.receipt_out:
                ctx.out.write(reply.receipt)
        else:
            ctx.out.write("\nNOT PROMOTED: nothing was recorded\n")
    return ExitCode.OK if reply.promoted else ExitCode.DENIED


def run_list(args: argparse.Namespace, ctx: Context) -> int:
    """Print recorded promotions, newest first."""
    with connect(args) as client:
        reply = client.list_promotions(args.stage, args.digest, args.limit)
    if args.json:
        json_format.dump_message(reply, ctx.out)
        return ExitCode.OK
    rows = [
        [
            timestamp_field(p, "promoted_at"),
            short_id(p.digest),
            f"{p.from_stage}->{p.to_stage}",
            p.target,
            p.actor,
            "yes" if p.breakglass else "",
            timestamp_field(p, "expires_at"),
        ]
        for p in reply.promotions
    ]
    headers = ("PROMOTED AT", "DIGEST", "TRANSITION", "TARGET", "ACTOR", "BREAKGLASS", "EXPIRES AT")
    ctx.out.write(render_table(headers, rows))
    return ExitCode.OK


def run_pubkey(args: argparse.Namespace, ctx: Context) -> int:
    """Print the receipt public key as PEM (or JSON with its key id)."""
    with connect(args) as client:
        key = client.get_public_key()
    if args.json:
        json_format.dump_message(key, ctx.out)
    else:
        ctx.out.write(key.pem)
    ctx.err.write(f"key id {key.key_id}\n")
    return ExitCode.OK


def run_verify(args: argparse.Namespace, ctx: Context) -> int:
    """Verify a receipt offline; exit 0 valid, 1 invalid."""
    try:
        data = Path(args.file).read_bytes()
    except OSError as e:
        raise CliError(f"cannot read receipt {args.file!r}: {e.strerror}", ExitCode.BAD_INPUT) from None
    # On the server's own host the signing key file gives the public key; anywhere else, --pubkey.
    key_file = args.pubkey or str(ctx.settings.effective_signing_key)
    try:
        public = load_public_key(Path(key_file).read_bytes(), f"key file {key_file!r}")
    except OSError as e:
        raise CliError(
            f"cannot read key file {key_file!r}: {e.strerror} "
            "(pass --pubkey; get it with gate receipts pubkey)",
            ExitCode.BAD_INPUT,
        ) from None
    except ValueError as e:
        raise CliError(str(e), ExitCode.BAD_INPUT) from None
    result = verify_receipt(data, public, None if args.ignore_expiry else datetime.now(UTC))
    p = result.promotion
    if args.json:
        json_format.dump(
            {
                "valid": result.valid,
                "problems": list(result.problems),
                "key_id": result.key_id,
                "digest": p.digest if p else "",
                "transition": f"{p.from_stage.value}->{p.to_stage.value}" if p else "",
            },
            ctx.out,
        )
    elif result.valid and p is not None:
        ctx.out.write(
            f"VALID: {p.digest} {p.from_stage.value} -> {p.to_stage.value} promoted by {p.actor} "
            f"(key {result.key_id}, expires {p.expires_at.isoformat()})\n"
        )
        if p.breakglass:
            ctx.out.write(f"  breakglass: {p.breakglass_reason}\n")
    else:
        ctx.out.write(f"INVALID: {args.file}\n")
        ctx.out.writelines(f"  - {problem}\n" for problem in result.problems)
    return ExitCode.OK if result.valid else ExitCode.DENIED
