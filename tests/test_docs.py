"""The documentation: README.md leads to docs/, every page is in the site's nav, the strict
build refuses a broken link, a missing anchor and a page left out of the nav, and every Python
example of README.md and docs/ runs as written."""

from __future__ import annotations

import ast
import inspect
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

import healthfile
from healthfile._options import CheckOptions
from helpers import generous, is_online, make_database, read_report, wait_for_report
from x11 import find_window, request_close, xvfb_display

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
MKDOCS = Path(sys.executable).parent / "mkdocs"
# Markdown links and images: [text](target) and ![alt](target).
LINK = re.compile(r"\]\(([^)\s]+)\)")
# Words of the project's own history that a newcomer cannot know.
JARGON = re.compile(r"(?i:\bseed\b|\bthe spec\b)|\bSPEC\b|§")


def nav_pages(entries: list[Any]) -> Iterator[str]:
    """Every page file named in an MkDocs nav, however deeply nested."""
    for entry in entries:
        values = entry.values() if isinstance(entry, dict) else [entry]
        for value in values:
            if isinstance(value, list):
                yield from nav_pages(value)
            else:
                yield str(value)


def build(config_dir: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """Run `mkdocs build --strict` on the mkdocs.yml in ``config_dir``."""
    if not MKDOCS.exists():
        pytest.skip("mkdocs is not installed (it is in the lint extra: make test installs it)")
    return subprocess.run(
        [str(MKDOCS), "build", "--strict", "--site-dir", str(site)],
        cwd=config_dir,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_page_in_docs_is_in_the_nav_and_every_nav_entry_is_a_page() -> None:
    """The nav of mkdocs.yml lists exactly the Markdown pages of docs/."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    listed = list(nav_pages(config["nav"]))
    assert len(listed) == len(set(listed))
    assert set(listed) == {page.relative_to(DOCS).as_posix() for page in DOCS.rglob("*.md")}


def test_readme_puts_the_two_commands_first_and_links_every_page() -> None:
    """README.md opens with `make run` and `make test`, stays short, and links each page."""
    readme = README.read_text(encoding="utf-8")
    sections = re.findall(r"^## (.+)$", readme, re.MULTILINE)
    assert sections[0] == "Two commands"
    first = readme.split("\n## ", 2)[1]
    assert "make run" in first
    assert "make test" in first
    assert len(readme.splitlines()) <= 150
    targets = set(LINK.findall(readme))
    for page in DOCS.rglob("*.md"):
        assert f"docs/{page.relative_to(DOCS).as_posix()}" in targets, page


def test_every_relative_link_of_the_readme_leads_to_a_file() -> None:
    """Each link of README.md that is not a web address names a file of the repository."""
    for target in LINK.findall(README.read_text(encoding="utf-8")):
        if "://" not in target:
            assert (ROOT / target.split("#")[0]).is_file(), target


def test_no_jargon_of_the_projects_history_in_docs_examples_or_src() -> None:
    """README, docs, examples, benchmarks and src speak plainly: no "seed" or "SPEC §"."""
    files = [README, *DOCS.rglob("*.md"), *(ROOT / "examples").rglob("*")]
    files += [*(ROOT / "src").rglob("*.py"), *(ROOT / "benchmarks").rglob("*")]
    for path in files:
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            assert not JARGON.search(text), (path, JARGON.search(text))


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    """`mkdocs build --strict` builds the site with no warning, the examples inside it."""
    built = build(ROOT, tmp_path / "site")
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "site" / "examples" / "Dockerfile").is_file()


@pytest.mark.parametrize(
    ("page", "text"),
    [
        pytest.param("platforms.md", "\n[gone](nowhere.md)\n", id="missing-page"),
        pytest.param("platforms.md", "\n[gone](api.md#nowhere)\n", id="missing-anchor"),
        pytest.param("platforms.md", "\n[gone](../examples/nowhere.py)\n", id="missing-example"),
        pytest.param("orphan.md", "# Not in the nav\n", id="page-outside-the-nav"),
    ],
)
def test_the_strict_build_refuses_a_broken_link_or_a_page_outside_the_nav(
    tmp_path: Path, page: str, text: str
) -> None:
    """A link to a missing page, anchor or example, or a page not in the nav, fails the build."""
    copy = tmp_path / "repo"
    shutil.copytree(DOCS, copy / "docs", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "examples", copy / "examples")
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    assert build(copy, tmp_path / "site").returncode == 0
    with (copy / "docs" / page).open("a", encoding="utf-8") as file:
        file.write(text)
    refused = build(copy, tmp_path / "site")
    assert refused.returncode != 0
    assert refused.stderr.count("WARNING") == 1, refused.stderr  # the one fault, no other


# --- every Python example runs as written ---------------------------------------------------

# A Python block, and the marker line that may stand right before it in the page (an HTML
# comment: the site does not show it, the page's source does). docs/development.md lists them.
EXAMPLE = re.compile(
    r"^(?:<!-- example: (?P<mode>[^>]*?) -->\n)?```python\n(?P<code>.*?)^```$", re.M | re.S
)
# until-ctrl-c: a server, run until its first report is on disk, then sent SIGINT (Ctrl-C);
# window: a Tk window on a private X display, closed by WM_DELETE_WINDOW like its close
# button; not-run: REASON: not run, and counted below. No marker: run to its end.
MODES = ("", "until-ctrl-c", "window")
NOT_RUN = "not-run: "
# Every example may print and log, but none may leave a traceback.
EXAMPLE_DEADLINE = 60.0


@dataclass(frozen=True)
class Example:
    """One Python block of a page: where it is, how it runs, its code."""

    page: str
    line: int
    mode: str
    code: str


def examples() -> list[Example]:
    """Every Python block of README.md and of the pages of docs/, in order."""
    found = []
    for path in [README, *sorted(DOCS.rglob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        for match in EXAMPLE.finditer(text):
            line = text.count("\n", 0, match.start("code"))
            found.append(
                Example(path.relative_to(ROOT).as_posix(), line, match["mode"] or "", match["code"])
            )
    return found


def free_port() -> int:
    """A TCP port free on localhost a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_example(
    example: Example, tmp_path: Path, **variables: str
) -> tuple[subprocess.Popen[str], Path]:
    """Start ``example`` as a script in ``tmp_path``, where data/app.db is a real database
    (the app's own, which every example reads); the process and its health file."""
    make_database(tmp_path / "data" / "app.db")
    script = tmp_path / "example.py"
    script.write_text(example.code, encoding="utf-8")
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("HEALTHFILE_")
    }
    process = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env={**environment, "PORT": str(free_port()), "PYTHONUNBUFFERED": "1", **variables},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return process, tmp_path / "data" / "health.json"


def finish(process: subprocess.Popen[str], health_file: Path, what: str) -> None:
    """Wait for the example's end: exit 0, no traceback, its final report "stopped"."""
    try:
        out, err = process.communicate(timeout=generous(EXAMPLE_DEADLINE))
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"{what} did not end within its deadline:\n{out}\n{err}")
    assert process.returncode == 0, f"{what} exited {process.returncode}:\n{out}\n{err}"
    assert "Traceback" not in err, err
    report = read_report(health_file)
    if report is not None:  # every example that writes a health file stops its service
        assert report["status"] == "stopped", report


