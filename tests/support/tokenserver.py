"""A tiny HTTPS token server for distribution's `auth.token` mode: RS256 JWTs with an x5c header.

It implements the part of the Docker token protocol a registry client meets:

- `GET /token?service=S&scope=repository:NAME:pull,push` with optional Basic credentials: wrong
  credentials get 401; no credentials get an anonymous token that grants nothing (what Docker Hub and
  Harbor do for private repositories, so the registry, not the token server, says no);
- `POST /token` with `grant_type=refresh_token` (an identity token, as docker config.json's
  `identitytoken`) or `grant_type=password`, answering `access_token` (the OAuth2 flavour).

Each token is scoped to the repositories asked for, intersected with the user's grants (fnmatch
patterns), so a token for one repository is useless for another. `issued` records who got which scopes,
letting tests check that a client asks per repository. Secrets are compared, never logged.
"""

from __future__ import annotations

import base64
import fnmatch
import hmac
import http.server
import json
import secrets
import threading
import time
import urllib.parse
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from tests.support.tls import SigningPair, TlsFiles

__all__ = ["Issued", "TokenServer", "start_token_server"]

ANONYMOUS = ""  # the subject of tokens handed out without credentials


@dataclass(frozen=True)
class Issued:
    """One token handed out: to whom (ANONYMOUS for nobody) and the scopes it actually grants."""

    subject: str
    scopes: tuple[str, ...]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenServer:
    """A running token server; `realm` is what the registry's auth.token.realm points at."""

    realm: str
    service: str
    issuer: str
    signer: SigningPair
    users: Mapping[str, str]  # username → password
    grants: Mapping[str, Collection[str]]  # username → repository patterns it may pull/push
    refresh_tokens: Mapping[str, str]  # identity token → username
    lifetime: int = 300
    issued: list[Issued] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _server: http.server.ThreadingHTTPServer | None = field(default=None, repr=False)

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def token_for(self, subject: str, scopes: Collection[str]) -> str:
        """Sign a token for `subject` granting `scopes` narrowed to its grants (what GET /token does)."""
        access, granted = self._access(subject, scopes)
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.signer.x5c]}
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + self.lifetime,
            "nbf": now - 60,  # tolerate a little clock skew between us and the registry
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = self.signer.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        with self._lock:
            self.issued.append(Issued(subject, granted))
        return f"{signing_input}.{_b64url(signature)}"

    def _access(
        self, subject: str, scopes: Collection[str]
    ) -> tuple[list[dict[str, object]], tuple[str, ...]]:
        patterns = self.grants.get(subject, ()) if subject != ANONYMOUS else ()
        access: list[dict[str, object]] = []
        granted: list[str] = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind != "repository" or not name:
                continue
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns):
                wanted = [a for a in actions.split(",") if a in ("pull", "push")]
                access.append({"type": "repository", "name": name, "actions": wanted})
                granted.append(f"repository:{name}:{','.join(wanted)}")
        return access, tuple(granted)

    def check_password(self, username: str, password: str) -> bool:
        """True when `password` is `username`'s (constant-time comparison)."""
        expected = self.users.get(username)
        return expected is not None and hmac.compare_digest(expected.encode(), password.encode())


def _handler(server: TokenServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass  # request lines would carry nothing secret, but stderr noise hides test output

        def _reply(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status == 401:
                self.send_header("WWW-Authenticate", 'Basic realm="gate-test-token"')
            self.end_headers()
            self.wfile.write(data)

        def _basic_user(self) -> str | None:
            """The Basic-authenticated user, ANONYMOUS without a header, None for bad credentials."""
            header = self.headers.get("Authorization", "")
            if not header:
                return ANONYMOUS
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "basic":
                return None
            try:
                username, _, password = base64.b64decode(value, validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return None
            return username if server.check_password(username, password) else None

        def _grant(self, subject: str, params: Mapping[str, list[str]]) -> None:
            if params.get("service", [server.service])[0] != server.service:
                self._reply(400, {"errors": [{"code": "INVALID", "message": "unknown service"}]})
                return
            scopes = [s for value in params.get("scope", []) for s in value.split()]
            token = server.token_for(subject, scopes)
            self._reply(
                200,
                {
                    "token": token,
                    "access_token": token,
                    "expires_in": server.lifetime,
                    "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                },
            )

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            if url.path != "/token":
                self._reply(404, {"errors": [{"code": "NOT_FOUND", "message": url.path}]})
                return
            subject = self._basic_user()
            if subject is None:
                self._reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]})
                return
            self._grant(subject, urllib.parse.parse_qs(url.query))

        def do_POST(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            form = urllib.parse.parse_qs(self.rfile.read(length).decode())
            if url.path != "/token":
                self._reply(404, {"errors": [{"code": "NOT_FOUND", "message": url.path}]})
                return
            grant = form.get("grant_type", [""])[0]
            subject: str | None = None
            if grant == "refresh_token":
                offered = form.get("refresh_token", [""])[0]
                for known, user in server.refresh_tokens.items():
                    if hmac.compare_digest(known.encode(), offered.encode()):
                        subject = user
            elif grant == "password":
                user = form.get("username", [""])[0]
                if server.check_password(user, form.get("password", [""])[0]):
                    subject = user
            if subject is None:
                self._reply(401, {"error": "invalid_grant"})
                return
            self._grant(subject, form)

    return Handler


def start_token_server(
    tls: TlsFiles,
    signer: SigningPair,
    users: Mapping[str, str],
    grants: Mapping[str, Collection[str]] | None = None,
    refresh_tokens: Mapping[str, str] | None = None,
    service: str = "gate-test-registry",
    issuer: str = "gate-test-issuer",
    realm_host: str = "localhost",
) -> TokenServer:
    """Serve HTTPS on 127.0.0.1 (random port) in a daemon thread; every user gets "*" unless `grants` says.

    The realm names the server as `realm_host` (default "localhost", which the test certificate covers):
    go-containerregistry, inside trivy, refuses a realm whose host is a literal private or loopback IP
    ("invalid realm in www-authenticate: realm host ... is a private or link-local address"), a guard
    against registries steering credentials to internal services. Call `stop()` when done.
    """
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    # The handshake runs in the request thread (do_handshake_on_connect=False), so a client that never
    # speaks TLS cannot stall the accept loop.
    httpd.socket = tls.server_context().wrap_socket(
        httpd.socket, server_side=True, do_handshake_on_connect=False
    )
    port = httpd.server_address[1]
    server = TokenServer(
        realm=f"https://{realm_host}:{port}/token",
        service=service,
        issuer=issuer,
        signer=signer,
        users=dict(users),
        grants=dict(grants) if grants is not None else {user: ("*",) for user in users},
        refresh_tokens=dict(refresh_tokens or {}),
        _server=httpd,
    )
    httpd.RequestHandlerClass = _handler(server)
    threading.Thread(target=httpd.serve_forever, name="gate-test-token-server", daemon=True).start()
    return server
