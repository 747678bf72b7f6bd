"""Figure 6: the cold start of the ``healthfile check`` probe.

Each command is a fresh process, timed from spawn to exit (``perf_counter`` around
``subprocess.run``), interleaved, many repetitions, medians:

- ``.venv/bin/healthfile check --health-file FILE`` (exit 0 or 1 both count as a run);
- ``.venv/bin/python -I -c pass``, the bare interpreter (target: the probe within 2x);
- ``sh -c 'jq -e ... FILE'``, the shell one-liner a monitor would write for the same
  judgement: status ``online`` and ``expires_at`` not yet past.

The file judged is a real report of a running service (``online``, not expired). While the
``check`` subcommand does not exist yet, the figure says "not available yet".
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from _common import (
    TIMES,
    VENV_BIN,
    Context,
    FigureResult,
    Row,
    fmt_time,
    make_database,
    markdown_table,
    median,
    work_dir,
)

import healthfile

TARGET = 2.0
JQ_FILTER = '.status == "online" and (.expires_at | fromdateiso8601) > now'


def _spawn(argv: list[str]) -> tuple[float, int]:
    start = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start, done.returncode


def _probe_available(argv: list[str]) -> tuple[bool, str]:
    """Whether ``healthfile check`` runs (exit 0 or 1), and what it said otherwise."""
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode in (0, 1):
        return True, f"exit {done.returncode}: {done.stdout.strip()[:120]}"
    said = (done.stderr.strip().splitlines() or [""])[-1][:160]
    return False, f"exit {done.returncode}: {said}"


async def _health_file(directory: Path) -> Path:
    """A report of a running service, copied before stop() marks it stopped."""
    database = make_database(directory / "app.db")
    health = directory / "health.json"
    async with healthfile.AsyncHealthService(
        database, health_file=health, pyproject=None, app_version="1.0.0"
    ):
        target = directory / "probe.json"
        target.write_bytes(health.read_bytes())
    return target


async def run(ctx: Context) -> FigureResult:
    result = FigureResult("6. Cold start of `healthfile check`")
    python = str(VENV_BIN / "python")
    with work_dir(ctx.root) as directory:
        health = await _health_file(directory)
        probe = [str(VENV_BIN / "healthfile"), "check", "--health-file", str(health)]
        available, said = _probe_available(probe)
        jq = shutil.which("jq")
        commands: dict[str, list[str]] = {
            "`python -I -c pass`": [python, "-I", "-c", "pass"],
            "`python -c pass` (site and the venv's .pth files)": [python, "-c", "pass"],
            "`python -I -c 'import json'`": [python, "-I", "-c", "import json"],
            "`python -I -c 'import argparse, json'`": [python, "-I", "-c", "import argparse, json"],
            "`python -c 'import healthfile._cli'`": [python, "-c", "import healthfile._cli"],
        }
        if available:
            commands["`healthfile check --health-file FILE`"] = probe
        if jq is not None:
            commands["`sh -c 'jq -e ... FILE'`"] = [
                "sh",
                "-c",
                f"{jq} -e '{JQ_FILTER}' '{health}' >/dev/null",
            ]
        times: dict[str, list[float]] = {name: [] for name in commands}
        codes: dict[str, set[int]] = {name: set() for name in commands}
        for i in range(ctx.n(30, 10) + 3):
            for name, argv in commands.items():
                took, code = _spawn(argv)
                codes[name].add(code)
                if i >= 3:
                    times[name].append(took)

    bare = median(times["`python -I -c pass`"])
    if available:
        ours = median(times["`healthfile check --health-file FILE`"])
        result.rows.append(
            Row(
                "6. `healthfile check` cold start vs `python -I -c pass`",
                fmt_time(ours),
                fmt_time(bare),
                ours / bare,
                f"≤ {TARGET:g}{TIMES}",
                ours / bare <= TARGET,
                key="probe",
            )
        )
        if jq is not None:
            theirs = median(times["`sh -c 'jq -e ... FILE'`"])
            result.rows.append(
                Row(
                    "6. `healthfile check` vs a `jq` one-liner (`sh -c`)",
                    fmt_time(ours),
                    fmt_time(theirs),
                    ours / theirs,
                    key="probe_jq",
                )
            )
    else:
        result.rows.append(
            Row(
                "6. `healthfile check` cold start vs `python -I -c pass`",
                "not available yet",
                fmt_time(bare),
                None,
                f"≤ {TARGET:g}{TIMES}",
                None,
                key="probe",
            )
        )
    result.facts = {"python_json": median(times["`python -I -c 'import json'`"]) / bare}
    result.notes = [
        f"{len(times['`python -I -c pass`'])} spawns of each command, interleaved; medians.",
        "",
        markdown_table(
            ["command", "median", "/ `python -I -c pass`", "exit codes"],
            [
                [
                    name,
                    fmt_time(median(values)),
                    f"{median(values) / bare:.2f}{TIMES}",
                    ", ".join(map(str, sorted(codes[name]))),
                ]
                for name, values in times.items()
            ],
        ),
        "",
        f"`healthfile check` on the file: {said}"
        + ("" if available else " — the subcommand is not there yet: not available yet."),
    ]
    if jq is None:
        result.notes.append("jq is not installed (`apt-get install -y jq`): no jq baseline.")
    return result
