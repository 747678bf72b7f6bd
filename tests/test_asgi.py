"""asgi_app(): routes, query parameters, methods, mounting, lifespan and the bounded read,
called in-process as an ASGI server calls it."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import healthfile
from healthfile._asgi import DEFAULT_READ_TIMEOUT, HealthApp, asgi_app
from helpers import generous, not_before, stray_threads
from httphelpers import Answer, as_probe_says, call_app, entry, write_kind
from test_judge import report

pytestmark = pytest.mark.usefixtures("clean_environment")


@pytest.fixture
def app_for(tmp_path: Path) -> Iterator[Any]:
    """Make an application on a file of a given kind (or content); close them all after."""
    made: list[HealthApp] = []

    def factory(content: str | dict[str, Any], **options: Any) -> HealthApp:
        if isinstance(content, dict):
            path = tmp_path / "health.json"
            path.write_text(json.dumps(content), encoding="utf-8")
        else:
            path = write_kind(tmp_path, content)
        app = asgi_app(path, **options)
        made.append(app)
        return app

    yield factory
    for app in made:
        app.close()


async def as_probe_says_of(
    app: HealthApp, path: str, query: bytes = b"", root_path: str = "", **options: Any
) -> Answer:
    """The application's answer to ``path``, asserted to carry what ``healthfile check
    --json`` prints with ``options`` (while it holds still: see as_probe_says)."""
    return await as_probe_says(
        app.health_file,
        lambda: call_app(app, path, query=query, root_path=root_path),
        **options,
    )


def assert_error(answer: Answer, status: int, *words: str) -> None:
    """The answer is ``status`` with a one-line JSON error naming ``words``."""
    assert answer.status == status
    assert answer.headers["content-type"] == "application/json"
    assert answer.body.endswith(b"\n")
    assert answer.body.count(b"\n") == 1
    error = answer.json()["error"]
    for word in words:
        assert word in error


@pytest.mark.asyncio
async def test_readyz_is_the_probe_verdict_with_200_when_online(app_for: Any) -> None:
    """GET /readyz on an online file answers 200 with the probe's --json line as the body."""
    app = app_for("online")

    answer = await as_probe_says_of(app, "/readyz")

    assert answer.status == 200
    assert answer.json()["verdict"] == "online"
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["content-length"] == str(len(answer.body))


@pytest.mark.asyncio
async def test_healthz_equals_readyz(app_for: Any) -> None:
    """/healthz gives the default verdict, as /readyz does."""
    app = app_for("degraded")

    readyz = await as_probe_says_of(app, "/readyz")
    healthz = await as_probe_says_of(app, "/healthz")

    assert (readyz.status, healthz.status) == (503, 503)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("kind", "status"),
    [
        ("online", 200),
        ("warn-only", 200),
        ("starting", 200),
        ("degraded", 503),
        ("stale", 503),
        ("stopped", 503),
        ("clock", 503),
        ("missing", 503),
        ("not-the-contract", 503),
    ],
)
async def test_status_is_200_exactly_where_the_probe_exits_0(
    app_for: Any, kind: str, status: int
) -> None:
    """Every kind of file: 200 where the probe exits 0, else 503, and the probe's line."""
    app = app_for(kind)

    answer = await as_probe_says_of(app, "/readyz")

    assert answer.status == status
    assert answer.json()["exit_code"] == (0 if status == 200 else 1)


@pytest.mark.asyncio
async def test_livez_judges_the_live_group(app_for: Any) -> None:
    """/livez is --group live: a failing database leaves it 200 while /readyz says 503."""
    app = app_for("degraded")

    livez = await as_probe_says_of(app, "/livez", groups=("live",))

    assert livez.status == 200
    assert (await call_app(app, "/readyz")).status == 503


@pytest.mark.asyncio
async def test_livez_without_live_checks_judges_the_writer_alone(app_for: Any) -> None:
    """Where no check carries live, /livez is 200 for a fresh file and 503 for a stopped one."""
    fresh = app_for(report("degraded", checks={"database": entry("fail", "gone")}))
    assert (await call_app(fresh, "/livez")).status == 200
    stopped = app_for("stopped")
    assert (await call_app(stopped, "/livez")).status == 503


