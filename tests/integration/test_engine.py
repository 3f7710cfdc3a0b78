"""EngineSource against a real, private dockerd: identity, saved archives, RepoDigests links, errors.

Images are built by the suite (tests/support/images.py), loaded into the engine with `docker load` or
pulled from the test registry, then resolved through `docker:` references exactly as the server does.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gate.errors import InvalidArgument, NotFound, Unavailable
from gate.images.archive import read_docker_archive
from gate.images.engine import EngineSource
from gate.images.refs import parse_ref
from gate.images.registry import RegistryClient
from gate.images.resolver import SourceResolver
from scanners.interface import TargetKind
from scanners.trivy import TrivyScanner
from tests.support import catalog
from tests.support.catalog import ExpectedFinding
from tests.support.dockerd import Dockerd, load_image
from tests.support.images import build_image, push_image
from tests.support.registry import Registry


@pytest.fixture
def source(dockerd: Dockerd, tmp_path: Path) -> Iterator[EngineSource]:
    engine = EngineSource(dockerd.host, timeout=60, work_dir=tmp_path / "engine")
    yield engine
    engine.close()


def archives(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


@pytest.mark.dockerd
def test_loaded_image_identity_and_verified_archive(
    dockerd: Dockerd, source: EngineSource, tmp_path: Path
) -> None:
    image = catalog.vulnerable_alpine()
    image_id = load_image(dockerd, image, "gate-it/payments:1", tmp_path)
    assert image_id == image.config_digest

    info, target = source.resolve(parse_ref("docker:gate-it/payments:1"))

    # Never pulled or pushed: no registry digest is known, so the config digest identifies it.
    assert info.digest == info.config_digest == image.config_digest
    assert info.diff_ids == image.diff_ids
    assert info.user == "10001"
    assert dict(info.labels)["org.opencontainers.image.title"] == "demo-app"
    assert (info.os, info.architecture) == ("linux", "amd64")
    assert info.created == "2020-01-02T00:00:00Z"
    # The engine is shared by the session, so other tests may have tagged the same image too; the tag
    # this reference named comes first, because it is the name gate files the image under.
    assert info.repo_tags[0] == "gate-it/payments:1"

    assert target.kind is TargetKind.DOCKER_ARCHIVE
    path = Path(target.location)
    assert path == tmp_path / "engine" / (image.config_digest.removeprefix("sha256:") + ".tar")
    saved = read_docker_archive(path)
    assert saved.config_digest == image.config_digest
    assert saved.diff_ids == image.diff_ids
    assert archives(path.parent) == [path.name]  # no partial file left behind


@pytest.mark.dockerd
def test_archive_is_reused_by_name_and_by_id(dockerd: Dockerd, source: EngineSource, tmp_path: Path) -> None:
    image = build_image([{"reuse/marker": b"1"}], base=catalog.clean_alpine())
    load_image(dockerd, image, "gate-it/reuse:1", tmp_path)
    _, first = source.resolve(parse_ref("docker:gate-it/reuse:1"))
    path = Path(first.location)
    old = time.time() - 3600
    os.utime(path, (old, old))
    inode = path.stat().st_ino

    info, second = source.resolve(parse_ref(f"docker:{image.config_digest}"))

    assert second.location == first.location
    assert path.stat().st_ino == inode  # the same file, not a fresh save
    assert path.stat().st_mtime > old + 1800  # reuse marks it as still wanted
    assert info.config_digest == image.config_digest
    assert "gate-it/reuse:1" in info.repo_tags


@pytest.mark.dockerd
@pytest.mark.trivy
def test_saved_archive_scans_with_real_trivy(
    dockerd: Dockerd, source: EngineSource, tmp_path: Path, trivy_bin: str, trivy_cache: Path
) -> None:
    image = catalog.vulnerable_alpine()
    load_image(dockerd, image, "gate-it/scan:1", tmp_path)
    info, target = source.resolve(parse_ref("docker:gate-it/scan:1"))

    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    result = TrivyScanner(trivy_bin, str(trivy_cache), skip_db_update=True, base_env=env).scan(target, 120)

    found = {
        ExpectedFinding(
            f.vulnerability_id, f.package, f.installed_version, f.fixed_version, f.scanner_severity
        )
        for f in result.findings
    }
    assert found == catalog.VULNERABLE_ALPINE_EXPECTED
    assert result.config_digest == info.config_digest
    assert result.diff_ids == info.diff_ids


@pytest.mark.dockerd
@pytest.mark.registry
def test_pulled_image_is_linked_to_its_registry_digest(
    dockerd: Dockerd, registry: Registry, source: EngineSource, tmp_path: Path
) -> None:
    image = catalog.debian_app()
    manifest_digest = push_image(registry.host, "eng/s2/ledger", "20200102_01", image)
    reference = registry.ref("eng/s2/ledger", "20200102_01")
    dockerd.client.images.pull(f"{registry.host}/eng/s2/ledger", tag="20200102_01")

    info, target = source.resolve(parse_ref(f"docker:{reference}"))

    assert info.digest == manifest_digest  # RepoDigests knew it: one identity with the registry
    assert info.config_digest == image.config_digest
    assert info.diff_ids == image.diff_ids
    assert info.repo_tags[0] == reference
    assert read_docker_archive(Path(target.location)).config_digest == image.config_digest

    # The registry client names the same image by the same digest, so both sources share one record.
    resolver = SourceResolver(RegistryClient((registry.host,)), source)
    from_registry, _ = resolver.resolve(parse_ref(reference))
    assert from_registry.digest == info.digest
    assert from_registry.diff_ids == info.diff_ids

    # By repo digest and by image id the link holds too.
    by_digest, _ = resolver.resolve(parse_ref(f"docker:{registry.host}/eng/s2/ledger@{manifest_digest}"))
    assert by_digest.digest == manifest_digest
    by_id, _ = resolver.resolve(parse_ref(f"docker:{image.config_digest}"))
    assert by_id.digest == manifest_digest

    # A local name the image was never pushed under has no registry digest: the config digest it is.
    dockerd.client.images.get(reference).tag("gate-it/ledger-local", "1")
    local, _ = resolver.resolve(parse_ref("docker:gate-it/ledger-local:1"))
    assert local.digest == image.config_digest
    assert local.repo_tags[0] == "gate-it/ledger-local:1"


@pytest.mark.dockerd
def test_unknown_image_is_not_found(source: EngineSource) -> None:
    with pytest.raises(NotFound) as info:
        source.resolve(parse_ref("docker:gate-it/never-loaded:1"))
    assert info.value.field == "image"
    assert "'gate-it/never-loaded:1'" in info.value.message
    assert source.host in info.value.message

    missing_id = "sha256:" + "0" * 64
    with pytest.raises(NotFound) as by_id:
        source.resolve(parse_ref(f"docker:{missing_id}"))
    assert missing_id in by_id.value.message


@pytest.mark.dockerd
def test_close_removes_its_own_temporary_directory(dockerd: Dockerd, tmp_path: Path) -> None:
    load_image(dockerd, catalog.clean_alpine(), "gate-it/tmpdir:1", tmp_path)
    engine = EngineSource(dockerd.host)
    _, target = engine.resolve(parse_ref("docker:gate-it/tmpdir:1"))
    directory = Path(target.location).parent
    assert directory.is_dir()
    engine.close()
    assert not directory.exists()


def test_engine_not_listening_is_unavailable_naming_the_host(tmp_path: Path) -> None:
    host = f"unix://{tmp_path / 'no-engine.sock'}"
    engine = EngineSource(host, timeout=5, work_dir=tmp_path / "engine")
    with engine, pytest.raises(Unavailable) as info:
        engine.resolve(parse_ref("docker:gate-it/payments:1"))
    assert host in info.value.message
    assert "DOCKER_HOST" in info.value.message
    assert "No such file or directory" in info.value.message
    assert archives(tmp_path / "engine") == []


def test_tcp_engine_refusing_connections_is_unavailable(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    host = f"tcp://127.0.0.1:{port}"
    engine = EngineSource(host, timeout=5, work_dir=tmp_path / "engine")
    with engine, pytest.raises(Unavailable) as info:
        engine.resolve(parse_ref("docker:gate-it/payments:1"))
    assert host in info.value.message
    assert "Connection refused" in info.value.message


def test_resolver_without_engine_refuses_docker_refs() -> None:
    resolver = SourceResolver(RegistryClient(()))
    with pytest.raises(InvalidArgument) as info:
        resolver.resolve(parse_ref("docker:payments:1"))
    assert info.value.field == "image"
    assert "docker: sources are not enabled" in info.value.message


def test_engine_source_refuses_other_reference_kinds(tmp_path: Path) -> None:
    engine = EngineSource("unix:///nonexistent.sock", work_dir=tmp_path)
    with engine, pytest.raises(InvalidArgument, match="not a docker: reference"):
        engine.resolve(parse_ref("reg.io/app:1"))


def test_prune_deletes_only_old_archives_and_partials(tmp_path: Path) -> None:
    work = tmp_path / "engine"
    work.mkdir()
    now = time.time()
    old, fresh = now - 2 * 86400, now - 60
    files = {
        "a" * 64 + ".tar": old,
        "b" * 64 + ".tar": fresh,
        ".cccccccccccc.x1.partial": old,
        ".dddddddddddd.x2.partial": fresh,
        "notes.txt": old,  # not ours: never touched
    }
    for name, mtime in files.items():
        (work / name).write_bytes(b"x")
        os.utime(work / name, (mtime, mtime))
    engine = EngineSource("unix:///nonexistent.sock", work_dir=work, retention=86400)

    removed = engine.prune(now=now)

    assert sorted(p.name for p in removed) == sorted([".cccccccccccc.x1.partial", "a" * 64 + ".tar"])
    assert archives(work) == sorted([".dddddddddddd.x2.partial", "b" * 64 + ".tar", "notes.txt"])
    assert engine.remove("sha256:" + "b" * 64) is True
    assert engine.remove("sha256:" + "b" * 64) is False
