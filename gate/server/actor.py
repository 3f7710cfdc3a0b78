"""Who is calling: the actor recorded in the audit log and on exceptions, promotions and breakglass.

Until authentication exists ([6/7]) the actor is the caller's own claim, sent as the gRPC metadata key
`gate-actor` (the CLI sends `--actor`, default `$USER@hostname`). Without a claim the peer address is
recorded, so an audit record always says something about where a request came from. Once auth lands,
`actor_of` is the one place to switch to the authenticated principal.
"""

from __future__ import annotations

import grpc

__all__ = ["ACTOR_METADATA_KEY", "MAX_ACTOR_LENGTH", "actor_of"]

ACTOR_METADATA_KEY = "gate-actor"
# A claim is a name, not a document: longer ones are cut so one caller cannot bloat every record.
MAX_ACTOR_LENGTH = 200


def actor_of(context: grpc.ServicerContext) -> str:
    """The caller's claimed actor from `gate-actor` metadata, else `anonymous@<peer>`."""
    for key, value in context.invocation_metadata() or ():
        if key == ACTOR_METADATA_KEY:
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
            # Control characters would let a claim forge extra lines in logs and table output.
            cleaned = "".join(ch for ch in text if ch.isprintable()).strip()
            if cleaned:
                return cleaned[:MAX_ACTOR_LENGTH]
    return f"anonymous@{context.peer() or 'unknown'}"
