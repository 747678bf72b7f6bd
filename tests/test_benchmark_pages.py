"""The benchmark pages say what the run measured: docs/performance.md, benchmarks/README.md and
benchmarks/results.md are rendered from benchmarks/results.json, numbers and comparisons
alike, so that a hand edit, or prose that contradicts the table, fails here."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from helpers import import_benchmark

ROOT = Path(__file__).resolve().parent.parent
PERFORMANCE = ROOT / "docs" / "performance.md"


@pytest.fixture(scope="module")
def render() -> ModuleType:
    """benchmarks/render.py (it puts its own directory on sys.path for _common)."""
    return import_benchmark("render")


@pytest.fixture
def data(render: ModuleType) -> dict[str, Any]:
    """A copy of the committed results, to change."""
    results: dict[str, Any] = copy.deepcopy(render.Results.load().data)
    return results


def row(data: dict[str, Any], key: str) -> dict[str, Any]:
    """The row ``key`` of ``data``, to change in place."""
    [found] = [row for figure in data["figures"] for row in figure["rows"] if row["key"] == key]
    assert isinstance(found, dict)
    return found


def section(page: str, name: str) -> str:
    """The text of the generated section ``name`` of ``page``."""
    begin, end = f"<!-- generated:begin {name} -->\n", f"<!-- generated:end {name} -->"
    return page.split(begin, 1)[1].split(end, 1)[0]


def test_pages_are_what_the_committed_results_render(render: ModuleType) -> None:
    """results.md, docs/performance.md and benchmarks/README.md equal their rendering from
    the committed results.json: every number there is the run's."""
    files = render.rendered(render.Results.load())

    assert set(files) == {
        ROOT / "benchmarks" / "results.md",
        PERFORMANCE,
        ROOT / "benchmarks" / "README.md",
    }
    for path, text in files.items():
        assert path.read_text(encoding="utf-8") == text, (
            f"{path.relative_to(ROOT)} is not what results.json renders: "
            "run `python benchmarks/render.py` (or make bench), do not edit its numbers"
        )


def test_render_check_passes_on_the_repository_and_fails_on_a_hand_edit(
    render: ModuleType,
) -> None:
    """`render.py --check` exits 0 here; a number edited by hand in the table is put back by
    the rendering, so the check would fail on it."""
    checked = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "render.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    page = PERFORMANCE.read_text(encoding="utf-8")
    first = render.Results.load().figures[0]["rows"][0]
    edited = page.replace(f"| {first['healthfile']} |", "| 0.01 ms |", 1)
    assert edited != page

    assert render.fill(edited, render.Results.load()) == page


def test_performance_page_cites_every_ratio_as_the_table_has_it(render: ModuleType) -> None:
    """Each ratio the prose cites for a row is that row's ratio in the table."""
    page = PERFORMANCE.read_text(encoding="utf-8")
    prose = section(page, "misses") + section(page, "met")
    results = render.Results.load()
    for key in ("cycle_mean", "cycle_median", "lag_p99", "scale_1000", "probe"):
        assert render.times(results.row(key)["ratio"]) in prose, key


@pytest.mark.parametrize(
    ("ratio", "said"),
    [(1.03, "within 5 % of it"), (1.11, "11 % above it"), (0.9, "10 % below it")],
)
def test_within_five_percent_is_decided_by_the_numbers(
    render: ModuleType, data: dict[str, Any], ratio: float, said: str
) -> None:
    """1000 checks against bare asyncio: "within 5 %" only when it is, else how far off."""
    row(data, "scale_1000_bare")["ratio"] = ratio
    row(data, "scale_1000")["met"] = False

    assert said in render.SECTIONS["misses"](render.Results(data))


@pytest.mark.parametrize(
    ("p50", "worst", "said"),
    [
        (1.12, 3.2, f"p50 within 1.2{chr(0xD7)} of idle, max 3.20{chr(0xD7)} idle"),
        (1.5, 0.95, f"p50 1.50{chr(0xD7)} idle, max no worse"),
    ],
)
def test_lag_words_follow_the_table(
    render: ModuleType, data: dict[str, Any], p50: float, worst: float, said: str
) -> None:
    """ "max no worse" and "p50 within 1.2x" are said only when the table's ratios say so."""
    row(data, "lag_p50")["ratio"] = p50
    row(data, "lag_max")["ratio"] = worst
    row(data, "lag_p99")["met"] = False

    assert said in render.SECTIONS["misses"](render.Results(data))


def test_a_target_met_moves_its_paragraph_from_the_misses_to_what_is_met(
    render: ModuleType, data: dict[str, Any]
) -> None:
    """Whether a figure's paragraph is a miss or a target met is the table's `met?`."""
    for key in ("cycle_mean", "cycle_median"):
        row(data, key)["met"] = False
    missed = render.Results(data)
    assert "**Cycle cost" in render.SECTIONS["misses"](missed)
    assert "**Cycle cost" not in render.SECTIONS["met"](missed)
    for key in ("cycle_mean", "cycle_median"):
        row(data, key)["met"] = True
    met = render.Results(data)
    assert "**Cycle cost" not in render.SECTIONS["misses"](met)
    assert "**Cycle cost" in render.SECTIONS["met"](met)


def test_a_marker_without_a_section_or_without_its_end_is_refused(render: ModuleType) -> None:
    """An unknown section name, or a begin marker left without its end, is an error."""
    results = render.Results.load()
    with pytest.raises(KeyError, match="nowhere"):
        render.fill("<!-- generated:begin nowhere -->\n<!-- generated:end nowhere -->", results)
    with pytest.raises(ValueError, match="without its end"):
        render.fill("<!-- generated:begin table -->\n", results)
