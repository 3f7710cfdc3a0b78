"""Scale-out: two `gate serve` processes on ONE PostgreSQL database.

200 concurrent SubmitScan calls spread over both replicas for a handful of digests must scan each digest
exactly once (database-level single-flight: the unique active-job key), and both replicas must then give
identical verdicts. Trivy runs are counted by a wrapper script that logs each scan's input.
"""

from __future__ import annotations

import stat
import threading
from collections import Counter
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from gate.v1 import gate_pb2 as pb
from tests.support import catalog
from tests.support.gateserver import make_settings, start_gate_process, stub, wait_terminal
from tests.support.images import write_docker_archive

pytestmark = [pytest.mark.postgres, pytest.mark.trivy]

CALLS = 200


def _counting_trivy(tmp_path: Path, trivy_bin: str, log: Path) -> str:
    """A `trivy` that appends the archive it scans to `log`, then runs the real binary."""
    path = tmp_path / "counting-trivy"
    path.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = version ]; then exec "{trivy_bin}" "$@"; fi\n'
        'prev=""; for a in "$@"; do if [ "$prev" = --input ]; then '
        f'echo "$a" >> "{log}"; fi; prev="$a"; done\n'
        f'exec "{trivy_bin}" "$@"\n'
    )
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_two_replicas_scan_each_digest_once(
    tmp_path: Path, trivy_bin: str, trivy_cache: Path, postgres_url: str
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    archives = [
        write_docker_archive(build(), images / f"{build.__name__}.tar")
        for build in (
            catalog.vulnerable_alpine,
            catalog.clean_alpine,
            catalog.secret_image,
            catalog.debian_app,
        )
    ]
    refs = [f"docker-archive:{a}" for a in archives]
    runs = tmp_path / "trivy-runs.log"
    settings = make_settings(
        tmp_path,
        _counting_trivy(tmp_path, trivy_bin, runs),
        trivy_cache,
        database_url=postgres_url,
        rescan_tick=0.0,
    )
    replicas = [
        start_gate_process(replace(settings, data_dir=tmp_path / f"var{i}"), tmp_path / f"gate{i}.log")
        for i in range(2)
    ]
    try:
        clients = [stub(r.address) for r in replicas]
        replies: list[tuple[int, pb.SubmitScanResponse]] = []
        errors: list[BaseException] = []
        barrier = threading.Barrier(CALLS, timeout=60)

        def submit(n: int) -> None:
            try:
                barrier.wait()
                reply = clients[n % 2].SubmitScan(pb.SubmitScanRequest(image=refs[n % len(refs)]), timeout=60)
                replies.append((n % len(refs), reply))
            except BaseException as e:  # collected and asserted below
                errors.append(e)

        threads = [threading.Thread(target=submit, args=(n,)) for n in range(CALLS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors[:3]
        assert len(replies) == CALLS

        # One job per digest, whichever replica was asked.
        jobs: dict[int, set[str]] = {}
        for index, reply in replies:
            assert len(reply.jobs) == 1
            jobs.setdefault(index, set()).add(reply.jobs[0].id)
        assert all(len(ids) == 1 for ids in jobs.values()), jobs
        for i, ids in jobs.items():
            # Either replica may run it; the other sees the state change through the database.
            done = wait_terminal(clients[i % 2], next(iter(ids)), deadline=180)
            assert done.state == pb.SUCCEEDED, done.error

        counted = Counter(runs.read_text().split())
        assert counted == Counter({str(a): 1 for a in archives}), counted

        denied = 0
        for ref in refs:
            check = pb.CheckPromotionRequest(image=ref, from_stage="s2", to_stage="p")
            a, b = (c.CheckPromotion(check, timeout=30) for c in clients)
            assert a.digest == b.digest and a.state == b.state == pb.EVALUATED
            assert (a.allowed, a.policy_digest) == (b.allowed, b.policy_digest)
            assert [(v.rule, v.vulnerability_id, v.package) for v in a.violations] == [
                (v.rule, v.vulnerability_id, v.package) for v in b.violations
            ]
            denied += not a.allowed
        assert denied >= 1  # the comparison covered real denies, not only blank allows
    except grpc.RpcError as e:
        logs = "\n".join((tmp_path / f"gate{i}.log").read_text()[-1500:] for i in range(2))
        raise AssertionError(f"{e}\n{logs}") from e
    finally:
        for r in replicas:
            r.terminate()
