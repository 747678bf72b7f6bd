"""The pages that show the benchmark figures, rendered from the run's results.

    .venv/bin/python benchmarks/render.py           # rewrite the pages from results.json
    .venv/bin/python benchmarks/render.py --check   # exit 1 when a page is not what the
                                                    # results render (a hand edit)

`make bench` (run.py) writes benchmarks/results.json and then renders from it:
benchmarks/results.md whole, and the generated sections of docs/performance.md and
benchmarks/README.md. A generated section sits between two markers:

    <!-- generated:begin NAME -->
    ...
    <!-- generated:end NAME -->

NAME is a key of SECTIONS: a function from the results to Markdown. Every number in a
section, and every word that compares two of them ("within 5 %", "no worse"), comes from
the results, so that the prose cannot drift from the table. tests/test_benchmark_pages.py
renders the committed results.json and fails when a page differs.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BENCH_DIR, REPO, TIMES, fmt_bytes, fmt_ratio, fmt_time, markdown_table

RESULTS = BENCH_DIR / "results.json"
RESULTS_MD = BENCH_DIR / "results.md"
PAGES = (REPO / "docs" / "performance.md", BENCH_DIR / "README.md")
HEADER = ["figure", "healthfile", "baseline", "ratio", "target", "met?"]
# Markers stand alone on their lines (a page may quote one inline, in backticks).
SECTION = re.compile(
    r"^(<!-- generated:begin (?P<name>[\w-]+) -->\n)(?P<body>.*?)"
    r"^(<!-- generated:end (?P=name) -->)$",
    re.S | re.M,
)
MARKER = re.compile(r"^<!-- generated:(begin|end) [\w-]+ -->$", re.M)


@dataclass(frozen=True)
class Results:
    """One run's results, as run.py wrote them to results.json."""

    data: dict[str, Any]

    @classmethod
    def load(cls, path: Path = RESULTS) -> Results:
        return cls(json.loads(path.read_text(encoding="utf-8")))

    @property
    def run(self) -> dict[str, Any]:
        return dict(self.data["run"])

    @property
    def figures(self) -> list[dict[str, Any]]:
        return list(self.data["figures"])

    def row(self, key: str) -> dict[str, Any]:
        """The table row named ``key``."""
        for figure in self.figures:
            for row in figure["rows"]:
                if row["key"] == key:
                    return dict(row)
        raise KeyError(f"no row {key!r} in the results")

    def fact(self, number: int, name: str) -> float:
        """A number figure ``number`` measured for the prose (seconds, bytes, a count)."""
        for figure in self.figures:
            if figure["number"] == number:
                return float(figure["facts"][name])
        raise KeyError(f"no figure {number} in the results")


# --- wording: numbers and comparisons, phrased by code ------------------------------------


def times(ratio: float) -> str:
    """A ratio as the table writes it: 2.36 and the multiplication sign."""
    return fmt_ratio(ratio)


def share(part: float, whole: float) -> str:
    """``part`` as a whole percentage of ``whole``: 37 %."""
    return f"{part / whole:.0%}".replace("%", " %")


def against(ratio: float, within: float = 0.05) -> str:
    """How a ratio compares with 1: "within 5 % of it", "11 % above it", "8 % below it"."""
    if abs(ratio - 1) <= within:
        return f"within {within:.0%} of it".replace("%", " %")
    direction = "above" if ratio > 1 else "below"
    return f"{abs(ratio - 1):.0%} {direction} it".replace("%", " %")


def no_worse(ratio: float, what: str) -> str:
    """ "max no worse" when the ratio is at most 1, else "max", the ratio and "idle"."""
    return f"{what} no worse" if ratio <= 1 else f"{what} {times(ratio)} idle"


def within_bound(ratio: float, bound: float, what: str) -> str:
    """ "p50 within ``bound`` of idle" when the ratio is at most ``bound``, else its value."""
    if ratio <= bound:
        return f"{what} within {bound:g}{TIMES} of idle"
    return f"{what} {times(ratio)} idle"


