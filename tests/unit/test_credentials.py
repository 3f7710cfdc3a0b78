"""CredentialStore parsing: GATE_REGISTRY_AUTH (JSON or file) and docker config.json, and their errors.

Every error must name the variable (the InvalidArgument field) and must never repeat a secret.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from gate.config import Settings
from gate.errors import InvalidArgument
from gate.images.credentials import CredentialStore, RegistryCredential, normalize_host
from scanners.interface import Credentials

SECRET = "s3cr3t-Pa55"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def docker_config(directory: Path, doc: object) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(doc))
    return str(directory)


# --- accepted forms


def test_inline_json_username_password() -> None:
    store = CredentialStore.load(json.dumps({"reg.example:5000": {"username": "ci", "password": SECRET}}))
    assert store.for_host("reg.example:5000") == Credentials(username="ci", password=SECRET)
    assert store.for_host("other.example") is None
    credential = store.lookup("reg.example:5000")
    assert credential is not None
    assert credential.describe() == 'user "ci" (from GATE_REGISTRY_AUTH)'


def test_file_path_and_docker_config_shape(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    path.write_text(json.dumps({"auths": {"reg.example": {"auth": b64(f"ci:{SECRET}")}}}))
    store = CredentialStore.load(str(path))
    assert store.for_host("reg.example") == Credentials(username="ci", password=SECRET)


def test_auth_without_padding_and_password_with_colons() -> None:
    encoded = b64(f"ci:{SECRET}:x").rstrip("=")
    store = CredentialStore.load(json.dumps({"reg.example": {"auth": encoded}}))
    assert store.for_host("reg.example") == Credentials(username="ci", password=f"{SECRET}:x")


def test_tokens() -> None:
    store = CredentialStore.load(
        json.dumps({"a.example": {"identitytoken": SECRET}, "b.example": {"registrytoken": SECRET}})
    )
    assert store.for_host("a.example") is None  # an identity token must be exchanged first
    identity = store.lookup("a.example")
    assert identity is not None
    assert identity.identity_token == SECRET
    assert identity.kind == "identity token"
    assert store.for_host("b.example") == Credentials(token=SECRET)


def test_host_keys_are_normalized() -> None:
    store = CredentialStore.load(
        json.dumps(
            {
                "https://Reg.Example:5000/v2/": {"username": "a", "password": "x"},
                "https://index.docker.io/v1/": {"username": "hub", "password": "y"},
            }
        )
    )
    assert store.hosts == ("docker.io", "reg.example:5000")
    assert store.for_host("reg.example:5000") == Credentials(username="a", password="x")
    assert store.for_host("registry-1.docker.io") == Credentials(username="hub", password="y")
    assert normalize_host("http://localhost:5000") == "localhost:5000"


def test_docker_config_and_precedence(tmp_path: Path) -> None:
    config = docker_config(
        tmp_path / "docker",
        {
            "auths": {
                "both.example": {"auth": b64("from-docker:x")},
                "docker-only.example": {"username": "d", "password": "y"},
                "helped.example": {},
            },
            "credsStore": "desktop",
            "credHelpers": {"ecr.example": "ecr-login"},
        },
    )
    store = CredentialStore.load(json.dumps({"both.example": {"username": "env", "password": "z"}}), config)
    assert store.for_host("both.example") == Credentials(username="env", password="z")
    assert store.for_host("docker-only.example") == Credentials(username="d", password="y")
    assert store.for_host("helped.example") is None  # an empty entry defers to a helper gate does not run
    assert store.helper_for("helped.example") == "desktop"
    assert store.helper_for("ecr.example") == "ecr-login"
    assert store.helper_for("both.example") == "desktop"
    source = store.lookup("docker-only.example")
    assert source is not None
    assert source.source == f"DOCKER_CONFIG ({tmp_path / 'docker' / 'config.json'})"


def test_missing_docker_config_means_no_credentials(tmp_path: Path) -> None:
    assert CredentialStore.load("", str(tmp_path / "nowhere")).hosts == ()
    assert CredentialStore.load("   ", "").hosts == ()


def test_secrets_stay_out_of_reprs() -> None:
    store = CredentialStore.load(json.dumps({"reg.example": {"username": "ci", "password": SECRET}}))
    credential = store.lookup("reg.example")
    assert SECRET not in repr(store)
    assert "reg.example" in repr(store)
    assert SECRET not in repr(credential)
    assert SECRET not in repr(RegistryCredential("h", "s", identity_token=SECRET, registry_token=SECRET))
    assert SECRET not in repr(Settings(registry_auth=json.dumps({"h": {"password": SECRET}})))


def test_settings_read_the_variables(tmp_path: Path) -> None:
    settings = Settings.from_env({"GATE_REGISTRY_AUTH": "/etc/gate/auth.json", "DOCKER_CONFIG": "/d"})
    assert (settings.registry_auth, settings.docker_config) == ("/etc/gate/auth.json", "/d")
    assert Settings.from_env({"HOME": str(tmp_path)}).docker_config == str(tmp_path / ".docker")
    assert Settings.from_env({}).docker_config == ""
    defaults = Settings.from_env({})
    assert CredentialStore.from_settings(defaults).hosts == ()


# --- refused input: InvalidArgument naming the variable, never echoing a secret


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ('{"reg.example": {"password": "' + SECRET + '"', "is not valid JSON"),
        ("[1, 2]", "does not start with '{'"),
        (json.dumps({"reg.example": "ci:" + SECRET}), "must be an object"),
        (json.dumps({"": {"username": "ci", "password": SECRET}}), "the key must be a registry host"),
        (json.dumps({"reg.example": {"password": SECRET}}), "has no username"),
        (json.dumps({"reg.example": {"username": "ci"}}), "has no password"),
        (json.dumps({"reg.example": {"username": "ci", "password": 7}}), "'password' must be a string"),
        (json.dumps({"reg.example": {"auth": "%%%" + SECRET}}), "'auth' is not base64"),
        (json.dumps({"reg.example": {"auth": b64(SECRET)}}), "does not decode to 'username:password'"),
        (
            json.dumps({"reg.example": {"auth": base64.b64encode(b"\xff\xfe:" + SECRET.encode()).decode()}}),
            "'auth' is not base64",
        ),
        ("ci:" + SECRET, "neither JSON"),
    ],
)
def test_bad_gate_registry_auth(value: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        CredentialStore.load(value)
    assert info.value.field == "GATE_REGISTRY_AUTH"
    assert fragment in info.value.message
    assert SECRET not in str(info.value)


def test_bad_json_in_a_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    path.write_text('{"reg.example": {"password": "' + SECRET)
    with pytest.raises(InvalidArgument) as info:
        CredentialStore.load(str(path))
    assert info.value.field == "GATE_REGISTRY_AUTH"
    assert str(path) in info.value.message
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ({"auths": ["reg.example"]}, "'auths' must be an object"),
        ({"auths": {"reg.example": {"auth": "not base64!"}}}, "'auth' is not base64"),
        ([], "must be a JSON object"),
    ],
)
def test_bad_docker_config(tmp_path: Path, doc: object, fragment: str) -> None:
    directory = docker_config(tmp_path, doc)
    with pytest.raises(InvalidArgument) as info:
        CredentialStore.load("", directory)
    assert info.value.field == "DOCKER_CONFIG"
    assert fragment in info.value.message
    assert str(tmp_path / "config.json") in info.value.message


def test_docker_config_that_is_not_json(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("auths: {}")
    with pytest.raises(InvalidArgument) as info:
        CredentialStore.load("", str(tmp_path))
    assert info.value.field == "DOCKER_CONFIG"
    assert "is not valid JSON" in info.value.message
