"""docs/reliability.md: every test its table cites exists and is marked `reliability`, and
the command it gives runs them."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import generous

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "reliability.md"
# A citation in the "proved by" column: `file.py::test_name`, `::test_name` (the file of the
# citation before it), or `file.py` alone (every test in it). Bare file names are in
# tests/reliability/; others carry their path from the repository's root.
CITATION = re.compile(r"`((?:tests/[\w/]+\.py|test_\w+\.py)?)(?:::(\w+))?`")


def cited_tests() -> list[tuple[str, str | None]]:
    """Every (file, test or None) the table's last column cites, in order."""
    cited: list[tuple[str, str | None]] = []
    for line in PAGE.read_text(encoding="utf-8").splitlines():
        if not line.startswith("| ") or line.startswith(("| fault", "|---")):
            continue
        proved_by = line.rstrip(" |").rsplit(" | ", 1)[-1]
        current = ""
        for match in CITATION.finditer(proved_by):
            file, test = match.groups()
            if file:
                current = file if file.startswith("tests/") else f"tests/reliability/{file}"
            assert current, f"a citation without its file: {match.group(0)} in {line[:60]}"
            cited.append((current, test))
    return cited


def test_every_test_the_page_cites_exists_and_is_marked_reliability() -> None:
    """Each cited test is collected under `-m reliability`: it exists, and carries the marker."""
    cited = cited_tests()
    assert len(cited) > 40
    files = sorted({file for file, _ in cited})
    for file in files:
        assert (ROOT / file).is_file(), f"{file} does not exist"
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "reliability", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=generous(120),
        check=False,
    )
    ids = {line.split("[", 1)[0] for line in collected.stdout.splitlines() if "::" in line}
    missing = [
        f"{file}::{test}" if test else file
        for file, test in cited
        if (f"{file}::{test}" not in ids if test else not any(i.startswith(file) for i in ids))
    ]
    assert missing == [], collected.stderr[-2000:]


def test_make_reliability_runs_the_marked_tests_with_the_test_tools_installed() -> None:
    """`make reliability`, the page's command, installs the test tools and runs -m reliability."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("needs make")
    page = PAGE.read_text(encoding="utf-8")
    assert "\n    make reliability\n" in page
    dry = subprocess.run(
        [make, "-n", "--always-make", "reliability"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=generous(60),
        check=True,
    )
    assert "install -qq --disable-pip-version-check -e '.[dev]'" in dry.stdout
    assert ".venv/bin/pytest -m reliability -n 2" in dry.stdout
    assert "`.venv/bin/pytest -m reliability -n 2`" in page