def running(process: subprocess.Popen[str], what: str) -> None:
    """Fail the test, with the example's output, if it has ended."""
    if process.poll() is not None:
        out, err = process.communicate()
        pytest.fail(f"{what} ended ({process.returncode}) before its first report:\n{out}{err}")


@pytest.mark.parametrize(
    "example",
    [pytest.param(example, id=f"{example.page}:{example.line}") for example in examples()],
)
def test_every_python_example_of_the_docs_runs_as_written(example: Example, tmp_path: Path) -> None:
    """Each Python block runs as a script in a directory holding data/app.db: to its end, or
    (servers) until Ctrl-C after its first report, or (a window) until its close button; it
    exits 0 without a traceback and leaves "stopped" in any health file it wrote."""
    what = f"the example at {example.page}:{example.line}"
    if example.mode.startswith(NOT_RUN):
        pytest.skip(f"{what} is marked not to run: {example.mode.removeprefix(NOT_RUN)}")
    assert example.mode in MODES, f"{what}: unknown marker {example.mode!r}"
    if example.mode == "until-ctrl-c" and not hasattr(signal, "SIGKILL"):
        pytest.skip("no POSIX signals between processes here: Ctrl-C cannot be sent")
    if example.mode == "window":
        with xvfb_display() as display:
            process, health_file = start_example(example, tmp_path, DISPLAY=display)
            try:
                wait_for_report(health_file, is_online, what, alive=lambda: running(process, what))
                request_close(display, find_window(display, "--class", "^Tk$"))
                finish(process, health_file, what)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.communicate()
        return
    process, health_file = start_example(example, tmp_path)
    try:
        if example.mode == "until-ctrl-c":
            wait_for_report(health_file, is_online, what, alive=lambda: running(process, what))
            process.send_signal(signal.SIGINT)
        finish(process, health_file, what)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_every_python_example_is_run_or_marked_not_to_run_with_a_reason() -> None:
    """The pages hold Python examples, none is left out silently: a block not run carries a
    `not-run: REASON` marker, and there are none of those today."""
    found = examples()
    not_run = [example for example in found if example.mode.startswith(NOT_RUN)]
    assert len(found) >= 8
    assert all(example.mode in MODES or example in not_run for example in found)
    assert all(example.mode.removeprefix(NOT_RUN).strip() for example in not_run)
    assert not_run == []


