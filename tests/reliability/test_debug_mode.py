"""asyncio debug mode: no slow-callback warning points at healthfile's code, on either loop."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.reliability

# Runs a service for a few dozen cycles (its own, check_now(), a stop and a restart) with
# PYTHONASYNCIODEBUG=1, capturing every record of the "asyncio" logger. Each call into
# healthfile runs as a task of its own, so that a slow step inside it is reported under
# healthfile's name, not main()'s. A deliberately slow callback of the script's own shows
# that the capture does see slow callbacks.
APP = textwrap.dedent(
    """
    import asyncio, json, logging, sys, time
    import healthfile

    database, health_file, loop_name = sys.argv[1:4]
    records = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logging.getLogger("asyncio").addHandler(Collect())
    logging.getLogger("asyncio").setLevel(logging.DEBUG)

    # Built before the loop runs (construction needs no loop), imports included.
    service = healthfile.AsyncHealthService(
        database,
        health_file=health_file,
        pyproject=None,
        interval=0.01,
        checks=[
            healthfile.check("sync", lambda: True),
            healthfile.DiskSpaceCheck("/", min_free_bytes=0),
            healthfile.LoopLagCheck(),
        ],
        prometheus_file=health_file + ".prom",
    )

    async def deliberately_slow():
        time.sleep(0.25)

    async def main():
        loop = asyncio.get_running_loop()
        assert loop.get_debug(), "PYTHONASYNCIODEBUG=1 did not turn debug mode on"
        await loop.create_task(service.start())
        for _ in range(20):
            await loop.create_task(service.check_now())
        await asyncio.sleep(0.3)
        await loop.create_task(service.stop())
        await loop.create_task(service.start())
        await asyncio.sleep(0.2)
        await loop.create_task(service.stop())
        await loop.create_task(deliberately_slow())

    if loop_name == "uvloop":
        import uvloop
        uvloop.run(main())
    else:
        asyncio.run(main())
    print(json.dumps(records))
    """
)

LOOPS = ["asyncio", "uvloop"]


@pytest.mark.parametrize("loop", LOOPS)
def test_debug_mode_reports_no_slow_callback_in_healthfile_code(
    loop: str, database: Path, tmp_path: Path
) -> None:
    """Under PYTHONASYNCIODEBUG=1 no 'Executing ... took' warning names healthfile's code."""
    if loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
        pytest.skip("uvloop is not installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEALTHFILE_")}
    env["PYTHONASYNCIODEBUG"] = "1"
    health_file = tmp_path / "health.json"
    completed = subprocess.run(
        [sys.executable, "-c", APP, str(database), str(health_file), loop],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
        env=env,
    )

    assert completed.returncode == 0, completed.stderr
    records: list[str] = json.loads(completed.stdout.strip().splitlines()[-1])
    slow = [record for record in records if record.startswith("Executing")]
    # The control: the script's own slow callback was seen, so the capture works.
    assert any("deliberately_slow" in record for record in slow), records
    assert [record for record in slow if "healthfile" in record] == []
    # Debug mode also reports coroutines never awaited and tasks destroyed while pending.
    for noise in ("was never awaited", "destroyed but it is pending", "never retrieved"):
        assert noise not in completed.stderr
        assert all(noise not in record for record in records)
    assert json.loads(health_file.read_bytes())["status"] == "stopped"