@pytest.mark.asyncio
async def test_allow_degraded_turns_degraded_into_200(app_for: Any) -> None:
    """?allow_degraded=true answers 200 for degraded, as --allow-degraded exits 0."""
    app = app_for("degraded")

    for value in ("true", "1", "TRUE", "yes", ""):
        query = f"allow_degraded={value}".encode()
        answer = await as_probe_says_of(app, "/readyz", query, allow_degraded=True)
        assert answer.status == 200, value
    for value in ("false", "0"):
        answer = await call_app(app, "/readyz", query=f"allow_degraded={value}".encode())
        assert answer.status == 503, value


@pytest.mark.asyncio
async def test_only_and_ignore_take_comma_separated_and_repeated_names(app_for: Any) -> None:
    """only= and ignore= split on commas like --only/--ignore, and repeat like them."""
    app = app_for("degraded")

    only = await as_probe_says_of(app, "/readyz", b"only=event_loop", only=("event_loop",))
    ignore = await as_probe_says_of(
        app, "/readyz", b"ignore=database&ignore=event_loop", ignore=("database", "event_loop")
    )
    both = await as_probe_says_of(
        app, "/readyz", b"only=event_loop,%20database", only=("event_loop", "database")
    )

    assert only.status == 200
    assert ignore.status == 200
    assert both.status == 503


@pytest.mark.asyncio
async def test_group_selects_the_checks_of_a_group(app_for: Any) -> None:
    """?group=NAME is --group NAME; a group no check carries is 503 unknown_group."""
    app = app_for("warn-only")

    storage = await as_probe_says_of(app, "/readyz", b"group=storage", groups=("storage",))
    typo = await call_app(app, "/readyz", query=b"group=storag")

    assert storage.status == 200
    assert typo.status == 503
    assert typo.json()["verdict"] == "unknown_group"


@pytest.mark.asyncio
async def test_max_age_makes_an_older_report_stale(app_for: Any) -> None:
    """?max_age=SECONDS is --max-age: a report older than that is 503 stale."""
    app = app_for(report(age=20))

    answer = await call_app(app, "/readyz", query=b"max_age=5")

    assert answer.status == 503
    assert answer.json()["verdict"] == "stale"
    assert (await call_app(app, "/readyz", query=b"max_age=300")).status == 200


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("path", "query", "words"),
    [
        ("/readyz", b"colour=blue", ("unknown query parameter", "colour")),
        ("/readyz", b"allow_degraded=maybe", ("allow_degraded", "maybe")),
        ("/readyz", b"allow_degraded=1&allow_degraded=1", ("allow_degraded", "more than once")),
        ("/readyz", b"max_age=soon", ("max_age", "soon")),
        ("/readyz", b"max_age=0", ("max_age", ">= 0.001")),
        ("/readyz", b"max_age=-5", ("max_age",)),
        ("/readyz", b"max_age=nan", ("max_age",)),
        ("/readyz", b"max_age=inf", ("max_age",)),
        ("/readyz", b"max_age=1e12", ("max_age", "31622400")),
        ("/readyz", b"max_age=1&max_age=2", ("max_age", "more than once")),
        ("/readyz", b"only=", ("only", "expected names")),
        ("/readyz", b"ignore=%20,%20", ("ignore", "expected names")),
        ("/readyz", b"group=", ("group",)),
        ("/readyz", b"only=a&ignore=b", ("only and ignore",)),
        ("/readyz", b"only=a&group=b", ("only and group",)),
        ("/livez", b"group=storage", ("group", "/livez judges the group live")),
        ("/livez", b"only=database", ("only", "/livez")),
        ("/readyz", b"only=%ff", ("UTF-8",)),
        ("/readyz", b"&".join([b"only=a"] * 40), ("more than 32",)),
        ("/", b"only=database", ("status page", "only")),
    ],
)
async def test_a_bad_query_parameter_is_400_naming_it(
    app_for: Any, path: str, query: bytes, words: tuple[str, ...]
) -> None:
    """A bad, unknown, repeated or conflicting query parameter: 400 and one JSON line."""
    app = app_for("online")

    answer = await call_app(app, path, query=query)

    assert_error(answer, 400, *words)
    assert answer.headers["cache-control"] == "no-store"


