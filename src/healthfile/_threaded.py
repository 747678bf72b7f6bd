"""HealthCheckService: the thread facade for programs without an event loop of their own."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from typing import Any

from ._service import AsyncHealthService, serve_until

__all__ = ["HealthCheckService"]

logger = logging.getLogger("healthfile")

THREAD_NAME = "HealthCheckThread"


class HealthCheckService:
    """Run an :class:`AsyncHealthService` on its own event loop in a daemon thread.

    For desktop apps and scripts without asyncio::

        service = HealthCheckService()
        service.start()   # returns at once; the first report follows in the background
        ...
        service.stop()    # writes the final "stopped" report before it returns

    :param check_interval: seconds between the starts of two cycles.
    :param health_file: the JSON file to keep; ``None`` means ``data/health.json``.
    :param options: any keyword option of :class:`AsyncHealthService` (``database``,
        ``check_timeout``, ``pyproject``, ``app_version``, ``checks``, ...). Bad values raise
        ``ValueError`` here, in the caller's thread.
    """

    def __init__(
        self,
        check_interval: float = 30,
        health_file: str | os.PathLike[str] | None = None,
        **options: Any,
    ) -> None:
        if "interval" in options:
            raise TypeError("HealthCheckService takes check_interval=, not interval=")
        self._service = AsyncHealthService(
            interval=check_interval,
            health_file="data/health.json" if health_file is None else health_file,
            **options,
        )
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"<HealthCheckService {state} service={self._service!r}>"

    @property
    def service(self) -> AsyncHealthService:
        """The asyncio service this facade runs (its ``last_report`` is safe to read)."""
        return self._service

    @property
    def is_running(self) -> bool:
        """True while the background thread runs."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self) -> None:
        """Launch the daemon thread ``HealthCheckThread``; return without waiting for a cycle.

        A second call while running does nothing but log a warning.
        """
        with self._guard:
            if self.is_running:
                logger.warning("health check service is already running")
                return
            loop_ready = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(loop_ready,), name=THREAD_NAME, daemon=True
            )
            self._thread.start()
            # Only until the thread's loop exists, so that stop() can reach it at once.
            loop_ready.wait()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the service and wait up to ``timeout`` seconds for the final report.

        Idempotent, and safe to call before :meth:`start`.
        """
        with self._guard:
            thread, loop = self._thread, self._loop
            if thread is None or not thread.is_alive() or loop is None:
                return
            # The loop may have just closed: the thread is then ending by itself.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._request_stop)
        # Joined outside the guard: a stop() from the service's own loop (an on_change
        # callback) must not wait for the lock this join would hold.
        if thread is threading.current_thread():
            return  # called on the service's own loop: it cannot wait for itself
        thread.join(timeout)
        if thread.is_alive():
            logger.warning("health check thread did not stop within %g s", timeout)

    def _request_stop(self) -> None:
        assert self._stop_requested is not None
        self._stop_requested.set()

    def _run(self, loop_ready: threading.Event) -> None:
        try:
            asyncio.run(self._main(loop_ready))
        except Exception:
            logger.exception("health check thread failed")
        finally:
            loop_ready.set()  # never leave start() waiting

    async def _main(self, loop_ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_requested = stop_requested = asyncio.Event()
        loop_ready.set()
        await serve_until(self._service, stop_requested)
