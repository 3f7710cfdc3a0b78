"""FindAffectedImages at the store and service level, on SQLite and PostgreSQL (`db_url`).

Then both RPCs, FindAffectedImages (a row per message) and FindAffectedImagesPages (pages of rows), through
a real gRPC server with the auth interceptor: the same rows in the same order, pages bounded by the page
size, errors (before and mid-stream) mapped to statuses, and the same callers admitted.

The store answers in two steps (matching current findings, then their images by key, a batch at a
time) and the service attributes each row from the base catalog read once per call. These tests pin
what that must not change — which rows, in which order, deduplicated how, with which tags, stage and
attribution — against an answer computed independently here and against the per-image lineage path;
with a tiny stream batch, so an image's rows straddle batches and the stage filter meets images
already looked up. A counting repository proves the catalog is read once per call, not per image.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent import futures
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest

from gate import service as service_module
from gate.clock import ManualClock
from gate.domain import (
    BaseImage,
    Finding,
    FindingClass,
    FixState,
    ImageInfo,
    ImageRef,
    PlatformImage,
    RefKind,
    Severity,
    Stage,
)
from gate.errors import Unavailable
from gate.policy import default_policy
from gate.provenance import ANNOTATION_BASE_DIGEST, ANNOTATION_BASE_NAME, chain_id
from gate.scanning.jobs import JobRunner
from gate.server.auth import Authenticator, AuthInterceptor
from gate.server.convert import affected_page_of, affected_row_bytes, affected_to_pb
from gate.server.servicer import register
from gate.service import APP_TIER, UNATTRIBUTED, Attribution, GateService
from gate.store import repository as repository_module
from gate.store.repository import SqlRepository
from gate.tokens import Principal, Role
from gate.v1 import gate_pb2 as pb
from gate.v1 import gate_pb2_grpc
from scanners.interface import ScanResult

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
STAGES = (Stage.D, Stage.T, Stage.S1, Stage.S2, Stage.P)
IMAGES = 12


def layer(label: str) -> str:
    return "sha256:" + label.encode().hex().ljust(64, "0")[:64]


OS_LAYERS = (layer("os1"), layer("os2"))
RT_LAYERS = (*OS_LAYERS, layer("rt3"))
OS_BASE = BaseImage(
    name="osbase 1",
    tier="prod-osbase",
    digest="sha256:" + "0a" * 32,
    diff_ids=OS_LAYERS,
    chain_id=chain_id(OS_LAYERS),
    reference="registry.test/osbase:1",
    registered_at=T0,
)
RT_BASE = BaseImage(
    name="rt 3.12",
    tier="runtime",
    digest="sha256:" + "0b" * 32,
    diff_ids=RT_LAYERS,
    chain_id=chain_id(RT_LAYERS),
    registered_at=T0,
)
UNUSED_BASE = BaseImage(
    name="other 9",
    tier="dev-osbase",
    digest="sha256:" + "0c" * 32,
    diff_ids=(layer("zz"),),
    chain_id=chain_id((layer("zz"),)),
    registered_at=T0,
)


def digest(i: int) -> str:
    return "sha256:" + f"{i:02d}" * 32


def own(i: int) -> str:
    return layer(f"own{i}")


def diff_ids(i: int) -> tuple[str, ...]:
    # A third on the runtime base, a third on the OS base alone, a third on no catalogued base (one
    # of those with a repeated layer: attribution counts it where it first entered).
    if i % 3 == 0:
        return (*RT_LAYERS, own(i))
    if i % 3 == 1:
        return (*OS_LAYERS, own(i))
    return (own(i), layer("shared"), own(i))


def annotations(i: int) -> tuple[tuple[str, str], ...]:
    # A false claim (built on the OS base only, claims the runtime base) and a true one: neither may
    # change the lineage, which comes from the layers.
    if i == 4:
        return ((ANNOTATION_BASE_DIGEST, RT_BASE.digest),)
    if i == 6:
        return ((ANNOTATION_BASE_NAME, RT_BASE.name),)
    return ()


def finding(
    vid: str, package: str, severity: Severity, diff_id: str, scanner: str = "trivy", **kw: Any
) -> Finding:
    return Finding(
        vulnerability_id=vid,
        package=package,
        installed_version=kw.get("version", "1.0"),
        fixed_version="",
        fix_state=FixState.AFFECTED,
        severity=severity,
        scanner_severity=severity.name,
        finding_class=FindingClass.OS,
        scanner=scanner,
        aliases=kw.get("aliases", ()),
        layer_diff_id=diff_id,
    )


def findings_of(i: int, scanner: str) -> list[Finding]:
    """Each image's findings: CVE-1 in a base layer, an own layer, an unknown layer, twice or by alias."""
    ids = diff_ids(i)
    sev = (Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL)[i % 4]
    if scanner == "clair":
        # The second scanner agrees on image 7's openssl with another severity: one row, the worse.
        return [finding("CVE-1", "openssl", Severity.CRITICAL, ids[0], "clair")] if i == 7 else []
    out = [
        finding("CVE-1", "openssl", sev, ids[0]),
        finding("CVE-2", "noise", Severity.HIGH, ids[0]),
    ]
    if i % 2 == 0:
        out.append(finding("CVE-1", "zlib", Severity.HIGH, ids[-1], version="1.2"))
    if i % 5 == 0:
        out.append(finding("GHSA-aaaa-bbbb-cccc", "lodash", Severity.MEDIUM, "", aliases=("CVE-1",)))
    if i == 9:
        out.append(finding("CVE-1", "openssl", Severity.LOW, ids[1], version="0.9"))  # another version
    return out


