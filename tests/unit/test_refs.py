"""parse_ref: every accepted form, and every rejected one with its field and reason."""

from __future__ import annotations

import pytest

from gate.domain import ImageRef, RefKind, Stage
from gate.errors import InvalidArgument
from gate.images.refs import parse_ref

D = "sha256:" + "ab" * 32


GOOD: list[tuple[str, ImageRef]] = [
    (
        "registry.example.com/p/payments:1.4.2",
        ImageRef(RefKind.REGISTRY, "", "registry.example.com", "p/payments", tag="1.4.2"),
    ),
    (
        f"127.0.0.1:5000/s2/payments@{D}",
        ImageRef(RefKind.REGISTRY, "", "127.0.0.1:5000", "s2/payments", digest=D),
    ),
    (
        f"localhost:5000/t/team/api:v1@{D}",
        ImageRef(RefKind.REGISTRY, "", "localhost:5000", "t/team/api", tag="v1", digest=D),
    ),
    ("localhost/payments:1", ImageRef(RefKind.REGISTRY, "", "localhost", "payments", tag="1")),
    ("[::1]:5000/d/app:_x", ImageRef(RefKind.REGISTRY, "", "[::1]:5000", "d/app", tag="_x")),
    (
        "reg.io/a.b/c__d/e-f/g--h:Tag_1.0-rc",
        ImageRef(RefKind.REGISTRY, "", "reg.io", "a.b/c__d/e-f/g--h", tag="Tag_1.0-rc"),
    ),
    ("reg.io/app:" + "t" * 128, ImageRef(RefKind.REGISTRY, "", "reg.io", "app", tag="t" * 128)),
    ("docker-archive:/tmp/x/app.tar", ImageRef(RefKind.DOCKER_ARCHIVE, "", path="/tmp/x/app.tar")),
    ("docker-archive:rel/app.tar", ImageRef(RefKind.DOCKER_ARCHIVE, "", path="rel/app.tar")),
    ("oci:/tmp/layout", ImageRef(RefKind.OCI_LAYOUT, "", path="/tmp/layout")),
    (D, ImageRef(RefKind.DIGEST, "", digest=D)),
    # Images on the local Docker engine: NAME as docker writes it, the registry host optional.
    ("docker:payments:1", ImageRef(RefKind.DOCKER, "", repository="payments", tag="1")),
    ("docker:team/api:v1", ImageRef(RefKind.DOCKER, "", repository="team/api", tag="v1")),
    (
        "docker:registry.example/s2/payments:20200102_01",
        ImageRef(RefKind.DOCKER, "", "registry.example", "s2/payments", tag="20200102_01"),
    ),
    (
        "docker:127.0.0.1:5000/p/app:1",
        ImageRef(RefKind.DOCKER, "", "127.0.0.1:5000", "p/app", tag="1"),
    ),
    ("docker:localhost/app:1", ImageRef(RefKind.DOCKER, "", "localhost", "app", tag="1")),
    (f"docker:payments@{D}", ImageRef(RefKind.DOCKER, "", repository="payments", digest=D)),
    (f"docker:payments:1@{D}", ImageRef(RefKind.DOCKER, "", repository="payments", tag="1", digest=D)),
    (f"docker:{D}", ImageRef(RefKind.DOCKER, "", digest=D)),  # an image id
    # "docker:PORT/…" is a registry host called docker (a compose service), not an engine image.
    ("docker:5000/app:1", ImageRef(RefKind.REGISTRY, "", "docker:5000", "app", tag="1")),
]


@pytest.mark.parametrize(("text", "expected"), GOOD, ids=[g[0][:60] for g in GOOD])
def test_good_refs(text: str, expected: ImageRef) -> None:
    ref = parse_ref(text)
    assert ref == ImageRef(
        kind=expected.kind,
        original=text,
        registry=expected.registry,
        repository=expected.repository,
        tag=expected.tag,
        digest=expected.digest,
        path=expected.path,
    )


