import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VerdictState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERDICT_STATE_UNSPECIFIED: _ClassVar[VerdictState]
    EVALUATED: _ClassVar[VerdictState]
    NOT_SCANNED: _ClassVar[VerdictState]
    SCANNING: _ClassVar[VerdictState]
    FAILED: _ClassVar[VerdictState]
    STALE: _ClassVar[VerdictState]
    RESCAN_REQUIRED: _ClassVar[VerdictState]

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    QUEUED: _ClassVar[JobState]
    RUNNING: _ClassVar[JobState]
    SUCCEEDED: _ClassVar[JobState]
    FAILED_JOB: _ClassVar[JobState]
VERDICT_STATE_UNSPECIFIED: VerdictState
EVALUATED: VerdictState
NOT_SCANNED: VerdictState
SCANNING: VerdictState
FAILED: VerdictState
STALE: VerdictState
RESCAN_REQUIRED: VerdictState
JOB_STATE_UNSPECIFIED: JobState
QUEUED: JobState
RUNNING: JobState
SUCCEEDED: JobState
FAILED_JOB: JobState

class SubmitScanRequest(_message.Message):
    __slots__ = ("image", "scanners", "force")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    SCANNERS_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    image: str
    scanners: _containers.RepeatedScalarFieldContainer[str]
    force: bool
    def __init__(self, image: _Optional[str] = ..., scanners: _Optional[_Iterable[str]] = ..., force: _Optional[bool] = ...) -> None: ...

