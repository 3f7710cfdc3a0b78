"""`gate policy show | validate | replay`: the active policy, checking a candidate, what it would change."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from gate.cli import CliError, Context, ExitCode
from gate.cli.client import connect
from gate.cli.formats import json as json_format
from gate.cli.formats.table import render_fields, render_table, short_id, timestamp_field
from gate.v1 import policy_pb2


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], shared: argparse.ArgumentParser
) -> None:
    """Add the `policy` command group."""
    policy = subparsers.add_parser(
        "policy",
        help="show, validate and replay policies",
        description="Inspect the server's active policy, validate a policy file, or replay a candidate "
        "over the stored decisions to see what it would have changed.",
    )
    actions = policy.add_subparsers(dest="policy_command", metavar="ACTION", required=True)

    show = actions.add_parser("show", parents=[shared], help="show the active policy")
    show.add_argument("--yaml", action="store_true", help="print the normalized policy as YAML")
    show.set_defaults(handler=run_show)

    validate = actions.add_parser(
        "validate",
        parents=[shared],
        help="validate a policy file",
        description="Exit 0 when FILE is a valid policy, 2 otherwise, printing every problem as "
        "FILE:LINE: field: message, in line order.",
    )
    validate.add_argument("file", metavar="FILE", help="the policy YAML")
    validate.set_defaults(handler=run_validate)

    replay = actions.add_parser(
        "replay",
        parents=[shared],
        help="replay a candidate policy over past decisions",
        description="Judge every decision stored since --since again with the candidate in FILE, at the "
        "time it was made, and report which outcomes would change. Findings, lineage and names are read "
        "as they are stored now, not as they were then.",
    )
    replay.add_argument("file", metavar="FILE", help="the candidate policy YAML")
    replay.add_argument("--since", default="30d", metavar="DURATION", help="how far back (default 30d)")
    replay.add_argument(
        "--transition", default="", metavar="FROM->TO", help="only this transition, e.g. s2->p"
    )
    replay.set_defaults(handler=run_replay)


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CliError(f"cannot read {path}: {e}", ExitCode.BAD_INPUT) from e


def _flat(settings: Sequence[policy_pb2.PolicySetting]) -> dict[str, str]:
    """Settings as table cells; a mapping (on_state, runtime grace…) becomes one row per key."""
    out: dict[str, str] = {}
    for setting in settings:
        try:
            value = json.loads(setting.value)
        except ValueError:
            out[setting.key] = setting.value
            continue
        if isinstance(value, dict):
            for k, v in value.items():
                out[f"{setting.key}.{k}"] = _cell(v)
        else:
            out[setting.key] = _cell(value)
    return out


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def render_webhook(normalized_json: str) -> str:
    """The policy's `webhook:` section (namespace → stage), or "" when the policy has none."""
    try:
        section = json.loads(normalized_json or "{}").get("webhook")
    except (ValueError, AttributeError):
        return ""
    if not isinstance(section, dict):
        return ""
    namespaces = section.get("namespaces") or {}
    rows = [[str(name), str(stage)] for name, stage in sorted(namespaces.items())]
    rule = section.get("unknown_namespace")
    out = "\nAdmission webhook stages (webhook:):\n"
    out += render_table(("NAMESPACE", "STAGE"), rows) if rows else "  no namespaces listed\n"
    if rule is not None:
        out += f"unlisted namespaces: {rule}\n"
    # The server's environment may override the file; ShowPolicy sees the file only.
    out += "(GATE_WEBHOOK_STAGES / GATE_WEBHOOK_UNKNOWN_NAMESPACE on the server override these)\n"
    return out


def render_policy(view: policy_pb2.PolicyView) -> str:
    """The policy header, one row per setting with one column per transition, then the webhook section."""
    head = render_fields([("source", view.source), ("digest", view.digest)])
    values = [_flat(t.settings) for t in view.transitions]
    keys: list[str] = []
    for v in values:
        keys += [k for k in v if k not in keys]
    rows = [[key, *(v.get(key, "") for v in values)] for key in keys]
    table = render_table(("SETTING", *(t.transition for t in view.transitions)), rows)
    return head + "\n" + table + render_webhook(view.normalized_json)


def run_show(args: argparse.Namespace, ctx: Context) -> int:
    """Print the active policy."""
    with connect(args) as client:
        view = client.show_policy()
    if args.json:
        json_format.dump_message(view, ctx.out)
    elif args.yaml:
        ctx.out.write(view.normalized_yaml)
    else:
        ctx.out.write(render_policy(view))
    return ExitCode.OK


def run_validate(args: argparse.Namespace, ctx: Context) -> int:
    """Validate a policy file; exit 2 when invalid."""
    text = _read(args.file)
    with connect(args) as client:
        result = client.validate_policy(text, args.file)
    if args.json:
        json_format.dump_message(result, ctx.out)
    elif result.valid:
        ctx.out.write(f"{args.file}: valid (digest {result.digest})\n")
    else:
        if len(result.errors) > 1:
            # The same heading as the server's own message for a policy file with several problems.
            ctx.out.write(f"{args.file}: {len(result.errors)} problems:\n")
        for p in result.errors:
            where = f"{args.file}:{p.line}: " if p.line else f"{args.file}: "
            ctx.out.write(f"{where}{p.field + ': ' if p.field else ''}{p.message}\n")
    return ExitCode.OK if result.valid else ExitCode.BAD_INPUT


def render_replay(report: policy_pb2.ReplayPolicyResponse) -> str:
    """Per-transition sentences, then every decision that would change."""
    lines = [
        f"candidate {short_id(report.candidate_digest)} vs active {short_id(report.active_digest)}: "
        f"{report.total} decision(s) since {timestamp_field(report, 'since')}"
    ]
    for c in report.transitions:
        label = c.transition.replace("->", "→")
        lines.append(
            f"{label}: would have denied {c.denied_after} of {c.total} {label} promotions "
            f"(recorded {c.denied_before}; {c.newly_denied} newly denied, {c.newly_allowed} newly allowed)"
        )
    out = "\n".join(lines) + "\n"
    if report.changes:
        rows = [
            [
                c.transition,
                c.digest,
                timestamp_field(c, "evaluated_at"),
                f"{'allowed' if c.was_allowed else 'denied'} → {'allowed' if c.would_allow else 'denied'}",
                "yes" if c.evidence_changed else "",
                c.reasons[0] if c.reasons else "",
            ]
            for c in report.changes
        ]
        out += "\n" + render_table(
            ("TRANSITION", "DIGEST", "DECIDED", "OUTCOME", "EVIDENCE CHANGED", "WHY"), rows
        )
    return out


def run_replay(args: argparse.Namespace, ctx: Context) -> int:
    """Replay a candidate and print what would change."""
    text = _read(args.file)
    with connect(args) as client:
        report = client.replay_policy(text, args.file, args.since, args.transition)
    if args.json:
        json_format.dump_message(report, ctx.out)
    else:
        ctx.out.write(render_replay(report))
    return ExitCode.OK
