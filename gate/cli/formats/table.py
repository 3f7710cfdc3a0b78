"""Plain-text tables and the small value formatters they share (no third-party dependency)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from scanners.interface import Severity

EMPTY = "-"  # shown for a missing value so columns never collapse


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Render rows as left-aligned columns separated by two spaces; trailing blanks trimmed."""
    cells = [[str(h) for h in headers]] + [[cell or EMPTY for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    ]
    return "\n".join(lines) + "\n"


def render_fields(pairs: Sequence[tuple[str, str]]) -> str:
    """Render `label: value` lines with the values aligned."""
    if not pairs:
        return ""
    width = max(len(label) for label, _ in pairs) + 1
    return "".join(f"{(label + ':').ljust(width)} {value or EMPTY}\n" for label, value in pairs)


def severity_rank(severity: str) -> int:
    """Sort key putting the most severe first; unknown spellings sort with UNKNOWN, last."""
    try:
        return -Severity.parse(severity)
    except ValueError:
        return -Severity.UNKNOWN


def short_id(digest: str, length: int = 12) -> str:
    """Shorten `sha256:abcdef…` to its first hex characters, the way container tools show ids."""
    _, _, hex_part = digest.rpartition(":")
    return hex_part[:length]


def timestamp_field(message: Message, name: str) -> str:
    """Format a message's Timestamp field as ISO-8601 UTC, or EMPTY when the field is unset."""
    if not message.HasField(name):
        return EMPTY
    value = cast(Timestamp, getattr(message, name))  # the schema guarantees the type; mypy cannot see it
    return value.ToDatetime().strftime("%Y-%m-%dT%H:%M:%SZ")
