"""The gate.v1.Gate servicer: thin — protobuf in, service call, protobuf out.

Errors are translated once, by `_guard` with gate/server/status.py; a deny is a normal reply.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast

import grpc

from gate.server import convert
from gate.server.actor import actor_of
from gate.server.affected_answers import MAX_ROWS, STORE_MIN_ROWS, AffectedAnswers
from gate.server.status import status_for
from gate.service import UNATTRIBUTED, GateService
from gate.v1 import gate_pb2 as pb
from gate.v1 import gate_pb2_grpc as pb_grpc

T = TypeVar("T")
# How long CheckPromotion(scan_if_stale) waits for scans when the caller set no deadline.
_SCAN_IF_STALE_WAIT = 600.0
Handler = Callable[[Any, Any, grpc.ServicerContext], T]


def _guard(fn: Handler[T]) -> Handler[T]:
    """Turn any exception raised by a unary handler into the matching gRPC status."""

    @functools.wraps(fn)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> T:
        try:
            return fn(self, request, context)
        except Exception as e:
            code, message = status_for(e)
            context.abort(code, message)
            raise AssertionError("unreachable") from None  # abort always raises

    return wrapper


def _guard_stream(fn: Handler[Iterator[T]]) -> Handler[Iterator[T]]:
    """The same as `_guard`, for server-streaming handlers (errors may surface mid-stream)."""

    @functools.wraps(fn)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Iterator[T]:
        try:
            yield from fn(self, request, context)
        except Exception as e:
            code, message = status_for(e)
            context.abort(code, message)

    return wrapper


class GateServicer(pb_grpc.GateServicer):
    """Implements gate.v1.Gate on top of GateService."""

    def __init__(
        self,
        service: GateService,
        affected_cache_rows: int = MAX_ROWS,
        affected_store_min_rows: int = STORE_MIN_ROWS,
    ) -> None:
        self._service = service
        self._affected = AffectedAnswers(
            service, max_rows=affected_cache_rows, store_min_rows=affected_store_min_rows
        )

    @_guard
    def SubmitScan(
        self, request: pb.SubmitScanRequest, context: grpc.ServicerContext
    ) -> pb.SubmitScanResponse:
        """Queue scans, one job per scanner."""
        jobs = self._service.submit_scan(request.image, list(request.scanners), request.force)
        return pb.SubmitScanResponse(jobs=[convert.job_to_pb(j.job, j.reused) for j in jobs])

    @_guard
    def GetScan(self, request: pb.GetScanRequest, context: grpc.ServicerContext) -> pb.ScanJob:
        """One job by id."""
        return convert.job_to_pb(self._service.get_scan(request.id))

    @_guard_stream
    def WatchScan(
        self, request: pb.WatchScanRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ScanEvent]:
        """Stream state changes until the job ends or the client goes away."""
        for job in self._service.watch_scan(request.id, context.is_active):
            message = job.error if job.error else f"{job.scanner} {job.state.value}"
            yield pb.ScanEvent(job=convert.job_to_pb(job), message=message)

    @_guard
    def CheckPromotion(self, request: pb.CheckPromotionRequest, context: grpc.ServicerContext) -> pb.Decision:
        """The verdict, from stored findings only (with scan_if_stale: after scanning a stale image)."""
        if request.scan_if_stale:
            # Wait for the scans within the caller's deadline, keeping a moment to answer in.
            remaining = context.time_remaining()
            wait = max(0.0, remaining - 2.0) if remaining is not None else _SCAN_IF_STALE_WAIT
            decision = self._service.check_promotion_fresh(
                request.image,
                request.from_stage,
                request.to_stage,
                timeout=wait,
                actor=actor_of(context),
                breakglass_reason=request.breakglass_reason,
            )
            return convert.decision_to_pb(decision)
        decision = self._service.check_promotion(
            request.image,
            request.from_stage,
            request.to_stage,
            actor=actor_of(context),
            breakglass_reason=request.breakglass_reason,
        )
        return convert.decision_to_pb(decision)

    @_guard
    def GetImageReport(
        self, request: pb.GetImageReportRequest, context: grpc.ServicerContext
    ) -> pb.ImageReport:
        """What gate knows about one image."""
        return convert.report_to_pb(self._service.image_report(request.image))

    @_guard
    def ListFindings(
        self, request: pb.ListFindingsRequest, context: grpc.ServicerContext
    ) -> pb.ListFindingsResponse:
        """One page of findings."""
        flt = convert.finding_filter(request)
        digest, page, layers = self._service.list_findings(
            request.image, flt, request.page_token, request.page_size, request.tier
        )
        return pb.ListFindingsResponse(
            digest=digest,
            findings=[
                convert.finding_to_pb(f, layers.get(f.layer_diff_id, UNATTRIBUTED)) for f in page.findings
            ],
            next_page_token="" if page.next_offset is None else str(page.next_offset),
            total=page.total,
        )

    @_guard_stream
    def FindAffectedImages(
        self, request: pb.FindAffectedImagesRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.AffectedImage]:
        """Stream affected images."""
        for row in self._service.affected_images(request.vulnerability_id, request.stage):
            yield convert.affected_to_pb(row)

    @_guard_stream
    def FindAffectedImagesPages(
        self, request: pb.FindAffectedImagesRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.AffectedImagesPage]:
        """Stream the same affected images as FindAffectedImages, a page of rows per message."""
        # From a ready answer patched by what changed since it was read (gate/server/affected_answers.py).
        yield from self._affected.pages(request.vulnerability_id, request.stage, request.page_size)

    @_guard
    def ImportReport(
        self, request: pb.ImportReportRequest, context: grpc.ServicerContext
    ) -> pb.ImportReportResponse:
        """Store a report produced elsewhere."""
        job = self._service.import_report(request.image, request.scanner, request.report)
        return pb.ImportReportResponse(scan=convert.job_to_pb(job), digest=job.digest)

    @_guard
    def AddBase(self, request: pb.AddBaseRequest, context: grpc.ServicerContext) -> pb.Base:
        """Register a base image with a tier."""
        base = self._service.add_base(request.image, request.tier, request.name, actor=actor_of(context))
        return convert.base_to_pb(base)

    @_guard
    def ListBases(self, request: pb.ListBasesRequest, context: grpc.ServicerContext) -> pb.ListBasesResponse:
        """Every catalogued base."""
        return pb.ListBasesResponse(bases=[convert.base_to_pb(b) for b in self._service.list_bases()])

    @_guard
    def DeprecateBase(self, request: pb.DeprecateBaseRequest, context: grpc.ServicerContext) -> pb.Base:
        """Deprecate a base in favour of a successor."""
        base = self._service.deprecate_base(
            request.image, request.superseded_by, request.grace, actor=actor_of(context)
        )
        return convert.base_to_pb(base)

    @_guard
    def RevokeBase(self, request: pb.RevokeBaseRequest, context: grpc.ServicerContext) -> pb.Base:
        """Revoke a base."""
        return convert.base_to_pb(self._service.revoke_base(request.image, actor=actor_of(context)))

    @_guard_stream
    def ListBaseDescendants(
        self, request: pb.ListBaseDescendantsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.BaseDescendant]:
        """Stream every stored image built on a base."""
        base, images = self._service.base_descendants(request.image)
        for image in images:
            yield convert.descendant_to_pb(image, base)

    @_guard_stream
    def RebuildList(
        self, request: pb.RebuildListRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.RebuildItem]:
        """Stream the images to rebuild."""
        for item in self._service.rebuild_list(request.stage):
            yield convert.rebuild_to_pb(item)

    @_guard_stream
    def ListImages(
        self, request: pb.ListImagesRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ImageSummary]:
        """Stream the images in a stage (from the ledger, else from the repository name)."""
        listing = self._service.list_images(request.stage, request.on_base)
        for item in listing.images:
            yield convert.image_summary_to_pb(item, listing)


def register(
    server: grpc.Server,
    service: GateService,
    *,
    affected_cache_rows: int = MAX_ROWS,
    affected_store_min_rows: int = STORE_MIN_ROWS,
) -> None:
    """Attach the servicer to a server (affected answers: rows kept in memory, least rows to store)."""
    servicer = GateServicer(service, affected_cache_rows, affected_store_min_rows)
    cast(Any, pb_grpc).add_GateServicer_to_server(servicer, server)
