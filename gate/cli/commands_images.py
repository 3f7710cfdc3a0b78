"""`gate images --stage S [--on-base BASE]`: the stored images in a stage, for the security team.

"In stage S" is the promotion ledger when it records any promotion into S, else the stage taken from
the repository name; the output says which, because the two answer different questions (what was
promoted vs. what was pushed under an S path).
"""

from __future__ import annotations

import argparse

from gate.cli import CliError, Context, ExitCode
from gate.cli.client import connect
from gate.cli.commands_query import add_format_option, output_format
from gate.cli.formats import csv as csv_format
from gate.cli.formats import json as json_format
from gate.cli.formats.table import render_table, severity_rank, short_id, timestamp_field

_SOURCES = {
    "ledger": "from the promotion ledger (digests promoted into it)",
    "name": "from repository names (the ledger records no promotion into it)",
}


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], shared: argparse.ArgumentParser
) -> None:
    """Add the `images` command."""
    parser = subparsers.add_parser(
        "images",
        parents=[shared],
        help="list stored images in a stage",
        description="List the stored images in stage S with tags, nearest base, worst severity and last "
        "scan; with --on-base only those whose lineage contains that base.",
    )
    parser.add_argument("--stage", required=True, metavar="S", help="the stage (d, t, s1, s2, p)")
    parser.add_argument(
        "--on-base", default="", metavar="BASE", help="only images built on this base (name, digest or image)"
    )
    add_format_option(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Print the stage's images, most severe first."""
    fmt = output_format(args)
    if fmt == "sarif":
        raise CliError("gate images has no SARIF form (it lists images, not results)", ExitCode.BAD_INPUT)
    with connect(args) as client:
        images = list(client.list_images(args.stage, args.on_base))
    if fmt == "json":
        json_format.dump_messages(images, ctx.out)
        return ExitCode.OK
    images.sort(key=lambda i: (severity_rank(i.worst_severity or "UNKNOWN"), i.repository, i.digest))
    if fmt == "csv":
        csv_format.write_csv(csv_format.IMAGE_COLUMNS, [csv_format.image_row(i) for i in images], ctx.out)
        return ExitCode.OK
    rows = [
        [
            "/".join(p for p in (i.registry, i.repository) if p),
            short_id(i.digest),
            ", ".join(i.tags),
            i.nearest_base,
            i.worst_severity or ("none" if i.HasField("last_scanned_at") else ""),
            str(i.finding_count),
            timestamp_field(i, "last_scanned_at"),
            ", ".join(i.platforms),
        ]
        for i in images
    ]
    if rows:
        headers = (
            "REPOSITORY",
            "DIGEST",
            "TAGS",
            "NEAREST BASE",
            "WORST",
            "FINDINGS",
            "LAST SCAN",
            "PLATFORMS",
        )
        ctx.out.write(render_table(headers, rows))
    source = images[0].stage_source if images else ""
    where = _SOURCES.get(source, "")
    on = f" built on {args.on_base}" if args.on_base else ""
    ctx.out.write(f"{len(rows)} image(s) in stage {args.stage}{on}" + (f", {where}" if where else "") + "\n")
    return ExitCode.OK
