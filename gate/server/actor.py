"""Who is calling: the actor recorded in the audit log and on exceptions, promotions and breakglass.

With authentication on (gate/server/auth.py) the actor is the authenticated principal —
`token:<name>` or `cert:<subject>`, a gate.tokens.Principal carrying its roles — and a `gate-actor`
claim is ignored: a caller cannot speak for someone else.

With authentication off (loopback servers by default) the actor is the caller's own claim, sent as
the gRPC metadata key `gate-actor` (the CLI sends `--actor`, default `$USER@hostname`). Without a
claim the peer address is recorded, so an audit record always says something about where a request
came from.
"""

from __future__ import annotations

import grpc

from gate.server.auth import principal_of

__all__ = ["ACTOR_METADATA_KEY", "MAX_ACTOR_LENGTH", "actor_of"]

ACTOR_METADATA_KEY = "gate-actor"
# A claim is a name, not a document: longer ones are cut so one caller cannot bloat every record.
MAX_ACTOR_LENGTH = 200


def actor_of(context: grpc.ServicerContext) -> str:
    """The authenticated principal; else the claim in `gate-actor` metadata; else `anonymous@<peer>`."""
    principal = principal_of(context)
    if principal is not None:
        return principal
    for key, value in context.invocation_metadata() or ():
        if key == ACTOR_METADATA_KEY:
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
            # Control characters would let a claim forge extra lines in logs and table output.
            cleaned = "".join(ch for ch in text if ch.isprintable()).strip()
            if cleaned:
                return cleaned[:MAX_ACTOR_LENGTH]
    return f"anonymous@{context.peer() or 'unknown'}"