@pytest.mark.asyncio
async def test_livez_may_ignore_a_live_check(app_for: Any) -> None:
    """/livez?ignore=NAME judges the live group but that check, as --group live --ignore."""
    app = app_for("online")

    answer = await as_probe_says_of(
        app, "/livez", b"ignore=event_loop", groups=("live",), ignore=("event_loop",)
    )

    assert answer.status == 200


@pytest.mark.asyncio
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
async def test_another_method_is_405_with_allow(app_for: Any, method: str) -> None:
    """Only GET and HEAD: another method is 405 with Allow: GET, HEAD."""
    app = app_for("online")

    for path in ("/", "/readyz", "/livez"):
        answer = await call_app(app, path, method=method)
        assert_error(answer, 405, method)
        assert answer.headers["allow"] == "GET, HEAD"


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/health", "/readyz/", "/READYZ", "//readyz", "/livez/x"])
async def test_another_path_is_404_listing_the_paths(app_for: Any, path: str) -> None:
    """Another path is 404 with a JSON error that lists the paths there are."""
    app = app_for("online")

    answer = await call_app(app, path)

    assert_error(answer, 404, path, "/livez", "/readyz", "/healthz")


@pytest.mark.asyncio
async def test_head_has_the_headers_of_get_and_no_body(app_for: Any) -> None:
    """HEAD answers the status and headers GET would, Content-Length included, no body."""
    app = app_for("degraded")

    for path in ("/readyz", "/"):
        get = await call_app(app, path)
        head = await call_app(app, path, method="HEAD")
        assert head.status == get.status
        assert head.body == b""
        assert head.headers.keys() == get.headers.keys()
        assert head.headers["content-length"] == get.headers["content-length"] != "0"


@pytest.mark.asyncio
async def test_every_answer_says_no_store(app_for: Any) -> None:
    """Cache-Control: no-store on verdicts, the page and errors alike."""
    app = app_for("online")

    answers = [
        await call_app(app, "/readyz"),
        await call_app(app, "/"),
        await call_app(app, "/nope"),
        await call_app(app, "/readyz", method="POST"),
        await call_app(app, "/readyz", query=b"x=1"),
    ]

    assert {answer.headers["cache-control"] for answer in answers} == {"no-store"}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("path", "root_path"),
    [
        ("/health/readyz", "/health"),  # Starlette's Mount and uvicorn --root-path keep it
        ("/readyz", "/health"),  # older servers strip it
        ("/a/b/readyz", "/a/b"),
    ],
)
async def test_mounted_under_a_prefix_it_routes_below_root_path(
    app_for: Any, path: str, root_path: str
) -> None:
    """Mounted under a prefix, the paths are taken relative to scope["root_path"]."""
    app = app_for("online")

    answer = await as_probe_says_of(app, path, root_path=root_path)

    assert answer.status == 200


@pytest.mark.asyncio
async def test_a_path_that_only_starts_like_the_mount_point_is_not_below_it(
    app_for: Any,
) -> None:
    """root_path /health does not make /healthz its /z: it is the app's own /healthz."""
    app = app_for("online")

    answer = await call_app(app, "/healthz", root_path="/health")

    assert answer.status == 200


@pytest.mark.asyncio
async def test_the_status_page_is_served_at_the_mount_point_with_or_without_slash(
    app_for: Any,
) -> None:
    """/health and /health/ both give the page of an app mounted at /health."""
    app = app_for("online")

    for path in ("/health", "/health/"):
        answer = await call_app(app, path, root_path="/health")
        assert answer.status == 200
        assert answer.headers["content-type"] == "text/html; charset=utf-8"


@pytest.mark.asyncio
async def test_lifespan_completes_startup_and_shutdown(app_for: Any) -> None:
    """The lifespan protocol is answered: startup and shutdown complete."""
    app = app_for("online")
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[Any] = []

    async def receive() -> Any:
        return incoming.pop(0)

    async def send(message: Any) -> None:
        sent.append(message)

    await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)

    assert sent == [
        {"type": "lifespan.startup.complete"},
        {"type": "lifespan.shutdown.complete"},
    ]


