"""The status page (``GET /`` of :func:`healthfile.asgi_app`): one health file for a person.

Plain words first ("Healthy", "Degraded: database failing since 14:02 UTC", "Stale: no report
for 5 min"), then how old the report is and until when it holds, every check, and the recent
changes. One self-contained HTML document: inline style, no script, no external asset,
every value from the file escaped; it refreshes itself every interval and fits a phone.
"""

from __future__ import annotations

import html
import math
import time
from typing import Any

from ._changes import MAX_CHANGES
from ._judge import (
    CLOCK,
    DEGRADED,
    INVALID,
    MISSING,
    ONLINE,
    STALE,
    STARTING,
    STOPPED,
    UNREADABLE,
    Verdict,
    parse_timestamp,
)

__all__ = ["render_page"]

# Without a report to take the interval from, and the bounds of the one taken from it: a
# report written every hour is still looked at every minute (to see it go stale).
_REFRESH_WITHOUT_REPORT = 10
_REFRESH_BOUNDS = (2, 60)

_STYLE = """
:root{color-scheme:light dark;--fg:#1b1f24;--bg:#fff;--muted:#57606a;--line:#d0d7de;
--ok:#1a7f37;--warn:#9a6700;--bad:#cf222e;--unknown:#6e7781}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--bg:#0d1117;--muted:#8d96a0;
--line:#30363d;--ok:#3fb950;--warn:#d29922;--bad:#f85149;--unknown:#8d96a0}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);line-height:1.45;
font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif}
main{max-width:60rem;margin:0 auto;padding:1rem}
header{border-left:.5rem solid var(--unknown);padding:.25rem 0 .25rem 1rem;margin:.5rem 0 1rem}
header.ok{border-color:var(--ok)}header.warn{border-color:var(--warn)}
header.bad{border-color:var(--bad)}
h1{font-size:1.7rem;margin:.1rem 0;overflow-wrap:anywhere}
h2{font-size:1.15rem;margin:1.5rem 0 .5rem}
p{margin:.4rem 0}.muted,.app{color:var(--muted)}.app{margin:0}
.detail{overflow-wrap:anywhere}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;vertical-align:top;padding:.45rem .6rem;border-bottom:1px solid var(--line);
overflow-wrap:break-word}
th{font-size:.85rem;color:var(--muted);font-weight:600;white-space:nowrap}
td.output{overflow-wrap:anywhere}
.badge{display:inline-block;min-width:3.2rem;text-align:center;font-weight:700;
border-radius:.3rem;padding:0 .35rem;color:#fff;background:var(--unknown)}
.pass{background:var(--ok)}.warn{background:var(--warn)}.fail{background:var(--bad)}
.small{font-size:.85rem}
ol{padding-left:1.2rem}li{margin:.3rem 0;overflow-wrap:anywhere}
footer{margin-top:2rem;font-size:.85rem;color:var(--muted);overflow-wrap:anywhere}
code{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:.9em}
@media (max-width:40rem){
main{padding:.75rem}h1{font-size:1.4rem}
thead{display:none}table,tbody,tr,td{display:block;width:100%}
tr{border:1px solid var(--line);border-radius:.4rem;margin:0 0 .6rem;padding:.2rem 0}
td{border:0;padding:.2rem .6rem}
td[data-label]::before{content:attr(data-label) ": ";color:var(--muted);font-size:.85rem}
td.name{font-weight:700}}
"""


def render_page(verdict: Verdict, *, now: float, base: str = "") -> str:
    """The status page of ``verdict`` (and of the report it read, when there is one).

    :param now: the current time in Unix seconds, for "12 s ago".
    :param base: what the links to the JSON answers start with, relative to the page's own
        address: ``""`` for a page at ``…/``, ``"health/"`` for one at ``…/health``. Relative,
        so that they hold behind a proxy that serves the application under a prefix.
    """
    report = verdict.report
    headline, detail, level = _headline(verdict, report, now)
    app = _app_line(report)
    refresh = _refresh_seconds(report)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta http-equiv="refresh" content="{refresh}">',
        f"<title>{_e(headline)}{' · ' + _e(app) if app else ''}</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        "<main>",
        f'<header class="{level}" id="status">',
        f'<p class="app">{_e(app)}</p>' if app else "",
        f"<h1>{_e(headline)}</h1>",
        f'<p class="detail">{_e(detail)}</p>' if detail else "",
        "</header>",
    ]
    if report is not None:
        parts += _report_section(report, now)
        parts += _checks_section(report, now)
        parts += _changes_section(report, now)
    parts += [
        "<footer>",
        f"<p><code>healthfile check</code> says: {_e(verdict.reason)}</p>",
        f"<p>Health file: <code>{_e(verdict.health_file)}</code></p>",
        "<p>As JSON: "
        + ", ".join(
            f'<a href="{_e(base + path)}">/{_e(path)}</a>'
            for path in ("livez", "readyz", "healthz")
        )
        + f". This page reloads itself every {refresh} s.</p>",
        "</footer>",
        "</main>",
        "</body>",
        "</html>",
    ]
    return "\n".join(part for part in parts if part) + "\n"


