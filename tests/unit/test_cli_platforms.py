"""CLI rendering of multi-platform indexes: `gate report` platforms table, `gate scan` PLATFORM column."""

from __future__ import annotations

from gate.cli.commands_query import render_report
from gate.cli.commands_scan import _job_rows
from gate.v1 import gate_pb2 as pb

AMD = "sha256:" + "a" * 64
ARM = "sha256:" + "b" * 64


def index_report() -> pb.ImageReport:
    return pb.ImageReport(
        digest="sha256:" + "f" * 64,
        repository="s2/app",
        tags=["20200102_01"],
        platforms=[
            pb.PlatformSummary(
                platform="linux/amd64", digest=AMD, user="1000", scans=[pb.ScanSummary(state=pb.SUCCEEDED)]
            ),
            pb.PlatformSummary(
                platform="linux/arm64",
                digest=ARM,
                scans=[pb.ScanSummary(state=pb.SUCCEEDED)],
                counts=[
                    pb.SeverityCount(severity="HIGH", count=2),
                    pb.SeverityCount(severity="CRITICAL", count=1),
                ],
                finding_count=3,
            ),
        ],
    )


def test_report_of_an_index_lists_its_platforms() -> None:
    text = render_report(index_report())
    assert "Platforms (2):" in text
    assert "findings:      3" in text
    arm_line = next(line for line in text.splitlines() if line.startswith("linux/arm64"))
    assert ARM in arm_line and "(root)" in arm_line and "CRITICAL 1, HIGH 2" in arm_line
    # An index has no lineage, layers or user of its own: those lines belong to platform images.
    assert "Lineage" not in text and "layers:" not in text


def test_report_of_a_plain_image_is_unchanged() -> None:
    text = render_report(pb.ImageReport(digest=AMD, user="1000"))
    assert "Platforms" not in text and "Lineage: no catalogued base" in text


def test_scan_rows_get_a_platform_column_only_for_indexes() -> None:
    jobs = [pb.ScanJob(digest=AMD, scanner="trivy", platform="linux/amd64")]
    assert _job_rows(jobs)[0][:2] == ["linux/amd64", AMD]
    assert _job_rows([pb.ScanJob(digest=AMD, scanner="trivy")])[0][0] == AMD