def listed(items: list[str]) -> str:
    """ "a", "a and b", "a, b and c"."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


# --- sections ------------------------------------------------------------------------------

SECTIONS: dict[str, Callable[[Results], str]] = {}


def section(name: str) -> Callable[[Callable[[Results], str]], Callable[[Results], str]]:
    """Register a function as the renderer of the generated section ``name``."""

    def register(render: Callable[[Results], str]) -> Callable[[Results], str]:
        SECTIONS[name] = render
        return render

    return register


@section("run")
def run_line(results: Results) -> str:
    """The run in one sentence: when, on what, under which load."""
    run, machine = results.run, results.run["machine"]
    return (
        f"Reference run: {run['stamp']} ({run['seconds']:.0f} s in all), {machine['cpu']}, "
        f"{machine['cores']} (load average {run['load_before']} before the run, "
        f"{run['load_after']} after), Python {machine['python']}, SQLite "
        f"{machine['sqlite']}, aiosqlite {machine['aiosqlite']}, "
        f"{machine['file_system'].split()[0]}."
    )


@section("table")
def table(results: Results) -> str:
    """Every figure's rows, as run.py prints them."""
    rows = [
        [
            row["figure"],
            row["healthfile"],
            row["baseline"],
            "—" if row["ratio"] is None else times(row["ratio"]),
            row["target"],
            "—" if row["met"] is None else ("yes" if row["met"] else "**no**"),
        ]
        for figure in results.figures
        for row in figure["rows"]
    ]
    return markdown_table(HEADER, rows)


def mostly(part: float, whole: float) -> str:
    """ "mostly" when ``part`` is over half of ``whole``, else "partly"."""
    return "mostly" if part > whole / 2 else "partly"


def cycle(results: Results) -> str:
    """Figure 1, the cycle against the floor."""
    mean, median = results.row("cycle_mean"), results.row("cycle_median")
    fresh = results.row("cycle_vs_fresh")

    def fact(name: str) -> float:
        return results.fact(1, name)

    bound = fact("target") * fact("floor_median")
    cycle_median = median["ratio"] * fact("floor_median")
    verdict = (
        f"The median misses the target by {fmt_time(cycle_median - bound)} a cycle."
        if not median["met"]
        else "That is within the target in this run."
    )
    return (
        f"**Cycle cost ({times(mean['ratio'])} the floor's mean, {times(median['ratio'])} "
        f"its median; target {mean['target']}).** The floor is "
        f"{mostly(fact('floor_write'), fact('floor_median'))} the disk: its durable file "
        f"replacement takes {fmt_time(fact('floor_write'))} of its "
        f"{fmt_time(fact('floor_median'))} median, {fmt_time(fact('floor_fsyncs'))} of that "
        "the two fsyncs. On top of it come the hops that keep the loop free. Inside real "
        f"cycles the database check takes {share(fact('part_check'), fact('in_cycle'))} of a "
        "cycle, the file's replacement (one executor hop, rendering included) "
        f"{share(fact('part_write'), fact('in_cycle'))}, and the rest of the service "
        f"{share(fact('part_rest'), fact('in_cycle'))}. The database check is one hop to the "
        "thread of its long-lived connection, which attaches the database, reads its schema "
        f"and detaches it: {fmt_time(fact('check_attached'))} alone, against "
        f"{fmt_time(fact('check_fresh'))} for a fresh aiosqlite connection, which starts a "
        f"thread on the loop ({fmt_time(fact('thread_start'))} here) and makes two hops "
        f"({fmt_time(fact('hop'))} for one bare hop here); a whole cycle costs "
        f"{times(fresh['ratio'])} the one with a fresh connection per cycle. The file's "
        f"replacement takes {fmt_time(fact('writer_hop'))} from the loop, "
        f"{fmt_time(fact('writer_inline'))} inline. {verdict}"
    )


