"""`make bench` runs: every figure runs through (the quick way, numbers not judged), and a
figure that fails makes the run exit 1 and leaves results.json and the pages as they were."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

from helpers import import_benchmark, needs_directory_fsync

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
VENV_PYTHON = ROOT / ".venv" / ("Scripts" if os.name == "nt" else "bin") / "python"
# The figures that take a few seconds in a quick run; the others (lag and scale over rounds
# of seconds, memory over many cycles, HTTP load per server) run in make matrix.
QUICK_FIGURES = (1, 4, 6, 8)

# A quick run of the long figures takes a minute alone, several on a loaded machine.
pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def bench_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModuleType:
    """benchmarks/run.py, imported from its file, its work and its results under tmp_path."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.setenv("HEALTHFILE_BENCH_DIR", str(tmp_path))
    module = import_benchmark("run")
    monkeypatch.setattr(module, "RESULTS", tmp_path / "results.json")
    return module


def run_figures(figures: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`benchmarks/run.py --quick --only FIGURES` with the project's .venv, as make bench."""
    if not VENV_PYTHON.exists():
        pytest.skip("the benchmarks run with the project's .venv (make bench makes it)")
    return subprocess.run(
        [str(VENV_PYTHON), str(BENCHMARKS / "run.py"), "--quick", "--only", figures],
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
        cwd=ROOT,
        env={**os.environ, "HEALTHFILE_BENCH_DIR": str(tmp_path)},
    )


# The floors the figures measure against are POSIX writes (fsync of an open directory).
@needs_directory_fsync
@pytest.mark.parametrize("figure", QUICK_FIGURES)
def test_a_figure_runs_through(figure: int, tmp_path: Path) -> None:
    """A quick run of the figure exits 0 with rows and no failure, and writes no results."""
    before = (BENCHMARKS / "results.json").read_bytes()

    done = run_figures(str(figure), tmp_path)

    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith(f"| {figure}. ")]
    assert rows, done.stdout
    assert not [row for row in rows if "failed" in row], done.stderr
    assert (BENCHMARKS / "results.json").read_bytes() == before
    assert os.listdir(tmp_path) == []  # its temporary directories are gone


@needs_directory_fsync
@pytest.mark.slow
def test_the_long_figures_run_through(tmp_path: Path) -> None:
    """Figures 2, 5, 7 and 9 run through quickly too (9 says so when wrk is missing)."""
    done = run_figures("2,5,7,9", tmp_path)

    assert done.returncode == 0, done.stderr
    assert "failed" not in done.stdout, done.stderr


def test_a_failing_figure_exits_1_and_leaves_the_results(
    bench_run: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A figure that raises gets a row naming the error; the run exits 1, and a full run
    writes neither results.json nor a page."""
    (tmp_path / "fig_broken.py").write_text(
        "async def run(ctx):\n    raise RuntimeError('the figure broke')\n", encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(bench_run, "FIGURES", {1: "fig_broken"})
    pages: list[object] = []

    def rendered(results: object) -> dict[Path, str]:
        pages.append(results)
        return {}

    monkeypatch.setattr(bench_run, "rendered", rendered)

    assert bench_run.main(["--quick", "--only", "1"]) == 1
    assert bench_run.main(["--quick"]) == 1

    assert not (tmp_path / "results.json").exists()
    assert pages == []


def test_a_full_run_writes_the_results_and_the_pages(
    bench_run: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """When every figure runs, a full run writes results.json and renders the pages from it."""
    (tmp_path / "fig_fine.py").write_text(
        "from _common import FigureResult, Row\n"
        "async def run(ctx):\n"
        "    return FigureResult('1. fine', [Row('1. fine', '1 ms', '1 ms', 1.0, key='fine')])\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(bench_run, "FIGURES", {1: "fig_fine"})
    page = tmp_path / "page.md"
    monkeypatch.setattr(bench_run, "rendered", lambda results: {page: "rendered\n"})

    assert bench_run.main(["--quick"]) == 0

    assert '"key": "fine"' in (tmp_path / "results.json").read_text(encoding="utf-8")
    assert page.read_text(encoding="utf-8") == "rendered\n"


@pytest.mark.parametrize(
    ("only", "said"),
    [
        ("x", "argument --only: not figure numbers: 'x'"),
        ("1,3", "argument --only: no figure 3 (the figures are 1, 2, 4, 5, 6, 7, 8, 9)"),
    ],
)
def test_a_bad_figure_list_is_refused_naming_it(
    bench_run: ModuleType, capsys: pytest.CaptureFixture[str], only: str, said: str
) -> None:
    """--only with a figure that is not a number, or does not exist, exits 2 naming it."""
    with pytest.raises(SystemExit) as ended:
        bench_run.main(["--only", only])

    assert ended.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"benchmarks/run.py: error: {said}"
