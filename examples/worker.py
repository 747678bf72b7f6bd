"""A plain asyncio worker whose health file tells liveness from readiness.

    HEALTHFILE_DATABASE=data/app.db HEALTHFILE_HEALTH_FILE=data/health.json python worker.py

Its checks, by name:

- ``event_loop`` (``LoopLagCheck``): the event loop is not wedged by blocking code.
- ``heartbeat``: the work loop still turns; it beats once per job.
- ``database``: the SQLite database can be read.

A Kubernetes liveness probe judges the first two alone, ``healthfile check --only
event_loop,heartbeat``: a restart cures a stuck worker, not a lost database. The readiness
probe, ``healthfile check``, judges everything. See kubernetes.yaml next to this file.

SIGTERM (``docker stop``, ``kubectl delete pod``) or Ctrl-C stops it cleanly: the health file
says ``stopped`` and the exit status is 0. ``kill -USR1 <pid>`` makes the current job hang
for ever, as a real one might: the heartbeat then fails and so does the liveness probe.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import healthfile

JOB_SECONDS = 0.1  # one job's work


class Heartbeat:
    """When the work loop last turned; warns, then fails, once that is too long ago."""

    def __init__(self, *, warn_after: float, fail_after: float) -> None:
        self.warn_after = warn_after
        self.fail_after = fail_after
        self.last: float | None = None

    def beat(self) -> None:
        """Say that the work loop turned (a float store: safe from any thread)."""
        self.last = time.monotonic()

    async def __call__(self) -> healthfile.CheckResult:
        if self.last is None:
            return healthfile.CheckResult("fail", "no beat yet")
        age = time.monotonic() - self.last
        if age > self.fail_after:
            return healthfile.CheckResult("fail", f"last beat {age:.1f} s ago")
        if age > self.warn_after:
            return healthfile.CheckResult("warn", f"last beat {age:.1f} s ago")
        return healthfile.CheckResult("pass")


async def work(heartbeat: Heartbeat, stuck: asyncio.Event) -> None:
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
    heartbeat = Heartbeat(warn_after=2 * interval, fail_after=4 * interval)
    heartbeat.beat()  # started: the first job is under way
    service = healthfile.AsyncHealthService(
        os.environ.get("HEALTHFILE_DATABASE", "data/app.db"),
        health_file=os.environ.get("HEALTHFILE_HEALTH_FILE", "data/health.json"),
        interval=interval,
        checks=[
            healthfile.LoopLagCheck(warn_after=1.0, fail_after=5.0),
            healthfile.check("heartbeat", heartbeat),
        ],
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    stuck = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, stuck.set)
    async with service:  # on the way out: the final "stopped" report
        worker = asyncio.create_task(work(heartbeat, stuck))
        await stop.wait()
        worker.cancel()
        await asyncio.wait({worker})  # the job unwinds before the final report


if __name__ == "__main__":
    asyncio.run(main())
