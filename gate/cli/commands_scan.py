"""`gate scan` and `gate import-report`: the commands that put findings into gate."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from gate.cli import CliError, Context, ExitCode, emit_error
from gate.cli.client import GateClient, connect, positive_seconds
from gate.cli.formats import json as json_format
from gate.cli.formats.table import EMPTY, render_fields, render_table
from gate.v1 import gate_pb2

TERMINAL_STATES = frozenset({gate_pb2.SUCCEEDED, gate_pb2.FAILED_JOB})
_SPINNER = "|/-\\"


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], shared: argparse.ArgumentParser
) -> None:
    """Add the `scan` and `import-report` commands."""
    scan = subparsers.add_parser(
        "scan",
        parents=[shared],
        help="queue a scan of an image (optionally wait for it)",
        description="Queue a scan of IMAGE with each scanner; with --wait, follow the jobs to the end. "
        "Exit 0 when every job succeeded, 3 when any failed.",
    )
    scan.add_argument(
        "image", metavar="IMAGE", help="image reference (REPO@sha256:..., REPO:TAG, oci:PATH, ...)"
    )
    scan.add_argument(
        "--scanners",
        type=_scanner_list,
        default=[],
        metavar="NAME[,NAME...]",
        help="comma-separated scanners, e.g. trivy,clair (default: the server's configured scanners)",
    )
    scan.add_argument("--force", action="store_true", help="scan again even when a successful scan exists")
    scan.add_argument("--wait", action="store_true", help="follow the jobs until they finish")
    scan.add_argument(
        "--wait-timeout",
        type=positive_seconds,
        default=3600.0,
        metavar="SECONDS",
        help="with --wait, give up after this long (default 3600; scans can outlast --timeout)",
    )
    scan.set_defaults(handler=run_scan)

    imp = subparsers.add_parser(
        "import-report",
        parents=[shared],
        help="store a scanner report produced elsewhere",
        description="Send a scanner's JSON report (e.g. `trivy image -f json`) for IMAGE to gate.",
    )
    imp.add_argument("file", metavar="FILE", help="the report file")
    imp.add_argument("--image", required=True, help="the image the report describes")
    imp.add_argument("--scanner", default="trivy", help="which scanner wrote the report (default trivy)")
    imp.set_defaults(handler=run_import)


def _scanner_list(text: str) -> list[str]:
    """Argparse type: `trivy,clair` → ['trivy', 'clair'], blanks dropped."""
    return [name.strip() for name in text.split(",") if name.strip()]


class ScanProgress:
    """Shows job progress on a stream: a rewritten spinner line on a terminal, else one line per change.

    Logs (non-TTY) get one line per state change so CI output stays readable and greppable.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._ticks = 0
        self._last: dict[str, int] = {}
        self._line_open = False

    def update(self, job: gate_pb2.ScanJob, message: str = "") -> None:
        """Report the job's current state (and the server's message, if any)."""
        state = gate_pb2.JobState.Name(job.state)
        text = f"scan {job.id} ({job.scanner or EMPTY}) {job.digest or job.image}: {state}"
        if message:
            text += f" - {message}"
        if self._tty:
            spinner = "" if job.state in TERMINAL_STATES else _SPINNER[self._ticks % len(_SPINNER)] + " "
            self._ticks += 1
            # \r + erase-line rewrites the same line instead of scrolling the terminal.
            self._stream.write(f"\r\x1b[K{spinner}{text}")
            self._line_open = True
            if job.state in TERMINAL_STATES:
                self.finish()
        elif self._last.get(job.id) != job.state:
            self._stream.write(text + "\n")
        self._last[job.id] = job.state
        self._stream.flush()

    def finish(self) -> None:
        """End the spinner line so later output starts on a fresh line."""
        if self._line_open:
            self._stream.write("\n")
            self._stream.flush()
            self._line_open = False


