"""The status page: plain words for every kind of file, the checks and the changes, escaped,
self-contained, refreshing itself; read as a browser would parse it."""

from __future__ import annotations

import json
import re
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest

from healthfile._asgi import asgi_app
from healthfile._judge import judge
from healthfile._page import render_page
from helpers import ServiceFactory, stamp
from httphelpers import call_app, entry, kind_of_file, with_changes, write_kind
from test_judge import report

pytestmark = pytest.mark.usefixtures("clean_environment")

ROUTES = ("livez", "readyz", "healthz")


class Document(HTMLParser):
    """The parts of a page the tests read: its text, tags, attributes and meta tags."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self._skip = 0
        self.source = page
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in ("style", "title"):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "title"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.chunks.append(data)

    @property
    def text(self) -> str:
        """The visible text, blanks folded."""
        return re.sub(r"\s+", " ", "".join(self.chunks)).strip()

    def meta(self, key: str, value: str) -> str | None:
        """The content of the meta tag whose ``key`` attribute is ``value``."""
        for tag, attrs in self.tags:
            if tag == "meta" and attrs.get(key) == value:
                return attrs.get("content")
        return None

    def headline(self) -> str:
        """The text of the h1 (the page's first heading)."""
        match = re.search(r"<h1>(.*?)</h1>", self.source, re.DOTALL)
        assert match is not None
        return Document(match.group(1)).text


def rows(page: str) -> list[list[str]]:
    """The text of each cell of each check's row."""
    return [
        [Document(cell).text for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.DOTALL)]
        for row in re.findall(r"<tr class=\"check-.*?</tr>", page, re.DOTALL)
    ]


def page_of(tmp_path: Path, content: dict[str, Any] | str | None, now: float | None = None) -> str:
    """The page for a file of ``content`` (a kind's name, a report, or None: no file)."""
    path = tmp_path / "health.json"
    if isinstance(content, str) and not content.startswith("{"):
        path = write_kind(tmp_path, content)
    elif isinstance(content, dict):
        path.write_text(json.dumps(content), encoding="utf-8")
    elif isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    now = time.time() if now is None else now
    return render_page(judge(path, now=now), now=now)


@pytest.mark.parametrize(
    ("kind", "headline"),
    [
        ("online", "Healthy"),
        ("warn-only", "Healthy, with disk warning"),
        ("starting", "Starting"),
        ("degraded", "Degraded: database failing"),
        ("stale", "Stale: no report for 2 min"),
        ("stopped", "Stopped"),
        ("clock", "Clock problem: the report is dated 10 min in the future"),
        ("missing", "No health file"),
        ("not-the-contract", "Not a health file"),
    ],
)
def test_the_status_is_told_in_plain_words(tmp_path: Path, kind: str, headline: str) -> None:
    """Every kind of file has its plain-words headline, also in the title."""
    document = Document(page_of(tmp_path, kind))

    assert document.headline() == headline
    assert re.search(r"<title>" + re.escape(headline), document.source)


def clock(at: float, now: float) -> str:
    """A moment as the page writes it: the time of day, with the date when not today (UTC)."""
    same_day = time.gmtime(at)[:3] == time.gmtime(now)[:3]
    return time.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M:%S", time.gmtime(at))


def test_degraded_says_since_when_from_the_changes(tmp_path: Path) -> None:
    """A degraded file with changes says which check fails and since when (UTC)."""
    now = time.time()
    data = report("degraded", database="disconnected", checks={"database": entry("fail", "gone")})
    with_changes(data, (125, "degraded", "online", "database fail: gone"))
    at = clock(now - 125, now)

    document = Document(page_of(tmp_path, data, now))

    assert document.headline() in (
        f"Degraded: database failing since {at} UTC",
        f"Degraded: database failing since {time.strftime('%Y-%m-%d', time.gmtime(now - 125))} "
        f"{at} UTC",
    )
    assert "database: gone" in document.text


def test_a_non_critical_failure_is_healthy_with_a_note(tmp_path: Path) -> None:
    """Online with a non-critical check failing reads healthy, naming it not critical."""
    checks = {"database": entry(), "cache": entry("fail", "refused", critical=False)}

    document = Document(page_of(tmp_path, report(checks=checks)))

    assert document.headline() == "Healthy, with cache failing (not critical)"


def test_stale_says_what_the_last_report_said_and_until_when(tmp_path: Path) -> None:
    """A stale page says how long without a report, what the last said, and its expiry."""
    document = Document(page_of(tmp_path, "stale"))

    assert "The last report, made at " in document.text
    held = r"said online and held until (?:[0-9-]{10} )?[0-9:]{8} UTC \((59 s|1 min) ago\)"
    assert re.search(held, document.text)


