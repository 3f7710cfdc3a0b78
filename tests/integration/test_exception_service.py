"""ExceptionService over the real SQLite store: creation checks, expired/unused reports, OpenVEX."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gate.clock import ManualClock
from gate.domain import (
    AuditEvent,
    BaseImage,
    Finding,
    FindingClass,
    FixState,
    ImageInfo,
    ImageRef,
    RefKind,
    Severity,
)
from gate.errors import InvalidArgument
from gate.policy import default_policy
from gate.provenance import chain_id
from gate.store.exceptions import SqlExceptionStore
from gate.store.repository import SqlRepository
from gate.vuln_exceptions import ExceptionService, parse_expiry
from scanners.interface import ScanResult

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
APP = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64
CORPUS_VEX = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "sbom" / "openvex-in.json"


class Recorder:
    """An AuditSink that keeps the events."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def record(self, event: AuditEvent) -> None:
        self.events.append(event)


def _finding(vid: str, aliases: tuple[str, ...] = ()) -> Finding:
    return Finding(vid, "openssl", "3.3.0-r0", "3.3.2-r0", FixState.FIXED, Severity.HIGH, "HIGH",
                   FindingClass.OS, "trivy", aliases=aliases)  # fmt: skip


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[ExceptionService, Recorder, ManualClock]]:
    repo = SqlRepository.open(f"sqlite:///{tmp_path / 'gate.db'}")
    ref = ImageRef(RefKind.REGISTRY, "reg.example/s2/app:1", "reg.example", "s2/app", "1")
    for digest, findings in ((APP, [_finding("CVE-2024-1", ("GHSA-aaaa-bbbb-cccc",))]), (OTHER, [])):
        repo.upsert_image(ImageInfo(digest, "sha256:" + "c" * 64, ("sha256:" + "d" * 64,)), ref, NOW)
        repo.record_import(digest, "trivy", digest, ScanResult("trivy", "0.50", ()), findings, NOW)
    audit = Recorder()
    clock = ManualClock(NOW)
    store = SqlExceptionStore(repo._engine)
    try:
        yield ExceptionService(store, repo, default_policy(), clock, audit), audit, clock
    finally:
        repo.close()


def add(service: ExceptionService, vid: str, scope: str, expires: str = "2025-06-10") -> str:
    exc = service.add(
        vid, scope, expires, owner="team", ticket="SEC-1", reason="r", approver="bob", actor="alice@ci"
    )
    return exc.id


def test_parse_expiry() -> None:
    assert parse_expiry("2025-06-10") == datetime(2025, 6, 11, tzinfo=UTC)  # through the whole day
    assert parse_expiry("2025-06-10T08:00:00Z") == datetime(2025, 6, 10, 8, tzinfo=UTC)
    for bad in ("", "10/06/2025", "2025-06-10T08:00:00"):
        with pytest.raises(InvalidArgument) as e:
            parse_expiry(bad)
        assert e.value.field == "expires"


@pytest.mark.parametrize(
    ("expires", "approver", "field", "text"),
    [
        ("2025-05-31", "bob", "expires", "in the past"),
        ("2025-09-30", "bob", "expires", "max_exception_days"),  # > 90 days
        ("2025-06-10", "alice", "approver", "cannot also approve"),
        ("2025-06-10", "", "approver", "required"),
    ],
)
def test_creation_refusals(
    world: tuple[ExceptionService, Recorder, ManualClock], expires: str, approver: str, field: str, text: str
) -> None:
    service, audit, _ = world
    with pytest.raises(InvalidArgument, match=text) as e:
        service.add("CVE-2024-1", "repo:s2/app", expires, owner="o", ticket="t", reason="r",
                    approver=approver, actor="alice@ci")  # fmt: skip
    assert e.value.field == field
    assert audit.events == []


def test_list_expired_and_unused(world: tuple[ExceptionService, Recorder, ManualClock]) -> None:
    service, audit, clock = world
    used = add(service, "GHSA-aaaa-bbbb-cccc", "repo:reg.example/s2/app")  # alias of the app's CVE
    unused = add(service, "CVE-2024-9", "repo:s2/app")
    short = add(service, "CVE-2024-1", f"digest:{APP}", expires="2025-06-02")
    assert [e.kind for e in audit.events] == ["exception.add"] * 3 and audit.events[0].actor == "alice@ci"

    listed = {s.exception.id: s for s in service.list()}
    assert listed[used].matching_digests == (APP,)
    assert listed[unused].unused
    assert [s.exception.id for s in service.list(unused=True)] == [unused]
    assert service.list(expired=True) == []

    clock.advance(timedelta(days=3))
    assert [s.exception.id for s in service.list(expired=True)] == [short]
    assert {s.exception.id for s in service.list(expired=True, unused=True)} == {short, unused}

    service.revoke(used, "carol")
    assert audit.events[-1].kind == "exception.revoke"
    assert used not in {s.exception.id for s in service.list()}
    assert {s.state for s in service.list(include_revoked=True) if s.exception.id == used} == {"revoked"}


