"""Parse and validate the `image` argument into an ImageRef; pure, no I/O.

Accepted forms (see RefKind):

- ``HOST[:PORT]/REPO:TAG``, ``HOST[:PORT]/REPO@sha256:<64hex>``, ``HOST[:PORT]/REPO:TAG@sha256:<64hex>``
- ``docker-archive:PATH`` (a `docker save` tarball) and ``oci:PATH`` (an OCI image layout directory)
- a bare ``sha256:<64hex>`` digest, which identifies an image already known to gate
- ``docker:NAME:TAG``, ``docker:NAME@sha256:<64hex>`` or ``docker:sha256:<64hex>`` (an image id): an image
  on the local Docker engine (DOCKER_HOST), NAME written as docker names it, so the registry host is
  optional there (``docker:payments:1``, ``docker:registry.example/s2/payments:20200102_01``)

Deliberate departures from `docker pull`: a registry host is always required (gate never guesses
Docker Hub, because a promotion gate must know exactly which registry it is judging) and a tag or digest
is always required (gate never assumes ``latest``, which is a moving target). The transport prefixes
``docker-archive:`` and ``oci:`` are matched before anything else, as skopeo does, so a registry whose
host name is literally ``oci`` must be written with a dot or port (``oci.local/...``). ``docker:`` is
matched after the URL check (so ``docker://…`` is still reported as a URL), and ``docker:PORT/…`` is read
as a registry host called ``docker`` with a port (a compose service, say), never as an engine image.
"""

from __future__ import annotations

import functools
import re

from gate.domain import ImageRef, RefKind
from gate.errors import InvalidArgument

__all__ = ["parse_ref"]

_EXAMPLE = "registry.example.com/p/payments:1.4.2"

# Grammar from the distribution reference spec; path components are lowercase by definition.
_COMPONENT_RE = re.compile(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_ANY_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9A-Fa-f]{32,}$")
_LABEL = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)"
_HOSTNAME_RE = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
_IPV6_RE = re.compile(r"^\[[0-9A-Fa-f:.]+\]$")
# The distribution spec caps the full name (host + path) at 255 characters.
_MAX_NAME = 255

_TRANSPORTS = {"docker-archive:": RefKind.DOCKER_ARCHIVE, "oci:": RefKind.OCI_LAYOUT}
_ENGINE_PREFIX = "docker:"
_ENGINE_EXAMPLE = "docker:payments:1"
_REGISTRY_HOST_PORT_RE = re.compile(r"^docker:\d+(?:/|$)")


def parse_ref(text: str, field: str = "image") -> ImageRef:
    """Parse an image reference; raise InvalidArgument(field=`field`) saying what is wrong and where."""
    return _parse_ref(text, field)


# Memoized: every CheckPromotion and every container of every admitted pod parses its reference, and
# the same few thousand references come back again and again. An ImageRef is frozen, so one parse can
# be shared; a reference that fails raises, and errors are not kept.
@functools.lru_cache(maxsize=8192)
def _parse_ref(text: str, field: str) -> ImageRef:
    if not text:
        raise InvalidArgument(f"an image reference is required (e.g. {_EXAMPLE})", field)
    # split() sees exactly the characters str.isspace() does, in C: references are parsed for every
    # container of every admitted pod.
    if len(text.split()) != 1 or text != text.strip():
        raise InvalidArgument(f"image reference {text!r} contains whitespace", field)

    for prefix, kind in _TRANSPORTS.items():
        if text.startswith(prefix):
            path = text[len(prefix) :]
            if not path:
                raise InvalidArgument(
                    f"{text!r} names no path after {prefix!r} (e.g. {prefix}./build/app.tar)", field
                )
            return ImageRef(kind=kind, original=text, path=path)

    if "://" in text:
        raise InvalidArgument(
            f"{text!r} is a URL, not an image reference: drop the scheme and write HOST/REPO:TAG "
            f"(e.g. {_EXAMPLE})",
            field,
        )

    if text.startswith(_ENGINE_PREFIX) and not _REGISTRY_HOST_PORT_RE.match(text):
        return _parse_engine_ref(text, field)

    if _looks_like_bare_digest(text):
        return ImageRef(kind=RefKind.DIGEST, original=text, digest=_check_digest(text, text, field))

    return _parse_registry_ref(text, field)


def _parse_engine_ref(text: str, field: str) -> ImageRef:
    name = text[len(_ENGINE_PREFIX) :]
    if not name:
        raise InvalidArgument(
            f"{text!r} names no image after 'docker:' (e.g. {_ENGINE_EXAMPLE} or docker:sha256:<image id>)",
            field,
        )
    if _looks_like_bare_digest(name):
        # An image id is the config digest; the engine also accepts short ids, but a short id can
        # match a different image tomorrow, so only the full id is accepted.
        return ImageRef(kind=RefKind.DOCKER, original=text, digest=_check_digest(name, text, field))
    host, repository, tag, digest = _split_name(name, text, field, host_required=False)
    if not tag and not digest:
        raise InvalidArgument(
            f"{text!r} has neither a tag nor a digest: gate never assumes 'latest'; add :TAG or "
            f"@sha256:<digest> (e.g. {_ENGINE_EXAMPLE})",
            field,
        )
    return ImageRef(
        kind=RefKind.DOCKER, original=text, registry=host, repository=repository, tag=tag, digest=digest
    )


