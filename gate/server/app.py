"""Builds a gate server from Settings: store, scanners, job runner, service, gRPC with health + reflection.

`create_server` binds (port 0 allowed) and returns the real port; `serve` runs until SIGINT/SIGTERM.
"""

from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gate.alerts import Alerter
from gate.audit import AuditLog
from gate.clock import SystemClock
from gate.config import Settings
from gate.domain import Stage
from gate.errors import InvalidArgument
from gate.images.engine import EngineSource
from gate.images.registry import RegistryClient
from gate.images.resolver import SourceResolver
from gate.images.scanner_access import ScanTargetPreparer
from gate.journal import BufferedJournal, Journal
from gate.metrics import MetricsServer, observe_webhook
from gate.policy import Policy, default_policy, load_policy_file
from gate.policy_tools import PolicyTools
from gate.ports import Clock
from gate.promotion import PromotionLedger
from gate.receipts import Signer, load_or_create_key
from gate.scanning.jobs import JobRunner
from gate.scanning.notifier import ClairNotifier, NotifierServer
from gate.scanning.rescans import RescanScheduler, SchedulerThread
from gate.server import audit_servicer, exceptions_servicer, ledger_servicer, policy_servicer
from gate.server.affected_answers import AffectedAnswers
from gate.server.auth import build_auth, server_credentials
from gate.server.limits import LimitsInterceptor, ScanLimits
from gate.server.metrics_interceptor import MetricsInterceptor
from gate.server.servicer import register
from gate.server.workers import Workers
from gate.service import GateService
from gate.store.audit_store import SqlAuditStore
from gate.store.checkpoint import WalCheckpointer
from gate.store.db import create_engine_for, has_wal, migrate
from gate.store.exceptions import SqlExceptionStore
from gate.store.history import SqlDecisionHistory
from gate.store.journal import SqlJournalStore
from gate.store.repository import SqlRepository
from gate.store.tokens import SqlTokenStore
from gate.v1 import gate_pb2 as pb
from gate.vuln_exceptions import ExceptionService
from gate.webhook.wiring import Webhook, webhook_from_settings
from scanners.clair import ClairScanner
from scanners.interface import Scanner
from scanners.trivy import TrivyScanner, TrivyServer

log = logging.getLogger(__name__)
# Seconds between trims of the affected-answers change feed (SqlRepository.prune_affected_changes).
_PRUNE_EVERY = 60.0

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Gate"].full_name
# The default of GATE_MAX_MESSAGE_BYTES (Settings.max_message_bytes): imported reports can be large.
MAX_MESSAGE_BYTES = Settings.max_message_bytes


@dataclass
class RunningGate:
    """A started server and the parts it owns, so callers (tests, `serve`) can stop it cleanly."""

    server: grpc.Server
    port: int
    address: str
    runner: JobRunner
    repo: SqlRepository
    service: GateService
    health: health.HealthServicer
    engine: EngineSource | None = None
    notifier: NotifierServer | None = None  # Clair's webhook endpoint, when GATE_NOTIFIER_LISTEN is set
    scheduler: RescanScheduler | None = None  # scheduled rescans (tick() may also be called directly)
    alerter: Alerter | None = None
    rescans: SchedulerThread | None = None  # ticks scheduler + alert delivery, when GATE_RESCAN_TICK > 0
    metrics: MetricsServer | None = None  # /metrics and /healthz, when GATE_METRICS_LISTEN is set
    webhook: Webhook | None = None  # the admission webhook (HTTPS), when GATE_WEBHOOK_LISTEN is set
    serving: threading.Event = field(default_factory=threading.Event)  # what /healthz reports
    journal: Journal | None = None  # decisions and audit records (flushed on stop when buffered)
    checkpointer: WalCheckpointer | None = None  # SQLite WAL checkpoints, off the request path
    pruner: SchedulerThread | None = None  # trims the affected-answers change feed (primary only)
    warmer: SchedulerThread | None = None  # stores common ids' affected answers (primary only)
    warm_stop: threading.Event = field(default_factory=threading.Event)  # ends a warm pass early

    def stop(self, grace: float = 2.0) -> None:
        """Stop accepting calls, let in-flight ones finish, stop the workers, close the store and engine."""
        self.serving.clear()
        self.health.enter_graceful_shutdown()
        if self.webhook is not None:
            self.webhook.stop()
        if self.notifier is not None:
            self.notifier.stop()
        if self.rescans is not None:
            self.rescans.stop()
        if self.pruner is not None:
            self.pruner.stop()
        self.warm_stop.set()
        if self.warmer is not None:
            self.warmer.stop()
        self.server.stop(grace).wait(grace + 1)
        self.runner.stop()
        if self.journal is not None and not self.journal.close(grace + 5):
            log.error("decision journal: records still queued at shutdown could not be written")
        if self.metrics is not None:
            self.metrics.stop()
        if self.checkpointer is not None:
            self.checkpointer.stop()
        self.repo.close()
        if self.engine is not None:
            self.engine.close()