BAD: list[tuple[str, str]] = [
    ("", "reference is required"),
    ("payments:1", "registry host is required"),
    ("library/nginx", "registry host is required"),
    ("library/nginx:1.25", "registry host is required"),
    (f"payments@{D}", "registry host is required"),
    ("nginx", "registry host is required"),
    ("reg.io/app", "never assumes 'latest'"),
    ("reg.io/app:", "empty tag"),
    ("reg.io/app:-bad", "tag '-bad'"),
    ("reg.io/app:.bad", "tag '.bad'"),
    ("reg.io/app:" + "t" * 129, "at most 128"),
    ("reg.io/app:a+b", "tag 'a+b'"),
    ("reg.io/App:1", "must be lowercase"),
    ("reg.io/p//app:1", "empty path component"),
    ("reg.io/p/app/:1", "empty path component"),
    ("reg.io/:1", "names no repository"),
    ("reg.io/p/-app:1", "component '-app'"),
    ("reg.io/p/app_:1", "component 'app_'"),
    ("reg.io/p/a___b:1", "component 'a___b'"),
    ("reg.io/app@sha256:abc", "64 lowercase hex"),
    ("reg.io/app@" + D.upper().replace("SHA256", "sha256"), "lowercase hex"),
    ("reg.io/app@sha512:" + "a" * 128, "only sha256"),
    ("reg.io/app@", "empty digest"),
    (f"reg.io/app@{D}@{D}", "more than one '@'"),
    ("reg.io:99999/app:1", "port '99999'"),
    ("reg.io:/app:1", "port ''"),
    ("reg.io:ab/app:1", "port 'ab'"),
    ("-reg.io/app:1", "not a valid host name"),
    ("[zz]:5000/app:1", "IPv6"),
    ("reg.io/a pp:1", "whitespace"),
    (" reg.io/app:1", "whitespace"),
    ("docker-archive:", "no path"),
    ("oci:", "no path"),
    ("docker://reg.io/app:1", "is a URL"),
    ("https://reg.io/app:1", "is a URL"),
    ("sha256:abc", "64 lowercase hex"),
    ("sha512:" + "a" * 128, "only sha256"),
    ("r.io/" + "a" * 260 + ":1", "longer than 255"),
    ("docker:", "names no image"),
    ("docker:payments", "never assumes 'latest'"),
    ("docker:reg.io/p/payments", "never assumes 'latest'"),
    ("docker:Payments:1", "must be lowercase"),
    ("docker::1", "names no repository"),
    ("docker:app:", "empty tag"),
    ("docker:app:-x", "tag '-x'"),
    ("docker:p//app:1", "empty path component"),
    ("docker:sha256:abc", "64 lowercase hex"),
    ("docker:266bbc192bd3", "never assumes 'latest'"),  # a short id is a name to docker: refused
    ("docker:app@sha512:" + "a" * 128, "only sha256"),
    (f"docker:app@{D}@{D}", "more than one '@'"),
    ("docker:reg.io:99999/app:1", "port '99999'"),
    ("docker:a pp:1", "whitespace"),
    ("docker://reg.io/app:1", "is a URL"),
]


@pytest.mark.parametrize(("text", "fragment"), BAD, ids=[b[0][:60] or "<empty>" for b in BAD])
def test_bad_refs(text: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_ref(text, field="source")
    assert info.value.field == "source"
    assert fragment in info.value.message
    if text:
        # The message says where: it quotes the offending input or the offending piece of it.
        assert repr(text) in info.value.message or any(
            repr(piece) in info.value.message for piece in _pieces(text)
        )


def _pieces(text: str) -> list[str]:
    parts = {text}
    for sep in "@:/":
        for chunk in text.split(sep):
            parts.add(chunk)
    parts.add(text.partition("@")[2])
    parts.add(text.partition("/")[0])
    return [p for p in parts if p]


def test_registry_error_mentions_an_example() -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_ref("payments:1")
    assert info.value.field == "image"
    assert "e.g. registry.example.com/" in info.value.message
    assert "docker:payments:1" in info.value.message  # and how to name it on the local engine


def test_engine_refs_keep_the_stage_of_their_repository() -> None:
    assert parse_ref("docker:reg.io/s2/payments:20200102_01").stage == Stage.S2
    assert parse_ref("docker:payments:1").stage is None


@pytest.mark.parametrize(
    ("text", "stage"),
    [
        ("reg.io/p/payments:1", Stage.P),
        ("reg.io/s2/payments:1", Stage.S2),
        ("reg.io/team/t/payments:1", Stage.T),
        ("reg.io/payments:1", None),
        ("reg.io/p:1", None),  # the image name itself is never a stage
    ],
)
def test_stage_comes_from_repository_path(text: str, stage: Stage | None) -> None:
    assert parse_ref(text).stage == stage


def test_transport_prefix_wins_over_host_named_oci() -> None:
    ref = parse_ref("oci:5000/app:1")
    assert ref.kind is RefKind.OCI_LAYOUT
    assert ref.path == "5000/app:1"


def test_parses_are_shared_and_errors_are_raised_every_time_with_their_field() -> None:
    text = "registry.example/p/payments:20200102_01"
    assert parse_ref(text) is parse_ref(text)  # memoized: an ImageRef is frozen
    for field in ("image", "base", "image"):
        with pytest.raises(InvalidArgument) as caught:
            parse_ref("bad ref", field)
        assert caught.value.field == field
