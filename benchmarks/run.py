"""Run every benchmark figure of healthfile in one go and print one Markdown table.

    .venv/bin/python benchmarks/run.py            # every figure, under five minutes
    .venv/bin/python benchmarks/run.py --quick    # fewer repetitions, for a smoke run
    .venv/bin/python benchmarks/run.py --only 1,4 # some figures, with their notes on stdout
                                                  # (results and pages untouched)

The table goes to stdout; a full run writes every figure's rows, notes and facts to
benchmarks/results.json, and renders from it benchmarks/results.md and the generated
sections of docs/performance.md and benchmarks/README.md (render.py). Temporary databases
and health files go to a directory on the repository's disk (``HEALTHFILE_BENCH_DIR``
overrides it), never to tmpfs, except where a figure says so.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import gc
import importlib
import json
import logging
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    Context,
    FigureResult,
    Row,
    machine_info,
    machine_lines,
    markdown_table,
    work_root,
)
from render import RESULTS, Results, rendered

# Figure number -> module with `async def run(ctx) -> FigureResult`, imported when it runs.
# Figure 3 (the original thread design) is retired: docs/design/benchmarks.md keeps its figures.
FIGURES = {
    1: "fig1_cycle",
    2: "fig2_lag",
    4: "fig4_stop",
    5: "fig5_scale",
    6: "fig6_cold_start",
    7: "fig7_footprint",
    8: "fig8_sidecar",
    9: "fig9_http",
}
HEADER = ["figure", "healthfile", "baseline", "ratio", "target", "met?"]


async def _run_all(ctx: Context, which: list[int]) -> list[FigureResult]:
    results = []
    for number in which:
        started = time.perf_counter()
        print(f"figure {number} ...", file=sys.stderr, flush=True)
        gc.collect()
        try:
            module = importlib.import_module(FIGURES[number])
            result = await module.run(ctx)
        except Exception as exc:
            traceback.print_exc()
            result = FigureResult(
                f"{number}. failed",
                [Row(f"{number}. failed: {type(exc).__name__}: {exc}", "—", "—")],
                failed=True,
            )
        result.seconds = time.perf_counter() - started
        print(f"figure {number} done in {result.seconds:.1f} s", file=sys.stderr, flush=True)
        results.append(result)
    return results


def _load_average() -> str:
    try:
        with open("/proc/loadavg") as loadavg:
            return loadavg.read().split()[0]
    except OSError:
        return "?"


def _figures(text: str) -> list[int]:
    """The figure numbers of ``--only``: each one that exists, in the order given."""
    try:
        numbers = [int(number) for number in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not figure numbers: {text!r}") from None
    unknown = [number for number in numbers if number not in FIGURES]
    if unknown:
        known = ", ".join(map(str, sorted(FIGURES)))
        raise argparse.ArgumentTypeError(f"no figure {unknown[0]} (the figures are {known})")
    return numbers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/run.py", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--only", type=_figures, help="comma-separated figure numbers, e.g. 1,4")
    args = parser.parse_args(argv)
    which = args.only or sorted(FIGURES)
    # The service logs one line per status change; a benchmark wants none of them.
    logging.basicConfig(level=logging.CRITICAL)

    ctx = Context(quick=args.quick, root=work_root())
    load_before = _load_average()
    started = time.perf_counter()
    results = asyncio.run(_run_all(ctx, which))
    total = time.perf_counter() - started
    load_after = _load_average()

    rows = [row.cells() for result in results for row in result.rows]
    table = markdown_table(HEADER, rows)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = machine_info(ctx.root)
    head = [
        f"Run {stamp}, {total:.0f} s in all"
        + (" (--quick: fewer repetitions)" if args.quick else "")
        + ". Ratios are healthfile / baseline; absolute times are context only.",
        "",
        *machine_lines(machine),
        f"- Load average (1 min) before / after the run: {load_before} / {load_after} "
        "(other work on the machine shows up as noise, mostly in p99 and max)",
    ]
    print("\n".join(head) + "\n\n" + table)

    failed = [number for number, result in zip(which, results, strict=True) if result.failed]
    if args.only:  # a partial run: its notes here, the results and the pages untouched
        for result in results:
            print(f"\n### {result.title} ({result.seconds:.0f} s)\n", *result.notes, sep="\n")
        return 1 if failed else 0
    if failed:  # a page would cite numbers this run does not have
        print(
            f"figure {', '.join(map(str, failed))} failed: results.json and the pages are left "
            "as they were",
            file=sys.stderr,
        )
        return 1
    data = {
        "run": {
            "stamp": stamp,
            "seconds": round(total, 1),
            "quick": args.quick,
            "machine": machine,
            "load_before": load_before,
            "load_after": load_after,
        },
        "figures": [
            {
                "number": number,
                "title": result.title,
                "seconds": round(result.seconds, 1),
                "rows": [dataclasses.asdict(row) for row in result.rows],
                "facts": result.facts,
                "notes": result.notes,
            }
            for number, result in zip(which, results, strict=True)
        ],
    }
    RESULTS.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    for path, text in rendered(Results(data)).items():
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