@pytest.mark.asyncio
async def test_a_websocket_is_refused(app_for: Any) -> None:
    """A websocket is closed before it is accepted (the server answers 403)."""
    app = app_for("online")
    sent: list[Any] = []

    async def receive() -> Any:
        return {"type": "websocket.connect"}

    async def send(message: Any) -> None:
        sent.append(message)

    await app({"type": "websocket", "path": "/readyz"}, receive, send)

    assert [message["type"] for message in sent] == ["websocket.close"]


@pytest.mark.asyncio
async def test_an_unknown_scope_type_raises(app_for: Any) -> None:
    """A scope type the app does not know raises, as the ASGI spec asks."""
    app = app_for("online")

    async def receive() -> Any:
        raise AssertionError("not called")

    async def send(message: Any) -> None:
        raise AssertionError("not called")

    with pytest.raises(ValueError, match="telepathy"):
        await app({"type": "telepathy"}, receive, send)


def test_asgi_app_is_exported_lazily() -> None:
    """healthfile.asgi_app is the factory, and repr names the file."""
    app = healthfile.asgi_app("x/health.json")

    assert isinstance(app, HealthApp)
    assert (
        repr(app) == f"<healthfile ASGI app health_file={str(Path('x/health.json').absolute())!r}>"
    )


def test_the_file_is_made_absolute_at_construction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative health_file is resolved once: a later chdir changes nothing."""
    monkeypatch.chdir(tmp_path)
    app = asgi_app("data/health.json")
    monkeypatch.chdir("/")

    assert app.health_file == str(tmp_path / "data" / "health.json")


def test_without_a_file_it_reads_the_environment_then_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """health_file=None: HEALTHFILE_HEALTH_FILE, else data/health.json; an empty one raises."""
    monkeypatch.chdir(tmp_path)
    assert asgi_app().health_file == str(tmp_path / "data" / "health.json")
    monkeypatch.setenv("HEALTHFILE_HEALTH_FILE", str(tmp_path / "elsewhere.json"))
    assert asgi_app().health_file == str(tmp_path / "elsewhere.json")
    monkeypatch.setenv("HEALTHFILE_HEALTH_FILE", " ")
    with pytest.raises(ValueError, match="HEALTHFILE_HEALTH_FILE"):
        asgi_app()


@pytest.mark.parametrize(
    ("timeout", "error"),
    [(0, ValueError), (-1, ValueError), (float("nan"), ValueError), ("1", TypeError)],
)
def test_a_bad_read_timeout_is_refused(timeout: Any, error: type[Exception]) -> None:
    """read_timeout is validated like every duration, naming it."""
    with pytest.raises(error, match="read_timeout"):
        asgi_app("health.json", read_timeout=timeout)


@pytest.fixture
def hung_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[set[str], threading.Event]]:
    """Make the opening of the paths put in the returned set hang until the event is set
    (a file on a dead network mount: os.open itself, the lowest level, is patched)."""
    hung: set[str] = set()
    release = threading.Event()
    real_open = os.open

    def open_(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if os.fspath(path) in hung:
            release.wait(timeout=generous(30))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_)
    yield hung, release
    release.set()


@pytest.mark.asyncio
async def test_a_hung_read_answers_503_within_the_read_timeout(
    app_for: Any, hung_reads: tuple[set[str], threading.Event]
) -> None:
    """A read that hangs answers 503 unreadable after read_timeout; the loop is never held,
    and later requests are answered at once rather than queued behind it."""
    hung, release = hung_reads
    app = app_for("online", read_timeout=0.2)
    hung.add(app.health_file)

    started = time.monotonic()
    first = await call_app(app, "/readyz")
    first_took = time.monotonic() - started
    started = time.monotonic()
    second = await call_app(app, "/")
    second_took = time.monotonic() - started

    assert first.status == 503
    assert first.json()["verdict"] == "unreadable"
    assert "no answer from the file system" in first.json()["reason"]
    assert not_before(0.2) <= first_took < generous(2)
    assert second.status == 503
    assert "Health file unreadable" in second.text
    assert second_took < 0.2
    hung.clear()
    release.set()
    deadline = time.monotonic() + generous(5)
    while (await call_app(app, "/readyz")).status != 200:
        assert time.monotonic() < deadline


@pytest.mark.asyncio
async def test_a_read_given_up_on_is_not_queued_behind_even_if_it_began_late(
    app_for: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read that began late in the reader thread (behind a slow one) and then hung: once a
    request has given up on it, the next request is answered at once, not after another
    read_timeout (the thread's own start time says it has not hung that long yet)."""
    app = app_for("online", read_timeout=0.2)
    release = threading.Event()
    opened: list[str] = []
    real_open = os.open

    def open_(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if os.fspath(path) == app.health_file:
            opened.append(app.health_file)
            if len(opened) == 1:
                time.sleep(0.15)  # slow, and answered
            else:
                release.wait(timeout=generous(30))  # hung
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_)
    try:
        slow = asyncio.ensure_future(call_app(app, "/readyz"))
        await asyncio.sleep(0.01)
        given_up = await call_app(app, "/readyz")  # queued behind the slow read, then hung
        started = time.monotonic()
        after = await call_app(app, "/readyz")
        after_took = time.monotonic() - started
        assert (await slow).status == 200
    finally:
        release.set()

    assert given_up.json()["verdict"] == "unreadable"
    assert after.json()["verdict"] == "unreadable"
    assert after_took < generous(0.15)
    assert len(opened) == 2  # nothing more was queued behind the hung read


