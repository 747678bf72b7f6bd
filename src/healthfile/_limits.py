"""Bounds shared by several modules (standard library only: the probe imports it).

Every file the service writes is one ``healthfile check`` accepts, because both sides read
their bounds from here; every duration the library, the CLI and the probe accept is bounded
alike.
"""

from __future__ import annotations

__all__ = [
    "CLOCK_TOLERANCE_SECONDS",
    "MAX_FILE_BYTES",
    "MAX_IDENTITY_CHARS",
    "MAX_NAME_CHARS",
    "MAX_OUTPUT_CHARS",
    "MAX_SECONDS",
    "MIN_SECONDS",
    "SETTLE_SECONDS",
    "SHORTENED",
]

# The largest health file the probe reads, and so the largest the service writes: a report
# of 1000 checks with names of 20 characters takes about 230 KB. Anything larger is not a
# health file (a log, /dev/zero), and is never read whole.
MAX_FILE_BYTES = 512 * 1024
# The longest check name: a file key, a Prometheus label value, a Nagios perfdata label.
MAX_NAME_CHARS = 64
# The longest app_name and app_version: far past any real one, and small enough that the
# worst-case size of a report is known when the service is constructed.
MAX_IDENTITY_CHARS = 128
# The longest check output kept in the file, and shown by the probe.
MAX_OUTPUT_CHARS = 256
# How a check output shortened to keep the file under MAX_FILE_BYTES ends.
SHORTENED = "…(shortened)"
# How far in the future a report's timestamp may lie before the probe calls it a clock
# problem: well above the skew of NTP-synchronised hosts (milliseconds) and the one-second
# rounding of the timestamps, while a writer whose clock ran fast and then died is found
# stale at most this much later than it should be.
CLOCK_TOLERANCE_SECONDS = 60

# The longest duration accepted anywhere (an interval, a timeout, --max-age): longer than any
# sensible one, and short enough for datetime arithmetic. An int, so that messages print it
# whole.
MAX_SECONDS = 366 * 24 * 3600
# The shortest nonzero one: shorter than any sensible interval or timeout, and long enough
# for the pacing arithmetic (a subnormal interval would overflow it).
MIN_SECONDS = 0.001
# How long a new run of a check waits for its previous run, cancelled a moment ago (timeout,
# stop()), to finish before it reports the check as still running: an abandoned SQLite probe
# is usually closing its connection right then.
SETTLE_SECONDS = 0.05
