"""Gives a queued scan job's target what its scanner needs to reach the registry, just before it runs.

Stored scan targets hold no secrets (gate/store refuses them), so the job runner calls
`ScanTargetPreparer` before every scan, also for jobs resumed after a restart:

- every registry target gets its scanner credentials again (`RegistryClient.attach_credentials`);
- for a scanner that downloads layers itself (Clair: `Scanner.fetches_layers`), the target also gets
  the HTTP headers that scanner must send with each blob GET. A registry with token auth does not take
  Basic credentials on its blob endpoint, so a pull token for exactly this repository is fetched from
  its token service (anonymously when no credentials are configured, as public registries expect);
  a registry with Basic auth gets the Basic header. Plain-http registries only ever get anonymous
  access: credentials are never sent over http.

Tokens expire, which is why they are fetched per scan and never stored.
"""

from __future__ import annotations

import base64
from dataclasses import replace

import requests
from dxf import DXF
from dxf import exceptions as dxf_errors

from gate.errors import PermissionDenied, Unauthenticated, Unavailable
from gate.images.registry import RegistryClient
from scanners.interface import Credentials, Scanner, ScanTarget, TargetKind

__all__ = ["ScanTargetPreparer"]


class ScanTargetPreparer:
    """The JobRunner's prepare-target hook: credentials for every scanner, blob headers for Clair."""

    def __init__(self, registry: RegistryClient, timeout: float = 30.0) -> None:
        self._registry = registry
        self._timeout = timeout

    def __call__(self, target: ScanTarget, scanner: Scanner) -> ScanTarget:
        """`target` ready for `scanner`; raise Unauthenticated/PermissionDenied/Unavailable on failure."""
        target = self._registry.attach_credentials(target)
        if target.kind is not TargetKind.REGISTRY or not scanner.fetches_layers or target.registry_headers:
            return target
        host, repository = _host_and_repository(target)
        headers = self.registry_headers(host, repository, target.credentials)
        return replace(target, registry_headers=headers)

    def registry_headers(
        self, host: str, repository: str, credentials: Credentials | None
    ) -> tuple[tuple[str, str], ...]:
        """Headers that let a blob GET on `host` read `repository` (empty: anonymous access)."""
        if self._registry.is_insecure(host):
            return ()
        if credentials is not None and credentials.token:
            return (("Authorization", f"Bearer {credentials.token}"),)
        username = credentials.username if credentials is not None else None
        password = credentials.password if credentials is not None else None
        who = f'user "{username}"' if username else "anonymous"
        dxf = DXF(host, repository, tlsverify=self._registry.ca_file or True, timeout=self._timeout)
        try:
            with dxf:
                # Answers the registry's own challenge: a pull-scoped token from its token service for
                # Bearer auth, None for Basic auth or a registry that needs no auth at all.
                token = dxf.authenticate(username, password, actions=["pull"])
        except dxf_errors.DXFUnauthorizedError as e:
            raise Unauthenticated(
                f"registry {host}: its token service refused {who} a pull token for {repository}"
            ) from e
        except requests.HTTPError as e:
            status = e.response.status_code if e.response is not None else 0
            if status == 403:
                raise PermissionDenied(f"registry {host}: {who} may not pull {repository}") from e
            raise Unavailable(f"registry {host}: asking for a pull token failed with HTTP {status}") from e
        except (requests.RequestException, dxf_errors.DXFError, ValueError, KeyError) as e:
            raise Unavailable(f"registry {host}: cannot get a pull token for {repository}: {e!r}") from e
        if token:
            return (("Authorization", f"Bearer {token}"),)
        if username or password:
            pair = f"{username or ''}:{password or ''}".encode()
            return (("Authorization", "Basic " + base64.b64encode(pair).decode("ascii")),)
        return ()


def _host_and_repository(target: ScanTarget) -> tuple[str, str]:
    name = target.location.split("@", 1)[0]
    host, _, repository = name.partition("/")
    return host, repository
