"""Build an offline Trivy vulnerability-DB cache directory from a list of advisories.

Trivy (schema version 2) reads `<cache>/db/trivy.db`, a bbolt file, and `<cache>/db/metadata.json`.
Buckets, with JSON values:

- `"<ecosystem>"` (e.g. "alpine 3.22") → `"<source package>"` → `"<vuln id>"` = {"FixedVersion": …}
- `"vulnerability"` → `"<vuln id>"` = title, description, severity, vendor severity, CVSS, references, dates
- `"data-source"` → `"<ecosystem>"` = {"ID", "Name", "URL"}

The package bucket is the SOURCE package (Alpine origin, Debian Source:), which is how binary packages
such as libcrypto3 and libssl3 both match the `openssl` advisories.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.support.boltdb import Tree, write_bolt

__all__ = ["SEVERITIES", "Advisory", "build_trivy_cache", "trivy_env"]

# Trivy's VendorSeverity integers.
SEVERITIES = {"UNKNOWN": 0, "LOW": 1, "MEDIUM": 2, "HIGH": 3, "CRITICAL": 4}

# Representative CVSS v3 vectors per severity, so reports carry plausible scores.
_CVSS = {
    "LOW": ("CVSS:3.1/AV:L/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N", 1.8),
    "MEDIUM": ("CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:U/C:L/I:L/A:N", 4.2),
    "HIGH": ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H", 7.5),
    "CRITICAL": ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
}

# data-source entries per OS family; the URLs are only labels in reports, never fetched.
_SOURCES = {
    "alpine": ("alpine", "Alpine Secdb", "https://secdb.alpinelinux.org/"),
    "debian": (
        "debian",
        "Debian Security Tracker",
        "https://salsa.debian.org/security-tracker-team/security-tracker",
    ),
}


@dataclass(frozen=True)
class Advisory:
    """One vulnerability affecting one source package in one OS release."""

    ecosystem: str  # trivy bucket name: "alpine 3.22", "debian 12"
    package: str  # SOURCE package name (alpine origin / debian Source:)
    vulnerability_id: str
    fixed_version: str  # "" = no fix published
    severity: str  # LOW, MEDIUM, HIGH or CRITICAL
    title: str = ""
    description: str = ""


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000000000Z")


def _dumps(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _detail(advisory: Advisory, updated_at: datetime) -> dict[str, object]:
    severity = advisory.severity.upper()
    if severity not in SEVERITIES:
        raise ValueError(f"{advisory.vulnerability_id}: unknown severity {advisory.severity!r}")
    detail: dict[str, object] = {
        "Title": advisory.title or f"{advisory.package}: test vulnerability {advisory.vulnerability_id}",
        "Description": advisory.description
        or f"Fictional advisory {advisory.vulnerability_id} for {advisory.package}, used only in tests.",
        "Severity": severity,
        "VendorSeverity": {"nvd": SEVERITIES[severity]},
        "References": [f"https://advisories.invalid/{advisory.vulnerability_id}"],
        "PublishedDate": _stamp(updated_at - timedelta(days=30)),
        "LastModifiedDate": _stamp(updated_at - timedelta(days=1)),
    }
    if severity in _CVSS:
        vector, score = _CVSS[severity]
        detail["CVSS"] = {"nvd": {"V3Vector": vector, "V3Score": score}}
    return detail


def _tree(advisories: Sequence[Advisory], updated_at: datetime) -> Tree:
    ecosystems: dict[bytes, dict[bytes, dict[bytes, bytes]]] = {}
    details: dict[bytes, bytes] = {}
    sources: dict[bytes, bytes] = {}
    for advisory in advisories:
        package = ecosystems.setdefault(advisory.ecosystem.encode(), {}).setdefault(
            advisory.package.encode(), {}
        )
        # trivy-db stores a Status only for unfixed entries; 2 is its "affected".
        fix: dict[str, object] = (
            {"FixedVersion": advisory.fixed_version} if advisory.fixed_version else {"Status": 2}
        )
        package[advisory.vulnerability_id.encode()] = _dumps(fix)
        # Two advisories for the same id (e.g. alpine + debian) share one detail record.
        details[advisory.vulnerability_id.encode()] = _dumps(_detail(advisory, updated_at))
        family = advisory.ecosystem.split(" ", 1)[0]
        source_id, name, url = _SOURCES.get(family, (family, family, "https://example.invalid/"))
        sources[advisory.ecosystem.encode()] = _dumps({"ID": source_id, "Name": name, "URL": url})
    root: dict[bytes, Tree] = dict(ecosystems)
    root[b"vulnerability"] = details
    root[b"data-source"] = sources
    return root


def build_trivy_cache(
    cache_dir: Path, advisories: Sequence[Advisory], updated_at: datetime, *, inline: bool = False
) -> Path:
    """Write `cache_dir/db/trivy.db` and `metadata.json` (schema Version 2); return `cache_dir`.

    Use the result with `--cache-dir cache_dir --skip-db-update`. `updated_at` should be timezone-aware;
    a naive value is taken as UTC. `inline=True` stores small package buckets inline (as bbolt does).
    """
    if updated_at.tzinfo is None:
        updated_at = updated_at.replace(tzinfo=UTC)
    db_dir = cache_dir / "db"
    write_bolt(db_dir / "trivy.db", _tree(advisories, updated_at), inline=inline)
    metadata = {
        "Version": 2,
        "NextUpdate": _stamp(updated_at + timedelta(hours=24)),
        "UpdatedAt": _stamp(updated_at),
        "DownloadedAt": _stamp(updated_at),
    }
    (db_dir / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    return cache_dir


def trivy_env(home: Path | None = None) -> dict[str, str]:
    """A minimal environment for running trivy in tests: PATH/HOME plus the never-phone-home switches."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home) if home is not None else os.environ.get("HOME", "/tmp"),
        "TRIVY_SKIP_VERSION_CHECK": "true",
        "TRIVY_DISABLE_TELEMETRY": "true",
        "TRIVY_NO_PROGRESS": "true",
    }
