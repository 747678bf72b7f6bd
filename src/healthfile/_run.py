"""``healthfile run``: the service in the foreground until SIGINT, SIGTERM or SIGBREAK."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from ._checks import SQLiteCheck
from ._limits import MAX_FILE_BYTES, MAX_IDENTITY_CHARS
from ._report import printable
from ._service import AsyncHealthService, serve_until
from ._signals import handle_signals, insists
from ._version import UNKNOWN_VERSION, AppIdentity, read_app_identity

__all__ = ["run_service"]

logger = logging.getLogger("healthfile")


def run_service(options: dict[str, Any]) -> int:
    """Run the service with resolved command-line options; return the exit status."""
    verbose = options.pop("verbose")
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if verbose < 2:
        logging.getLogger("aiosqlite").setLevel(logging.INFO)
    options["app_name"], options["app_version"] = _identity(options)
    options["pyproject"] = None  # read already, once
    options.pop("config", None)  # read already: its checks and options are in options
    logger.info("app_name %s, app_version %s", options["app_name"], options["app_version"])
    try:
        service = AsyncHealthService(options.pop("database"), **options)
    except (TypeError, ValueError) as exc:  # every option is checked already: a second line
        logger.error("%s", exc)
        return 2
    try:
        asyncio.run(_serve(service))
    except KeyboardInterrupt:  # a second Ctrl-C while stopping: stop is not waited for again
        return 130
    except OSError as exc:  # start() could not bind --http's address: no report was written
        sys.stderr.write(f"healthfile run: error: {exc.strerror or exc}\n")
        return 2
    return _final_status(service)


def _identity(options: dict[str, Any]) -> AppIdentity:
    """Who `healthfile run` says writes the file: what it was told, else what it watches.

    ``--app-name``, else ``[project].name`` of ``--pyproject``, else the stem of
    ``--prometheus-file`` (unique in node_exporter's textfile directory, the one place the
    label must be unique), else the stem of the database's path (``--database``, or the
    file of a config's database check), else the stem of ``--config``; not the name of the running
    program, which is healthfile, the watcher, not the program watched. The version:
    ``--app-version``, else the pyproject's, else ``unknown``.
    """
    name, version = options["app_name"], options["app_version"]
    if name is None or version is None:
        read = read_app_identity(options["pyproject"], fallback_name=lambda: _watched(options))
        name = read.name[:MAX_IDENTITY_CHARS] if name is None else name
        if version is None:
            version = read.version if len(read.version) <= MAX_IDENTITY_CHARS else UNKNOWN_VERSION
    return AppIdentity(name, version)


def _watched(options: dict[str, Any]) -> str:
    """The name of what `healthfile run` watches: its Prometheus file's, else its database's,
    else its config file's."""
    database = options["database"]
    if isinstance(database, SQLiteCheck):  # a config's database check on an SQLite file
        database = database.path
    for path in (options["prometheus_file"], database, options.get("config")):
        if not isinstance(path, (str, os.PathLike)):
            continue  # no file: a config's database check on a port or a URL
        stem = Path(path).stem.strip()
        if stem:
            return stem
    return "healthfile-run"  # pragma: no cover - the options refuse an empty path


def _final_status(service: AsyncHealthService) -> int:
    """Say what the health file holds now that the service has stopped; 1 when not ``stopped``.

    The file is read back: only a file that holds this service's final report is said to say
    ``stopped``; one another process keeps (this one stood by, or took over since) is named.
    """
    error = service.last_write_error
    path = printable(str(service.health_file))
    if error is not None:
        logger.error(
            "stopped, but the final report is not on disk (%s does not say stopped): %s",
            path,
            printable(error),
        )
        return 1
    report = service.last_report
    on_disk = _read_back(service.health_file)
    if report is not None and isinstance(on_disk, dict) and _is_this(report.as_dict(), on_disk):
        logger.info("stopped; %s says so", path)
    elif isinstance(on_disk, dict):
        logger.info(
            "stopped; %s is kept by another process (pid %s, status %s)",
            path,
            printable(str(on_disk.get("pid"))),
            printable(str(on_disk.get("status"))),
        )
    else:
        logger.info("stopped; this process did not write %s", path)
    return 0


def _is_this(report: dict[str, Any], on_disk: dict[str, Any]) -> bool:
    """Whether the file holds ``report``: the same writer, start, number, time and status."""
    keys = ("pid", "started_at", "sequence", "timestamp", "status")
    return all(on_disk.get(key) == report[key] for key in keys)


def _read_back(path: Path) -> object:
    """The JSON value in ``path``, or None when it cannot be read (at most the probe's limit)."""
    try:
        with open(path, "rb") as file:
            return json.loads(file.read(MAX_FILE_BYTES + 1))
    except (OSError, ValueError):
        return None


async def _serve(service: AsyncHealthService) -> None:
    """Start the service, wait for a stop signal, stop it; an insistent second one stops waiting."""
    stop_requested = asyncio.Event()
    first = 0.0

    def on_signal(signum: signal.Signals) -> None:
        """Request the stop; on an insistent second signal, give up waiting for it."""
        nonlocal first
        if stop_requested.is_set():
            if insists(signum, first):
                raise KeyboardInterrupt
            return
        logger.info("received %s, stopping", signum.name)
        first = time.monotonic()
        stop_requested.set()

    # Once asked to stop, the process is on its way out: a signal repeated after the stop
    # is ignored rather than ending it by that signal instead of exit 0.
    with handle_signals(on_signal, ignore_after=stop_requested.is_set):
        more = len(service.checks) - 1
        logger.info(
            "checking every %g s for %s (database check: %s%s)",
            service.interval,
            printable(str(service.health_file)),
            printable(str(service.checks[0])),
            f"; {more} more check{'s' if more > 1 else ''}" if more else "",
        )
        await serve_until(service, stop_requested)