def ref(i: int) -> ImageRef:
    repository = f"{STAGES[i % 5].value}/app-{i}"
    return ImageRef(
        kind=RefKind.REGISTRY,
        original=f"registry.test/{repository}:v{i}",
        registry="registry.test",
        repository=repository,
        tag=f"v{i}",
    )


@pytest.fixture
def repo(db_url: str) -> Iterator[SqlRepository]:
    store = SqlRepository.open(db_url)
    try:
        for base in (OS_BASE, RT_BASE, UNUSED_BASE):
            store.add_base(base)
        result = ScanResult(scanner="trivy", scanner_version="test", findings=())
        for i in range(IMAGES):
            info = ImageInfo(
                digest=digest(i),
                config_digest="sha256:" + f"{i + 50:02d}" * 32,
                diff_ids=diff_ids(i),
                annotations=annotations(i),
                os="linux",
            )
            store.upsert_image(info, ref(i), T0)
            if i % 4 == 0:
                # A second tag in the same repository, and one from another repository (not listed).
                store.upsert_image(info, replace(ref(i), tag=f"a{i}"), T0)
                store.upsert_image(info, replace(ref(i), repository="mirror/x", tag="m"), T0)
                store.upsert_image(info, ref(i), T0)  # back to its own repository as the current one
            for scanner in ("trivy", "clair"):
                store.record_import(digest(i), scanner, digest(i), result, findings_of(i, scanner), T0)
        # Image 3 rescanned without CVE-1: only current findings count.
        store.record_import(
            digest(3),
            "trivy",
            digest(3),
            result,
            [finding("CVE-2", "noise", Severity.LOW, "")],
            T0 + timedelta(1),
        )
        yield store
    finally:
        store.close()


class CountingRepo:
    """The real repository, counting calls to the catalog and lineage reads."""

    COUNTED = ("list_bases", "bases_for_chain_ids", "get_base", "affected_images")

    def __init__(self, inner: SqlRepository) -> None:
        self.inner = inner
        self.calls: dict[str, int] = dict.fromkeys(self.COUNTED, 0)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name not in self.COUNTED:
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return attr(*args, **kwargs)

        return counted


def service(repo: Any) -> GateService:
    clock = ManualClock(T0)
    runner = JobRunner(repo, {}, clock, 1, {})
    return GateService(repo, None, {}, runner, default_policy(), clock, ("trivy",))  # type: ignore[arg-type]


