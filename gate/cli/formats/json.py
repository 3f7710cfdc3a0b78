"""JSON output: protobuf messages as one parseable document per command invocation."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, TextIO

from google.protobuf import json_format
from google.protobuf.message import Message


def message_to_dict(message: Message) -> dict[str, Any]:
    """Convert a message to a dict with proto field names and enum names.

    Fields at their default value are kept (`"allowed": false`, `"violations": []`) so CI scripts can
    index keys without guarding against their absence.
    """
    return json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )


def dump(document: Any, out: TextIO) -> None:
    """Write one JSON document followed by a newline."""
    json.dump(document, out, indent=2, sort_keys=False)
    out.write("\n")


def dump_message(message: Message, out: TextIO) -> None:
    """Write one message as a JSON object."""
    dump(message_to_dict(message), out)


def dump_messages(messages: Iterable[Message], out: TextIO) -> None:
    """Write a stream of messages as one JSON array, so the output stays a single document."""
    dump([message_to_dict(m) for m in messages], out)
