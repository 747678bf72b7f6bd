"""Torn reads: a second process reading in a tight loop only ever sees whole files."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from healthfile import AtomicWriter
from helpers import CONTRACT_KEYS, ServiceFactory, mounted_tmpfs, temp_files

pytestmark = pytest.mark.reliability


# What the reader must see before it stops; it gives up at its own deadline.
WANT_READS = 5000
WANT_SEQUENCES = 2000
# Generous: a slow, busy CI machine under coverage; a normal run needs a few seconds.
DEADLINE = 150.0

# Reads argv[1] in a tight loop the way a monitor does (open, read, close, parse) until it has
# done argv[2] reads and seen argv[3] distinct sequences, or argv[4] seconds have passed.
# argv[5] is the JSON list of keys every document must have, in order ("null": any object
# with a "sequence"). Prints one JSON line of counts and every problem it saw.
READER = textwrap.dedent(
    """
    import json, os, sys, time

    target = sys.argv[1]
    want_reads, want_sequences = int(sys.argv[2]), int(sys.argv[3])
    deadline = time.monotonic() + float(sys.argv[4])
    keys = json.loads(sys.argv[5])
    reads, sequences, last, problems = 0, set(), 0, []
    sizes = set()
    while (reads < want_reads or len(sequences) < want_sequences) and len(problems) < 20:
        if time.monotonic() > deadline:
            problems.append("deadline passed before the counts were reached")
            break
        try:
            fd = os.open(target, os.O_RDONLY)
        except OSError as exc:
            problems.append("cannot open: %r" % exc)
            continue
        try:
            chunks = []
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(fd)
        data = b"".join(chunks)
        reads += 1
        try:
            document = json.loads(data)
        except ValueError as exc:
            problems.append("not JSON (%s): %r" % (exc, data[-80:]))
            continue
        if not isinstance(document, dict) or not data.endswith(b"}\\n"):
            problems.append("not a whole object: %r" % data[-80:])
            continue
        if keys is not None and list(document) != keys:
            problems.append("keys %r" % list(document))
            continue
        sequence = document.get("sequence")
        if not isinstance(sequence, int):
            problems.append("sequence %r" % (sequence,))
            continue
        if sequence < last:
            problems.append("sequence went back from %d to %d" % (last, sequence))
        last = sequence
        sequences.add(sequence)
        sizes.add(len(data))
    print(json.dumps({
        "reads": reads,
        "sequences": len(sequences),
        "sizes": len(sizes),
        "problems": problems,
    }), flush=True)
    """
)


@pytest.fixture(params=["disk", "tmpfs"])
def output_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """A directory on the test's own file system, or on a fresh tmpfs."""
    if request.param == "disk":
        directory = tmp_path / "out"
        directory.mkdir()
        yield directory
    else:
        with mounted_tmpfs(tmp_path / "tmpfs", "4m") as directory:
            yield directory


def start_reader(target: Path, keys: list[str] | None) -> subprocess.Popen[str]:
    """Start the reader process on ``target``."""
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            READER,
            str(target),
            str(WANT_READS),
            str(WANT_SEQUENCES),
            str(DEADLINE),
            json.dumps(keys),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def reader_counts(reader: subprocess.Popen[str]) -> dict[str, Any]:
    """Collect the reader's result line (it has exited)."""
    out, err = reader.communicate(timeout=30)
    assert reader.returncode == 0, err
    counts = json.loads(out.strip().splitlines()[-1])
    assert isinstance(counts, dict)
    return counts


@pytest.mark.asyncio
@pytest.mark.timeout(DEADLINE + 60)
async def test_reader_process_sees_only_whole_reports_while_the_service_rewrites(
    fast_dir: Path, make_service: ServiceFactory
) -> None:
    """Thousands of reads by another process during thousands of service cycles are all whole."""
    output_dir = fast_dir
    health_file = output_dir / "health.json"
    # A tiny interval: cycles run back to back, hundreds per second.
    service = make_service(health_file=health_file, interval=0.001)
    await service.start()
    reader = start_reader(health_file, CONTRACT_KEYS)
    try:
        deadline = time.monotonic() + DEADLINE + 10
        while reader.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            assert service.running
    finally:
        if reader.poll() is None:
            reader.kill()
        await service.stop()
    counts = reader_counts(reader)

    assert counts["problems"] == []
    assert counts["reads"] >= WANT_READS
    assert counts["sequences"] >= WANT_SEQUENCES
    assert json.loads(health_file.read_bytes())["status"] == "stopped"
    assert temp_files(output_dir) == []


def document(number: int) -> bytes:
    """A JSON document whose size swings across 4 KiB page boundaries with ``number``."""
    padding = "x" * (100 + (number * 2477) % 9000)
    return (json.dumps({"sequence": number, "padding": padding}, indent=2) + "\n").encode()


@pytest.mark.asyncio
@pytest.mark.timeout(DEADLINE + 60)
async def test_reader_process_sees_only_whole_files_while_the_writer_rewrites(
    output_dir: Path,
) -> None:
    """Writes of 0.1 to 9 KiB, back to back from the event loop, are never read torn."""
    target = output_dir / "health.json"
    writer = AtomicWriter(target)
    await writer.replace(document(1))
    reader = start_reader(target, None)
    number = 1
    try:
        deadline = time.monotonic() + DEADLINE + 10
        while reader.poll() is None and time.monotonic() < deadline:
            number += 1
            await writer.replace(document(number))
    finally:
        if reader.poll() is None:
            reader.kill()
    counts = reader_counts(reader)

    assert counts["problems"] == []
    assert counts["reads"] >= WANT_READS
    assert counts["sequences"] >= WANT_SEQUENCES
    assert counts["sizes"] > 100, "the documents did not vary in size as intended"
    assert target.read_bytes() == document(number)
    assert temp_files(output_dir) == []