def build_scanners(settings: Settings) -> dict[str, Scanner]:
    """The available scanner adapters by name (the defaults, plus clair whenever Clair is configured)."""
    out: dict[str, Scanner] = {}
    for name in settings.available_scanners:
        if name == "clair":
            if not settings.clair_url:
                raise InvalidArgument("lists clair, but GATE_CLAIR_URL is not set", "GATE_SCANNERS")
            try:
                out[name] = ClairScanner(
                    settings.clair_url, settings.clair_psk, settings.clair_issuer, settings.clair_timeout
                )
            except ValueError as e:  # a bad URL or PSK; the messages never echo the key
                field = "GATE_CLAIR_PSK" if "PSK" in str(e) else "GATE_CLAIR_URL"
                raise InvalidArgument(str(e), field) from None
        elif name == "trivy":
            # Client/server mode when GATE_TRIVY_SERVER is set (checked in config): the DB is the server's.
            server = None
            if settings.trivy_server:
                try:
                    server = TrivyServer(
                        settings.trivy_server,
                        settings.trivy_server_token,
                        settings.trivy_server_token_header,
                    )
                except ValueError as e:
                    # Settings built in code skip from_env's checks; the message never echoes the token.
                    raise InvalidArgument(str(e), "GATE_TRIVY_SERVER") from None
            out[name] = TrivyScanner(
                settings.trivy_bin,
                settings.effective_trivy_cache_dir,
                skip_db_update=settings.trivy_skip_db_update,
                db_repository=settings.trivy_db_repository,
                timeout=settings.trivy_timeout,
                server=server,
            )
        else:
            raise InvalidArgument(
                f"scanner {name!r} is not supported by this build (supported: trivy, clair)", "GATE_SCANNERS"
            )
    return out


def load_policy(settings: Settings) -> Policy:
    """The policy file named by GATE_POLICY, or the built-in defaults."""
    return load_policy_file(settings.policy_file) if settings.policy_file else default_policy()


