"""`gate check`: may this image move from one stage to the next? Exit 0 allowed, 1 denied."""

from __future__ import annotations

import argparse

from gate.cli import CliError, Context, ExitCode
from gate.cli.client import connect
from gate.cli.formats import json as json_format
from gate.cli.formats.ci import add_report_options, write_reports
from gate.cli.formats.exceptions import render_applied_exceptions
from gate.cli.formats.table import (
    EMPTY,
    render_fields,
    render_table,
    severity_rank,
    short_id,
    timestamp_field,
)
from gate.v1 import gate_pb2


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], shared: argparse.ArgumentParser
) -> None:
    """Add the `check` command."""
    parser = subparsers.add_parser(
        "check",
        parents=[shared],
        help="ask whether an image may be promoted",
        description="Ask gate whether IMAGE may move from one stage to another, from stored findings. "
        "Exit 0 when allowed, 1 when denied.",
    )
    parser.add_argument("image", metavar="IMAGE", help="image reference")
    parser.add_argument("--from", dest="from_stage", required=True, metavar="STAGE", help="current stage")
    parser.add_argument("--to", dest="to_stage", required=True, metavar="STAGE", help="target stage")
    parser.add_argument(
        "--breakglass",
        default=None,
        metavar="REASON",
        help="allow despite violations (needs the breakglass role; with authentication off, an actor in "
        "GATE_BREAKGLASS_ACTORS); always audited",
    )
    parser.add_argument(
        "--scan-if-stale",
        action="store_true",
        help="when the image is STALE, RESCAN_REQUIRED or NOT_SCANNED and gate can locate it, scan it "
        "first and answer from the new findings (waits within --timeout; raise it for real scans)",
    )
    add_report_options(parser)
    parser.set_defaults(handler=run)


def render_decision(decision: gate_pb2.Decision) -> str:
    """Human-readable verdict: headline, facts, violations (most severe first), exceptions, warnings."""
    verdict = "ALLOWED" if decision.allowed else "DENIED"
    if decision.breakglass:
        verdict = "ALLOWED BY BREAKGLASS"
    elif decision.HasField("enforced") and not decision.enforced:  # absent: an older server, enforced
        verdict = "ALLOWED (NOT ENFORCED)"
    parts = [
        f"{verdict}: {decision.digest or EMPTY} {decision.from_stage} -> {decision.to_stage}\n",
        render_fields(
            [
                ("state", gate_pb2.VerdictState.Name(decision.state)),
                ("summary", decision.summary),
                ("policy", decision.policy_digest),
                ("evaluated at", timestamp_field(decision, "evaluated_at")),
                ("scanned at", timestamp_field(decision, "scanned_at")),
                *([("breakglass", decision.breakglass_reason)] if decision.breakglass else []),
            ]
        ),
    ]
    if decision.violations:
        violations = sorted(
            decision.violations,
            key=lambda v: (severity_rank(v.severity), v.rule, v.vulnerability_id, v.package),
        )
        # Attribution and platform columns only when some violation carries them, to keep the
        # common single-platform, no-catalog table narrow.
        attributed = any(v.introduced_by for v in violations)
        per_platform = any(v.platform for v in violations)
        rows = []
        for v in violations:
            row = [
                v.rule,
                v.severity,
                v.vulnerability_id,
                v.package,
                f"{v.installed_version or EMPTY} -> {v.fixed_version or EMPTY}" if v.package else "",
                short_id(v.layer_diff_id),
            ]
            row += [v.introduced_by] if attributed else []
            row += [v.platform] if per_platform else []
            rows.append([*row, v.message])
        headers = (
            "RULE",
            "SEVERITY",
            "VULNERABILITY",
            "PACKAGE",
            "INSTALLED -> FIXED",
            "LAYER",
            *(["INTRODUCED BY"] if attributed else []),
            *(["PLATFORM"] if per_platform else []),
            "MESSAGE",
        )
        parts.append(f"\nViolations ({len(rows)}):\n")
        parts.append(render_table(headers, rows))
    parts.append(render_applied_exceptions(decision.applied_exceptions))
    if decision.warnings:
        parts.append(f"\nWarnings ({len(decision.warnings)}):\n")
        parts.extend(f"  - {warning}\n" for warning in decision.warnings)
    return "".join(parts)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Ask for the decision and print it; the exit code carries the verdict."""
    reason = args.breakglass
    if reason is not None and not reason.strip():
        raise CliError("--breakglass needs a reason", ExitCode.BAD_INPUT)
    with connect(args) as client:
        decision = client.check_promotion(
            args.image, args.from_stage, args.to_stage, reason or "", scan_if_stale=args.scan_if_stale
        )
    write_reports(args, [decision], args.image)
    if args.json:
        json_format.dump_message(decision, ctx.out)
    else:
        ctx.out.write(render_decision(decision))
    return ExitCode.OK if decision.allowed else ExitCode.DENIED
