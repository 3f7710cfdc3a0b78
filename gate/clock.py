"""Time sources. Production uses SystemClock; tests inject a ManualClock and never sleep to age data."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


class SystemClock:
    """The wall clock, timezone-aware UTC."""

    def now(self) -> datetime:
        """The current time."""
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to; thread-safe."""

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The clock's current time."""
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward."""
        with self._lock:
            self._now += delta