def expected_rows(stage: Stage | None) -> list[tuple[str, str, str, Severity, str]]:
    """Independently: every current CVE-1 finding, most severe first, one per (image, package, version)."""
    rows = []
    for i in range(IMAGES):
        if stage is not None and STAGES[i % 5] is not stage:
            continue
        current = findings_of(i, "clair") + (
            [finding("CVE-2", "noise", Severity.LOW, "")] if i == 3 else findings_of(i, "trivy")
        )
        for f in current:
            if f.vulnerability_id == "CVE-1" or "CVE-1" in f.aliases:
                rows.append(
                    (f.severity, digest(i), f.vulnerability_id, f.package, f.installed_version, f.scanner, f)
                )
    rows.sort(key=lambda r: (-r[0], r[1], r[2], r[3], r[4], r[5]))
    seen: set[tuple[str, str, str]] = set()
    out = []
    for severity, image, _vid, package, version, scanner, _f in rows:
        if (image, package, version) in seen:
            continue
        seen.add((image, package, version))
        out.append((image, package, version, severity, scanner))
    return out


@pytest.fixture(params=[3, 500], ids=["batch3", "batch500"])
def batch(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    # 3: every image's rows are read in several batches, and batches revisit images already looked up.
    monkeypatch.setattr(repository_module, "_STREAM_BATCH", request.param)
    return int(request.param)


@pytest.mark.parametrize("stage", [None, Stage.P, Stage.D], ids=["all", "p", "d"])
def test_rows_order_dedup_tags_and_stage(repo: SqlRepository, batch: int, stage: Stage | None) -> None:
    rows = list(repo.affected_images("cve-1", stage))
    want = expected_rows(stage)
    assert want, "the fixture must have affected images in every stage tested"
    assert [(r.image.digest, r.finding.package, r.finding.installed_version) for r in rows] == [
        w[:3] for w in want
    ]
    assert [(r.finding.severity, r.finding.scanner) for r in rows] == [w[3:] for w in want]
    for r in rows:
        i = int(r.image.digest[7:9])
        assert r.image.stage is STAGES[i % 5] and r.image.repository == ref(i).repository
        # Only the tags of its current repository, sorted; never the mirror's.
        assert r.image.tags == ((f"a{i}", f"v{i}") if i % 4 == 0 else (f"v{i}",))
        assert r.image.diff_ids == diff_ids(i) and r.image.annotations == annotations(i)
    assert digest(3) not in {r.image.digest for r in rows}  # rescanned without it
    if stage is not Stage.P:  # found through its alias (images 0, 5 and 10, all in stage d)
        assert any(r.finding.vulnerability_id == "GHSA-aaaa-bbbb-cccc" for r in rows)


def test_unknown_id_and_empty_answers(repo: SqlRepository, batch: int) -> None:
    assert list(repo.affected_images("CVE-404", None)) == []
    assert list(repo.affected_images("CVE-2", Stage.S1)) != []  # noise exists, so the filter is what empties
    assert list(repo.affected_images("CVE-1", Stage.S1)) == [
        r for r in repo.affected_images("CVE-1", None) if r.image.stage is Stage.S1
    ]


def test_catalog_is_read_once_per_call_and_attribution_matches_the_per_image_lineage(
    repo: SqlRepository,
) -> None:
    counting = CountingRepo(repo)
    svc = service(counting)
    found = list(svc.affected_images("CVE-1", ""))
    assert len({f.row.image.digest for f in found}) == IMAGES - 1  # many images, one catalog read
    assert counting.calls == {"list_bases": 1, "bases_for_chain_ids": 0, "get_base": 0, "affected_images": 1}

    # The same answer as attributing each image alone through its catalog lookups (_lineage).
    plain = service(repo)
    for f in found:
        alone = plain.layer_attribution(f.row.image).get(f.row.finding.layer_diff_id, UNATTRIBUTED)
        assert f.attribution == alone
    by = {
        (f.row.image.digest, f.row.finding.package, f.row.finding.installed_version): f.attribution
        for f in found
    }
    runtime, osbase = (
        Attribution("runtime rt 3.12", "runtime"),
        Attribution("prod-osbase osbase 1", "prod-osbase"),
    )
    assert by[(digest(0), "openssl", "1.0")] == osbase  # first layer of a runtime image: the OS base's
    assert by[(digest(0), "zlib", "1.2")] == Attribution("", APP_TIER)  # its own top layer
    assert by[(digest(9), "openssl", "0.9")] == osbase
    assert by[(digest(4), "openssl", "1.0")] == osbase  # claims the runtime base; layers say otherwise
    assert by[(digest(6), "zlib", "1.2")] == Attribution("", APP_TIER)
    assert by[(digest(2), "openssl", "1.0")] == Attribution("", APP_TIER)  # no base; repeated own layer
    assert by[(digest(0), "lodash", "1.0")] == UNATTRIBUTED  # no layer recorded
    assert runtime not in by.values()  # no CVE-1 finding sits in the runtime layer itself

    counting.calls = dict.fromkeys(CountingRepo.COUNTED, 0)
    assert list(svc.affected_images("CVE-404", "")) == []
    assert counting.calls["list_bases"] == 0  # nothing to attribute, nothing read
    assert list(svc.affected_images("CVE-1", "p")) == [f for f in found if f.row.image.stage is Stage.P]
    assert counting.calls["list_bases"] == 1


def test_attribution_sees_a_base_in_its_own_layer_and_a_base_added_between_calls(repo: SqlRepository) -> None:
    counting = CountingRepo(repo)
    svc = service(counting)
    rt_layer = finding("CVE-9", "jre", Severity.HIGH, RT_LAYERS[2])
    result = ScanResult(scanner="trivy", scanner_version="test", findings=())
    repo.record_import(digest(0), "trivy", digest(0), result, [rt_layer], T0 + timedelta(2))
    [only] = list(svc.affected_images("CVE-9", ""))
    assert only.attribution == Attribution("runtime rt 3.12", "runtime")
    # A base registered for image 2's own layers is seen by the next call (the catalog is per call).
    mine = BaseImage(
        name="mine 1",
        tier="runtime",
        digest="sha256:" + "0d" * 32,
        diff_ids=(own(2),),
        chain_id=chain_id((own(2),)),
        registered_at=T0,
    )
    repo.add_base(mine)
    got = {
        (f.row.image.digest, f.row.finding.package): f.attribution for f in svc.affected_images("CVE-1", "")
    }
    assert got[(digest(2), "openssl")] == Attribution("runtime mine 1", "runtime")
    assert got[(digest(2), "zlib")] == Attribution("runtime mine 1", "runtime")  # repeated layer: first entry
    assert counting.calls["list_bases"] == 2


# ---- platform images of multi-platform indexes ---------------------------------------------------------


def index_ref(repository: str, tag: str) -> ImageRef:
    return ImageRef(
        kind=RefKind.REGISTRY,
        original=f"registry.test/{repository}:{tag}",
        registry="registry.test",
        repository=repository,
        tag=tag,
    )


def platform_child(name: str, arch: str) -> ImageInfo:
    return ImageInfo(
        digest="sha256:" + name.encode().hex().ljust(64, "e")[:64],
        config_digest="sha256:" + ("cfg" + name).encode().hex().ljust(64, "f")[:64],
        diff_ids=(*OS_LAYERS, layer(f"own-{name}")),
        os="linux",
        architecture=arch,
    )


AMD = platform_child("amd", "amd64")
ARM = platform_child("arm", "arm64")
ARM2 = platform_child("arm2", "arm64")
INDEX_1 = ImageInfo(
    digest="sha256:" + "1d" * 32,
    config_digest="",
    diff_ids=(),
    media_type="application/vnd.oci.image.index.v1+json",
    platforms=(PlatformImage("linux/arm64", ARM), PlatformImage("linux/amd64", AMD)),
)
# A second index (another repository, a rebuilt arm64 image) that lists the same amd64 image.
INDEX_2 = ImageInfo(
    digest="sha256:" + "2d" * 32,
    config_digest="",
    diff_ids=(),
    media_type="application/vnd.oci.image.index.v1+json",
    platforms=(PlatformImage("linux/amd64", AMD), PlatformImage("linux/arm64", ARM2)),
)


@pytest.fixture
def indexed(repo: SqlRepository) -> SqlRepository:
    """The shared fixture plus two indexes whose platform images carry CVE-1 (and one carries CVE-2)."""
    repo.upsert_image(INDEX_2, index_ref("s2/multi", "r2"), T0)
    repo.upsert_image(INDEX_1, index_ref("p/multi", "v1"), T0)
    repo.upsert_image(INDEX_1, index_ref("p/multi", "1.0"), T0)
    result = ScanResult(scanner="trivy", scanner_version="test", findings=())
    for child, sev in ((AMD, Severity.CRITICAL), (ARM, Severity.LOW), (ARM2, Severity.MEDIUM)):
        vuln = [finding("CVE-1", "libc", sev, child.diff_ids[0])]
        repo.record_import(child.digest, "trivy", child.digest, result, vuln, T0)
    return repo


class _RecordingCursor:
    """A DBAPI cursor that records the statements it executes."""

    def __init__(self, inner: Any, statements: list[str]) -> None:
        self._inner = inner
        self._statements = statements

    def execute(self, statement: str, *args: Any) -> Any:
        self._statements.append(statement)
        return self._inner.execute(statement, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _RecordingConnection(_RecordingCursor):
    """A DBAPI connection whose statements, its own and its cursors', are recorded."""

    def cursor(self) -> _RecordingCursor:
        return _RecordingCursor(self._inner.cursor(), self._statements)


def count_statements(repo: SqlRepository, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every SQL statement affected_images runs: it reads on the store's direct connections
    (gate/store/direct.py), which SQLAlchemy's engine events do not see."""
    statements: list[str] = []
    lend = repo._direct_reads.lend

    @contextlib.contextmanager
    def recording(first: Any) -> Iterator[tuple[Any, Any]]:
        with lend(lambda conn: first(_RecordingConnection(conn, statements))) as (conn, result):
            yield _RecordingConnection(conn, statements), result

    monkeypatch.setattr(repo._direct_reads, "lend", recording)
    return statements


def test_platform_image_rows_name_their_indexes(
    indexed: SqlRepository, batch: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    statements = count_statements(indexed, monkeypatch)
    rows = list(indexed.affected_images("CVE-1", None))
    by_digest = {r.image.digest: r for r in rows}
    amd, arm, arm2 = by_digest[AMD.digest], by_digest[ARM.digest], by_digest[ARM2.digest]
    # A platform image has no tags of its own; its indexes carry the names, ordered by index digest.
    assert (amd.image.tags, arm.image.tags, arm2.image.tags) == ((), (), ())
    assert [(link.platform, link.index.digest) for link in amd.indexes] == [
        ("linux/amd64", INDEX_1.digest),
        ("linux/amd64", INDEX_2.digest),
    ]
    first, second = amd.indexes
    assert (first.index.registry, first.index.repository, first.index.tags) == (
        "registry.test",
        "p/multi",
        ("1.0", "v1"),
    )
    assert (second.index.repository, second.index.tags, second.index.stage) == ("s2/multi", ("r2",), Stage.S2)
    assert [(link.platform, link.index.digest, link.index.tags) for link in arm.indexes] == [
        ("linux/arm64", INDEX_1.digest, ("1.0", "v1"))
    ]
    assert [(link.platform, link.index.repository) for link in arm2.indexes] == [("linux/arm64", "s2/multi")]
    # Every other image is no index's platform image; the indexes themselves have no findings.
    others = [r for r in rows if r.image.digest not in (AMD.digest, ARM.digest, ARM2.digest)]
    assert others and all(r.indexes == () for r in others)
    assert not {INDEX_1.digest, INDEX_2.digest} & set(by_digest)
    # Batched, never per row: one image_platforms query per batch of digests looked up (at most).
    link_queries = [s for s in statements if "image_platforms" in s]
    image_queries = [s for s in statements if "FROM images" in s and "image_platforms" not in s]
    assert len(link_queries) == len(image_queries) >= 1
    if batch == 500:
        assert len(link_queries) == 1  # 14 images in one first batch of 50 rows
    assert len(link_queries) < len({r.image.digest for r in rows})


def test_platform_image_rows_keep_their_indexes_under_a_stage_filter(
    indexed: SqlRepository, batch: int
) -> None:
    # The platform images are stored under the stage of the index last written with them.
    rows = list(indexed.affected_images("CVE-1", Stage.P))
    platform_rows = [r for r in rows if r.indexes]
    assert {r.image.digest for r in platform_rows} == {AMD.digest, ARM.digest}
    assert all(r.image.stage is Stage.P for r in rows)
    [arm] = [r for r in platform_rows if r.image.digest == ARM.digest]
    assert [link.index.repository for link in arm.indexes] == ["p/multi"]
    # An index in another stage is still named: it lists the image whatever stage it is in.
    [amd] = [r for r in platform_rows if r.image.digest == AMD.digest]
    assert [link.index.stage for link in amd.indexes] == [Stage.P, Stage.S2]


def test_service_and_reply_carry_the_index_of_a_platform_image(indexed: SqlRepository) -> None:
    found = list(service(indexed).affected_images("CVE-1", ""))
    [amd] = [f for f in found if f.row.image.digest == AMD.digest]
    # The platform image is attributed through its own layers (its OS base), as any image is.
    assert amd.attribution == Attribution("prod-osbase osbase 1", "prod-osbase")
    reply = affected_to_pb(amd)
    assert reply.digest == AMD.digest and list(reply.tags) == []
    assert [(m.digest, m.registry, m.repository, list(m.tags), m.platform) for m in reply.indexes] == [
        (INDEX_1.digest, "registry.test", "p/multi", ["1.0", "v1"], "linux/amd64"),
        (INDEX_2.digest, "registry.test", "s2/multi", ["r2"], "linux/amd64"),
    ]
    plain = next(f for f in found if f.row.image.digest == digest(0))
    assert list(affected_to_pb(plain).indexes) == []
    # A page of kept rows holds exactly the messages affected_to_pb builds, in order.
    page = affected_page_of([affected_row_bytes(f) for f in found])
    assert list(page.images) == [affected_to_pb(f) for f in found]


# ---- FindAffectedImagesPages over a real gRPC server (with the auth interceptor) ----------------------


class Tokens:
    """Bearer tokens of three principals: the security team, a CI pipeline, an admin."""

    def authenticate(self, token: str) -> Principal | None:
        return {
            "sec": Principal("token:sec", {Role.SECURITY}),
            "ci": Principal("token:ci", {Role.CI}),
            "root": Principal("token:root", {Role.ADMIN}),
        }.get(token)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


SECURITY = bearer("sec")


class FailingRepo:
    """The real repository whose affected_images fails after `rows` rows (the database going away)."""

    def __init__(self, inner: SqlRepository, rows: int) -> None:
        self.inner = inner
        self.rows = rows

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def affected_images(self, vulnerability_id: str, stage: Stage | None) -> Iterator[Any]:
        for n, row in enumerate(self.inner.affected_images(vulnerability_id, stage)):
            if n == self.rows:
                raise Unavailable("database connection lost")
            yield row

    def affected_since(
        self, vulnerability_id: str, stage: Stage | None, since: str | None, limit: int
    ) -> Iterator[Any]:
        # The first item is the read's AffectedChanges, not a row.
        for n, row in enumerate(self.inner.affected_since(vulnerability_id, stage, since, limit)):
            if n == self.rows + 1:
                raise Unavailable("database connection lost")
            yield row


def serve(repo: Any) -> Iterator[Any]:
    """A real gRPC server, as gate serve wires it (auth interceptor, GateServicer); yields a stub."""
    auth = AuthInterceptor(Authenticator(Tokens(), {}))  # type: ignore[arg-type]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), interceptors=[auth])
    register(server, service(repo))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield gate_pb2_grpc.GateStub(channel)  # type: ignore[no-untyped-call]
    finally:
        channel.close()
        server.stop(grace=None)


@pytest.fixture
def rpc(indexed: SqlRepository) -> Iterator[Any]:
    yield from serve(indexed)


def both(stub: Any, request: pb.FindAffectedImagesRequest) -> tuple[list[Any], list[Any]]:
    """The rows of FindAffectedImages and the pages of FindAffectedImagesPages for one request."""
    rows = list(stub.FindAffectedImages(request, metadata=SECURITY, timeout=30))
    pages = list(stub.FindAffectedImagesPages(request, metadata=SECURITY, timeout=30))
    return rows, pages


@pytest.mark.parametrize("stage", ["", "p"])
@pytest.mark.parametrize("page_size", [1, 4, 1000])
def test_pages_carry_the_rows_of_the_row_stream_bounded_by_page_size(
    rpc: Any, batch: int, stage: str, page_size: int
) -> None:
    request = pb.FindAffectedImagesRequest(vulnerability_id="cve-1", stage=stage, page_size=page_size)
    rows, pages = both(rpc, request)
    assert len(rows) > 4, "the fixture must fill several pages of 4"
    # Same rows (platform images with their indexes too), same order, nothing lost or repeated.
    assert [row for page in pages for row in page.images] == rows
    # Every page full but the last, which is not empty.
    sizes = [len(page.images) for page in pages]
    assert all(size == page_size for size in sizes[:-1]) and 0 < sizes[-1] <= page_size
    assert {r.digest for r in rows} >= ({AMD.digest, ARM.digest} if stage == "p" else {AMD.digest})


def test_default_pages_are_small_first_then_large(
    rpc: Any, monkeypatch: pytest.MonkeyPatch, batch: int
) -> None:
    request = pb.FindAffectedImagesRequest(vulnerability_id="CVE-1")
    rows, pages = both(rpc, request)
    assert len(pages) == 1 and list(pages[0].images) == rows  # fewer rows than one first page
    # The shape, with the defaults shrunk to fit the fixture: one small page, then large ones.
    monkeypatch.setattr(service_module, "AFFECTED_FIRST_PAGE", 2)
    monkeypatch.setattr(service_module, "AFFECTED_PAGE", 5)
    rows, pages = both(rpc, request)
    sizes = [len(page.images) for page in pages]
    assert sizes[0] == 2 and all(size == 5 for size in sizes[1:-1]) and 0 < sizes[-1] <= 5
    assert sum(sizes) == len(rows) and [row for page in pages for row in page.images] == rows


def test_no_rows_is_a_stream_of_no_pages(rpc: Any) -> None:
    assert both(rpc, pb.FindAffectedImagesRequest(vulnerability_id="CVE-404")) == ([], [])
    # Found, but in stage d only (images 0, 5 and 10): the stage filter empties it.
    assert both(rpc, pb.FindAffectedImagesRequest(vulnerability_id="GHSA-aaaa-bbbb-cccc"))[0]
    assert both(rpc, pb.FindAffectedImagesRequest(vulnerability_id="GHSA-aaaa-bbbb-cccc", stage="p")) == (
        [],
        [],
    )


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"vulnerability_id": "  "}, "vulnerability_id"),
        ({"vulnerability_id": "CVE-1", "stage": "prod"}, "stage"),
        ({"vulnerability_id": "CVE-1", "page_size": -1}, "page_size"),
        ({"vulnerability_id": "CVE-1", "page_size": 1001}, "page_size"),
    ],
)
def test_bad_requests_are_invalid_argument_naming_the_field(
    rpc: Any, request_fields: dict[str, Any], field: str
) -> None:
    request = pb.FindAffectedImagesRequest(**request_fields)
    with pytest.raises(grpc.RpcError) as refused:
        list(rpc.FindAffectedImagesPages(request, metadata=SECURITY, timeout=30))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in refused.value.details()
    if field != "page_size":  # the row stream ignores page_size; everything else it refuses alike
        with pytest.raises(grpc.RpcError) as old:
            list(rpc.FindAffectedImages(request, metadata=SECURITY, timeout=30))
        assert (old.value.code(), old.value.details()) == (refused.value.code(), refused.value.details())