def test_vex_round_trip(world: tuple[ExceptionService, Recorder, ManualClock]) -> None:
    service, audit, _ = world
    add(service, "CVE-2024-1", "repo:s2/app")
    add(service, "CVE-2024-9", "transition:s2->p")  # covers no stored image: left out
    data, skipped = service.export_vex("sec-team")
    doc = json.loads(data)
    assert doc["@context"] == "https://openvex.dev/ns/v0.2.0" and doc["author"] == "sec-team"
    (statement,) = doc["statements"]
    assert statement["vulnerability"]["@id"] == "CVE-2024-1"
    assert statement["status"] == "not_affected"
    assert statement["justification"] == "vulnerable_code_not_in_execute_path"
    assert statement["impact_statement"] == "r (ticket SEC-1)"
    assert statement["products"][0]["@id"].startswith("pkg:oci/app@sha256%3A" + "a" * 64)
    assert len(skipped) == 1

    result = service.import_vex(data, "2025-06-20", owner="", ticket="", approver="bob", actor="alice@ci")
    (imported,) = result.added
    assert (imported.vulnerability_id, str(imported.scope)) == ("CVE-2024-1", f"digest:{APP}")
    assert imported.owner == "vex-import" and imported.reason == "r (ticket SEC-1)"
    assert audit.events[-1].kind == "exception.import"


def test_import_reports_what_it_cannot_use(world: tuple[ExceptionService, Recorder, ManualClock]) -> None:
    service, _, _ = world
    doc = {
        "@context": "https://openvex.dev/ns/v0.2.0",
        "statements": [
            {"vulnerability": {"@id": "CVE-2024-2"}, "products": [{"@id": APP}], "status": "affected"},
            {"vulnerability": {"@id": "CVE-2024-3"}, "products": [{"@id": "pkg:golang/x"}],
             "status": "not_affected"},
            {"vulnerability": {"@id": "CVE-2024-4"}, "status": "not_affected",
             "products": [{"@id": "x", "hashes": {"sha-256": "b" * 64}}]},
        ],
    }  # fmt: skip
    result = service.import_vex(json.dumps(doc).encode(), "2025-06-20", owner="o", ticket="t",
                                approver="bob", actor="alice@ci")  # fmt: skip
    assert [(e.vulnerability_id, e.scope.value) for e in result.added] == [("CVE-2024-4", OTHER)]
    assert any("status affected" in line for line in result.ignored)
    assert any("pkg:golang/x names no image digest" in line for line in result.ignored)
    with pytest.raises(InvalidArgument, match="in the past"):
        service.import_vex(json.dumps(doc).encode(), "2025-01-01", owner="o", ticket="t", approver="bob",
                           actor="alice@ci")  # fmt: skip
    with pytest.raises(InvalidArgument, match="not an OpenVEX document"):
        service.import_vex(b"{}", "2025-06-20", owner="o", ticket="t", approver="bob", actor="alice@ci")


@pytest.mark.skipif(not CORPUS_VEX.exists(), reason="shared corpus not available")
def test_import_of_the_corpus_document_names_why_nothing_was_added(
    world: tuple[ExceptionService, Recorder, ManualClock],
) -> None:
    service, _, _ = world
    result = service.import_vex(CORPUS_VEX.read_bytes(), "2025-06-20", owner="o", ticket="t",
                                approver="bob", actor="alice@ci")  # fmt: skip
    # Trivy's example is about a Go module, not an image: reported, not guessed at.
    assert result.added == ()
    assert any("names no image digest" in line for line in result.ignored)


def test_a_base_scope_matches_images_on_that_base_reading_the_catalog_once(
    world: tuple[ExceptionService, Recorder, ManualClock],
) -> None:
    service, _, _ = world
    repo = service._repo  # the world's store: both images are built on the layer "d…"
    layers = ("sha256:" + "d" * 64,)
    other_layers = ("sha256:" + "f" * 64,)
    for name, d, chain in (("osbase 1", "e", layers), ("other 1", "1", other_layers)):
        base = BaseImage(name, "prod-osbase", "sha256:" + d * 64, chain, chain_id(chain), registered_at=NOW)
        repo.add_base(base)
    on_base = add(service, "CVE-2024-1", "base:osbase 1")
    elsewhere = add(service, "CVE-2024-1", "base:other 1")
    reads = {"list_bases": 0, "bases_for_chain_ids": 0}
    for name in reads:
        original = getattr(repo, name)

        def counted(*args: object, _name: str = name, _original: object = original) -> object:
            reads[_name] += 1
            return _original(*args)  # type: ignore[operator]

        setattr(repo, name, counted)
    listed = {s.exception.id: s for s in service.list()}
    assert listed[on_base].matching_digests == (APP,)  # the only image with the CVE, on that base
    assert listed[elsewhere].unused
    assert reads == {"list_bases": 2, "bases_for_chain_ids": 0}  # once per exception, never per image