def lag(results: Results) -> str:
    """Figure 2, the loop's lag at 100 Hz."""
    p99, p50, worst = results.row("lag_p99"), results.row("lag_p50"), results.row("lag_max")
    fresh = results.row("lag_p99_fresh")
    naive = results.fact(2, "naive_p99") / results.fact(2, "idle_p99")
    return (
        f"**Loop lag at 100 Hz (p99 {times(p99['ratio'])} idle, target {p99['target']}; "
        f"{within_bound(p50['ratio'], 1.2, 'p50')}, {no_worse(worst['ratio'], 'max')}).** "
        "Any design that builds a report 100 times a second keeps the loop busy for part of "
        f"every 10 ms: here {results.fact(2, 'busy_share'):.1%} of the time, against "
        f"{results.fact(2, 'busy_share_idle'):.1%} idle. With a fresh connection per cycle, "
        "which starts a thread on the loop every cycle, the loop is busy "
        f"{results.fact(2, 'busy_share_fresh'):.1%} of the time and lags "
        f"{times(fresh['ratio'])} idle at p99. The same I/O done inline in a coroutine lags "
        f"the loop {times(naive)} idle at p99. At a real interval (30 s) a cycle is one probe "
        "in 30 000 and does not show."
    ).replace("%", " %")


def stop(results: Results) -> str:
    """Figure 4, stop latency."""
    idle, locked = results.row("stop_idle"), results.row("stop_locked")
    final, idle_seconds = results.fact(4, "final_write"), results.fact(4, "stop_idle")
    return (
        f"**Stop latency (idle {idle['healthfile']}, target {idle['target']}; mid-check on "
        f"a locked database {locked['healthfile']}, target {locked['target']}).** "
        f"{'Most' if final > idle_seconds / 2 else 'Part'} of it is the final durable write "
        f"({fmt_time(final)} inside `stop()`); a check on a locked database is cancelled "
        "within its 10 ms busy slice."
    )


def scale(results: Results) -> str:
    """Figure 5, many checks."""
    top = results.row("scale_1000")
    bare = results.row("scale_1000_bare")
    check = results.fact(5, "check_seconds")
    met = [key.removeprefix("scale_") for key in ("scale_1", "scale_10", "scale_100")]
    met = [count for count in met if results.row(f"scale_{count}")["met"]]
    return (
        f"**1000 checks ({times(top['ratio'])} the slowest check; target {top['target']}).** "
        f"Bare asyncio alone needs {times(results.fact(5, 'bare_1000') / check)} for the "
        "same 1000 timed sleeps on this machine (task and timer churn on one core); "
        f"healthfile's cycle is {against(bare['ratio'])} "
        f"({fmt_time(results.fact(5, 'cpu_per_check'))} of CPU per check against "
        f"{fmt_time(results.fact(5, 'bare_cpu_per_check'))})."
        + (f" With {listed(met)} check{'s' if met != ['1'] else ''} it is met." if met else "")
    )


def probe(results: Results) -> str:
    """Figure 6, the probe's cold start."""
    row = results.row("probe")
    return (
        f"**Probe cold start ({times(row['ratio'])} `python -I -c pass`; target "
        f"{row['target']}).** The probe needs `json`, which alone costs "
        f"{times(results.fact(6, 'python_json'))}."
    )


def memory(results: Results) -> str:
    """Figure 7, growth over a long run, and the threads a cycle starts."""
    row = results.row("rss_growth")
    growth, cycles = results.fact(7, "growth"), results.fact(7, "growth_cycles")
    fresh, one_arena = results.fact(7, "growth_fresh"), results.fact(7, "growth_fresh_one_arena")
    threads, threads_fresh = (
        results.fact(7, "threads_per_1000"),
        results.fact(7, "threads_per_1000_fresh"),
    )
    arenas = one_arena < fresh / 2
    cause = ": glibc's per-thread malloc arenas, not Python objects" if arenas else ""
    return (
        f"**RSS growth ({fmt_bytes(growth)} per 100k cycles, over {cycles:.0f} cycles; "
        f"target {row['target']}) and threads ({threads:g} started per 1000 cycles after "
        f"`start()`).** With a fresh connection per cycle the service starts "
        f"{threads_fresh:g} threads per 1000 cycles and grows {fmt_bytes(fresh)} per 100k, "
        f"with `MALLOC_ARENA_MAX=1` {fmt_bytes(one_arena)}{cause}."
    )