def _looks_like_bare_digest(text: str) -> bool:
    # "sha512:<long hex>" without a slash is a digest in the wrong algorithm, not "repo:tag" missing its
    # host, so it is reported as a digest problem rather than "registry host required".
    if "/" in text or "@" in text:
        return False
    return text.startswith("sha256:") or bool(_ANY_DIGEST_RE.match(text))


def _parse_registry_ref(text: str, field: str) -> ImageRef:
    host, repository, tag, digest = _split_name(text, text, field, host_required=True)
    if not tag and not digest:
        raise InvalidArgument(
            f"{text!r} has neither a tag nor a digest: gate never assumes 'latest'; "
            f"add :TAG or @sha256:<digest> (e.g. {_EXAMPLE})",
            field,
        )
    return ImageRef(
        kind=RefKind.REGISTRY, original=text, registry=host, repository=repository, tag=tag, digest=digest
    )


def _split_name(name: str, text: str, field: str, *, host_required: bool) -> tuple[str, str, str, str]:
    """Split and validate `[HOST/]REPO[:TAG][@DIGEST]` into (host, repository, tag, digest).

    `name` is the part being parsed, `text` the whole input for messages. Docker's rule decides whether
    the first component is a host; engine names may omit it, registry references may not.
    """
    name_and_tag, sep, digest_part = name.partition("@")
    digest = ""
    if sep:
        if "@" in digest_part:
            raise InvalidArgument(f"{text!r} has more than one '@'", field)
        if not digest_part:
            raise InvalidArgument(f"{text!r} has an empty digest after '@'", field)
        digest = _check_digest(digest_part, text, field)

    host, slash, rest = name_and_tag.partition("/")
    if not slash or not _is_host(host):
        if host_required:
            raise InvalidArgument(
                f"{text!r} has no registry host: a registry host is required because gate never assumes "
                f"Docker Hub (e.g. {_EXAMPLE}, or localhost:5000/payments:1; for an image on the local "
                f"Docker engine write docker:{text})",
                field,
            )
        host, rest = "", name_and_tag
    else:
        _check_host(host, text, field)

    repository, colon, tag = rest.partition(":")
    if colon:
        if not tag:
            raise InvalidArgument(f"{text!r} has an empty tag after ':'", field)
        if not _TAG_RE.match(tag):
            raise InvalidArgument(
                f"tag {tag!r} in {text!r} is invalid (letters, digits, '_', '.', '-'; not starting with "
                "'.' or '-'; at most 128 characters)",
                field,
            )
    _check_repository(repository, text, field, after_host=bool(host))
    if len(host) + 1 + len(repository) > _MAX_NAME:
        raise InvalidArgument(f"image name in {text!r} is longer than {_MAX_NAME} characters", field)
    return host, repository, tag, digest


def _is_host(component: str) -> bool:
    # The docker rule for telling a registry host from the first path component.
    return "." in component or ":" in component or component == "localhost"


def _check_host(host: str, text: str, field: str) -> None:
    if host.startswith("["):
        name, bracket, port_part = host.partition("]")
        name += bracket
        if not _IPV6_RE.match(name) or (port_part and not port_part.startswith(":")):
            raise InvalidArgument(f"registry host {host!r} in {text!r} is not a valid [IPv6]:PORT", field)
        has_port, port = bool(port_part), port_part[1:]
    else:
        name, colon, port = host.partition(":")
        has_port = bool(colon)
        if not _HOSTNAME_RE.match(name):
            raise InvalidArgument(f"registry host {host!r} in {text!r} is not a valid host name", field)
    if has_port and (not port.isdigit() or not 0 < int(port) < 65536):
        raise InvalidArgument(f"registry port {port!r} in {text!r} is not a number from 1 to 65535", field)


def _check_repository(repository: str, text: str, field: str, *, after_host: bool = True) -> None:
    if not repository:
        where = "after the registry host" if after_host else "before the tag"
        raise InvalidArgument(f"{text!r} names no repository {where}", field)
    for component in repository.split("/"):
        if not component:
            raise InvalidArgument(f"repository {repository!r} in {text!r} has an empty path component", field)
        if component != component.lower() and _COMPONENT_RE.match(component.lower()):
            raise InvalidArgument(f"repository component {component!r} in {text!r} must be lowercase", field)
        if not _COMPONENT_RE.match(component):
            raise InvalidArgument(
                f"repository component {component!r} in {text!r} is invalid (lowercase letters and digits "
                "separated by '.', '_', '__' or '-')",
                field,
            )


def _check_digest(digest: str, text: str, field: str) -> str:
    if _DIGEST_RE.match(digest):
        return digest
    algorithm, _, hex_part = digest.partition(":")
    if algorithm != "sha256":
        problem = f"uses algorithm {algorithm!r}; only sha256 is supported"
    elif hex_part != hex_part.lower() and _DIGEST_RE.match(f"sha256:{hex_part.lower()}"):
        problem = "must use lowercase hex"
    else:
        problem = f"must be sha256 followed by 64 lowercase hex characters (got {len(hex_part)} characters)"
    where = "" if digest == text else f" in {text!r}"
    raise InvalidArgument(f"digest {digest!r}{where} {problem}", field)
