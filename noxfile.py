"""The test suite on every supported Python, on asyncio and uvloop, and in asyncio debug mode."""

from __future__ import annotations

import nox
import nox.project

# The supported Pythons: the "Programming Language :: Python :: 3.x" classifiers of
# pyproject.toml, the one place they are written (`make matrix` reads PYTHONS from here).
PYTHONS = nox.project.python_versions(nox.project.load_toml("pyproject.toml"))

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the suite on one Python, once on each event loop (one install serves both)."""
    session.install("-e", ".[test]")
    for loop in ("asyncio", "uvloop"):
        session.log(f"event loop: {loop}")
        session.run("pytest", "-q", "-p", "no:cacheprovider", f"--loop={loop}", *session.posargs)


@nox.session(python=PYTHONS[-1])
def debug(session: nox.Session) -> None:
    """Run the suite with PYTHONASYNCIODEBUG=1: no slow callbacks, no forgotten awaits."""
    session.install("-e", ".[test]")
    session.run(
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        *session.posargs,
        env={"PYTHONASYNCIODEBUG": "1"},
    )
