"""The provenance test world: catalogued bases, images built on them, and images that break the rules.

Built with tests/support/images.py and the catalog's Alpine package sets, so trivy with the standard DB
(tests/support/catalog.standard_advisories) gives known answers:

    prod-osbase 20200102_01   clean Alpine + a release marker              (zero findings)
      └─ runtime               + a runtime layer                           (zero findings)
           ├─ app              + an app layer, USER 1000, maintainer label (zero findings: promotable)
           └─ root app         + an app layer, no USER                     (denied: runs as root)
    prod-osbase 20200115_02   the same Alpine + a newer release marker     (the successor)
    dev-osbase                vulnerable Alpine + debugging tools          (every finding is the base's)
      ├─ app on dev           + an app layer, USER 1000
      └─ lying app            + an app layer whose OCI annotations claim prod-osbase 20200102_01
    home-made base            clean Alpine + an unknown marker             (never catalogued)
      └─ app on home-made     + an app layer, USER 1000

And one multi-platform app (`multiarch_app`), an index of two platform images:

    linux/amd64  on prod-osbase 20200102_01                               (zero findings: passes)
    linux/arm64  on prod-osbase 20200102_01 arm64: the vulnerable Alpine,  (denied: its base's findings)
                 an arm64 build of the base that was never patched

Every builder is deterministic: the same call gives the same digests, in any process.
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.support.catalog import CLEAN_ALPINE_PACKAGES, VULNERABLE_ALPINE_PACKAGES
from tests.support.images import (
    ANNOTATION_BASE_DIGEST,
    ANNOTATION_BASE_NAME,
    BuiltImage,
    alpine_layer,
    build_image,
)

__all__ = [
    "APP_LABELS",
    "APP_USER",
    "PROD_OSBASE_ARM64_NAME",
    "PROD_OSBASE_NAME",
    "PROD_OSBASE_NEXT_NAME",
    "LineageWorld",
    "app",
    "app_on_dev_osbase",
    "app_on_home_made_base",
    "dev_osbase",
    "home_made_base",
    "lying_app",
    "multiarch_app",
    "prod_osbase",
    "prod_osbase_arm64",
    "prod_osbase_next",
    "root_app",
    "runtime",
    "world",
]

APP_USER = "1000"
APP_LABELS = {"maintainer": "payments-team@example.test", "org.opencontainers.image.title": "payments"}
PROD_OSBASE_NAME = "prod-osbase 20200102_01"
PROD_OSBASE_NEXT_NAME = "prod-osbase 20200115_02"
PROD_OSBASE_ARM64_NAME = "prod-osbase 20200102_01 arm64"


def _marker(text: str) -> dict[str, bytes]:
    # A one-file layer that makes otherwise identical roots distinct images (and distinct chains).
    return {"etc/gate-base-release": f"{text}\n".encode()}


def _app_layer(name: str) -> dict[str, bytes]:
    return {
        f"srv/{name}/main.py": f'"""Service {name}."""\nprint("{name} ready")\n'.encode(),
        f"srv/{name}/VERSION": b"20200102_01\n",
    }


def prod_osbase() -> BuiltImage:
    """The approved production OS base: clean Alpine (zero findings) plus its release marker."""
    return build_image([alpine_layer(CLEAN_ALPINE_PACKAGES), _marker(PROD_OSBASE_NAME)])


def prod_osbase_next() -> BuiltImage:
    """The successor of `prod_osbase()`: same Alpine layer, newer release marker (a different chain)."""
    return build_image([alpine_layer(CLEAN_ALPINE_PACKAGES), _marker(PROD_OSBASE_NEXT_NAME)])


def runtime() -> BuiltImage:
    """A language runtime on `prod_osbase()`."""
    layer = {"usr/lib/gate-runtime/VERSION": b"runtime 3.12\n", "usr/bin/gate-runtime": b"#!/bin/sh\n"}
    return build_image([layer], base=prod_osbase())


def app() -> BuiltImage:
    """The well-built app: on `runtime()`, non-root, labelled. Promotable s2 → p once its bases are known."""
    return build_image([_app_layer("payments")], base=runtime(), user=APP_USER, labels=APP_LABELS)


def root_app() -> BuiltImage:
    """Like `app()` but without USER: it runs as root (the runtime and osbase set none)."""
    return build_image([_app_layer("reports")], base=runtime(), labels=APP_LABELS)


def dev_osbase() -> BuiltImage:
    """A development OS base: the vulnerable Alpine of the catalog plus debugging tools."""
    tools = {"usr/bin/gate-debug-shell": b"#!/bin/sh\nexec /bin/sh\n"}
    return build_image([alpine_layer(VULNERABLE_ALPINE_PACKAGES), {**_marker("dev-osbase"), **tools}])


def app_on_dev_osbase() -> BuiltImage:
    """An app built on `dev_osbase()`: denied from s1 on, its findings all introduced by the base."""
    return build_image([_app_layer("ledger")], base=dev_osbase(), user=APP_USER, labels=APP_LABELS)


def home_made_base() -> BuiltImage:
    """A base nobody catalogued: clean Alpine with its own marker."""
    return build_image([alpine_layer(CLEAN_ALPINE_PACKAGES), _marker("home-made")])


def app_on_home_made_base() -> BuiltImage:
    """An app on `home_made_base()`: clean, but with no catalogued base (NO_APPROVED_BASE for s2 → p)."""
    return build_image([_app_layer("billing")], base=home_made_base(), user=APP_USER, labels=APP_LABELS)


def lying_app(registry_host: str = "registry.example") -> BuiltImage:
    """An app on `dev_osbase()` whose OCI base annotations claim `prod_osbase()`.

    The claim names the real prod-osbase digest, so only the layers can tell the truth.
    """
    return build_image(
        [_app_layer("invoices")],
        base=dev_osbase(),
        user=APP_USER,
        labels=APP_LABELS,
        annotations={
            ANNOTATION_BASE_DIGEST: prod_osbase().manifest_digest,
            ANNOTATION_BASE_NAME: f"{registry_host}/bases/prod-osbase:20200102_01",
        },
    )


def prod_osbase_arm64() -> BuiltImage:
    """The arm64 build of the production OS base — on the vulnerable Alpine: nobody patched it."""
    layers = [alpine_layer(VULNERABLE_ALPINE_PACKAGES), _marker(PROD_OSBASE_ARM64_NAME)]
    return build_image(layers, platform="linux/arm64")


def multiarch_app() -> tuple[BuiltImage, BuiltImage]:
    """(linux/amd64, linux/arm64) images of one app, each on its platform's prod-osbase, non-root.

    The amd64 image is clean; the arm64 image carries every finding of `prod_osbase_arm64()`.
    """
    amd = build_image([_app_layer("checkout")], base=prod_osbase(), user=APP_USER, labels=APP_LABELS)
    arm = build_image(
        [_app_layer("checkout")],
        base=prod_osbase_arm64(),
        user=APP_USER,
        labels=APP_LABELS,
        platform="linux/arm64",
    )
    return amd, arm


@dataclass(frozen=True)
class LineageWorld:
    """Every image of the provenance world, built once."""

    prod_osbase: BuiltImage
    prod_osbase_next: BuiltImage
    runtime: BuiltImage
    app: BuiltImage
    root_app: BuiltImage
    dev_osbase: BuiltImage
    app_on_dev_osbase: BuiltImage
    home_made_base: BuiltImage
    app_on_home_made_base: BuiltImage
    lying_app: BuiltImage


def world(registry_host: str = "registry.example") -> LineageWorld:
    """Build the whole world (the lying app's name annotation points into `registry_host`)."""
    return LineageWorld(
        prod_osbase=prod_osbase(),
        prod_osbase_next=prod_osbase_next(),
        runtime=runtime(),
        app=app(),
        root_app=root_app(),
        dev_osbase=dev_osbase(),
        app_on_dev_osbase=app_on_dev_osbase(),
        home_made_base=home_made_base(),
        app_on_home_made_base=app_on_home_made_base(),
        lying_app=lying_app(registry_host),
    )
