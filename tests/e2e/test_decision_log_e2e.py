"""Every decision-log mode through a real gRPC server: every answer recorded, chain intact after stop.

`buffered` answers before the commit, `distinct` before the commit of a repeated answer; a clean stop
must still leave one decision row and one audit record per answer (RunningGate.stop flushes the
journal), and a verdict served from the precomputed verdict cache is recorded like any other.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from sqlmodel import Session, func, select

from gate.audit import AuditLog
from gate.config import Settings
from gate.server.app import create_server
from gate.store.audit_store import SqlAuditStore
from gate.store.db import create_engine_for
from gate.store.tables import DecisionRow
from gate.v1 import gate_pb2 as pb
from gate.v1 import gate_pb2_grpc as pb_grpc

CHECKS = 25


@pytest.mark.parametrize("mode", ["durable", "distinct", "buffered"])
def test_every_answer_is_recorded_once_and_the_chain_verifies(tmp_path: Path, mode: str) -> None:
    url = f"sqlite:///{tmp_path / 'gate.db'}"
    settings = Settings(data_dir=tmp_path, database_url=url, decision_log=mode, rescan_tick=0.0)
    gate = create_server(settings, "127.0.0.1:0")
    digest = "sha256:" + "ab" * 32
    try:
        channel = grpc.insecure_channel(gate.address)
        client = pb_grpc.GateStub(channel)
        answers = [
            client.CheckPromotion(
                pb.CheckPromotionRequest(image=digest, from_stage="s2", to_stage="p"), timeout=10
            )
            for _ in range(CHECKS)
        ]
        channel.close()
    finally:
        gate.stop(1.0)
    assert all(not a.allowed for a in answers)  # never scanned: denied, and a deny is an answer
    engine = create_engine_for(url)
    try:
        with Session(engine) as session:
            stored = session.exec(select(func.count()).select_from(DecisionRow)).one()
        audit = AuditLog(SqlAuditStore(engine))
        records = audit.list(subject=digest, kind="decision", limit=100)
        assert stored == CHECKS
        assert len(records) == CHECKS
        assert audit.verify().ok
    finally:
        engine.dispose()