# The checks whose signatures docs/checks.md writes out.
CHECKS = ("check", "SQLiteCheck", "DiskSpaceCheck", "LoopLagCheck", "HeartbeatCheck")
SIGNATURE = re.compile(r"`(?:healthfile\.)?(\w+)\(([^`]*\*[^`]*)\)`")


def documented_signature(name: str) -> list[str]:
    """The parameters docs/checks.md writes for ``name``, as ["path", "*", 'name="disk"', ...]."""
    text = " ".join((DOCS / "checks.md").read_text(encoding="utf-8").split())
    [parameters] = [found for check, found in SIGNATURE.findall(text) if check == name]
    return str(parameters).split(", ")


def written(parameter: inspect.Parameter) -> str:
    """A parameter as the docs write it: its name, and its default in double quotes."""
    if parameter.default is inspect.Parameter.empty:
        return parameter.name
    return f"{parameter.name}={parameter.default!r}".replace("'", '"')


# A check of each kind, made with its required arguments: what its options default to.
MADE: dict[str, Callable[[], object]] = {
    "check": lambda: healthfile.check("queue", bool),
    "SQLiteCheck": lambda: healthfile.SQLiteCheck("app.db"),
    "DiskSpaceCheck": lambda: healthfile.DiskSpaceCheck("."),
    "LoopLagCheck": lambda: healthfile.LoopLagCheck(),
    "HeartbeatCheck": lambda: healthfile.HeartbeatCheck(),
}


@pytest.mark.parametrize("name", CHECKS)
def test_docs_give_each_built_in_check_its_real_signature(name: str) -> None:
    """docs/checks.md writes the parameters of each built-in check and of healthfile.check()
    as the code has them (names, order, defaults, the `*`); the options every check shares
    (`**options`) follow, each written with the default a check of that kind really has, and
    a trailing `...` stands for the rest of them at CheckOptions' defaults."""
    real = inspect.signature(getattr(healthfile, name)).parameters.values()
    explicit = [written(p) for p in real if p.kind is not inspect.Parameter.VAR_KEYWORD]
    keyword = [p.kind is inspect.Parameter.KEYWORD_ONLY for p in real]
    explicit.insert(keyword.index(True) if True in keyword else len(explicit), "*")
    common = {
        p.name: p.default
        for p in inspect.signature(CheckOptions).parameters.values()
        if p.default is not inspect.Parameter.empty
    }
    documented = documented_signature(name)

    assert documented[: len(explicit)] == explicit
    shared = documented[len(explicit) :]
    rest = shared[-1:] == ["..."]
    made = MADE[name]()
    for item in shared[:-1] if rest else shared:
        option, _, default = item.partition("=")
        assert option in common, item
        assert getattr(made, option) == ast.literal_eval(default), item
    named = {item.partition("=")[0] for item in shared}
    for option, default in common.items():  # what "..." stands for: the shared defaults
        if option not in named:
            assert rest, f"{name}: {option} is neither written nor left to '...'"
            assert getattr(made, option) == (tuple(default) if option == "groups" else default)
