"""The Clair notifier webhook over real HTTP: the Clair double delivers, gate pages, flags and deletes."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gate.clock import ManualClock
from gate.scanning.notifier import ClairNotifier, NotifierServer
from tests.support.clair_double import ClairDouble
from tests.support.gateserver import make_settings, running_gate

PSK = b"notifier-psk"
NOW = datetime(2099, 1, 2, 3, 4, 5, tzinfo=UTC)
A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
C = "sha256:" + "c" * 64


class Marks:
    """An in-memory RescanMarks."""

    def __init__(self) -> None:
        self.flags: dict[str, tuple[str, datetime]] = {}

    def mark_needs_rescan(self, digest: str, reason: str, now: datetime) -> None:
        self.flags[digest] = (reason, now)


@pytest.fixture
def clair() -> Iterator[ClairDouble]:
    with ClairDouble(psk=PSK) as double:
        yield double


@pytest.fixture
def marks() -> Marks:
    return Marks()


@pytest.fixture
def webhook(clair: ClairDouble, marks: Marks) -> Iterator[str]:
    notifier = ClairNotifier(clair.url, clair.psk_b64, "gate", marks, ManualClock(NOW), page_size=2)
    server = NotifierServer(notifier, "127.0.0.1:0")
    server.start()
    try:
        yield f"http://{server.address}/"
    finally:
        server.stop()


def test_webhook_pages_the_notification_flags_digests_and_deletes_it(
    clair: ClairDouble, marks: Marks, webhook: str
) -> None:
    nid = clair.add_notification(
        [
            (A, "added", "CVE-2099-0001", "Critical"),
            (B, "added", "CVE-2099-0001", "Critical"),
            (C, "removed", "CVE-2099-0002", "Low"),
        ]
    )
    assert clair.deliver(webhook, nid) == 200
    assert set(marks.flags) == {A, B, C}
    assert marks.flags[A] == ("Clair notification 1: CVE-2099-0001 (Critical) added", NOW)
    assert clair.deleted_notifications == [nid]
    pages = clair.logged("GET", "/notifier/")
    queries = [dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(r.path).query)) for r in pages]
    assert queries == [{"page_size": "2"}, {"page_size": "2", "next": "2"}]
    # Every request to Clair carried a PSK token Clair accepted.
    assert all(r.claims and r.claims["iss"] == "gate" for r in clair.logged(path_prefix="/notifier/"))


def test_bad_json_is_400_and_nothing_is_fetched(clair: ClairDouble, marks: Marks, webhook: str) -> None:
    assert clair.deliver(webhook, "x", body=b"{not json") == 400
    assert clair.deliver(webhook, "x", body=json.dumps({"callback": clair.callback("x")}).encode()) == 400
    assert clair.logged(path_prefix="/notifier/") == [] and marks.flags == {}


def test_a_callback_outside_the_configured_clair_is_refused(clair: ClairDouble, webhook: str) -> None:
    nid = clair.add_notification([(A, "added", "CVE-1", "High")])
    body = json.dumps(
        {"notification_id": nid, "callback": f"http://127.0.0.1:9/notifier/api/v1/notification/{nid}"}
    )
    assert clair.deliver(webhook, nid, body=body.encode()) == 400
    assert nid in clair.notifications


def test_clair_failing_is_not_200_so_clair_retries(clair: ClairDouble, marks: Marks, webhook: str) -> None:
    nid = clair.add_notification([(A, "added", "CVE-1", "High")])
    clair.fail_with["notification"] = 503
    assert clair.deliver(webhook, nid) == 502
    assert clair.deleted_notifications == []
    clair.fail_with.clear()
    assert clair.deliver(webhook, nid) == 200
    assert set(marks.flags) == {A} and clair.deleted_notifications == [nid]


def test_wrong_psk_is_not_200(clair: ClairDouble, marks: Marks) -> None:
    notifier = ClairNotifier(clair.url, "d3Jvbmc=", "gate", marks, ManualClock(NOW))
    server = NotifierServer(notifier, "127.0.0.1:0")
    server.start()
    try:
        nid = clair.add_notification([(A, "added", "CVE-1", "High")])
        assert clair.deliver(f"http://{server.address}/", nid) == 502
        assert marks.flags == {}
    finally:
        server.stop()


def test_other_paths_and_methods(clair: ClairDouble, webhook: str) -> None:
    nid = clair.add_notification([(A, "added", "CVE-1", "High")])
    assert clair.deliver(webhook + "elsewhere", nid) == 404


def test_the_server_app_runs_the_webhook_and_flags_land_in_the_store(
    clair: ClairDouble, tmp_path: Path
) -> None:
    settings = make_settings(
        tmp_path,
        "trivy",
        tmp_path / "cache",
        clair_url=clair.url,
        clair_psk=clair.psk_b64,
        notifier_listen="127.0.0.1:0",
    )
    with running_gate(settings) as gate:
        assert gate.notifier is not None
        nid = clair.add_notification([(A, "added", "CVE-2099-0001", "Critical"), (B, "changed", "CVE-2", "")])
        assert clair.deliver(f"http://{gate.notifier.address}/", nid) == 200
        flags = {f.digest: f.reason for f in gate.repo.needs_rescan()}
        assert flags == {
            A: "Clair notification 1: CVE-2099-0001 (Critical) added",
            B: "Clair notification 2: CVE-2 changed",
        }
        assert clair.deleted_notifications == [nid]


def test_no_webhook_unless_configured(tmp_path: Path) -> None:
    with running_gate(make_settings(tmp_path, "trivy", tmp_path / "cache")) as gate:
        assert gate.notifier is None