def test_report_age_and_expiry_are_shown(tmp_path: Path) -> None:
    """The page says when the report was made, how long ago, and until when it holds."""
    now = time.time()
    data = report(age=12, expires_in=48)
    made = clock(now - 12, now)

    text = Document(page_of(tmp_path, data, now)).text

    assert f"Report made at {made} UTC (12 s ago); it holds until " in text
    # The date shows too when the report holds into the next day (just before midnight).
    assert re.search(r"holds until (?:[0-9-]{10} )?[0-9:]{8} UTC \(in (47|48) s\)", text)
    assert "Database: connected." in text
    assert "a report every 30 s" in text


def test_every_check_shows_status_output_duration_critical_and_groups(tmp_path: Path) -> None:
    """Each check has a row: name, status, output, duration, critical, groups."""
    checks = {
        "database": entry("fail", "unable to open database file", duration_ms=3.14),
        "event_loop": entry("pass", "lag 0.3 ms", duration_ms=0.5, groups=["live"]),
        "disk": entry("warn", "9% free", critical=False, groups=["storage", "nightly"]),
    }
    page = page_of(tmp_path, report("degraded", checks=checks))

    cells = rows(page)

    assert cells[0][0] == "database"
    assert cells[0][1].startswith("fail")
    assert cells[0][2:] == ["unable to open database file", "3.1 ms", "yes", "—"]
    assert cells[1] == ["event_loop", "pass", "lag 0.3 ms", "0.50 ms", "yes", "live"]
    assert cells[2] == ["disk", "warn", "9% free", "1.2 ms", "no", "storage, nightly"]


def test_recent_changes_are_listed_newest_first(tmp_path: Path) -> None:
    """The file's changes appear in its order (newest first), with previous, status and why."""
    data = report()
    with_changes(
        data,
        (60, "online", "degraded", "database pass"),
        (300, "degraded", "online", "database fail: locked"),
        (900, "starting", None, "first report"),
    )

    text = Document(page_of(tmp_path, data)).text

    first = text.index("degraded → online: database pass")
    second = text.index("online → degraded: database fail: locked")
    third = text.index("starting: first report")
    assert "Recent changes" in text
    assert first < second < third


def test_a_file_without_changes_has_no_changes_section(tmp_path: Path) -> None:
    """A file written before changes existed (or with none) shows no such section."""
    assert "Recent changes" not in Document(page_of(tmp_path, "online")).text


def test_every_value_from_the_file_is_escaped(tmp_path: Path) -> None:
    """Markup in names, outputs, versions and changes is shown as text, never run."""
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    data = report(
        "degraded",
        app_name=evil,
        app_version='"><b>',
        checks={evil[:60]: entry("fail", evil, groups=[evil[:60]])},
    )
    with_changes(data, (5, "degraded", "online", evil))

    page = page_of(tmp_path, data)
    document = Document(page)

    assert [tag for tag, _ in document.tags if tag in ("script", "img", "b")] == []
    assert 'alert("x")' in document.text
    assert "<script>" in document.text


def test_the_page_loads_nothing_and_runs_nothing(tmp_path: Path) -> None:
    """No script, no external style or image: one document with its inline style."""
    document = Document(page_of(tmp_path, "degraded"))

    tags = {tag for tag, _ in document.tags}
    assert not tags & {"script", "link", "img", "iframe", "object", "embed"}
    for _, attrs in document.tags:
        assert "src" not in attrs
        assert not str(attrs.get("href", "")).startswith(("http:", "https:", "//"))
    assert "@import" not in document.source
    assert "url(" not in document.source


def test_it_refreshes_every_interval_and_fits_a_phone(tmp_path: Path) -> None:
    """A meta refresh of the report's interval, and a viewport for phones."""
    document = Document(page_of(tmp_path, report(interval_seconds=15.0)))

    assert document.meta("http-equiv", "refresh") == "15"
    assert document.meta("name", "viewport") == "width=device-width, initial-scale=1"


@pytest.mark.parametrize(
    ("interval", "refresh"), [(0.5, "2"), (2.5, "3"), (60.0, "60"), (3600.0, "60")]
)
def test_the_refresh_is_bounded(tmp_path: Path, interval: float, refresh: str) -> None:
    """The page reloads at least every minute and at most every 2 s."""
    document = Document(page_of(tmp_path, report(interval_seconds=interval)))

    assert document.meta("http-equiv", "refresh") == refresh