# The findings, in figure order: the rows whose target they explain, and the paragraph.
FINDINGS: list[tuple[tuple[str, ...], Callable[[Results], str]]] = [
    (("cycle_mean", "cycle_median"), cycle),
    (("lag_p99",), lag),
    (("stop_idle", "stop_locked"), stop),
    (("scale_1", "scale_10", "scale_100", "scale_1000"), scale),
    (("probe",), probe),
    (("rss_growth", "threads_per_1000"), memory),
]


def missed(results: Results, keys: tuple[str, ...]) -> bool:
    """Whether any of the rows ``keys`` missed its target."""
    return any(results.row(key)["met"] is False for key in keys)


@section("misses")
def misses(results: Results) -> str:
    """A paragraph for each figure that missed a target: what the miss means."""
    found = [f"- {explain(results)}" for keys, explain in FINDINGS if missed(results, keys)]
    return "\n".join(found) if found else "Every target is met in this run."


@section("met")
def met(results: Results) -> str:
    """A paragraph for each figure that met every target."""
    found = [f"- {explain(results)}" for keys, explain in FINDINGS if not missed(results, keys)]
    return "\n".join(found) if found else "No target is met in this run."


# --- pages ---------------------------------------------------------------------------------


def fill(text: str, results: Results, where: str = "the page") -> str:
    """``text`` with every generated section rendered anew from ``results``."""

    def render(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in SECTIONS:
            raise KeyError(f"{where}: no section named {name!r} (SECTIONS in render.py)")
        return f"{match[1]}{SECTIONS[name](results).rstrip()}\n{match[4]}"

    filled = SECTION.sub(render, text)
    unpaired = len(MARKER.findall(text)) - 2 * len(SECTION.findall(text))
    if unpaired:
        raise ValueError(f"{where}: a generated:begin marker without its end, or the reverse")
    return filled


def results_markdown(results: Results) -> str:
    """benchmarks/results.md: the run, the table and every figure's notes."""
    run = results.run
    from _common import machine_lines

    lines = [
        "# healthfile benchmark results",
        "",
        "Written by `make bench` (`benchmarks/run.py`, from `results.json`); see "
        "benchmarks/README.md for what each figure means.",
        "",
        f"Run {run['stamp']}, {run['seconds']:.0f} s in all"
        + (" (--quick: fewer repetitions)" if run["quick"] else "")
        + ". Ratios are healthfile / baseline; absolute times are context only.",
        "",
        *machine_lines(run["machine"]),
        f"- Load average (1 min) before / after the run: {run['load_before']} / "
        f"{run['load_after']} (other work on the machine shows up as noise, mostly in p99 "
        "and max)",
        "",
        table(results),
        "",
        "## Details",
        "",
    ]
    for figure in results.figures:
        lines += [f"### {figure['title']} ({figure['seconds']:.0f} s)", "", *figure["notes"], ""]
    return "\n".join(lines).rstrip() + "\n"


def rendered(results: Results) -> dict[Path, str]:
    """Every file the results render, and what it should hold."""
    files = {RESULTS_MD: results_markdown(results)}
    for page in PAGES:
        files[page] = fill(page.read_text(encoding="utf-8"), results, page.name)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say which pages differ")
    args = parser.parse_args(argv)
    stale = []
    for path, text in rendered(Results.load()).items():
        if path.read_text(encoding="utf-8") != text:
            stale.append(path)
            if not args.check:
                path.write_text(text, encoding="utf-8")
    for path in stale:
        verb = "differs from" if args.check else "rewritten from"
        print(f"{path.relative_to(REPO)} {verb} results.json", file=sys.stderr)
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
