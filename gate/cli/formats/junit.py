"""JUnit XML for CI test reports: one testsuite per promotion decision, one testcase per violation.

CI systems (GitLab, Jenkins, GitHub via a reporter action) show JUnit natively, so a denied promotion
appears as failed tests naming the rule, CVE, package and layer. An allowed decision is a suite with one
passing testcase, so "the gate ran and passed" is visible too. Built with ElementTree, which escapes
markup; characters XML 1.0 cannot carry at all are replaced first (a scanner title may contain them).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence

from gate.v1 import gate_pb2

# XML 1.0 allows tab, newline, carriage return and everything from U+0020 except surrogates and
# U+FFFE/U+FFFF; ElementTree writes anything else verbatim and produces a document no parser accepts.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(text: str) -> str:
    """`text` with characters XML 1.0 cannot represent replaced by U+FFFD."""
    return _NOT_XML.sub("\ufffd", text)


def _case_name(v: gate_pb2.Violation) -> str:
    parts = [v.vulnerability_id, v.package, v.installed_version]
    name = " ".join(p for p in parts if p) or v.rule
    return f"{name} [{v.platform}]" if v.platform else name


def _failure_text(v: gate_pb2.Violation) -> str:
    lines = [f"rule: {v.rule}"]
    if v.vulnerability_id:
        lines.append(f"vulnerability: {v.vulnerability_id}")
    if v.severity:
        lines.append(f"severity: {v.severity}")
    if v.package:
        lines.append(f"package: {v.package} {v.installed_version or '?'} -> {v.fixed_version or 'no fix'}")
    if v.layer_diff_id:
        lines.append(f"layer: {v.layer_diff_id}")
    if v.introduced_by:
        lines.append(f"introduced by: {v.introduced_by}")
    if v.platform:
        lines.append(f"platform: {v.platform}")
    lines.append(f"message: {v.message}")
    return "\n".join(lines) + "\n"


def _suite(decision: gate_pb2.Decision, image: str) -> ET.Element:
    subject = decision.digest or image
    suite = ET.Element("testsuite")
    suite.set("name", xml_text(f"gate {decision.from_stage}->{decision.to_stage} {subject}"))
    props = ET.SubElement(suite, "properties")
    for name, value in (
        ("image", image),
        ("digest", decision.digest),
        ("transition", f"{decision.from_stage}->{decision.to_stage}"),
        ("allowed", "true" if decision.allowed else "false"),
        ("state", gate_pb2.VerdictState.Name(decision.state)),
        ("policy", decision.policy_digest),
        ("breakglass", decision.breakglass_reason if decision.breakglass else ""),
    ):
        if value:
            ET.SubElement(props, "property", name=name, value=xml_text(value))
    classname = xml_text(f"gate.{decision.from_stage}-{decision.to_stage}")
    failures = 0
    cases = 0
    # A breakglass or dry-run allow still lists its violations; they did not deny, so they are not
    # failures of this gate run — they show as skipped cases with the reason.
    denying = not decision.allowed
    for v in decision.violations:
        case = ET.SubElement(suite, "testcase", classname=f"{classname}.{xml_text(v.rule)}")
        case.set("name", xml_text(_case_name(v)))
        cases += 1
        if denying:
            failure = ET.SubElement(case, "failure", type=xml_text(v.rule), message=xml_text(v.message))
            failure.text = xml_text(_failure_text(v))
            failures += 1
        else:
            skipped = ET.SubElement(case, "skipped", message=xml_text(f"allowed despite: {v.message}"))
            skipped.text = xml_text(_failure_text(v))
    if denying and not decision.violations:
        # Denied without a violation to name (e.g. the image was never scanned): one failing case.
        case = ET.SubElement(suite, "testcase", classname=classname, name="verdict")
        failure = ET.SubElement(
            case,
            "failure",
            type=gate_pb2.VerdictState.Name(decision.state),
            message=xml_text(decision.summary),
        )
        failure.text = xml_text(decision.summary + "\n")
        cases += 1
        failures += 1
    if decision.allowed:
        ET.SubElement(suite, "testcase", classname=classname, name="promotion allowed")
        cases += 1
    if decision.warnings:
        out = ET.SubElement(suite, "system-out")
        out.text = xml_text("".join(f"warning: {w}\n" for w in decision.warnings))
    suite.set("tests", str(cases))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    suite.set("skipped", str(cases - failures - (1 if decision.allowed else 0)))
    return suite


def render_junit(decisions: Sequence[gate_pb2.Decision], image: str) -> str:
    """A JUnit XML document (UTF-8 text with declaration): one testsuite per decision."""
    root = ET.Element("testsuites", name="gate")
    suites = [_suite(d, image) for d in decisions]
    root.extend(suites)
    for total in ("tests", "failures", "errors", "skipped"):
        root.set(total, str(sum(int(s.get(total, "0")) for s in suites)))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
