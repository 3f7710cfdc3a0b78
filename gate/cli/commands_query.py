"""`gate report`, `gate findings`, `gate affected`: read-only questions about stored scan results."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from gate.cli import CliError, Context, ExitCode
from gate.cli.client import GateClient, connect
from gate.cli.formats import csv as csv_format
from gate.cli.formats import json as json_format
from gate.cli.formats import sarif as sarif_format
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
FORMATS = ("table", "json", "csv", "sarif")
# Ladder order for grouping by stage; images without a stage come last.
STAGE_ORDER = ("d", "t", "s1", "s2", "p")


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
        help="list an image's (or a stage's) current findings",
        description="List IMAGE's current findings, most severe first (all pages); or, with --stage and no "
        "IMAGE, the findings of every stored image in that stage (see gate images).",
    )
    findings.add_argument("image", metavar="IMAGE", nargs="?", default="", help="image reference")
    findings.add_argument(
        "--severity",
        type=str.upper,
        choices=SEVERITY_NAMES,
        action="append",
        default=[],
        metavar="SEV",
        help="only this severity (repeatable)",
    )
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
    findings.add_argument("--scanner", default="", metavar="NAME", help="only findings of this scanner")
    findings.add_argument(
        "--tier",
        default="",
        metavar="TIER",
        help="only findings a base of this tier brought in (e.g. prod-osbase, runtime); "
        "'app' for the image's own layers",
    )
    findings.add_argument(
        "--stage", default="", metavar="S", help="without IMAGE: the findings of every image in stage S"
    )
    add_format_option(findings)
    findings.set_defaults(handler=run_findings)

    affected = subparsers.add_parser(
        "affected",
        parents=[shared],
        help="list stored images affected by a vulnerability, by stage",
        description="List every stored image whose current findings include VULN_ID (a CVE or alias), "
        "grouped by stage in ladder order, with the base that brought it in and whether a fix exists.",
    )
    affected.add_argument("vulnerability_id", metavar="VULN_ID", help="vulnerability id, e.g. CVE-2024-1234")
    affected.add_argument("--stage", default="", metavar="S", help="only images in this stage")
    add_format_option(affected)
    affected.set_defaults(handler=run_affected)


def add_format_option(parser: argparse.ArgumentParser) -> None:
    """Add --format table|json|csv|sarif (--json stays a shorthand for --format json)."""
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="",
        help="output format (default table; csv has a header row; sarif is SARIF 2.1.0)",
    )


def output_format(args: argparse.Namespace) -> str:
    """The chosen format: --format, else json for --json, else table."""
    return str(args.format or ("json" if args.json else "table"))


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
        title = "Findings by severity"
        if len(report.scanner_counts) > 1 and report.severity_source:
            # Say so: without it, a reader adds up the per-scanner table below and gets more.
            title += f" (each once across scanners, at severity_source {report.severity_source})"
        parts.append(f"\n{title}:\n")
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


def fetch_all_findings(
    client: GateClient, args: argparse.Namespace, image: str
) -> gate_pb2.ListFindingsResponse:
    """Follow next_page_token to the last page and return every finding in one response."""
    request = gate_pb2.ListFindingsRequest(
        image=image,
        min_severity=args.min_severity,
        vulnerability_id=args.vuln,
        package=args.package,
        fixable_only=args.fixable,
        scanner=args.scanner,
        tier=args.tier,
    )
    merged = gate_pb2.ListFindingsResponse()
    seen_tokens: set[str] = set()
    while True:
        page = client.list_findings_page(request)
        merged.digest = page.digest
        merged.total = page.total
        merged.findings.extend(page.findings)
        token = page.next_page_token
        if not token:
            break
        # A server bug that hands back an old token would otherwise loop forever.
        if token in seen_tokens:
            raise CliError(f"server repeated page token {token!r}", ExitCode.UNAVAILABLE)
        seen_tokens.add(token)
        request.page_token = token
    if args.severity:
        # The server filters by a floor only; an exact severity list is applied here.
        kept = [f for f in merged.findings if f.severity in args.severity]
        del merged.findings[:]
        merged.findings.extend(kept)
        merged.total = len(kept)
    return merged


def _stage_digests(client: GateClient, stage: str) -> tuple[list[tuple[str, str]], str]:
    """(label, digest) of every image in the stage, platform images for an index; and the stage source."""
    out: list[tuple[str, str]] = []
    source = ""
    for image in client.list_images(stage, ""):
        source = image.stage_source
        label = "/".join(p for p in (image.registry, image.repository) if p) or image.digest
        if image.platforms:
            # Findings are stored per platform image; the index itself has none.
            for platform in client.get_image_report(image.digest).platforms:
                out.append((f"{label} {platform.platform}", platform.digest))
        else:
            out.append((label, image.digest))
    return out, source


def run_findings(args: argparse.Namespace, ctx: Context) -> int:
    """List every finding, most severe first; one image, or every image in --stage."""
    fmt = output_format(args)
    if bool(args.image) == bool(args.stage):
        raise CliError("give IMAGE, or --stage S for every image in a stage (not both)", ExitCode.BAD_INPUT)
    responses: list[tuple[str, gate_pb2.ListFindingsResponse]] = []
    with connect(args) as client:
        if args.image:
            responses.append((args.image, fetch_all_findings(client, args, args.image)))
            source = ""
        else:
            targets, source = _stage_digests(client, args.stage)
            responses.extend((label, fetch_all_findings(client, args, digest)) for label, digest in targets)
    items = [(r.digest, f) for _, r in responses for f in r.findings]
    if fmt == "json":
        if args.image:
            json_format.dump_message(responses[0][1], ctx.out)
        else:
            json_format.dump_messages([r for _, r in responses], ctx.out)
        return ExitCode.OK
    if fmt == "csv":
        csv_format.write_csv(
            csv_format.FINDING_COLUMNS, [csv_format.finding_row(d, f) for d, f in items], ctx.out
        )
        return ExitCode.OK
    if fmt == "sarif":
        json_format.dump(sarif_format.findings_sarif(items, args.image), ctx.out)
        return ExitCode.OK
    multi = not args.image
    # Labelled per response (not per digest): the same digest can be listed under two names.
    labelled = [(label, f) for label, r in responses for f in r.findings]
    ranked = sorted(
        labelled,
        key=lambda i: (severity_rank(i[1].severity), i[1].vulnerability_id, i[1].package, i[0]),
    )
    attributed = any(f.tier for _, f in items)
    rows = []
    for label, f in ranked:
        row = [label] if multi else []
        row += [
            f.severity,
            f.vulnerability_id,
            f.package,
            f.installed_version,
            f.fixed_version,
            f.finding_class,
            f.scanner,
            short_id(f.layer_diff_id),
        ]
        row += [_attribution_text(f.introduced_by, f.tier)] if attributed else []
        rows.append(row)
    if rows:
        headers = (
            *(["IMAGE"] if multi else []),
            "SEVERITY",
            "VULNERABILITY",
            "PACKAGE",
            "INSTALLED",
            "FIXED",
            "CLASS",
            "SCANNER",
            "LAYER",
            *(["INTRODUCED BY"] if attributed else []),
        )
        ctx.out.write(render_table(headers, rows))
    if multi:
        where = "the promotion ledger" if source == "ledger" else "repository names"
        ctx.out.write(
            f"{len(rows)} finding(s) in {len(responses)} image(s) in stage {args.stage} "
            f"(stage from {where})\n"
        )
    else:
        ctx.out.write(f"{len(rows)} finding(s) for {responses[0][1].digest or EMPTY}\n")
    return ExitCode.OK


def _attribution_text(introduced_by: str, tier: str) -> str:
    """The INTRODUCED BY cell: the base, "app (own layers)", or empty when the layer is unknown."""
    if introduced_by:
        return introduced_by
    return "app (own layers)" if tier == "app" else ""


def _index_text(i: gate_pb2.AffectedImage) -> str:
    """The INDEX cell of a platform image: "linux/arm64 of reg/repo:v1 (index 1a2b3c4d5e6f)" per index."""
    return "; ".join(
        f"{m.platform} of {', '.join(csv_format.index_refs(m))} (index {short_id(m.digest)})"
        for m in i.indexes
    )


def _stage_key(stage: str) -> tuple[int, str]:
    return (STAGE_ORDER.index(stage), "") if stage in STAGE_ORDER else (len(STAGE_ORDER), stage)


def run_affected(args: argparse.Namespace, ctx: Context) -> int:
    """Stream the affected images and print them grouped by stage (ladder order), most severe first.

    A platform image of a multi-platform index has no tags of its own: an INDEX column (only when
    some row is one) names the index by its repository:tag and digest, and the platform.
    """
    fmt = output_format(args)
    with connect(args) as client:
        images = list(client.find_affected_images(args.vulnerability_id, args.stage))
    if fmt == "json":
        json_format.dump_messages(images, ctx.out)
        return ExitCode.OK
    images.sort(
        key=lambda i: (_stage_key(i.stage), severity_rank(i.severity), i.registry, i.repository, i.digest)
    )
    if fmt == "csv":
        csv_format.write_csv(
            csv_format.AFFECTED_COLUMNS, [csv_format.affected_row(i) for i in images], ctx.out
        )
        return ExitCode.OK
    if fmt == "sarif":
        json_format.dump(sarif_format.affected_sarif(images), ctx.out)
        return ExitCode.OK
    headers: tuple[str, ...] = (
        "REPOSITORY",
        "DIGEST",
        "TAGS",
        "SEVERITY",
        "VULNERABILITY",
        "PACKAGE",
        "INSTALLED",
        "FIX",
        "INTRODUCED BY",
    )
    in_index = any(i.indexes for i in images)
    if in_index:
        headers = (*headers, "INDEX")
    stages = list(dict.fromkeys(i.stage for i in images))
    for n, stage in enumerate(stages):
        group = [i for i in images if i.stage == stage]
        count = len({i.digest for i in group})
        if n:
            ctx.out.write("\n")
        ctx.out.write(f"Stage {stage or '(none)'} ({count} image(s)):\n")
        rows = [
            [
                "/".join(part for part in (i.registry, i.repository) if part),
                short_id(i.digest),
                ", ".join(i.tags),
                i.severity,
                i.vulnerability_id,
                i.package,
                i.installed_version,
                csv_format.fix_text(i.fixed_version),
                _attribution_text(i.introduced_by, i.tier),
                *([_index_text(i)] if in_index else []),
            ]
            for i in group
        ]
        ctx.out.write(render_table(headers, rows))
    digests = len({i.digest for i in images})
    noun = "image" if digests == 1 else "images"
    if images:
        ctx.out.write("\n")
    ctx.out.write(f"{digests} {noun} affected by {args.vulnerability_id} ({len(images)} package rows)\n")
    return ExitCode.OK