def wait_for_job(
    client: GateClient, job: gate_pb2.ScanJob, progress: ScanProgress, timeout: float
) -> gate_pb2.ScanJob:
    """Follow one job with WatchScan until it is terminal and return its final state."""
    if job.state in TERMINAL_STATES:
        progress.update(job)
        return job
    last = job
    progress.update(last)
    for event in client.watch_scan(job.id, timeout):
        if event.HasField("job"):
            last = event.job
        progress.update(last, event.message)
        if last.state in TERMINAL_STATES:
            break
    progress.finish()
    if last.state not in TERMINAL_STATES:
        # The stream may end without a terminal event (server restart); ask once for the truth.
        last = client.get_scan(job.id)
        if last.state not in TERMINAL_STATES:
            state = gate_pb2.JobState.Name(last.state)
            raise CliError(f"watching scan {job.id} ended while it was still {state}", ExitCode.UNAVAILABLE)
    return last


def _same_platform(done: gate_pb2.ScanJob, submitted: gate_pb2.ScanJob) -> gate_pb2.ScanJob:
    # A job joined from an earlier scan of the platform image by digest was stored without a
    # platform; the submit answer knows which platform of this index it stands for.
    if not done.platform:
        done.platform = submitted.platform
    return done


def _job_rows(jobs: Sequence[gate_pb2.ScanJob]) -> list[list[str]]:
    per_platform = any(job.platform for job in jobs)
    return [
        [
            *([job.platform] if per_platform else []),
            job.digest,
            job.scanner,
            gate_pb2.JobState.Name(job.state),
            str(job.finding_count) if job.state == gate_pb2.SUCCEEDED else "",
            job.scanner_version,
            job.db_version,
            job.id,
            "yes" if job.reused else "",
        ]
        for job in jobs
    ]


_JOB_HEADERS = ("DIGEST", "SCANNER", "STATE", "FINDINGS", "SCANNER VERSION", "DB VERSION", "JOB", "REUSED")


def _report_failures(jobs: Sequence[gate_pb2.ScanJob], err: TextIO) -> int:
    """Print one error line per failed job; return the exit code the jobs imply."""
    failed = [job for job in jobs if job.state == gate_pb2.FAILED_JOB]
    for job in failed:
        emit_error(err, f"scan {job.id} ({job.scanner}) of {job.digest or job.image} failed: {job.error}")
    return ExitCode.UNAVAILABLE if failed else ExitCode.OK


def run_scan(args: argparse.Namespace, ctx: Context) -> int:
    """Submit the scan, optionally follow it, print a summary; 3 if any job failed."""
    with connect(args) as client:
        response = client.submit_scan(args.image, list(args.scanners), bool(args.force))
        jobs = list(response.jobs)
        if args.wait:
            progress = ScanProgress(ctx.err)
            try:
                jobs = [
                    _same_platform(wait_for_job(client, job, progress, float(args.wait_timeout)), job)
                    for job in jobs
                ]
            finally:
                # On Ctrl-C or a stream error, end the spinner line so the error starts on its own line.
                progress.finish()
    if args.json:
        json_format.dump_message(gate_pb2.SubmitScanResponse(jobs=jobs), ctx.out)
    else:
        # The platform column only for a multi-platform index, to keep the common table narrow.
        headers = (("PLATFORM",) if any(job.platform for job in jobs) else ()) + _JOB_HEADERS
        ctx.out.write(render_table(headers, _job_rows(jobs)))
    return _report_failures(jobs, ctx.err)


def run_import(args: argparse.Namespace, ctx: Context) -> int:
    """Read the report file and send it; 2 if the file cannot be read."""
    path = Path(args.file)
    try:
        report = path.read_bytes()
    except OSError as e:
        raise CliError(f"cannot read report {path}: {e.strerror or e}", ExitCode.BAD_INPUT) from e
    with connect(args) as client:
        response = client.import_report(args.image, args.scanner, report)
    if args.json:
        json_format.dump_message(response, ctx.out)
    else:
        job = response.scan
        ctx.out.write(
            render_fields(
                [
                    ("digest", response.digest),
                    ("scanner", job.scanner),
                    ("state", gate_pb2.JobState.Name(job.state)),
                    ("findings", str(job.finding_count)),
                    ("scanner version", job.scanner_version),
                    ("db version", job.db_version),
                    ("job", job.id),
                ]
            )
        )
    return _report_failures([response.scan], ctx.err)
