"""The seed's design, rebuilt for the benchmarks: WP01's thread-based HealthCheckService.

As ``shared/seed/WP01-create-health-service-module.md`` lays it out: a ``threading.Event``
for shutdown, a daemon thread named ``HealthCheckThread``, ``event.wait(interval)`` between
checks, ``stop(timeout=2.0)`` that sets the event and joins. The stubs WP02 and WP03 were to
fill are filled the plain way: an ``sqlite3`` check in the thread and a plain JSON write
(``open(..., "w")`` + ``json.dump``, no temp file, no fsync).

The database check uses the same probe as healthfile (read-only URI, schema read, a 3 s busy
timeout, the seed's database timeout), so that comparisons measure the design, not the query.

Two additions for measuring, neither changing the design: ``cycle_times`` records the wall
time of every check-and-write, and ``first_cycle`` is set after the first one.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

PROBE_QUERY = "SELECT count(*) FROM sqlite_master"


class HealthCheckService:
    """Background service for writing periodic health status to file (WP01's design)."""

    def __init__(
        self,
        check_interval: float = 30,
        health_file: Path | None = None,
        database: Path | None = None,
        db_timeout: float = 3.0,
    ) -> None:
        self._logger = logging.getLogger("seed.health_service")
        self._check_interval = check_interval
        self._health_file = health_file or Path("data/health.json")
        self._database = database or Path("data/app.db")
        self._db_timeout = db_timeout
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._app_version = "unknown"
        self._health_file.parent.mkdir(parents=True, exist_ok=True)
        self.cycle_times: list[float] = []
        self.first_cycle = threading.Event()
        self._logger.info("Health check service initialized (interval: %ss)", check_interval)

    @property
    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the daemon thread; a second call only logs a warning."""
        if self._thread and self._thread.is_alive():
            self._logger.warning("Health check service is already running")
            return
        self._stop_event.clear()
        self.first_cycle.clear()
        self._thread = threading.Thread(
            target=self._health_check_loop, name="HealthCheckThread", daemon=True
        )
        self._thread.start()
        self._logger.info("Health check service started")

    def stop(self, timeout: float = 2.0) -> None:
        """Signal the thread to stop and join it for at most ``timeout`` seconds."""
        if not self._thread or not self._thread.is_alive():
            self._logger.info("Health check service is not running")
            return
        self._logger.info("Stopping health check service...")
        self._stop_event.set()
        self._thread.join(timeout=timeout)
        if self._thread.is_alive():
            self._logger.warning("Health check thread did not stop within timeout")
        else:
            self._logger.info("Health check service stopped")

    def join(self) -> None:
        """Wait for the thread to end (for the benchmark's clean-up only)."""
        if self._thread is not None:
            self._thread.join()

    def _check_database(self) -> str:
        uri = f"file:{quote(str(self._database))}?mode=ro"
        try:
            connection = sqlite3.connect(uri, uri=True, timeout=self._db_timeout)
            try:
                connection.execute(PROBE_QUERY).fetchall()
            finally:
                connection.close()
        except sqlite3.Error:
            return "disconnected"
        return "connected"

    def _write_health_status(self, status_data: dict[str, str]) -> None:
        with open(self._health_file, "w") as file:
            json.dump(status_data, file, indent=2)

    def _health_check_loop(self) -> None:
        """Check and write every interval until stop() is called."""
        self._logger.info("Health check loop started")
        while not self._stop_event.is_set():
            try:
                started = time.perf_counter()
                database = self._check_database()
                status_data = {
                    "status": "online" if database == "connected" else "degraded",
                    "database": database,
                    "timestamp": datetime.now(timezone.utc).isoformat(),
                    "app_version": self._app_version,
                    "api_version": "v1",
                }
                self._write_health_status(status_data)
                self.cycle_times.append(time.perf_counter() - started)
                self.first_cycle.set()
                self._logger.debug("Health check performed: %s", status_data["status"])
            except Exception as exc:
                self._logger.error("Error during health check: %s", exc, exc_info=True)
            self._stop_event.wait(timeout=self._check_interval)
        self._logger.info("Health check loop stopped")