def _headline(verdict: Verdict, report: dict[str, Any] | None, now: float) -> tuple[str, str, str]:
    """The status in plain words, a sentence more, and the level (ok, warn, bad, unknown)."""
    kind = verdict.verdict
    if report is None or kind in (MISSING, UNREADABLE, INVALID):
        words = {
            MISSING: "No health file",
            UNREADABLE: "Health file unreadable",
            INVALID: "Not a health file",
        }
        return words.get(kind, kind.capitalize()), verdict.reason, "unknown"
    checks = _checks(report)
    made = _seconds(report.get("timestamp"))
    if kind == STALE:
        held = _seconds(report.get("expires_at"))
        said = f"The last report, made at {_when(made, now)}, said {report.get('status')}"
        until = f" and held until {_when(held, now)}" if held is not None else ""
        return (
            f"Stale: no report for {_span(now - made if made is not None else 0)}",
            f"{said}{until}. The service may be hung or gone.",
            "bad",
        )
    if kind == STOPPED:
        return "Stopped", f"The service wrote its final report at {_when(made, now)}.", "bad"
    if kind == CLOCK:
        ahead = _span((made or now) - now)
        return (
            f"Clock problem: the report is dated {ahead} in the future",
            "The writer's clock or this host's is wrong.",
            "unknown",
        )
    failing = [name for name, entry in checks if entry.get("status") == "fail"]
    warning = [name for name, entry in checks if entry.get("status") == "warn"]
    outputs = "; ".join(
        f"{name}: {entry.get('output')}"
        for name, entry in checks
        if entry.get("status") != "pass" and isinstance(entry.get("output"), str)
    )
    if kind == DEGRADED:
        critical = [name for name, entry in checks if _failing_critical(entry)] or failing
        since = _since(report, DEGRADED, now)
        headline = f"Degraded: {_listed(critical)} failing{since}"
        return headline, outputs, "bad"
    if kind == STARTING:
        waiting = f"waiting for {_listed(failing)}" if failing else "checks not yet passing"
        return "Starting", f"Within its start period, {waiting}. {outputs}".strip(), "warn"
    if kind == ONLINE and (failing or warning):
        noted = [f"{name} failing (not critical)" for name in failing]
        noted += [f"{name} warning" for name in warning]
        return f"Healthy, with {_listed(noted)}", outputs, "warn"
    if kind == ONLINE:
        return "Healthy", f"Every check passes{_since(report, ONLINE, now)}.", "ok"
    return kind.capitalize(), verdict.reason, "unknown"  # pragma: no cover - no query here


def _report_section(report: dict[str, Any], now: float) -> list[str]:
    """How old the report is, until when it holds, and the database field."""
    made = _seconds(report.get("timestamp"))
    held = _seconds(report.get("expires_at"))
    holds = "held" if held is not None and held < now else "holds"
    return [
        '<section id="report">',
        f"<p>Report made at {_at(made, now)}; it {holds} until {_at(held, now)}. "
        f"Database: {_e(str(report.get('database')))}.</p>",
        '<p class="muted small">'
        f"Report {_e(str(report.get('sequence')))} of process {_e(str(report.get('pid')))}, "
        f"running since {_at(_seconds(report.get('started_at')), now)}; "
        f"a report every {_e(_number(report.get('interval_seconds')))} s.</p>",
        "</section>",
    ]


def _checks_section(report: dict[str, Any], now: float) -> list[str]:
    """The table of checks: status, output, duration, critical, groups."""
    rows = []
    for name, entry in _checks(report):
        status = str(entry.get("status"))
        failures = entry.get("consecutive_failures")
        streak = (
            f'<br><span class="small muted">{_e(str(failures))} in a row</span>'
            if status != "pass" and isinstance(failures, int) and failures > 1
            else ""
        )
        last = _seconds(entry.get("last_success"))
        passed = (
            f'<br><span class="small muted">last passed at {_at(last, now)}</span>'
            if status == "fail" and last is not None
            else ""
        )
        output = entry.get("output")
        groups = entry.get("groups")
        group_text = (
            ", ".join(str(group) for group in groups)
            if isinstance(groups, list) and groups
            else "—"
        )
        critical = "no" if entry.get("critical") is False else "yes"
        rows.append(
            f'<tr class="check-{_e(status)}">'
            f'<td class="name" data-label="Check">{_e(name)}</td>'
            f'<td data-label="Status"><span class="badge {_e(status)}">{_e(status)}</span>'
            f"{streak}{passed}</td>"
            f'<td class="output" data-label="Output">'
            f"{_e(output) if isinstance(output, str) else '—'}</td>"
            f'<td data-label="Duration">{_e(_duration(entry.get("duration_ms")))}</td>'
            f'<td data-label="Critical">{critical}</td>'
            f'<td data-label="Groups">{_e(group_text)}</td>'
            "</tr>"
        )
    if not rows:
        return ['<section id="checks">', "<h2>Checks</h2>", "<p>No checks.</p>", "</section>"]
    return [
        '<section id="checks">',
        "<h2>Checks</h2>",
        "<table>",
        "<thead><tr><th>Check</th><th>Status</th><th>Output</th><th>Duration</th>"
        "<th>Critical</th><th>Groups</th></tr></thead>",
        "<tbody>",
        *rows,
        "</tbody>",
        "</table>",
        "</section>",
    ]


