import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ShowPolicyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PolicySetting(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class PolicyTransition(_message.Message):
    __slots__ = ("transition", "settings")
    TRANSITION_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    transition: str
    settings: _containers.RepeatedCompositeFieldContainer[PolicySetting]
    def __init__(self, transition: _Optional[str] = ..., settings: _Optional[_Iterable[_Union[PolicySetting, _Mapping]]] = ...) -> None: ...

class PolicyView(_message.Message):
    __slots__ = ("source", "digest", "normalized_yaml", "normalized_json", "transitions")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    NORMALIZED_YAML_FIELD_NUMBER: _ClassVar[int]
    NORMALIZED_JSON_FIELD_NUMBER: _ClassVar[int]
    TRANSITIONS_FIELD_NUMBER: _ClassVar[int]
    source: str
    digest: str
    normalized_yaml: str
    normalized_json: str
    transitions: _containers.RepeatedCompositeFieldContainer[PolicyTransition]
    def __init__(self, source: _Optional[str] = ..., digest: _Optional[str] = ..., normalized_yaml: _Optional[str] = ..., normalized_json: _Optional[str] = ..., transitions: _Optional[_Iterable[_Union[PolicyTransition, _Mapping]]] = ...) -> None: ...

class ValidatePolicyRequest(_message.Message):
    __slots__ = ("text", "source")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    text: str
    source: str
    def __init__(self, text: _Optional[str] = ..., source: _Optional[str] = ...) -> None: ...

class PolicyProblem(_message.Message):
    __slots__ = ("line", "field", "message")
    LINE_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    line: int
    field: str
    message: str
    def __init__(self, line: _Optional[int] = ..., field: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ValidatePolicyResponse(_message.Message):
    __slots__ = ("valid", "errors", "digest")
    VALID_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    valid: bool
    errors: _containers.RepeatedCompositeFieldContainer[PolicyProblem]
    digest: str
    def __init__(self, valid: _Optional[bool] = ..., errors: _Optional[_Iterable[_Union[PolicyProblem, _Mapping]]] = ..., digest: _Optional[str] = ...) -> None: ...

class ReplayPolicyRequest(_message.Message):
    __slots__ = ("text", "source", "since", "transition")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    TRANSITION_FIELD_NUMBER: _ClassVar[int]
    text: str
    source: str
    since: str
    transition: str
    def __init__(self, text: _Optional[str] = ..., source: _Optional[str] = ..., since: _Optional[str] = ..., transition: _Optional[str] = ...) -> None: ...

class ReplayChange(_message.Message):
    __slots__ = ("digest", "transition", "evaluated_at", "was_allowed", "would_allow", "reasons", "evidence_changed", "recorded_policy_digest")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    TRANSITION_FIELD_NUMBER: _ClassVar[int]
    EVALUATED_AT_FIELD_NUMBER: _ClassVar[int]
    WAS_ALLOWED_FIELD_NUMBER: _ClassVar[int]
    WOULD_ALLOW_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_CHANGED_FIELD_NUMBER: _ClassVar[int]
    RECORDED_POLICY_DIGEST_FIELD_NUMBER: _ClassVar[int]
    digest: str
    transition: str
    evaluated_at: _timestamp_pb2.Timestamp
    was_allowed: bool
    would_allow: bool
    reasons: _containers.RepeatedScalarFieldContainer[str]
    evidence_changed: bool
    recorded_policy_digest: str
    def __init__(self, digest: _Optional[str] = ..., transition: _Optional[str] = ..., evaluated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., was_allowed: _Optional[bool] = ..., would_allow: _Optional[bool] = ..., reasons: _Optional[_Iterable[str]] = ..., evidence_changed: _Optional[bool] = ..., recorded_policy_digest: _Optional[str] = ...) -> None: ...

class ReplayTransitionCount(_message.Message):
    __slots__ = ("transition", "total", "denied_before", "denied_after", "newly_denied", "newly_allowed")
    TRANSITION_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    DENIED_BEFORE_FIELD_NUMBER: _ClassVar[int]
    DENIED_AFTER_FIELD_NUMBER: _ClassVar[int]
    NEWLY_DENIED_FIELD_NUMBER: _ClassVar[int]
    NEWLY_ALLOWED_FIELD_NUMBER: _ClassVar[int]
    transition: str
    total: int
    denied_before: int
    denied_after: int
    newly_denied: int
    newly_allowed: int
    def __init__(self, transition: _Optional[str] = ..., total: _Optional[int] = ..., denied_before: _Optional[int] = ..., denied_after: _Optional[int] = ..., newly_denied: _Optional[int] = ..., newly_allowed: _Optional[int] = ...) -> None: ...

class ReplayPolicyResponse(_message.Message):
    __slots__ = ("candidate_digest", "active_digest", "since", "total", "transitions", "changes")
    CANDIDATE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    TRANSITIONS_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    candidate_digest: str
    active_digest: str
    since: _timestamp_pb2.Timestamp
    total: int
    transitions: _containers.RepeatedCompositeFieldContainer[ReplayTransitionCount]
    changes: _containers.RepeatedCompositeFieldContainer[ReplayChange]
    def __init__(self, candidate_digest: _Optional[str] = ..., active_digest: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., total: _Optional[int] = ..., transitions: _Optional[_Iterable[_Union[ReplayTransitionCount, _Mapping]]] = ..., changes: _Optional[_Iterable[_Union[ReplayChange, _Mapping]]] = ...) -> None: ...
