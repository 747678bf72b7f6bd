"""Bounds shared by the writer and the probe (standard library only: the probe imports it).

Every file the service writes is one ``healthfile check`` accepts, because both sides read
their bounds from here.
"""

from __future__ import annotations

__all__ = [
    "CLOCK_TOLERANCE_SECONDS",
    "MAX_FILE_BYTES",
    "MAX_IDENTITY_CHARS",
    "MAX_NAME_CHARS",
    "SHORTENED",
]

# The largest health file the probe reads, and so the largest the service writes: a report
# of 1000 checks with names of 20 characters takes about 175 KB. Anything larger is not a
# health file (a log, /dev/zero), and is never read whole.
MAX_FILE_BYTES = 256 * 1024
# The longest check name: a file key, a Prometheus label value, a Nagios perfdata label.
MAX_NAME_CHARS = 64
# The longest app_name and app_version: far past any real one, and small enough that the
# worst-case size of a report is known when the service is constructed.
MAX_IDENTITY_CHARS = 128
# How a check output shortened to keep the file under MAX_FILE_BYTES ends.
SHORTENED = "…(shortened)"
# How far in the future a report's timestamp may lie before the probe calls it a clock
# problem: well above the skew of NTP-synchronised hosts (milliseconds) and the one-second
# rounding of the timestamps, while a writer whose clock ran fast and then died is found
# stale at most this much later than it should be.
CLOCK_TOLERANCE_SECONDS = 60
