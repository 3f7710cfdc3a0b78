"""CSV exports for spreadsheets: a header row, then one row per finding, affected image or image.

Written with the standard csv module (RFC 4180 quoting), so commas, quotes and newlines in titles or
messages survive a round trip. Empty cells stay empty: a spreadsheet filter on "blank" should work.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from typing import TextIO

from gate.cli.formats.table import timestamp_field
from gate.v1 import gate_pb2

FINDING_COLUMNS = (
    "digest",
    "vulnerability_id",
    "severity",
    "package",
    "installed_version",
    "fixed_version",
    "fix",
    "class",
    "scanner",
    "layer",
    "introduced_by",
    "tier",
    "title",
)

AFFECTED_COLUMNS = (
    "stage",
    "registry",
    "repository",
    "digest",
    "tags",
    "vulnerability_id",
    "severity",
    "package",
    "installed_version",
    "fixed_version",
    "fix",
    "introduced_by",
    "tier",
    # For a platform image of a multi-platform index (no tags of its own): each index listing it, space
    # separated and in the same order in all three columns; index_refs has every tag of every index.
    "index_digest",
    "index_refs",
    "platform",
)
"""Columns of `gate affected --format csv`; the index columns come last, so older columns keep their place."""

IMAGE_COLUMNS = (
    "stage",
    "stage_source",
    "registry",
    "repository",
    "digest",
    "tags",
    "nearest_base",
    "worst_severity",
    "finding_count",
    "last_scanned_at",
)


def fix_text(fixed_version: str) -> str:
    """The fix-availability column: the fixed version, or "no fix"."""
    return fixed_version or "no fix"


def index_refs(m: gate_pb2.IndexMembership) -> list[str]:
    """An index as references a person can pull: repository:tag per tag, else repository@digest."""
    name = "/".join(p for p in (m.registry, m.repository) if p)
    if not name:
        return [m.digest]
    return [f"{name}:{tag}" for tag in m.tags] or [f"{name}@{m.digest}"]


def write_csv(headers: Sequence[str], rows: Sequence[Sequence[str]], out: TextIO) -> None:
    """Write the header row, then the rows; one line each, ended by a newline."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows(rows)


def finding_row(digest: str, f: gate_pb2.Finding) -> list[str]:
    """One finding as FINDING_COLUMNS."""
    return [
        digest,
        f.vulnerability_id,
        f.severity,
        f.package,
        f.installed_version,
        f.fixed_version,
        fix_text(f.fixed_version),
        f.finding_class,
        f.scanner,
        f.layer_diff_id,
        f.introduced_by,
        f.tier,
        f.title,
    ]


def affected_row(i: gate_pb2.AffectedImage) -> list[str]:
    """One affected (image, package) pair as AFFECTED_COLUMNS; tags joined by spaces."""
    return [
        i.stage,
        i.registry,
        i.repository,
        i.digest,
        " ".join(i.tags),
        i.vulnerability_id,
        i.severity,
        i.package,
        i.installed_version,
        i.fixed_version,
        fix_text(i.fixed_version),
        i.introduced_by,
        i.tier,
        " ".join(m.digest for m in i.indexes),
        " ".join(ref for m in i.indexes for ref in index_refs(m)),
        " ".join(m.platform for m in i.indexes),
    ]


def image_row(i: gate_pb2.ImageSummary) -> list[str]:
    """One image of a stage listing as IMAGE_COLUMNS."""
    scanned = timestamp_field(i, "last_scanned_at")
    return [
        i.stage,
        i.stage_source,
        i.registry,
        i.repository,
        i.digest,
        " ".join(i.tags),
        i.nearest_base,
        i.worst_severity,
        str(i.finding_count),
        "" if scanned == "-" else scanned,
    ]
