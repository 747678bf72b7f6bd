"""The test suite on every supported Python, on asyncio and uvloop, in asyncio debug mode, and
with the POSIX-only capabilities hidden as on Windows."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import nox
import nox.project

# The supported Pythons: the "Programming Language :: Python :: 3.x" classifiers of
# pyproject.toml, the one place they are written (`make matrix` reads PYTHONS from here).
PYTHONS = nox.project.python_versions(nox.project.load_toml("pyproject.toml"))
# Those this machine has (a `python3.X` on PATH: pyenv makes a shim only for an installed
# version). The CI workflow runs every supported Python; a machine runs what it has, and
# says what it leaves out. One that is on PATH but does not run is still an error.
PRESENT = [version for version in PYTHONS if shutil.which(f"python{version}")]
MISSING = [version for version in PYTHONS if version not in PRESENT]
if MISSING:
    print(
        f"noxfile: Python {', '.join(MISSING)} not installed here: left to CI",
        file=sys.stderr,
    )
NEWEST = (PRESENT or PYTHONS)[-1]
# On PYTHONPATH, its sitecustomize.py hides them from every interpreter, subprocesses included.
FOREIGN = str(Path(__file__).resolve().parent / "tests" / "foreign")

# Three workers: much of the suite waits (on subprocesses, timeouts, the disk), not computes.
PYTEST = ("-n", "3", "-q", "-p", "no:cacheprovider")

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True


@nox.session(python=PRESENT or PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the suite on one Python, once on each event loop (one install serves both)."""
    session.install("-e", ".[test,release]")
    for loop in ("asyncio", "uvloop"):
        session.log(f"event loop: {loop}")
        session.run("pytest", *PYTEST, f"--loop={loop}", *session.posargs)


@nox.session(python=NEWEST)
def debug(session: nox.Session) -> None:
    """Run the suite with PYTHONASYNCIODEBUG=1: no slow callbacks, no forgotten awaits."""
    session.install("-e", ".[test,release]")
    session.run(
        "pytest",
        *PYTEST,
        *session.posargs,
        env={"PYTHONASYNCIODEBUG": "1"},
    )


@nox.session(python=NEWEST)
def foreign(session: nox.Session) -> None:
    """Run the suite as on a foreign platform: no dir_fd, no directory open, no fchmod, ..."""
    session.install("-e", ".[test,release]")
    session.run(
        "pytest",
        *PYTEST,
        *session.posargs,
        env={"PYTHONPATH": FOREIGN},
    )