def create_server(
    settings: Settings, listen: str, clock: Clock | None = None, *, primary: bool = True
) -> RunningGate:
    """Wire everything and start serving on `listen` (e.g. 127.0.0.1:0); return the running gate.

    `primary=False` makes a secondary serving process of `gate serve --workers` (gate/server/workers.py):
    the gRPC service only, on a port the primary already holds. The rest runs once per gate, in the
    primary: resuming scan jobs, the rescan scheduler and alerts, the admission webhook, Clair's
    notifier endpoint, the metrics endpoint and SQLite's WAL checkpoints.
    """
    clock = clock or SystemClock()
    policy = load_policy(settings)
    scanners = build_scanners(settings)
    engine = create_engine_for(settings.effective_database_url, background_checkpoint=True)
    migrate(engine)
    repo = SqlRepository(engine)
    registry = RegistryClient.from_settings(settings)
    timeouts = {
        name: settings.clair_timeout if name == "clair" else settings.trivy_timeout for name in scanners
    }
    # Stored scan targets never hold credentials; the runner gets them (and, for Clair, the registry's
    # blob headers) again just before each scan.
    runner = JobRunner(
        repo,
        scanners,
        clock,
        settings.scan_concurrency,
        timeouts,
        prepare_target=ScanTargetPreparer(registry),
    )
    # The engine client connects lazily, so a gate without a reachable dockerd still starts; docker:
    # references then fail with UNAVAILABLE. Saved archives live under the data dir for the scanner.
    docker = EngineSource(settings.docker_host, work_dir=settings.data_dir / "engine")
    resolver = SourceResolver(registry, docker)
    # Decisions and audit records are committed together, in groups under concurrency (gate/journal.py).
    journal = (
        BufferedJournal(SqlJournalStore(engine), repeats_only=settings.decision_log == "distinct")
        if settings.decision_log in ("buffered", "distinct")
        else Journal(SqlJournalStore(engine))
    )
    audit = AuditLog(SqlAuditStore(engine), via=lambda event: journal.record(None, [event]))
    exception_store = SqlExceptionStore(engine)
    # The alerter and the service refer to each other (breakglass alerts; verdicts into p), so the
    # alerter reaches the service through a closure bound once both exist.
    alerter = Alerter(
        repo,
        lambda digest: service.promoted_verdict(digest),
        lambda digest: digest in repo.digests_in_stages([Stage.P]),
        clock,
        settings.alert_webhook,
        timeout=settings.alert_timeout,
        audit=audit,
    )
    service = GateService(
        repo,
        resolver,
        scanners,
        runner,
        policy,
        clock,
        settings.scanners,
        audit=audit,
        exceptions=exception_store,
        breakglass_actors=settings.breakglass_actors,
        on_breakglass=alerter.breakglass,
        verdict_cache_size=settings.verdict_cache_size,
        journal=journal,
    )
    # An explicit GATE_SIGNING_KEY must exist; the default key is generated on first start.
    signer = Signer(load_or_create_key(settings.effective_signing_key, create=not settings.signing_key))

    # Overload is refused, not queued without bound: beyond max_concurrent_rpcs in flight gRPC answers
    # RESOURCE_EXHAUSTED itself, as it does for a message over max_message_bytes; scan rate, queue and
    # report size limits are checked by the LimitsInterceptor (gate/server/limits.py).
    limits = ScanLimits.from_settings(settings, lambda: runner.backlog)
    # Authentication (gate/server/auth.py): on with GATE_AUTH_REQUIRED, or by default off loopback.
    auth = build_auth(settings, listen, SqlTokenStore(engine), clock)
    credentials = server_credentials(settings)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="gate-rpc"),
        # Metrics first, so calls the limits refuse are counted too (RESOURCE_EXHAUSTED).
        # Auth before limits, so per-principal scan rates count the authenticated principal.
        interceptors=[MetricsInterceptor(), *([] if auth is None else [auth]), LimitsInterceptor(limits)],
        options=[
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
            # Several processes share the port only when asked to (--workers): otherwise a second gate
            # started on a port in use fails at start-up instead of silently taking half the calls.
            ("grpc.so_reuseport", 1 if settings.workers > 1 else 0),
        ],
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs or None,
    )
    register(
        server,
        service,
        affected_cache_rows=settings.affected_cache_rows,
        affected_store_min_rows=settings.affected_store_min_rows,
    )
    ledger_servicer.register(server, PromotionLedger(service, repo, signer, audit))
    exceptions_servicer.register(server, ExceptionService(exception_store, repo, policy, clock, audit))
    audit_servicer.register_audit(server, audit)
    policy_servicer.register_policies(server, PolicyTools(service, SqlDecisionHistory(engine), policy, clock))
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (
            SERVICE_NAME,
            audit_servicer.SERVICE_NAME,
            exceptions_servicer.SERVICE_NAME,
            ledger_servicer.SERVICE_NAME,
            policy_servicer.SERVICE_NAME,
            health.SERVICE_NAME,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    try:
        port = (
            server.add_insecure_port(listen)
            if credentials is None
            else server.add_secure_port(listen, credentials)
        )
    except RuntimeError:  # grpcio raises where it used to return 0 (port in use, bad address)
        port = 0
    if port == 0:
        repo.close()
        docker.close()
        in_use = " (in use by another process?)" if settings.workers <= 1 else ""
        raise InvalidArgument(f"cannot listen on {listen!r}{in_use}", "listen")
    try:
        notifier = _start_notifier(settings, repo, clock) if primary else None
    except OSError as e:  # the webhook port is taken or not bindable
        repo.close()
        docker.close()
        raise InvalidArgument(
            f"cannot listen on {settings.notifier_listen!r}: {e}", "GATE_NOTIFIER_LISTEN"
        ) from e
    serving = threading.Event()
    metrics_server = None
    if settings.metrics_listen and primary:
        try:
            metrics_server = MetricsServer(settings.metrics_listen, serving.is_set)
        except OSError as e:  # the metrics port is taken or not bindable
            if notifier is not None:
                notifier.stop()
            repo.close()
            docker.close()
            raise InvalidArgument(
                f"cannot listen on {settings.metrics_listen!r}: {e}", "GATE_METRICS_LISTEN"
            ) from e
        metrics_server.start()
    try:  # bound now so a bad address or certificate fails start-up; started with the rest below
        webhook = (
            webhook_from_settings(
                settings, service, repo, registry.resolve, clock, audit, observe_webhook, policy=policy
            )
            if primary
            else None
        )
    except InvalidArgument:
        for part in (notifier, metrics_server):
            if part is not None:
                part.stop()
        repo.close()
        docker.close()
        raise
    server.start()
    runner.start(resume=primary)
    scheduler = RescanScheduler(
        repo,
        service,
        clock,
        settings.rescan_interval,
        db_state=lambda: {n: s.current_db() for n, s in scanners.items() if isinstance(s, TrivyScanner)},
        on_rescanned=alerter.on_rescanned,
    )
    rescans = None
    if settings.rescan_tick > 0 and primary:
        rescans = SchedulerThread(lambda: (scheduler.tick(), alerter.deliver()), settings.rescan_tick)
        rescans.start()
    # The change feed behind FindAffectedImagesPages' ready answers grows by a row per image write;
    # one process trims it for all (a kept answer whose mark predates the trim is read whole again).
    pruner = None
    if primary:
        pruner = SchedulerThread(repo.prune_affected_changes, _PRUNE_EVERY, name="gate-prune")
        pruner.start()
    # The answers of the most common ids, stored before anyone asks, so that the first question of an
    # incident ("which images have CVE-X?") starts from a stored answer in every process. Paced: after
    # each id a pause as long as its work, so a pass takes at most half a core from requests. Between
    # passes, a watch every few seconds stores the answers of ids that have just become common (a
    # rescan wave after a new vulnerability database), while they are still small.
    warmer = None
    warm_stop = threading.Event()
    if primary and settings.affected_warm_every > 0 and settings.affected_store_min_rows > 0:
        warm_every, watch_every = settings.affected_warm_every, settings.affected_watch_every
        warming = AffectedAnswers(
            service,
            max_rows=0,
            store_min_rows=settings.affected_store_min_rows,
            watch_every=watch_every,
        )
        if 0 < watch_every < warm_every:
            warmer = SchedulerThread(
                lambda: warming.tick(warm_every=warm_every, pace=True, stop=warm_stop),
                watch_every,
                name="gate-warm",
            )
        else:
            warmer = SchedulerThread(
                lambda: warming.warm(pace=True, stop=warm_stop), warm_every, name="gate-warm"
            )
        warmer.start()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    serving.set()
    if webhook is not None:
        webhook.start()
    host = listen.rsplit(":", 1)[0]
    address = f"{host}:{port}"
    log.info(
        "gate listening on %s (policy %s, database %s)", address, policy.digest[:12], _safe_url(settings)
    )
    # SQLite: WAL checkpoints on their own thread instead of inside every ~150th commit. Started last,
    # with nothing after it that can fail (the engine's commits leave checkpoints to it).
    checkpointer = WalCheckpointer(engine).start() if has_wal(engine) and primary else None
    return RunningGate(
        server,
        port,
        address,
        runner,
        repo,
        service,
        health_servicer,
        docker,
        notifier,
        scheduler=scheduler,
        alerter=alerter,
        rescans=rescans,
        metrics=metrics_server,
        webhook=webhook,
        journal=journal,
        serving=serving,
        checkpointer=checkpointer,
        pruner=pruner,
        warmer=warmer,
        warm_stop=warm_stop,
    )


def _start_notifier(settings: Settings, repo: SqlRepository, clock: Clock) -> NotifierServer | None:
    """Clair's notifier webhook on GATE_NOTIFIER_LISTEN (off when unset); flags land in the store."""
    if not settings.notifier_listen:
        return None
    notifier = ClairNotifier(settings.clair_url, settings.clair_psk, settings.clair_issuer, repo, clock)
    server = NotifierServer(notifier, settings.notifier_listen)
    server.start()
    return server


def _safe_url(settings: Settings) -> str:
    """The database URL without a password, for logs."""
    url = settings.effective_database_url
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url


def serve(settings: Settings, listen: str, metrics_dir: Path | None = None) -> None:
    """Run a gate server until SIGINT or SIGTERM: with `settings.workers` > 1, as that many processes.

    `metrics_dir` is the multiprocess-metrics directory gate/server/workers.py's prepare_metrics made
    (removed when the secondaries stop).
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    running = create_server(settings, listen)
    workers = None
    if settings.workers > 1:
        # The secondaries bind the port the primary holds now (listen may have said port 0).
        host = listen.rsplit(":", 1)[0]
        try:
            workers = Workers(f"{host}:{running.port}", settings.workers - 1, metrics_dir=metrics_dir).start()
        except BaseException:
            running.stop()
            raise
        log.info("gate serving in %d processes (secondaries: pids %s)", settings.workers, workers.pids)
    done = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: shutting down", signum)
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    # Printed (not only logged) so scripts and tests can learn the real port when listening on :0.
    print(f"gate: listening on {running.address}", flush=True)
    if running.webhook is not None:
        print(f"gate: admission webhook on {running.webhook.url}", flush=True)
    done.wait()
    if workers is not None:
        workers.stop()
    running.stop()
