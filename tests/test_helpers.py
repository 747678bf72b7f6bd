"""The suite's own machinery: the event loop --loop chooses, the wall-clock tolerance, and
the integration tests' missing programs."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import child_environment, loop_factory, require_program

TESTS = Path(__file__).resolve().parent


@pytest.mark.asyncio
async def test_async_tests_run_on_the_loop_the_loop_option_names(test_loop: str) -> None:
    """An async test runs on the kind of event loop `pytest --loop=NAME` names."""
    made = loop_factory(test_loop)()
    try:
        assert type(asyncio.get_running_loop()) is type(made)
    finally:
        made.close()


def test_the_retired_loop_variable_is_refused_not_ignored() -> None:
    """HEALTHFILE_TEST_LOOP set stops pytest with a usage error that names --loop."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--co", __file__],
        cwd=TESTS.parent,
        env=child_environment(HEALTHFILE_TEST_LOOP="uvloop"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout + done.stderr
    assert "--loop=uvloop" in done.stderr


def generous_in_child(seconds: float, **variables: str) -> subprocess.CompletedProcess[str]:
    """Run ``helpers.generous(seconds)`` in a fresh interpreter with ``variables`` set."""
    return subprocess.run(
        [sys.executable, "-c", f"import helpers; print(helpers.generous({seconds!r}))"],
        cwd=TESTS,
        env=child_environment(**variables),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(("slowness", "expected"), [(None, "2.0"), ("1", "2.0"), ("3", "6.0")])
def test_generous_scales_a_bound_by_the_slowness_variable(
    slowness: str | None, expected: str
) -> None:
    """generous(2) is 2 s by default and HEALTHFILE_TEST_SLOWNESS times that when it is set."""
    variables = {} if slowness is None else {"HEALTHFILE_TEST_SLOWNESS": slowness}
    done = generous_in_child(2.0, **variables)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{expected}\n"


@pytest.mark.parametrize("slowness", ["0", "-1", "fast", "nan"])
def test_a_slowness_that_is_not_a_positive_number_is_refused(slowness: str) -> None:
    """HEALTHFILE_TEST_SLOWNESS of 0, a negative number or a word stops the run, naming it."""
    done = generous_in_child(2.0, HEALTHFILE_TEST_SLOWNESS=slowness)
    assert done.returncode != 0
    assert "HEALTHFILE_TEST_SLOWNESS must be a positive number" in done.stderr


MISSING = "healthfile-no-such-program"


def test_a_missing_program_skips_its_test_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without HEALTHFILE_REQUIRE_INTEGRATION=1 a missing program skips, naming its package."""
    monkeypatch.delenv("HEALTHFILE_REQUIRE_INTEGRATION", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install prometheus"):
        require_program(MISSING, package="prometheus")


def test_a_missing_program_fails_its_test_where_ci_requires_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under HEALTHFILE_REQUIRE_INTEGRATION=1 (.ci/run sets it) a missing program fails."""
    monkeypatch.setenv("HEALTHFILE_REQUIRE_INTEGRATION", "1")
    with pytest.raises(pytest.fail.Exception, match=MISSING):
        require_program(MISSING, package="prometheus")


def test_a_program_found_on_the_path_is_returned(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first candidate found is returned as its full path."""
    monkeypatch.setenv("HEALTHFILE_REQUIRE_INTEGRATION", "1")
    found = require_program(MISSING, Path(sys.executable).name, package="python3")
    assert Path(found).name == Path(sys.executable).name
