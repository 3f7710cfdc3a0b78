"""The exceptions a verdict applied, as a short table under `gate check` / `gate promote` output.

A waived finding is not a violation, so without this block a person reading the table saw an allowed
image and no trace of the accepted risk behind it; `--json` always carried it (applied_exceptions).
"""

from __future__ import annotations

from collections.abc import Sequence

from gate.cli.formats.table import EMPTY, render_table
from gate.v1 import gate_pb2

__all__ = ["render_applied_exceptions"]


def _expires(applied: gate_pb2.AppliedException) -> str:
    # A date is enough to act on ("renew before …"); the full instant is in --json.
    if not applied.HasField("expires_at"):
        return EMPTY
    return applied.expires_at.ToDatetime().strftime("%Y-%m-%d")


def _owner(applied: gate_pb2.AppliedException) -> str:
    return " / ".join(part for part in (applied.owner, applied.ticket) if part)


def render_applied_exceptions(applied: Sequence[gate_pb2.AppliedException]) -> str:
    """`Exceptions applied (N):` and one row per waived finding; "" when none applied.

    The vulnerability shown is the one the exception names, with the finding's own id after it when
    the exception matched through an alias (e.g. a GHSA id waiving a CVE finding).
    """
    if not applied:
        return ""
    per_platform = any(a.platform for a in applied)
    rows = []
    for a in sorted(applied, key=lambda a: (a.exception_id, a.vulnerability_id, a.package, a.platform)):
        vulnerability = a.vulnerability_id or a.finding_id
        if a.finding_id and a.finding_id != vulnerability:
            vulnerability += f" ({a.finding_id})"
        rows.append(
            [
                a.exception_id,
                vulnerability,
                a.package,
                _owner(a),
                _expires(a),
                *([a.platform] if per_platform else []),
            ]
        )
    headers = (
        "EXCEPTION",
        "VULNERABILITY",
        "PACKAGE",
        "OWNER / TICKET",
        "EXPIRES",
        *(["PLATFORM"] if per_platform else []),
    )
    return f"\nExceptions applied ({len(rows)}):\n" + render_table(headers, rows)