def test_an_error_mid_stream_ends_it_with_the_mapped_status(indexed: SqlRepository) -> None:
    for stub in serve(FailingRepo(indexed, rows=3)):
        request = pb.FindAffectedImagesRequest(vulnerability_id="CVE-1", page_size=2)
        got: list[Any] = []
        with pytest.raises(grpc.RpcError) as failed:
            for page in stub.FindAffectedImagesPages(request, metadata=SECURITY, timeout=30):
                got.append(page)
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "database connection lost" in failed.value.details()
        assert [len(page.images) for page in got] == [2]  # the page before the failure was sent


@pytest.mark.parametrize(
    ("metadata", "code"),
    [
        ((), grpc.StatusCode.UNAUTHENTICATED),
        (bearer("nope"), grpc.StatusCode.UNAUTHENTICATED),
        (bearer("ci"), grpc.StatusCode.PERMISSION_DENIED),
        (bearer("root"), grpc.StatusCode.OK),
        (SECURITY, grpc.StatusCode.OK),
    ],
)
def test_the_same_callers_may_call_both(rpc: Any, metadata: tuple[tuple[str, str], ...], code: Any) -> None:
    request = pb.FindAffectedImagesRequest(vulnerability_id="CVE-1")
    for method in (rpc.FindAffectedImages, rpc.FindAffectedImagesPages):
        try:
            assert list(method(request, metadata=metadata, timeout=30))
            got = grpc.StatusCode.OK
        except grpc.RpcError as e:
            got = e.code()
        assert got == code
