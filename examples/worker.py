"""A plain asyncio worker whose health file tells liveness from readiness.

    HEALTHFILE_DATABASE=data/app.db HEALTHFILE_HEALTH_FILE=data/health.json python worker.py

The service reads HEALTHFILE_DATABASE, HEALTHFILE_HEALTH_FILE and HEALTHFILE_INTERVAL itself,
as ``healthfile check`` reads HEALTHFILE_HEALTH_FILE: one variable points both at the file.
Its checks, by name:

- ``event_loop`` (``LoopLagCheck``, in the group ``live``): the event loop is not wedged by
  blocking code.
- ``heartbeat`` (``HeartbeatCheck``, in the group ``live``): the work loop still turns; it
  beats once per job.
- ``database``: the SQLite database can be read.

A Kubernetes liveness probe judges the group live alone, ``healthfile check --group live``:
a restart cures a stuck worker, not a lost database. The readiness probe, ``healthfile
check``, judges everything. See kubernetes.yaml next to this file. With HEALTHFILE_HTTP set
(``0.0.0.0:8081``), the worker also answers the same verdicts over HTTP, ``/livez`` and
``/readyz``, for httpGet probes (kubernetes-http.yaml; needs h11, the extra
``healthfile[http]``).

SIGTERM (``docker stop``, ``kubectl delete pod``) or Ctrl-C stops it cleanly: the health file
says ``stopped`` and the exit status is 0. ``kill -USR1 <pid>`` makes the current job hang
for ever, as a real one might: the heartbeat then fails and so does the liveness probe.
"""

from __future__ import annotations

import asyncio
import os
import signal

import healthfile

JOB_SECONDS = 0.1  # one job's work


async def work(heartbeat: healthfile.HeartbeatCheck, stuck: asyncio.Event) -> None:
    """Run jobs for ever, beating the heartbeat after each one."""
    while True:
        if stuck.is_set():
            await asyncio.Event().wait()  # a job that never returns
        await asyncio.sleep(JOB_SECONDS)
        heartbeat.beat()


async def main() -> None:
    """Run the worker and its health service until SIGTERM or SIGINT."""
    interval = float(os.environ.get("HEALTHFILE_INTERVAL", "10"))
    # A work loop silent for two health cycles is late; for four, it is stuck.
    heartbeat = healthfile.HeartbeatCheck(warn_after=2 * interval, fail_after=4 * interval)
    heartbeat.beat()  # started: the first job is under way
    stuck = asyncio.Event()
    if hasattr(signal, "SIGUSR1"):  # POSIX: `kill -USR1 <pid>` makes the current job hang
        loop = asyncio.get_running_loop()
        signal.signal(signal.SIGUSR1, lambda *_: loop.call_soon_threadsafe(stuck.set))
    # SIGTERM, SIGINT (also while the service starts): the work unwinds, then the stop.
    with healthfile.cancel_on_signals():
        async with healthfile.AsyncHealthService(
            # database, health_file: HEALTHFILE_DATABASE and HEALTHFILE_HEALTH_FILE, or defaults
            interval=interval,
            checks=[healthfile.LoopLagCheck(warn_after=1.0, fail_after=5.0), heartbeat],
            http=os.environ.get("HEALTHFILE_HTTP"),  # HOST:PORT, or None: no HTTP
        ):  # on the way out: the final "stopped" report
            await work(heartbeat, stuck)


if __name__ == "__main__":
    asyncio.run(main())