class SubmitScanResponse(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[ScanJob]
    def __init__(self, jobs: _Optional[_Iterable[_Union[ScanJob, _Mapping]]] = ...) -> None: ...

class ScanJob(_message.Message):
    __slots__ = ("id", "digest", "scanner", "state", "image", "error", "created_at", "started_at", "finished_at", "scanner_version", "db_version", "finding_count", "reused", "platform")
    ID_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SCANNER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    SCANNER_VERSION_FIELD_NUMBER: _ClassVar[int]
    DB_VERSION_FIELD_NUMBER: _ClassVar[int]
    FINDING_COUNT_FIELD_NUMBER: _ClassVar[int]
    REUSED_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    id: str
    digest: str
    scanner: str
    state: JobState
    image: str
    error: str
    created_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    scanner_version: str
    db_version: str
    finding_count: int
    reused: bool
    platform: str
    def __init__(self, id: _Optional[str] = ..., digest: _Optional[str] = ..., scanner: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., image: _Optional[str] = ..., error: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., scanner_version: _Optional[str] = ..., db_version: _Optional[str] = ..., finding_count: _Optional[int] = ..., reused: _Optional[bool] = ..., platform: _Optional[str] = ...) -> None: ...

class GetScanRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class WatchScanRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ScanEvent(_message.Message):
    __slots__ = ("job", "message")
    JOB_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    job: ScanJob
    message: str
    def __init__(self, job: _Optional[_Union[ScanJob, _Mapping]] = ..., message: _Optional[str] = ...) -> None: ...

class CheckPromotionRequest(_message.Message):
    __slots__ = ("image", "from_stage", "to_stage", "scan_if_stale", "breakglass_reason")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    FROM_STAGE_FIELD_NUMBER: _ClassVar[int]
    TO_STAGE_FIELD_NUMBER: _ClassVar[int]
    SCAN_IF_STALE_FIELD_NUMBER: _ClassVar[int]
    BREAKGLASS_REASON_FIELD_NUMBER: _ClassVar[int]
    image: str
    from_stage: str
    to_stage: str
    scan_if_stale: bool
    breakglass_reason: str
    def __init__(self, image: _Optional[str] = ..., from_stage: _Optional[str] = ..., to_stage: _Optional[str] = ..., scan_if_stale: _Optional[bool] = ..., breakglass_reason: _Optional[str] = ...) -> None: ...

class Violation(_message.Message):
    __slots__ = ("rule", "message", "vulnerability_id", "package", "installed_version", "fixed_version", "severity", "layer_diff_id", "introduced_by", "platform")
    RULE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    VULNERABILITY_ID_FIELD_NUMBER: _ClassVar[int]
    PACKAGE_FIELD_NUMBER: _ClassVar[int]
    INSTALLED_VERSION_FIELD_NUMBER: _ClassVar[int]
    FIXED_VERSION_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    LAYER_DIFF_ID_FIELD_NUMBER: _ClassVar[int]
    INTRODUCED_BY_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    rule: str
    message: str
    vulnerability_id: str
    package: str
    installed_version: str
    fixed_version: str
    severity: str
    layer_diff_id: str
    introduced_by: str
    platform: str
    def __init__(self, rule: _Optional[str] = ..., message: _Optional[str] = ..., vulnerability_id: _Optional[str] = ..., package: _Optional[str] = ..., installed_version: _Optional[str] = ..., fixed_version: _Optional[str] = ..., severity: _Optional[str] = ..., layer_diff_id: _Optional[str] = ..., introduced_by: _Optional[str] = ..., platform: _Optional[str] = ...) -> None: ...

class Decision(_message.Message):
    __slots__ = ("allowed", "digest", "from_stage", "to_stage", "state", "violations", "warnings", "policy_digest", "evaluated_at", "scanned_at", "summary", "applied_exceptions", "breakglass", "breakglass_reason", "enforced")
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    FROM_STAGE_FIELD_NUMBER: _ClassVar[int]
    TO_STAGE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    POLICY_DIGEST_FIELD_NUMBER: _ClassVar[int]
    EVALUATED_AT_FIELD_NUMBER: _ClassVar[int]
    SCANNED_AT_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    APPLIED_EXCEPTIONS_FIELD_NUMBER: _ClassVar[int]
    BREAKGLASS_FIELD_NUMBER: _ClassVar[int]
    BREAKGLASS_REASON_FIELD_NUMBER: _ClassVar[int]
    ENFORCED_FIELD_NUMBER: _ClassVar[int]
    allowed: bool
    digest: str
    from_stage: str
    to_stage: str
    state: VerdictState
    violations: _containers.RepeatedCompositeFieldContainer[Violation]
    warnings: _containers.RepeatedScalarFieldContainer[str]
    policy_digest: str
    evaluated_at: _timestamp_pb2.Timestamp
    scanned_at: _timestamp_pb2.Timestamp
    summary: str
    applied_exceptions: _containers.RepeatedCompositeFieldContainer[AppliedException]
    breakglass: bool
    breakglass_reason: str
    enforced: bool
    def __init__(self, allowed: _Optional[bool] = ..., digest: _Optional[str] = ..., from_stage: _Optional[str] = ..., to_stage: _Optional[str] = ..., state: _Optional[_Union[VerdictState, str]] = ..., violations: _Optional[_Iterable[_Union[Violation, _Mapping]]] = ..., warnings: _Optional[_Iterable[str]] = ..., policy_digest: _Optional[str] = ..., evaluated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., scanned_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., summary: _Optional[str] = ..., applied_exceptions: _Optional[_Iterable[_Union[AppliedException, _Mapping]]] = ..., breakglass: _Optional[bool] = ..., breakglass_reason: _Optional[str] = ..., enforced: _Optional[bool] = ...) -> None: ...

class AppliedException(_message.Message):
    __slots__ = ("exception_id", "vulnerability_id", "finding_id", "package", "installed_version", "scope", "expires_at", "owner", "ticket", "reason", "platform", "rule")
    EXCEPTION_ID_FIELD_NUMBER: _ClassVar[int]
    VULNERABILITY_ID_FIELD_NUMBER: _ClassVar[int]
    FINDING_ID_FIELD_NUMBER: _ClassVar[int]
    PACKAGE_FIELD_NUMBER: _ClassVar[int]
    INSTALLED_VERSION_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    TICKET_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    exception_id: str
    vulnerability_id: str
    finding_id: str
    package: str
    installed_version: str
    scope: str
    expires_at: _timestamp_pb2.Timestamp
    owner: str
    ticket: str
    reason: str
    platform: str
    rule: str
    def __init__(self, exception_id: _Optional[str] = ..., vulnerability_id: _Optional[str] = ..., finding_id: _Optional[str] = ..., package: _Optional[str] = ..., installed_version: _Optional[str] = ..., scope: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., owner: _Optional[str] = ..., ticket: _Optional[str] = ..., reason: _Optional[str] = ..., platform: _Optional[str] = ..., rule: _Optional[str] = ...) -> None: ...

class GetImageReportRequest(_message.Message):
    __slots__ = ("image",)
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    image: str
    def __init__(self, image: _Optional[str] = ...) -> None: ...

class ScanSummary(_message.Message):
    __slots__ = ("scanner", "scanner_version", "db_version", "db_updated_at", "scanned_at", "state", "error", "imported", "job_id")
    SCANNER_FIELD_NUMBER: _ClassVar[int]
    SCANNER_VERSION_FIELD_NUMBER: _ClassVar[int]
    DB_VERSION_FIELD_NUMBER: _ClassVar[int]
    DB_UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    SCANNED_AT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    IMPORTED_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    scanner: str
    scanner_version: str
    db_version: str
    db_updated_at: _timestamp_pb2.Timestamp
    scanned_at: _timestamp_pb2.Timestamp
    state: JobState
    error: str
    imported: bool
    job_id: str
    def __init__(self, scanner: _Optional[str] = ..., scanner_version: _Optional[str] = ..., db_version: _Optional[str] = ..., db_updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., scanned_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state: _Optional[_Union[JobState, str]] = ..., error: _Optional[str] = ..., imported: _Optional[bool] = ..., job_id: _Optional[str] = ...) -> None: ...

class SeverityCount(_message.Message):
    __slots__ = ("severity", "count")
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    severity: str
    count: int
    def __init__(self, severity: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class ImageReport(_message.Message):
    __slots__ = ("digest", "config_digest", "registry", "repository", "tags", "stage", "diff_ids", "scans", "counts", "finding_count", "os", "user", "lineage", "lineage_warnings", "annotated_base_digest", "annotated_base_name", "platforms", "scanner_counts", "disagreements", "severity_source")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    CONFIG_DIGEST_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    DIFF_IDS_FIELD_NUMBER: _ClassVar[int]
    SCANS_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    FINDING_COUNT_FIELD_NUMBER: _ClassVar[int]
    OS_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    LINEAGE_FIELD_NUMBER: _ClassVar[int]
    LINEAGE_WARNINGS_FIELD_NUMBER: _ClassVar[int]
    ANNOTATED_BASE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    ANNOTATED_BASE_NAME_FIELD_NUMBER: _ClassVar[int]
    PLATFORMS_FIELD_NUMBER: _ClassVar[int]
    SCANNER_COUNTS_FIELD_NUMBER: _ClassVar[int]
    DISAGREEMENTS_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_SOURCE_FIELD_NUMBER: _ClassVar[int]
    digest: str
    config_digest: str
    registry: str
    repository: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    stage: str
    diff_ids: _containers.RepeatedScalarFieldContainer[str]
    scans: _containers.RepeatedCompositeFieldContainer[ScanSummary]
    counts: _containers.RepeatedCompositeFieldContainer[SeverityCount]
    finding_count: int
    os: str
    user: str
    lineage: _containers.RepeatedCompositeFieldContainer[Base]
    lineage_warnings: _containers.RepeatedScalarFieldContainer[str]
    annotated_base_digest: str
    annotated_base_name: str
    platforms: _containers.RepeatedCompositeFieldContainer[PlatformSummary]
    scanner_counts: _containers.RepeatedCompositeFieldContainer[ScannerCounts]
    disagreements: _containers.RepeatedCompositeFieldContainer[Disagreement]
    severity_source: str
    def __init__(self, digest: _Optional[str] = ..., config_digest: _Optional[str] = ..., registry: _Optional[str] = ..., repository: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., stage: _Optional[str] = ..., diff_ids: _Optional[_Iterable[str]] = ..., scans: _Optional[_Iterable[_Union[ScanSummary, _Mapping]]] = ..., counts: _Optional[_Iterable[_Union[SeverityCount, _Mapping]]] = ..., finding_count: _Optional[int] = ..., os: _Optional[str] = ..., user: _Optional[str] = ..., lineage: _Optional[_Iterable[_Union[Base, _Mapping]]] = ..., lineage_warnings: _Optional[_Iterable[str]] = ..., annotated_base_digest: _Optional[str] = ..., annotated_base_name: _Optional[str] = ..., platforms: _Optional[_Iterable[_Union[PlatformSummary, _Mapping]]] = ..., scanner_counts: _Optional[_Iterable[_Union[ScannerCounts, _Mapping]]] = ..., disagreements: _Optional[_Iterable[_Union[Disagreement, _Mapping]]] = ..., severity_source: _Optional[str] = ...) -> None: ...

class ScannerCounts(_message.Message):
    __slots__ = ("scanner", "counts", "finding_count")
    SCANNER_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    FINDING_COUNT_FIELD_NUMBER: _ClassVar[int]
    scanner: str
    counts: _containers.RepeatedCompositeFieldContainer[SeverityCount]
    finding_count: int
    def __init__(self, scanner: _Optional[str] = ..., counts: _Optional[_Iterable[_Union[SeverityCount, _Mapping]]] = ..., finding_count: _Optional[int] = ...) -> None: ...

class ScannerSeverity(_message.Message):
    __slots__ = ("scanner", "severity", "scanner_severity")
    SCANNER_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    SCANNER_SEVERITY_FIELD_NUMBER: _ClassVar[int]
    scanner: str
    severity: str
    scanner_severity: str
    def __init__(self, scanner: _Optional[str] = ..., severity: _Optional[str] = ..., scanner_severity: _Optional[str] = ...) -> None: ...

class Disagreement(_message.Message):
    __slots__ = ("vulnerability_id", "aliases", "package", "installed_version", "severities", "found_by")
    VULNERABILITY_ID_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    PACKAGE_FIELD_NUMBER: _ClassVar[int]
    INSTALLED_VERSION_FIELD_NUMBER: _ClassVar[int]
    SEVERITIES_FIELD_NUMBER: _ClassVar[int]
    FOUND_BY_FIELD_NUMBER: _ClassVar[int]
    vulnerability_id: str
    aliases: _containers.RepeatedScalarFieldContainer[str]
    package: str
    installed_version: str
    severities: _containers.RepeatedCompositeFieldContainer[ScannerSeverity]
    found_by: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, vulnerability_id: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ..., package: _Optional[str] = ..., installed_version: _Optional[str] = ..., severities: _Optional[_Iterable[_Union[ScannerSeverity, _Mapping]]] = ..., found_by: _Optional[_Iterable[str]] = ...) -> None: ...

class PlatformSummary(_message.Message):
    __slots__ = ("platform", "digest", "config_digest", "user", "scans", "counts", "finding_count", "scanner_counts", "disagreements")
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    CONFIG_DIGEST_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    SCANS_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    FINDING_COUNT_FIELD_NUMBER: _ClassVar[int]
    SCANNER_COUNTS_FIELD_NUMBER: _ClassVar[int]
    DISAGREEMENTS_FIELD_NUMBER: _ClassVar[int]
    platform: str
    digest: str
    config_digest: str
    user: str
    scans: _containers.RepeatedCompositeFieldContainer[ScanSummary]
    counts: _containers.RepeatedCompositeFieldContainer[SeverityCount]
    finding_count: int
    scanner_counts: _containers.RepeatedCompositeFieldContainer[ScannerCounts]
    disagreements: _containers.RepeatedCompositeFieldContainer[Disagreement]
    def __init__(self, platform: _Optional[str] = ..., digest: _Optional[str] = ..., config_digest: _Optional[str] = ..., user: _Optional[str] = ..., scans: _Optional[_Iterable[_Union[ScanSummary, _Mapping]]] = ..., counts: _Optional[_Iterable[_Union[SeverityCount, _Mapping]]] = ..., finding_count: _Optional[int] = ..., scanner_counts: _Optional[_Iterable[_Union[ScannerCounts, _Mapping]]] = ..., disagreements: _Optional[_Iterable[_Union[Disagreement, _Mapping]]] = ...) -> None: ...

class Finding(_message.Message):
    __slots__ = ("vulnerability_id", "aliases", "package", "installed_version", "fixed_version", "fix_state", "severity", "scanner_severity", "layer_diff_id", "finding_class", "scanner", "target", "title", "primary_url", "package_path", "introduced_by", "tier")
    VULNERABILITY_ID_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    PACKAGE_FIELD_NUMBER: _ClassVar[int]
    INSTALLED_VERSION_FIELD_NUMBER: _ClassVar[int]
    FIXED_VERSION_FIELD_NUMBER: _ClassVar[int]
    FIX_STATE_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    SCANNER_SEVERITY_FIELD_NUMBER: _ClassVar[int]
    LAYER_DIFF_ID_FIELD_NUMBER: _ClassVar[int]
    FINDING_CLASS_FIELD_NUMBER: _ClassVar[int]
    SCANNER_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_URL_FIELD_NUMBER: _ClassVar[int]
    PACKAGE_PATH_FIELD_NUMBER: _ClassVar[int]
    INTRODUCED_BY_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    vulnerability_id: str
    aliases: _containers.RepeatedScalarFieldContainer[str]
    package: str
    installed_version: str
    fixed_version: str
    fix_state: str
    severity: str
    scanner_severity: str
    layer_diff_id: str
    finding_class: str
    scanner: str
    target: str
    title: str
    primary_url: str
    package_path: str
    introduced_by: str
    tier: str
    def __init__(self, vulnerability_id: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ..., package: _Optional[str] = ..., installed_version: _Optional[str] = ..., fixed_version: _Optional[str] = ..., fix_state: _Optional[str] = ..., severity: _Optional[str] = ..., scanner_severity: _Optional[str] = ..., layer_diff_id: _Optional[str] = ..., finding_class: _Optional[str] = ..., scanner: _Optional[str] = ..., target: _Optional[str] = ..., title: _Optional[str] = ..., primary_url: _Optional[str] = ..., package_path: _Optional[str] = ..., introduced_by: _Optional[str] = ..., tier: _Optional[str] = ...) -> None: ...

class ListFindingsRequest(_message.Message):
    __slots__ = ("image", "min_severity", "vulnerability_id", "package", "finding_class", "fixable_only", "page_size", "page_token", "scanner", "tier")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    MIN_SEVERITY_FIELD_NUMBER: _ClassVar[int]
    VULNERABILITY_ID_FIELD_NUMBER: _ClassVar[int]
    PACKAGE_FIELD_NUMBER: _ClassVar[int]
    FINDING_CLASS_FIELD_NUMBER: _ClassVar[int]
    FIXABLE_ONLY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SCANNER_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    image: str
    min_severity: str
    vulnerability_id: str
    package: str
    finding_class: str
    fixable_only: bool
    page_size: int
    page_token: str
    scanner: str
    tier: str
    def __init__(self, image: _Optional[str] = ..., min_severity: _Optional[str] = ..., vulnerability_id: _Optional[str] = ..., package: _Optional[str] = ..., finding_class: _Optional[str] = ..., fixable_only: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., scanner: _Optional[str] = ..., tier: _Optional[str] = ...) -> None: ...

class ListFindingsResponse(_message.Message):
    __slots__ = ("digest", "findings", "next_page_token", "total")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    digest: str
    findings: _containers.RepeatedCompositeFieldContainer[Finding]
    next_page_token: str
    total: int
    def __init__(self, digest: _Optional[str] = ..., findings: _Optional[_Iterable[_Union[Finding, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total: _Optional[int] = ...) -> None: ...

class FindAffectedImagesRequest(_message.Message):
    __slots__ = ("vulnerability_id", "stage", "page_size")
    VULNERABILITY_ID_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    vulnerability_id: str
    stage: str
    page_size: int
    def __init__(self, vulnerability_id: _Optional[str] = ..., stage: _Optional[str] = ..., page_size: _Optional[int] = ...) -> None: ...

class AffectedImagesPage(_message.Message):
    __slots__ = ("images",)
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[AffectedImage]
    def __init__(self, images: _Optional[_Iterable[_Union[AffectedImage, _Mapping]]] = ...) -> None: ...

class AffectedImage(_message.Message):
    __slots__ = ("digest", "registry", "repository", "tags", "stage", "package", "installed_version", "fixed_version", "severity", "vulnerability_id", "introduced_by", "tier", "indexes")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    PACKAGE_FIELD_NUMBER: _ClassVar[int]
    INSTALLED_VERSION_FIELD_NUMBER: _ClassVar[int]
    FIXED_VERSION_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    VULNERABILITY_ID_FIELD_NUMBER: _ClassVar[int]
    INTRODUCED_BY_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    INDEXES_FIELD_NUMBER: _ClassVar[int]
    digest: str
    registry: str
    repository: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    stage: str
    package: str
    installed_version: str
    fixed_version: str
    severity: str
    vulnerability_id: str
    introduced_by: str
    tier: str
    indexes: _containers.RepeatedCompositeFieldContainer[IndexMembership]
    def __init__(self, digest: _Optional[str] = ..., registry: _Optional[str] = ..., repository: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., stage: _Optional[str] = ..., package: _Optional[str] = ..., installed_version: _Optional[str] = ..., fixed_version: _Optional[str] = ..., severity: _Optional[str] = ..., vulnerability_id: _Optional[str] = ..., introduced_by: _Optional[str] = ..., tier: _Optional[str] = ..., indexes: _Optional[_Iterable[_Union[IndexMembership, _Mapping]]] = ...) -> None: ...

class IndexMembership(_message.Message):
    __slots__ = ("digest", "registry", "repository", "tags", "platform")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    digest: str
    registry: str
    repository: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    platform: str
    def __init__(self, digest: _Optional[str] = ..., registry: _Optional[str] = ..., repository: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., platform: _Optional[str] = ...) -> None: ...

class ImportReportRequest(_message.Message):
    __slots__ = ("image", "scanner", "report")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    SCANNER_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    image: str
    scanner: str
    report: bytes
    def __init__(self, image: _Optional[str] = ..., scanner: _Optional[str] = ..., report: _Optional[bytes] = ...) -> None: ...

class ImportReportResponse(_message.Message):
    __slots__ = ("scan", "digest")
    SCAN_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    scan: ScanJob
    digest: str
    def __init__(self, scan: _Optional[_Union[ScanJob, _Mapping]] = ..., digest: _Optional[str] = ...) -> None: ...

class Base(_message.Message):
    __slots__ = ("name", "tier", "digest", "reference", "status", "superseded_by", "superseded_by_name", "deprecated_at", "grace_until", "registered_at", "chain_length", "chain_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SUPERSEDED_BY_FIELD_NUMBER: _ClassVar[int]
    SUPERSEDED_BY_NAME_FIELD_NUMBER: _ClassVar[int]
    DEPRECATED_AT_FIELD_NUMBER: _ClassVar[int]
    GRACE_UNTIL_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_AT_FIELD_NUMBER: _ClassVar[int]
    CHAIN_LENGTH_FIELD_NUMBER: _ClassVar[int]
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    tier: str
    digest: str
    reference: str
    status: str
    superseded_by: str
    superseded_by_name: str
    deprecated_at: _timestamp_pb2.Timestamp
    grace_until: _timestamp_pb2.Timestamp
    registered_at: _timestamp_pb2.Timestamp
    chain_length: int
    chain_id: str
    def __init__(self, name: _Optional[str] = ..., tier: _Optional[str] = ..., digest: _Optional[str] = ..., reference: _Optional[str] = ..., status: _Optional[str] = ..., superseded_by: _Optional[str] = ..., superseded_by_name: _Optional[str] = ..., deprecated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., grace_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., registered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., chain_length: _Optional[int] = ..., chain_id: _Optional[str] = ...) -> None: ...

class AddBaseRequest(_message.Message):
    __slots__ = ("image", "tier", "name")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    image: str
    tier: str
    name: str
    def __init__(self, image: _Optional[str] = ..., tier: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class ListBasesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListBasesResponse(_message.Message):
    __slots__ = ("bases",)
    BASES_FIELD_NUMBER: _ClassVar[int]
    bases: _containers.RepeatedCompositeFieldContainer[Base]
    def __init__(self, bases: _Optional[_Iterable[_Union[Base, _Mapping]]] = ...) -> None: ...

class DeprecateBaseRequest(_message.Message):
    __slots__ = ("image", "superseded_by", "grace")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    SUPERSEDED_BY_FIELD_NUMBER: _ClassVar[int]
    GRACE_FIELD_NUMBER: _ClassVar[int]
    image: str
    superseded_by: str
    grace: str
    def __init__(self, image: _Optional[str] = ..., superseded_by: _Optional[str] = ..., grace: _Optional[str] = ...) -> None: ...

class RevokeBaseRequest(_message.Message):
    __slots__ = ("image",)
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    image: str
    def __init__(self, image: _Optional[str] = ...) -> None: ...

class ListBaseDescendantsRequest(_message.Message):
    __slots__ = ("image",)
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    image: str
    def __init__(self, image: _Optional[str] = ...) -> None: ...

class BaseDescendant(_message.Message):
    __slots__ = ("digest", "registry", "repository", "tags", "stage", "base_name", "base_digest")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    BASE_NAME_FIELD_NUMBER: _ClassVar[int]
    BASE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    digest: str
    registry: str
    repository: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    stage: str
    base_name: str
    base_digest: str
    def __init__(self, digest: _Optional[str] = ..., registry: _Optional[str] = ..., repository: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., stage: _Optional[str] = ..., base_name: _Optional[str] = ..., base_digest: _Optional[str] = ...) -> None: ...

class RebuildListRequest(_message.Message):
    __slots__ = ("stage",)
    STAGE_FIELD_NUMBER: _ClassVar[int]
    stage: str
    def __init__(self, stage: _Optional[str] = ...) -> None: ...

class RebuildItem(_message.Message):
    __slots__ = ("digest", "registry", "repository", "tags", "stage", "base", "reason", "successor_digest", "successor_name")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    BASE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SUCCESSOR_DIGEST_FIELD_NUMBER: _ClassVar[int]
    SUCCESSOR_NAME_FIELD_NUMBER: _ClassVar[int]
    digest: str
    registry: str
    repository: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    stage: str
    base: Base
    reason: str
    successor_digest: str
    successor_name: str
    def __init__(self, digest: _Optional[str] = ..., registry: _Optional[str] = ..., repository: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., stage: _Optional[str] = ..., base: _Optional[_Union[Base, _Mapping]] = ..., reason: _Optional[str] = ..., successor_digest: _Optional[str] = ..., successor_name: _Optional[str] = ...) -> None: ...

class ListImagesRequest(_message.Message):
    __slots__ = ("stage", "on_base")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    ON_BASE_FIELD_NUMBER: _ClassVar[int]
    stage: str
    on_base: str
    def __init__(self, stage: _Optional[str] = ..., on_base: _Optional[str] = ...) -> None: ...

class ImageSummary(_message.Message):
    __slots__ = ("digest", "registry", "repository", "tags", "stage", "stage_source", "nearest_base", "worst_severity", "finding_count", "last_scanned_at", "platforms")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    STAGE_SOURCE_FIELD_NUMBER: _ClassVar[int]
    NEAREST_BASE_FIELD_NUMBER: _ClassVar[int]
    WORST_SEVERITY_FIELD_NUMBER: _ClassVar[int]
    FINDING_COUNT_FIELD_NUMBER: _ClassVar[int]
    LAST_SCANNED_AT_FIELD_NUMBER: _ClassVar[int]
    PLATFORMS_FIELD_NUMBER: _ClassVar[int]
    digest: str
    registry: str
    repository: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    stage: str
    stage_source: str
    nearest_base: str
    worst_severity: str
    finding_count: int
    last_scanned_at: _timestamp_pb2.Timestamp
    platforms: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, digest: _Optional[str] = ..., registry: _Optional[str] = ..., repository: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., stage: _Optional[str] = ..., stage_source: _Optional[str] = ..., nearest_base: _Optional[str] = ..., worst_severity: _Optional[str] = ..., finding_count: _Optional[int] = ..., last_scanned_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., platforms: _Optional[_Iterable[str]] = ...) -> None: ...
