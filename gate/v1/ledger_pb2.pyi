import datetime

from gate.v1 import gate_pb2 as _gate_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PromoteRequest(_message.Message):
    __slots__ = ("image", "from_stage", "to_stage", "target", "breakglass_reason")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    FROM_STAGE_FIELD_NUMBER: _ClassVar[int]
    TO_STAGE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    BREAKGLASS_REASON_FIELD_NUMBER: _ClassVar[int]
    image: str
    from_stage: str
    to_stage: str
    target: str
    breakglass_reason: str
    def __init__(self, image: _Optional[str] = ..., from_stage: _Optional[str] = ..., to_stage: _Optional[str] = ..., target: _Optional[str] = ..., breakglass_reason: _Optional[str] = ...) -> None: ...

class Promotion(_message.Message):
    __slots__ = ("id", "digest", "from_stage", "to_stage", "target", "policy_digest", "findings_digest", "decision_id", "actor", "promoted_at", "expires_at", "breakglass", "breakglass_reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    FROM_STAGE_FIELD_NUMBER: _ClassVar[int]
    TO_STAGE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    POLICY_DIGEST_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_DIGEST_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    PROMOTED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    BREAKGLASS_FIELD_NUMBER: _ClassVar[int]
    BREAKGLASS_REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    digest: str
    from_stage: str
    to_stage: str
    target: str
    policy_digest: str
    findings_digest: str
    decision_id: str
    actor: str
    promoted_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    breakglass: bool
    breakglass_reason: str
    def __init__(self, id: _Optional[str] = ..., digest: _Optional[str] = ..., from_stage: _Optional[str] = ..., to_stage: _Optional[str] = ..., target: _Optional[str] = ..., policy_digest: _Optional[str] = ..., findings_digest: _Optional[str] = ..., decision_id: _Optional[str] = ..., actor: _Optional[str] = ..., promoted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., breakglass: _Optional[bool] = ..., breakglass_reason: _Optional[str] = ...) -> None: ...

class PromoteResponse(_message.Message):
    __slots__ = ("decision", "promoted", "promotion", "receipt")
    DECISION_FIELD_NUMBER: _ClassVar[int]
    PROMOTED_FIELD_NUMBER: _ClassVar[int]
    PROMOTION_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    decision: _gate_pb2.Decision
    promoted: bool
    promotion: Promotion
    receipt: str
    def __init__(self, decision: _Optional[_Union[_gate_pb2.Decision, _Mapping]] = ..., promoted: _Optional[bool] = ..., promotion: _Optional[_Union[Promotion, _Mapping]] = ..., receipt: _Optional[str] = ...) -> None: ...

class ListPromotionsRequest(_message.Message):
    __slots__ = ("stage", "digest", "limit")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    stage: str
    digest: str
    limit: int
    def __init__(self, stage: _Optional[str] = ..., digest: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListPromotionsResponse(_message.Message):
    __slots__ = ("promotions",)
    PROMOTIONS_FIELD_NUMBER: _ClassVar[int]
    promotions: _containers.RepeatedCompositeFieldContainer[Promotion]
    def __init__(self, promotions: _Optional[_Iterable[_Union[Promotion, _Mapping]]] = ...) -> None: ...

class GetPublicKeyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PublicKey(_message.Message):
    __slots__ = ("key_id", "algorithm", "pem")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    PEM_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    algorithm: str
    pem: str
    def __init__(self, key_id: _Optional[str] = ..., algorithm: _Optional[str] = ..., pem: _Optional[str] = ...) -> None: ...
