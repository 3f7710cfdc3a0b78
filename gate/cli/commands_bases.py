"""`gate bases …` (the base-image catalog) and `gate rebuild-list`: which images to rebuild on what."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from gate.cli import Context, ExitCode
from gate.cli.client import connect
from gate.cli.formats import json as json_format
from gate.cli.formats.table import EMPTY, render_fields, render_table, short_id, timestamp_field
from gate.v1 import gate_pb2


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], shared: argparse.ArgumentParser
) -> None:
    """Add the `bases` command group and the `rebuild-list` command."""
    bases = subparsers.add_parser(
        "bases",
        help="manage the base-image catalog",
        description="Register, list, deprecate and revoke base images. A base is identified by its "
        "layer chain: every image whose layers start with the base's is built on it, whatever its tags say.",
    )
    actions = bases.add_subparsers(dest="bases_command", metavar="ACTION", required=True)

    add = actions.add_parser(
        "add",
        parents=[shared],
        help="register an image as a base",
        description="Register IMAGE as a base of TIER (compile-osbase, dev-osbase, prod-osbase, runtime, "
        "or a custom tier name). The image is read, not scanned.",
    )
    add.add_argument("image", metavar="IMAGE", help="image reference (registry, docker-archive:, oci:)")
    add.add_argument("--tier", required=True, metavar="TIER", help="the base's tier")
    add.add_argument(
        "--name", default="", metavar="N", help="name shown in verdicts (default: repository and tag)"
    )
    add.set_defaults(handler=run_add)

    listing = actions.add_parser("list", parents=[shared], help="list catalogued bases")
    listing.set_defaults(handler=run_list)

    deprecate = actions.add_parser(
        "deprecate",
        parents=[shared],
        help="deprecate a base in favour of a successor",
        description="Deprecate the base IMAGE: images built on it are denied once the grace period ends, "
        "with a message to rebuild on the successor.",
    )
    deprecate.add_argument("image", metavar="IMAGE", help="the base: name, digest or image reference")
    deprecate.add_argument(
        "--superseded-by", required=True, metavar="IMAGE", help="the base to rebuild on (a registered base)"
    )
    deprecate.add_argument(
        "--grace", default="", metavar="DURATION", help="how long it stays acceptable, e.g. 14d (default 30d)"
    )
    deprecate.set_defaults(handler=run_deprecate)

    revoke = actions.add_parser(
        "revoke",
        parents=[shared],
        help="revoke a base",
        description="Revoke the base IMAGE: images built on it are denied from now on.",
    )
    revoke.add_argument("image", metavar="IMAGE", help="the base: name, digest or image reference")
    revoke.set_defaults(handler=run_revoke)

    descendants = actions.add_parser(
        "descendants",
        parents=[shared],
        help="list images built on a base",
        description="List every image gate knows that is built on the base IMAGE, by stage.",
    )
    descendants.add_argument("image", metavar="IMAGE", help="the base: name, digest or image reference")
    descendants.set_defaults(handler=run_descendants)

    rebuild = subparsers.add_parser(
        "rebuild-list",
        parents=[shared],
        help="list images built on deprecated, revoked or superseded bases",
        description="List the images gate knows that must be rebuilt, with the base to rebuild on.",
    )
    rebuild.add_argument("--stage", default="", metavar="S", help="only images in this stage")
    rebuild.set_defaults(handler=run_rebuild_list)


def render_base(base: gate_pb2.Base) -> str:
    """One base as `label: value` lines."""
    return render_fields(
        [
            ("name", base.name),
            ("tier", base.tier),
            ("status", base.status),
            ("digest", base.digest),
            ("reference", base.reference),
            ("layers", str(base.chain_length)),
            ("chain id", base.chain_id),
            (
                "superseded by",
                f"{base.superseded_by_name} ({base.superseded_by})" if base.superseded_by else "",
            ),
            ("deprecated at", timestamp_field(base, "deprecated_at")),
            ("grace until", timestamp_field(base, "grace_until")),
            ("registered at", timestamp_field(base, "registered_at")),
        ]
    )


def render_bases(bases: Sequence[gate_pb2.Base]) -> str:
    """The catalog as a table."""
    rows = [
        [
            b.name,
            b.tier,
            b.status,
            short_id(b.digest),
            str(b.chain_length),
            b.superseded_by_name,
            timestamp_field(b, "grace_until"),
            b.reference,
        ]
        for b in bases
    ]
    headers = ("NAME", "TIER", "STATUS", "DIGEST", "LAYERS", "SUPERSEDED BY", "GRACE UNTIL", "REFERENCE")
    table = render_table(headers, rows) if rows else ""
    return f"{table}{len(rows)} base(s)\n"


def _location(registry: str, repository: str) -> str:
    return "/".join(part for part in (registry, repository) if part)


def _show_base(args: argparse.Namespace, ctx: Context, base: gate_pb2.Base) -> int:
    if args.json:
        json_format.dump_message(base, ctx.out)
    else:
        ctx.out.write(render_base(base))
    return ExitCode.OK


def run_add(args: argparse.Namespace, ctx: Context) -> int:
    """Register a base and print it."""
    with connect(args) as client:
        base = client.add_base(args.image, args.tier, args.name)
    return _show_base(args, ctx, base)


def run_list(args: argparse.Namespace, ctx: Context) -> int:
    """Print the catalog."""
    with connect(args) as client:
        response = client.list_bases()
    if args.json:
        json_format.dump_message(response, ctx.out)
    else:
        ctx.out.write(render_bases(response.bases))
    return ExitCode.OK


def run_deprecate(args: argparse.Namespace, ctx: Context) -> int:
    """Deprecate a base and print it."""
    with connect(args) as client:
        base = client.deprecate_base(args.image, args.superseded_by, args.grace)
    return _show_base(args, ctx, base)


def run_revoke(args: argparse.Namespace, ctx: Context) -> int:
    """Revoke a base and print it."""
    with connect(args) as client:
        base = client.revoke_base(args.image)
    return _show_base(args, ctx, base)


def run_descendants(args: argparse.Namespace, ctx: Context) -> int:
    """Print the images built on a base, by stage."""
    with connect(args) as client:
        images = list(client.base_descendants(args.image))
    if args.json:
        json_format.dump_messages(images, ctx.out)
        return ExitCode.OK
    rows = [
        [i.stage, _location(i.registry, i.repository), ", ".join(i.tags), short_id(i.digest)] for i in images
    ]
    if rows:
        ctx.out.write(render_table(("STAGE", "REPOSITORY", "TAGS", "DIGEST"), rows))
    on = images[0].base_name if images else args.image
    ctx.out.write(f"{len(rows)} {'image' if len(rows) == 1 else 'images'} built on {on}\n")
    return ExitCode.OK


def run_rebuild_list(args: argparse.Namespace, ctx: Context) -> int:
    """Print the images to rebuild and the base to rebuild each on."""
    with connect(args) as client:
        items = list(client.rebuild_list(args.stage))
    if args.json:
        json_format.dump_messages(items, ctx.out)
        return ExitCode.OK
    rows = [
        [
            i.stage,
            _location(i.registry, i.repository),
            ", ".join(i.tags),
            short_id(i.digest),
            f"{i.base.tier} {i.base.name}",
            i.base.status,
            i.successor_name or EMPTY,
            i.reason,
        ]
        for i in items
    ]
    if rows:
        headers = ("STAGE", "REPOSITORY", "TAGS", "DIGEST", "BASE", "STATUS", "REBUILD ON", "REASON")
        ctx.out.write(render_table(headers, rows))
    digests = len({i.digest for i in items})
    ctx.out.write(f"{digests} {'image' if digests == 1 else 'images'} to rebuild\n")
    return ExitCode.OK
