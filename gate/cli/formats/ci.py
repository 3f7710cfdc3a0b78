"""`--junit FILE` and `--sarif FILE` for `gate check` and `gate promote`: CI report files.

Both are written in addition to the normal stdout output, and on a deny too (that is when CI needs
them most); the command's exit code is unchanged by writing them.
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Sequence
from pathlib import Path

from gate.cli import CliError, ExitCode
from gate.cli.formats import json as json_format
from gate.cli.formats.junit import render_junit
from gate.cli.formats.sarif import decisions_sarif
from gate.v1 import gate_pb2


def add_report_options(parser: argparse.ArgumentParser) -> None:
    """Add --junit and --sarif to a command that answers with a decision."""
    group = parser.add_argument_group("CI reports (written in addition to stdout, also on deny)")
    group.add_argument("--junit", default="", metavar="FILE", help="write a JUnit XML report to FILE")
    group.add_argument("--sarif", default="", metavar="FILE", help="write a SARIF 2.1.0 report to FILE")


def _write(path: str, text: str, what: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as e:
        # A report CI expected but cannot find is worse than a loud failure.
        raise CliError(f"cannot write {what} report {path!r}: {e.strerror}", ExitCode.BAD_INPUT) from None


def write_reports(args: argparse.Namespace, decisions: Sequence[gate_pb2.Decision], image: str) -> None:
    """Write the files asked for with --junit / --sarif (nothing when neither was given)."""
    if getattr(args, "junit", ""):
        _write(args.junit, render_junit(decisions, image), "JUnit")
    if getattr(args, "sarif", ""):
        buffer = io.StringIO()
        json_format.dump(decisions_sarif(decisions, image), buffer)
        _write(args.sarif, buffer.getvalue(), "SARIF")