@pytest.mark.asyncio
async def test_a_read_hung_past_the_bound_whose_request_went_away_queues_nothing(
    app_for: Any, hung_reads: tuple[set[str], threading.Event]
) -> None:
    """A hung read whose request was cancelled (the client went away) before read_timeout:
    once it has hung past the bound, the next request is answered at once."""
    hung, _ = hung_reads
    app = app_for("online", read_timeout=0.2)
    hung.add(app.health_file)
    gone = asyncio.ensure_future(call_app(app, "/readyz"))
    await asyncio.sleep(0.05)
    gone.cancel()
    await asyncio.sleep(0.25)

    started = time.monotonic()
    answer = await call_app(app, "/readyz")
    took = time.monotonic() - started

    assert gone.cancelled()
    assert answer.json()["verdict"] == "unreadable"
    assert took < generous(0.15)


@pytest.mark.asyncio
async def test_the_file_is_read_in_the_apps_own_daemon_thread(app_for: Any) -> None:
    """The judge runs in a daemon thread named healthfile-http, which close() ends."""
    app = app_for("online")
    before = set(threading.enumerate())

    await call_app(app, "/readyz")
    threads = [thread for thread in stray_threads(before) if thread.name == "healthfile-http"]
    assert len(threads) == 1
    assert threads[0].daemon
    app.close()
    threads[0].join(timeout=generous(5))

    assert not threads[0].is_alive()
    assert (await call_app(app, "/readyz")).status == 200  # a new request starts it again


def test_the_default_read_timeout_is_below_a_kubernetes_probe_timeout() -> None:
    """By default a hung read is answered 503 before a probe's default 1 s timeout ends."""
    assert asgi_app("h.json")._read_timeout == DEFAULT_READ_TIMEOUT < 1.0


@pytest.mark.asyncio
async def test_an_app_dropped_without_close_lets_its_reader_thread_end(tmp_path: Path) -> None:
    """The file reader's thread belongs to its app: once the app is gone, the thread ends."""
    import gc

    before = set(threading.enumerate())
    app = asgi_app(tmp_path / "health.json")
    await call_app(app, "/readyz")
    readers = [t for t in set(threading.enumerate()) - before if t.name == "healthfile-http"]
    assert len(readers) == 1
    del app
    gc.collect()
    deadline = time.monotonic() + generous(10)
    while any(thread.is_alive() for thread in readers):
        assert time.monotonic() < deadline, "the reader thread outlived its app"
        time.sleep(0.01)
