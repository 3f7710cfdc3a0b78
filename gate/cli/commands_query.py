"""`gate report`, `gate findings`, `gate affected`: read-only questions about stored scan results."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from gate.cli import CliError, Context, ExitCode
from gate.cli.client import connect
from gate.cli.formats import json as json_format
from gate.cli.formats.table import (
    EMPTY,
    render_fields,
    render_table,
    severity_rank,
    short_id,
    timestamp_field,
)
from gate.v1 import gate_pb2
from scanners.interface import Severity

# Most severe first, the order people read them in.
SEVERITY_NAMES = tuple(s.name for s in sorted(Severity, reverse=True))


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], shared: argparse.ArgumentParser
) -> None:
    """Add the `report`, `findings` and `affected` commands."""
    report = subparsers.add_parser(
        "report",
        parents=[shared],
        help="show what gate knows about an image",
        description="Show IMAGE's identity, tags, stage, scans per scanner and finding counts.",
    )
    report.add_argument("image", metavar="IMAGE", help="image reference")
    report.set_defaults(handler=run_report)

    findings = subparsers.add_parser(
        "findings",
        parents=[shared],
        help="list an image's current findings",
        description="List IMAGE's current findings, most severe first (all pages).",
    )
    findings.add_argument("image", metavar="IMAGE", help="image reference")
    findings.add_argument(
        "--min-severity",
        type=str.upper,
        choices=SEVERITY_NAMES,
        default="",
        metavar="SEV",
        help=f"only this severity and above ({', '.join(SEVERITY_NAMES)})",
    )
    findings.add_argument("--fixable", action="store_true", help="only findings with a fixed version")
    findings.add_argument("--package", default="", metavar="P", help="only this package")
    findings.add_argument("--vuln", default="", metavar="ID", help="only this vulnerability (or alias)")
    findings.set_defaults(handler=run_findings)

    affected = subparsers.add_parser(
        "affected",
        parents=[shared],
        help="list stored images affected by a vulnerability",
        description="List every stored image whose current findings include VULN_ID (a CVE or alias).",
    )
    affected.add_argument("vulnerability_id", metavar="VULN_ID", help="vulnerability id, e.g. CVE-2024-1234")
    affected.add_argument("--stage", default="", metavar="S", help="only images in this stage")
    affected.set_defaults(handler=run_affected)


def _by_severity(counts: Sequence[gate_pb2.SeverityCount]) -> str:
    ranked = sorted(counts, key=lambda c: severity_rank(c.severity))
    return ", ".join(f"{c.severity} {c.count}" for c in ranked)


def _render_platforms(report: gate_pb2.ImageReport) -> str:
    rows = [
        [
            p.platform,
            p.digest,
            p.user or "(root)",
            ", ".join(sorted({gate_pb2.JobState.Name(s.state) for s in p.scans})) or "not scanned",
            str(p.finding_count),
            _by_severity(p.counts),
        ]
        for p in report.platforms
    ]
    headers = ("PLATFORM", "DIGEST", "USER", "SCANS", "FINDINGS", "BY SEVERITY")
    return f"\nPlatforms ({len(rows)}):\n" + render_table(headers, rows)


def render_report(report: gate_pb2.ImageReport) -> str:
    """Human-readable image report: identity, scans table, counts by severity.

    For a multi-platform index: identity and one row per platform image (an index has no config,
    layers or findings of its own; `gate report` on a platform digest shows that image in full).
    """
    index = bool(report.platforms)
    fields = [
        ("digest", report.digest),
        ("config digest", report.config_digest),
        ("registry", report.registry),
        ("repository", report.repository),
        ("tags", ", ".join(report.tags)),
        ("stage", report.stage),
    ]
    if index:
        fields.append(("findings", str(sum(p.finding_count for p in report.platforms))))
    else:
        fields += [
            ("os", report.os),
            ("user", report.user or "(root)"),
            ("layers", str(len(report.diff_ids))),
            ("findings", str(report.finding_count)),
            ("declared base", report.annotated_base_digest or report.annotated_base_name),
        ]
    parts = [render_fields(fields)]
    if index:
        parts.append(_render_platforms(report))
        return "".join(parts)
    if report.lineage:
        # Nearest base first: the image, then what it was built on, down to the OS base.
        rows = [
            [b.tier, b.name, b.status, str(b.chain_length), short_id(b.digest), b.superseded_by_name]
            for b in report.lineage
        ]
        parts.append("\nLineage (nearest base first):\n")
        parts.append(render_table(("TIER", "NAME", "STATUS", "LAYERS", "DIGEST", "SUPERSEDED BY"), rows))
    else:
        parts.append("\nLineage: no catalogued base\n")
    parts.extend(f"  warning: {w}\n" for w in report.lineage_warnings)
    if report.scans:
        rows = [
            [
                scan.scanner,
                gate_pb2.JobState.Name(scan.state),
                scan.scanner_version,
                scan.db_version,
                timestamp_field(scan, "db_updated_at"),
                timestamp_field(scan, "scanned_at"),
                "yes" if scan.imported else "",
                scan.job_id,
            ]
            for scan in report.scans
        ]
        headers = ("SCANNER", "STATE", "VERSION", "DB VERSION", "DB UPDATED", "SCANNED AT", "IMPORTED", "JOB")
        parts.append("\nScans:\n")
        parts.append(render_table(headers, rows))
        parts.extend(f"  {scan.scanner} error: {scan.error}\n" for scan in report.scans if scan.error)
    else:
        parts.append("\nScans: none\n")
    if report.counts:
        counts = sorted(report.counts, key=lambda c: severity_rank(c.severity))
        parts.append("\nFindings by severity:\n")
        parts.append(render_table(("SEVERITY", "COUNT"), [[c.severity, str(c.count)] for c in counts]))
    parts.append(render_scanner_comparison(report.scanner_counts, report.disagreements))
    return "".join(parts)


def render_scanner_comparison(
    scanner_counts: Sequence[gate_pb2.ScannerCounts], disagreements: Sequence[gate_pb2.Disagreement]
) -> str:
    """Two or more scanners side by side: counts per severity per scanner, then where they disagree.

    Empty for one scanner: there is nothing to compare.
    """
    if len(scanner_counts) < 2:
        return ""
    names = [c.scanner for c in scanner_counts]
    by_scanner = {c.scanner: {s.severity: s.count for s in c.counts} for c in scanner_counts}
    severities = sorted({sev for counts in by_scanner.values() for sev in counts}, key=severity_rank)
    rows = [[sev, *(str(by_scanner[name].get(sev, 0)) for name in names)] for sev in severities]
    rows.append(["total", *(str(c.finding_count) for c in scanner_counts)])
    parts = ["\nFindings by scanner (each by its own severity):\n"]
    parts.append(render_table(("SEVERITY", *(name.upper() for name in names)), rows))
    if not disagreements:
        parts.append("\nDisagreements: none (every finding reported alike by all scanners)\n")
        return "".join(parts)
    rows = []
    for d in disagreements:
        said = {s.scanner: s for s in d.severities}
        cells = []
        for name in names:
            s = said.get(name)
            cells.append(_said(s) if s is not None else EMPTY)
        rows.append([d.vulnerability_id, d.package, d.installed_version, *cells, ", ".join(d.found_by)])
    parts.append(f"\nDisagreements ({len(disagreements)}; not found = that scanner did not report it):\n")
    headers = ("VULNERABILITY", "PACKAGE", "INSTALLED", *(name.upper() for name in names), "FOUND BY")
    parts.append(render_table(headers, rows))
    return "".join(parts)


def _said(s: gate_pb2.ScannerSeverity) -> str:
    if not s.severity:
        return "not found"
    # The scanner's own label when it says more than the severity (a Debian urgency, an OSV vector).
    label = s.scanner_severity
    if label and label.upper() != s.severity and len(label) <= 16:
        return f"{s.severity} ({label})"
    return s.severity


def run_report(args: argparse.Namespace, ctx: Context) -> int:
    """Fetch and print the image report."""
    with connect(args) as client:
        report = client.get_image_report(args.image)
    if args.json:
        json_format.dump_message(report, ctx.out)
    else:
        ctx.out.write(render_report(report))
    return ExitCode.OK


def fetch_all_findings(args: argparse.Namespace) -> gate_pb2.ListFindingsResponse:
    """Follow next_page_token to the last page and return every finding in one response."""
    request = gate_pb2.ListFindingsRequest(
        image=args.image,
        min_severity=args.min_severity,
        vulnerability_id=args.vuln,
        package=args.package,
        fixable_only=args.fixable,
    )
    merged = gate_pb2.ListFindingsResponse()
    seen_tokens: set[str] = set()
    with connect(args) as client:
        while True:
            page = client.list_findings_page(request)
            merged.digest = page.digest
            merged.total = page.total
            merged.findings.extend(page.findings)
            token = page.next_page_token
            if not token:
                return merged
            # A server bug that hands back an old token would otherwise loop forever.
            if token in seen_tokens:
                raise CliError(f"server repeated page token {token!r}", ExitCode.UNAVAILABLE)
            seen_tokens.add(token)
            request.page_token = token


def run_findings(args: argparse.Namespace, ctx: Context) -> int:
    """List every finding, most severe first."""
    response = fetch_all_findings(args)
    if args.json:
        json_format.dump_message(response, ctx.out)
        return ExitCode.OK
    findings = sorted(
        response.findings,
        key=lambda f: (severity_rank(f.severity), f.vulnerability_id, f.package, f.installed_version),
    )
    rows = [
        [
            f.severity,
            f.vulnerability_id,
            f.package,
            f.installed_version,
            f.fixed_version,
            f.finding_class,
            f.scanner,
            short_id(f.layer_diff_id),
        ]
        for f in findings
    ]
    if rows:
        headers = ("SEVERITY", "VULNERABILITY", "PACKAGE", "INSTALLED", "FIXED", "CLASS", "SCANNER", "LAYER")
        ctx.out.write(render_table(headers, rows))
    ctx.out.write(f"{len(rows)} finding(s) for {response.digest or EMPTY}\n")
    return ExitCode.OK


def run_affected(args: argparse.Namespace, ctx: Context) -> int:
    """Stream the affected images and print them, most severe first."""
    with connect(args) as client:
        images = list(client.find_affected_images(args.vulnerability_id, args.stage))
    if args.json:
        json_format.dump_messages(images, ctx.out)
        return ExitCode.OK
    images.sort(key=lambda i: (severity_rank(i.severity), i.registry, i.repository, i.digest))
    rows = [
        [
            "/".join(part for part in (i.registry, i.repository) if part),
            short_id(i.digest),
            ", ".join(i.tags),
            i.stage,
            i.severity,
            i.vulnerability_id,
            i.package,
            i.installed_version,
            i.fixed_version,
        ]
        for i in images
    ]
    if rows:
        headers = (
            "REPOSITORY",
            "DIGEST",
            "TAGS",
            "STAGE",
            "SEVERITY",
            "VULNERABILITY",
            "PACKAGE",
            "INSTALLED",
            "FIXED",
        )
        ctx.out.write(render_table(headers, rows))
    digests = len({i.digest for i in images})
    noun = "image" if digests == 1 else "images"
    ctx.out.write(f"{digests} {noun} affected by {args.vulnerability_id} ({len(rows)} package rows)\n")
    return ExitCode.OK