def test_without_a_report_it_refreshes_every_10_s(tmp_path: Path) -> None:
    """A missing file's page reloads every 10 s, to show the file once it is there."""
    assert Document(page_of(tmp_path, "missing")).meta("http-equiv", "refresh") == "10"


def test_the_probe_line_and_the_file_are_in_the_footer(tmp_path: Path) -> None:
    """The footer quotes the probe's line and names the file."""
    path = write_kind(tmp_path, "degraded")
    now = time.time()
    verdict = judge(path, now=now)

    text = Document(render_page(verdict, now=now)).text

    assert f"healthfile check says: {verdict.reason}" in text
    assert f"Health file: {path}" in text


@pytest.mark.asyncio
async def test_the_page_links_its_json_answers_relative_to_itself(tmp_path: Path) -> None:
    """The links to /livez, /readyz and /healthz are relative to the page's own address, so
    that they lead to the application wherever it is mounted or proxied."""
    app = asgi_app(write_kind(tmp_path, "online"))
    pages = {
        "/health/": ("/health/", "/health"),
        "/health": ("/health", "/health"),
        "/": ("/", ""),
        "/status/": ("/", ""),  # behind a proxy that serves the app at /status/
    }
    try:
        for browser_path, (path, root_path) in pages.items():
            answer = await call_app(app, path, root_path=root_path)
            hrefs = [attrs["href"] for tag, attrs in Document(answer.text).tags if tag == "a"]
            assert [urljoin(f"http://host{browser_path}", str(href)) for href in hrefs] == [
                f"http://host{browser_path.rstrip('/')}/{name}" for name in ROUTES
            ]
    finally:
        app.close()


@pytest.mark.asyncio
async def test_the_page_is_html_with_a_policy_that_forbids_scripts(tmp_path: Path) -> None:
    """GET / is text/html, 200 or 503 like /healthz, with a Content-Security-Policy."""
    app = asgi_app(write_kind(tmp_path, "degraded"))
    try:
        answer = await call_app(app, "/")
    finally:
        app.close()

    assert answer.status == 503
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    assert "script-src" not in answer.headers["content-security-policy"]


@pytest.mark.asyncio
async def test_the_page_of_a_file_the_service_wrote(make_service: ServiceFactory) -> None:
    """A real service's file: the page names the app, its database check and its state."""
    service = make_service(app_name="orders", app_version="2.0")
    await service.start()
    app = asgi_app(service.health_file)
    try:
        answer = await call_app(app, "/")
    finally:
        app.close()

    document = Document(answer.text)
    assert answer.status == 200
    assert document.headline() == "Healthy"
    assert "orders 2.0" in document.text
    assert rows(answer.text)[0][:2] == ["database", "pass"]


def test_a_stopped_page_says_when_the_final_report_was_written(tmp_path: Path) -> None:
    """Stopped says when the service wrote its final report."""
    now = time.time()
    data = report("stopped", age=30)
    data["timestamp"] = stamp(now - 30)

    text = Document(page_of(tmp_path, data, now)).text

    assert "The service wrote its final report at " in text
    assert "(30 s ago)" in text


def test_the_kinds_cover_the_agreement_test() -> None:
    """Every kind the HTTP tests use makes a file (or, for missing, none)."""
    assert kind_of_file("missing") is None
    assert isinstance(kind_of_file("online"), dict)


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0, "0 s"),
        (59.9, "59 s"),
        (300, "5 min"),
        (3 * 3600, "3 h"),
        (3 * 3600 + 20 * 60, "3 h 20 min"),
        (2 * 86400 + 5, "2 d"),
        (-5, "0 s"),
    ],
)
def test_spans_read_as_a_person_says_them(seconds: float, words: str) -> None:
    """Ages and durations on the page are in seconds, minutes, hours or days."""
    from healthfile._page import _span

    assert _span(seconds) == words


def test_times_durations_and_numbers_the_file_may_lack_are_said_plainly() -> None:
    """An unknown time, a missing duration or number, another day: plain words, no error."""
    from healthfile._page import _at, _clock, _duration, _number, _when

    now = 1_800_000_000.0
    assert _at(None, now) == _when(None, now) == "an unknown time"
    assert _clock(now - 3 * 86400, now).count("-") == 2  # another day: with its date
    assert _when(int(now) + 30, now).endswith("(in 30 s)")
    assert (_duration(None), _duration(True), _duration(2500), _duration(0.5)) == (
        "—",
        "—",
        "2.50 s",
        "0.50 ms",
    )
    assert (_number("x"), _number(False), _number(30.0)) == ("?", "?", "30")
