"""SARIF 2.1.0 for code-scanning dashboards: promotion violations, findings and affected images.

One run per document, tool.driver "gate" with one rule per rule id (policy rule for decisions, the
vulnerability for findings). Each result names where the problem is: a physical location on the image
reference (dashboards such as GitHub code scanning require one) and logical locations for the image
digest, the package and the layer, the places a container problem actually lives.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gate import __version__
from gate.cli.formats.csv import index_refs
from gate.v1 import gate_pb2

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
WARNING_RULE = "gate-warning"

# CVSS-like scores dashboards sort on (GitHub reads `security-severity` from a rule's properties).
_SECURITY_SEVERITY = {"CRITICAL": "9.5", "HIGH": "8.0", "MEDIUM": "5.5", "LOW": "3.0", "NEGLIGIBLE": "1.0"}

# What each built-in policy rule guards; a rule gate does not know yet gets a generic help text.
_RULE_HELP = {
    "fixable-severity": "A vulnerability at or above the transition's severity threshold has a fixed "
    "version: upgrade the package (or rebuild on a patched base) before promoting.",
    "unfixable-severity": "A vulnerability without a fix is above what the transition tolerates: "
    "replace the package, or record an exception with an owner and an expiry.",
    "secret": "A secret (token, key) was found in the image's layers: remove it and rotate it.",
    "scan-state": "The verdict could not be evaluated from fresh findings (not scanned, failed, stale): "
    "scan the image again.",
    "base-status": "The image is built on a deprecated or revoked base: rebuild on its successor.",
    "require-base-tier": "The transition requires the image to be built on a base of a given tier.",
    "forbid-base-tier": "The image is built on a base whose tier is not allowed in the target stage.",
    "tag": "The image's tag breaks the transition's tag rules (e.g. latest, or a mutable tag).",
    "stage-path": "The image's repository path does not match the stage it is promoted from or to.",
    "root-user": "The image runs as root: set a non-root USER.",
    "require-labels": "The image lacks labels the transition requires (e.g. maintainer).",
    WARNING_RULE: "Something gate noticed that does not block the promotion.",
}


@dataclass(frozen=True)
class SarifRule:
    """A reportingDescriptor: one per rule id."""

    id: str
    short: str
    help: str
    level: str = "error"
    severity: str = ""  # CRITICAL…; becomes `security-severity` when known
    help_uri: str = ""


@dataclass(frozen=True)
class SarifResult:
    """One result; `image` is the reference shown as its physical location."""

    rule_id: str
    level: str
    message: str
    image: str
    digest: str = ""
    package: str = ""
    installed_version: str = ""
    layer: str = ""
    properties: Mapping[str, Any] = field(default_factory=dict)


def _artifact_uri(image: str, digest: str) -> str:
    # A URI reference without a scheme: the reference as typed, else the digest alone.
    return image or digest or "image"


def _location(r: SarifResult) -> dict[str, Any]:
    logical: list[dict[str, str]] = []
    if r.digest:
        logical.append({"name": r.digest, "fullyQualifiedName": r.digest, "kind": "resource"})
    if r.package:
        name = f"{r.package}@{r.installed_version}" if r.installed_version else r.package
        logical.append({"name": name, "fullyQualifiedName": f"{r.digest}/{name}", "kind": "package"})
    if r.layer:
        logical.append(
            {"name": r.layer, "fullyQualifiedName": f"{r.digest}/layer/{r.layer}", "kind": "module"}
        )
    location: dict[str, Any] = {
        "physicalLocation": {"artifactLocation": {"uri": _artifact_uri(r.image, r.digest)}},
    }
    if logical:
        location["logicalLocations"] = logical
    return location


def _rule(rule: SarifRule) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": rule.id,
        "name": rule.id,
        "shortDescription": {"text": rule.short or rule.id},
        "fullDescription": {"text": rule.help or rule.short or rule.id},
        "help": {"text": rule.help or rule.short or rule.id},
        "defaultConfiguration": {"level": rule.level},
        "properties": {"tags": ["security", "container"]},
    }
    if rule.help_uri:
        out["helpUri"] = rule.help_uri
    if rule.severity in _SECURITY_SEVERITY:
        out["properties"]["security-severity"] = _SECURITY_SEVERITY[rule.severity]
    return out


def sarif_log(rules: Iterable[SarifRule], results: Sequence[SarifResult]) -> dict[str, Any]:
    """A SARIF 2.1.0 log with one run; rules are deduplicated by id (the first one wins)."""
    by_id: dict[str, SarifRule] = {}
    for rule in rules:
        by_id.setdefault(rule.id, rule)
    index = {rule_id: i for i, rule_id in enumerate(by_id)}
    return {
        "$schema": SARIF_SCHEMA,
        "version": SARIF_VERSION,
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "gate",
                        "version": __version__,
                        "semanticVersion": __version__,
                        "rules": [_rule(r) for r in by_id.values()],
                    }
                },
                "results": [
                    {
                        "ruleId": r.rule_id,
                        **({"ruleIndex": index[r.rule_id]} if r.rule_id in index else {}),
                        "level": r.level,
                        "message": {"text": r.message or r.rule_id},
                        "locations": [_location(r)],
                        "properties": dict(r.properties),
                    }
                    for r in results
                ],
            }
        ],
    }


def _vuln_properties(
    vulnerability_id: str, severity: str, installed: str, fixed: str, **extra: str
) -> dict[str, str]:
    props = {
        "cve": vulnerability_id,
        "severity": severity,
        "installedVersion": installed,
        "fixedVersion": fixed or "no fix",
        **extra,
    }
    return {k: v for k, v in props.items() if v}


def decisions_sarif(decisions: Sequence[gate_pb2.Decision], image: str) -> dict[str, Any]:
    """One result per violation (level error when it denied, else warning) and per warning."""
    rules: list[SarifRule] = []
    results: list[SarifResult] = []
    for d in decisions:
        level = "error" if not d.allowed else "warning"
        transition = f"{d.from_stage}->{d.to_stage}"
        for v in d.violations:
            rules.append(
                SarifRule(v.rule, f"gate policy rule {v.rule}", _RULE_HELP.get(v.rule, _generic(v.rule)))
            )
            extra = {
                "rule": v.rule,
                "transition": transition,
                "introducedBy": v.introduced_by,
                "platform": v.platform,
            }
            results.append(
                SarifResult(
                    rule_id=v.rule,
                    level=level,
                    message=v.message,
                    image=image,
                    digest=d.digest,
                    package=v.package,
                    installed_version=v.installed_version,
                    layer=v.layer_diff_id,
                    properties=_vuln_properties(
                        v.vulnerability_id, v.severity, v.installed_version, v.fixed_version, **extra
                    )
                    if v.vulnerability_id
                    else {k: val for k, val in extra.items() if val},
                )
            )
        for w in d.warnings:
            rules.append(SarifRule(WARNING_RULE, "gate warning", _RULE_HELP[WARNING_RULE], level="warning"))
            results.append(
                SarifResult(
                    WARNING_RULE, "warning", w, image, d.digest, properties={"transition": transition}
                )
            )
    return sarif_log(rules, results)


def _generic(rule: str) -> str:
    return f"gate policy rule {rule!r} denied the promotion; see docs/policy.md for its settings."


def finding_level(severity: str) -> str:
    """SARIF level of a finding: error for CRITICAL/HIGH, warning for MEDIUM, note below."""
    if severity in ("CRITICAL", "HIGH"):
        return "error"
    return "warning" if severity == "MEDIUM" else "note"


def findings_sarif(items: Sequence[tuple[str, gate_pb2.Finding]], image: str) -> dict[str, Any]:
    """One result per finding of (digest, finding); one rule per vulnerability id."""
    rules = [
        SarifRule(
            f.vulnerability_id,
            f.title or f.vulnerability_id,
            f"{f.title or f.vulnerability_id}. "
            + (f"Fixed in {f.fixed_version}." if f.fixed_version else "No fixed version yet."),
            level=finding_level(f.severity),
            severity=f.severity,
            help_uri=f.primary_url,
        )
        for _, f in items
    ]
    results = [
        SarifResult(
            rule_id=f.vulnerability_id,
            level=finding_level(f.severity),
            message=f"{f.vulnerability_id} in {f.package} {f.installed_version}".rstrip()
            + (f" (fixed in {f.fixed_version})" if f.fixed_version else " (no fix)"),
            image=image or digest,
            digest=digest,
            package=f.package,
            installed_version=f.installed_version,
            layer=f.layer_diff_id,
            properties=_vuln_properties(
                f.vulnerability_id,
                f.severity,
                f.installed_version,
                f.fixed_version,
                scanner=f.scanner,
                introducedBy=f.introduced_by,
                tier=f.tier,
            ),
        )
        for digest, f in items
    ]
    return sarif_log(rules, results)


def affected_sarif(images: Sequence[gate_pb2.AffectedImage]) -> dict[str, Any]:
    """One result per affected (image, package) row."""
    rules = [
        SarifRule(
            i.vulnerability_id,
            i.vulnerability_id,
            f"{i.vulnerability_id}: "
            + (f"fixed in {i.fixed_version}." if i.fixed_version else "no fixed version yet."),
            level=finding_level(i.severity),
            severity=i.severity,
        )
        for i in images
    ]
    results = []
    for i in images:
        ref = "/".join(p for p in (i.registry, i.repository) if p)
        # A platform image has no tags of its own: name the index (and platform) a reader knows it by.
        where = "; ".join(f"{m.platform} of {', '.join(index_refs(m))}" for m in i.indexes)
        results.append(
            SarifResult(
                rule_id=i.vulnerability_id,
                level=finding_level(i.severity),
                message=f"{i.vulnerability_id} in {i.package} {i.installed_version} of {ref or i.digest}"
                + (f", platform image {where}" if where else "")
                + (f" (stage {i.stage})" if i.stage else ""),
                image=f"{ref}@{i.digest}" if ref else i.digest,
                digest=i.digest,
                package=i.package,
                installed_version=i.installed_version,
                properties=_vuln_properties(
                    i.vulnerability_id,
                    i.severity,
                    i.installed_version,
                    i.fixed_version,
                    stage=i.stage,
                    introducedBy=i.introduced_by,
                    tier=i.tier,
                    indexDigest=" ".join(m.digest for m in i.indexes),
                    platform=" ".join(m.platform for m in i.indexes),
                ),
            )
        )
    return sarif_log(rules, results)