def _changes_section(report: dict[str, Any], now: float) -> list[str]:
    """The recent status changes, newest first, as the file lists them."""
    changes = _changes(report)
    if not changes:
        return []
    items = []
    for change in changes:
        previous = change.get("previous")
        moved = (
            f"{previous} → {change.get('status')}"
            if isinstance(previous, str)
            else f"{change.get('status')}"
        )
        why = change.get("why")
        because = f": {_e(why)}" if isinstance(why, str) and why else ""
        items.append(
            f"<li>{_at(_seconds(change.get('at')), now)}: "
            f"<strong>{_e(moved)}</strong>{because}</li>"
        )
    return [
        '<section id="changes">',
        "<h2>Recent changes</h2>",
        "<ol>",
        *items,
        "</ol>",
        "</section>",
    ]


def _checks(report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The report's checks, in the file's order (the judge has validated them)."""
    checks = report.get("checks")
    if not isinstance(checks, dict):
        return []
    return [(str(name), entry) for name, entry in checks.items() if isinstance(entry, dict)]


def _changes(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The report's ``changes`` (newest first), or none in a file written before them."""
    changes = report.get("changes")
    if not isinstance(changes, list):
        return []
    return [change for change in changes[:MAX_CHANGES] if isinstance(change, dict)]


def _failing_critical(entry: dict[str, Any]) -> bool:
    """A check at fail that counts for the status (files before ``critical`` count all)."""
    return entry.get("status") == "fail" and entry.get("critical") is not False


def _since(report: dict[str, Any], status: str, now: float) -> str:
    """ " since 14:02 UTC" when the newest change is the one into ``status``, else ""."""
    changes = _changes(report)
    if not changes or changes[0].get("status") != status:
        return ""
    at = _seconds(changes[0].get("at"))
    return "" if at is None else f" since {_clock(at, now)}"


def _refresh_seconds(report: dict[str, Any] | None) -> int:
    """Seconds between reloads of the page: the report's interval, bounded."""
    if report is None:
        return _REFRESH_WITHOUT_REPORT
    interval = report.get("interval_seconds")
    if isinstance(interval, bool) or not isinstance(interval, (int, float)):
        return _REFRESH_WITHOUT_REPORT
    low, high = _REFRESH_BOUNDS
    return int(min(max(math.ceil(interval), low), high))


def _app_line(report: dict[str, Any] | None) -> str:
    """``app_name app_version``, as far as the report tells them."""
    if report is None:
        return ""
    return " ".join(
        str(report[key]) for key in ("app_name", "app_version") if isinstance(report.get(key), str)
    )


def _seconds(text: object) -> int | None:
    """Unix seconds of a contract timestamp, or None."""
    return parse_timestamp(text)


def _at(seconds: int | None, now: float) -> str:
    """A time as HTML: ``<time>14:02:10 UTC</time> (12 s ago)``."""
    if seconds is None:
        return "an unknown time"
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
    return f'<time datetime="{iso}">{_e(_clock(seconds, now))}</time> ({_relative(seconds, now)})'


def _when(seconds: int | None, now: float) -> str:
    """A time as text: "14:02:10 UTC (12 s ago)"."""
    if seconds is None:
        return "an unknown time"
    return f"{_clock(seconds, now)} ({_relative(seconds, now)})"


def _relative(seconds: float, now: float) -> str:
    """ "12 s ago", or "in 48 s"."""
    delta = now - seconds
    return f"{_span(delta)} ago" if delta >= 0 else f"in {_span(-delta)}"


def _clock(seconds: float, now: float) -> str:
    """ "14:02:10 UTC" today, else with the date."""
    when = time.gmtime(seconds)
    if when[:3] == time.gmtime(now)[:3]:
        return time.strftime("%H:%M:%S UTC", when)
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", when)


def _span(seconds: float) -> str:
    """A duration for a person: "12 s", "5 min", "3 h 20 min", "2 d"."""
    whole = max(0, math.floor(seconds))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min"
    if whole < 86400:
        hours, minutes = divmod(whole // 60, 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{whole // 86400} d"


def _duration(value: object) -> str:
    """A check's duration in milliseconds, as a person reads it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "—"
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    return f"{value:.1f} ms" if value >= 1 else f"{value:.2f} ms"


def _number(value: object) -> str:
    """A number without a needless ".0"."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "?"
    return f"{value:g}"


def _listed(names: list[str]) -> str:
    """ "a", "a and b", "a, b and c"."""
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def _e(text: str) -> str:
    """``text`` escaped for HTML text and attribute values."""
    return html.escape(text, quote=True)
