import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VulnException(_message.Message):
    __slots__ = ("id", "vulnerability_id", "scope", "expires_at", "owner", "ticket", "reason", "approver", "requested_by", "created_at", "revoked_at", "revoked_by", "justification", "state", "matching_digests", "unused")
    ID_FIELD_NUMBER: _ClassVar[int]
    VULNERABILITY_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    TICKET_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    APPROVER_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    REVOKED_BY_FIELD_NUMBER: _ClassVar[int]
    JUSTIFICATION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MATCHING_DIGESTS_FIELD_NUMBER: _ClassVar[int]
    UNUSED_FIELD_NUMBER: _ClassVar[int]
    id: str
    vulnerability_id: str
    scope: str
    expires_at: _timestamp_pb2.Timestamp
    owner: str
    ticket: str
    reason: str
    approver: str
    requested_by: str
    created_at: _timestamp_pb2.Timestamp
    revoked_at: _timestamp_pb2.Timestamp
    revoked_by: str
    justification: str
    state: str
    matching_digests: _containers.RepeatedScalarFieldContainer[str]
    unused: bool
    def __init__(self, id: _Optional[str] = ..., vulnerability_id: _Optional[str] = ..., scope: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., owner: _Optional[str] = ..., ticket: _Optional[str] = ..., reason: _Optional[str] = ..., approver: _Optional[str] = ..., requested_by: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revoked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revoked_by: _Optional[str] = ..., justification: _Optional[str] = ..., state: _Optional[str] = ..., matching_digests: _Optional[_Iterable[str]] = ..., unused: _Optional[bool] = ...) -> None: ...

class AddExceptionRequest(_message.Message):
    __slots__ = ("vulnerability_id", "scope", "expires", "owner", "ticket", "reason", "approver", "justification")
    VULNERABILITY_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    TICKET_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    APPROVER_FIELD_NUMBER: _ClassVar[int]
    JUSTIFICATION_FIELD_NUMBER: _ClassVar[int]
    vulnerability_id: str
    scope: str
    expires: str
    owner: str
    ticket: str
    reason: str
    approver: str
    justification: str
    def __init__(self, vulnerability_id: _Optional[str] = ..., scope: _Optional[str] = ..., expires: _Optional[str] = ..., owner: _Optional[str] = ..., ticket: _Optional[str] = ..., reason: _Optional[str] = ..., approver: _Optional[str] = ..., justification: _Optional[str] = ...) -> None: ...

class ListExceptionsRequest(_message.Message):
    __slots__ = ("expired", "unused", "include_revoked")
    EXPIRED_FIELD_NUMBER: _ClassVar[int]
    UNUSED_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_REVOKED_FIELD_NUMBER: _ClassVar[int]
    expired: bool
    unused: bool
    include_revoked: bool
    def __init__(self, expired: _Optional[bool] = ..., unused: _Optional[bool] = ..., include_revoked: _Optional[bool] = ...) -> None: ...

class ListExceptionsResponse(_message.Message):
    __slots__ = ("exceptions",)
    EXCEPTIONS_FIELD_NUMBER: _ClassVar[int]
    exceptions: _containers.RepeatedCompositeFieldContainer[VulnException]
    def __init__(self, exceptions: _Optional[_Iterable[_Union[VulnException, _Mapping]]] = ...) -> None: ...

class RevokeExceptionRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ImportVexRequest(_message.Message):
    __slots__ = ("document", "expires", "owner", "ticket", "approver")
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    TICKET_FIELD_NUMBER: _ClassVar[int]
    APPROVER_FIELD_NUMBER: _ClassVar[int]
    document: bytes
    expires: str
    owner: str
    ticket: str
    approver: str
    def __init__(self, document: _Optional[bytes] = ..., expires: _Optional[str] = ..., owner: _Optional[str] = ..., ticket: _Optional[str] = ..., approver: _Optional[str] = ...) -> None: ...

class ImportVexResponse(_message.Message):
    __slots__ = ("added", "ignored")
    ADDED_FIELD_NUMBER: _ClassVar[int]
    IGNORED_FIELD_NUMBER: _ClassVar[int]
    added: _containers.RepeatedCompositeFieldContainer[VulnException]
    ignored: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, added: _Optional[_Iterable[_Union[VulnException, _Mapping]]] = ..., ignored: _Optional[_Iterable[str]] = ...) -> None: ...

class ExportVexRequest(_message.Message):
    __slots__ = ("author",)
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    author: str
    def __init__(self, author: _Optional[str] = ...) -> None: ...

class ExportVexResponse(_message.Message):
    __slots__ = ("document", "skipped")
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    document: bytes
    skipped: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, document: _Optional[bytes] = ..., skipped: _Optional[_Iterable[str]] = ...) -> None: ...
