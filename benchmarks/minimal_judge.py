"""The floor of a Python probe: judge a health file with nothing but json, sys and time.

Exit 0 when the status is ``online`` or ``starting`` and ``expires_at`` is not past, else 1
(figure 6 times it as ``python -I minimal_judge.py FILE``, to show what a probe written in
Python can cost at the least).
"""

import json
import sys
import time


def _epoch(stamp: str) -> int:
    """Seconds since the epoch of ``YYYY-MM-DDTHH:MM:SSZ`` (UTC), without importing datetime."""
    year, month, day = int(stamp[0:4]), int(stamp[5:7]), int(stamp[8:10])
    hour, minute, second = int(stamp[11:13]), int(stamp[14:16]), int(stamp[17:19])
    # Days from the civil date (Howard Hinnant's algorithm).
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days = era * 146097 + doe - 719468
    return days * 86400 + hour * 3600 + minute * 60 + second


def main() -> int:
    try:
        with open(sys.argv[1], "rb") as file:
            report = json.load(file)
        healthy = report["status"] in ("online", "starting")
        return 0 if healthy and _epoch(report["expires_at"]) >= time.time() else 1
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return 1


if __name__ == "__main__":
    sys.exit(main())
