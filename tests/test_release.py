"""The release: `python -m build` makes an sdist and a wheel that `twine check --strict` accepts,
the wheel installs into a fresh venv and its probe runs there, and the release workflow
publishes them by trusted publishing, linted like the CI workflow.

The distributions are built once per module, without build isolation (the release extra
brings hatchling), so that no test needs the network.
"""

from __future__ import annotations

import email
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from healthfile import AsyncHealthService
from helpers import ServiceFactory, require_module

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
DEADLINE = 120.0
# pip reads no configuration of the machine's (an index, find-links), only what it is given.
QUIET_PIP = {"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def run(*command: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run a command to its end; fail the test with its output when it fails."""
    done = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env={**os.environ, **QUIET_PIP},
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert done.returncode == 0, f"{command}: {done.stdout[-2000:]}{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and the wheel `python -m build` makes (the wheel built from the sdist)."""
    require_module("build", "the release extra: pip install -e '.[dev]'")
    require_module("hatchling", "the release extra: pip install -e '.[dev]'")
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ".")
    return out


def only(directory: Path, pattern: str) -> Path:
    """The one file of ``directory`` matching ``pattern``."""
    [found] = directory.glob(pattern)
    return found


def project_version() -> str:
    """The version pyproject.toml declares."""
    match = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert match is not None
    return match.group(1)


def test_build_makes_an_sdist_and_a_wheel_that_twine_check_strict_accepts(dist: Path) -> None:
    """`python -m build` gives healthfile-VERSION.tar.gz and a py3-none-any wheel; twine
    check --strict (metadata, the README rendering as PyPI does) passes both."""
    require_module("twine", "the release extra: pip install -e '.[dev]'")
    version = project_version()
    sdist = only(dist, "*.tar.gz")
    wheel = only(dist, "*.whl")
    assert sdist.name == f"healthfile-{version}.tar.gz"
    assert wheel.name == f"healthfile-{version}-py3-none-any.whl"

    checked = run(sys.executable, "-m", "twine", "check", "--strict", sdist, wheel)

    assert checked.stdout.count("PASSED") == 2, checked.stdout


def test_wheel_holds_the_package_its_data_its_license_and_the_console_script(dist: Path) -> None:
    """The wheel has every module, py.typed, the JSON schema, the license, the `healthfile`
    script and the dependencies of pyproject.toml, with README.md as its description."""
    with zipfile.ZipFile(only(dist, "*.whl")) as wheel:
        names = set(wheel.namelist())
        info = f"healthfile-{project_version()}.dist-info"
        metadata = email.message_from_string(wheel.read(f"{info}/METADATA").decode("utf-8"))
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()

    modules = {f"healthfile/{path.name}" for path in (ROOT / "src" / "healthfile").glob("*.py")}
    assert modules <= names
    assert {"healthfile/py.typed", "healthfile/health.schema.json"} <= names
    assert f"{info}/licenses/LICENSE" in names
    assert "healthfile = healthfile._entry:main" in entry_points
    assert metadata["License-Expression"] == "MIT"
    assert metadata["Requires-Python"] == ">=3.10"
    requires = metadata.get_all("Requires-Dist") or []
    assert any(requirement.startswith("aiosqlite") for requirement in requires)
    assert any(requirement.startswith("aiofiles") for requirement in requires)
    assert any("extra == 'prometheus'" in requirement for requirement in requires)
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert metadata.get_payload() == (ROOT / "README.md").read_text(encoding="utf-8")


def test_sdist_is_the_repository_so_its_tests_run_from_it(dist: Path) -> None:
    """The sdist holds every file git tracks (tests, docs, examples, workflows), nothing
    .gitignore names (the venv, data/app.db), and the license."""
    with tarfile.open(only(dist, "*.tar.gz")) as sdist:
        names = {name.partition("/")[2] for name in sdist.getnames()}
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=False, timeout=60
    )
    if tracked.returncode != 0:
        pytest.skip(f"not a git checkout: {tracked.stderr.strip()}")
    files = {name for name in tracked.stdout.splitlines() if (ROOT / name).is_file()}
    assert files - names == set()
    assert {"LICENSE", "tests/conftest.py", "docs/index.md", "examples/tk_app.py"} <= names
    assert not [name for name in names if name.startswith((".venv/", "data/app.db"))]


def venv_program(venv: Path, name: str) -> Path:
    """A program of ``venv``: bin/NAME on POSIX, Scripts/NAME.exe on Windows."""
    for candidate in (venv / "bin" / name, venv / "Scripts" / f"{name}.exe"):
        if candidate.exists():
            return candidate
    raise AssertionError(f"{name} is not in {venv}")


@pytest.mark.slow
@pytest.mark.asyncio
async def test_wheel_installed_without_dependencies_runs_the_probe_in_a_fresh_venv(
    dist: Path, tmp_path: Path, make_service: ServiceFactory, health_file: Path
) -> None:
    """The wheel, installed with --no-deps into a venv with no site packages, gives a
    `healthfile check` that judges a real health file: the probe needs the standard library
    alone (aiosqlite and aiofiles are absent there, and the probe does not miss them)."""
    require_module("ensurepip", "a Python with venv support, e.g. Debian's python3-venv")
    fresh = tmp_path / "fresh"
    run(sys.executable, "-m", "venv", fresh)
    python = venv_program(fresh, "python")
    run(python, "-m", "pip", "install", "--no-deps", "--no-index", only(dist, "*.whl"))
    service: AsyncHealthService = make_service()
    await service.start()

    probe = [str(venv_program(fresh, "healthfile")), "check", "--health-file", str(health_file)]
    online = subprocess.run(probe, capture_output=True, text=True, timeout=DEADLINE, check=False)
    await service.stop()
    stopped = subprocess.run(probe, capture_output=True, text=True, timeout=DEADLINE, check=False)
    missing = subprocess.run(
        [str(python), "-c", "import aiosqlite"], capture_output=True, timeout=DEADLINE, check=False
    )

    assert (online.returncode, online.stderr) == (0, ""), online.stdout
    assert online.stdout.startswith("online"), online.stdout
    assert stopped.returncode == 1, stopped.stdout
    assert stopped.stdout.startswith("stopped"), stopped.stdout
    assert missing.returncode != 0  # the venv really has no dependency of healthfile's


def workflow(name: str) -> dict[Any, Any]:
    """A workflow of .github/workflows, parsed."""
    yaml = pytest.importorskip("yaml")
    parsed = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    assert isinstance(parsed, dict)
    return parsed


def test_release_workflow_builds_checks_and_publishes_by_trusted_publishing() -> None:
    """release.yml: on a v* tag, build and twine check with no permission at all, then
    publish with pypa's action, pinned by SHA, from the `pypi` environment, where alone the
    OIDC token may be asked for; no password or token anywhere."""
    release = workflow("release.yml")
    text = (WORKFLOWS / "release.yml").read_text(encoding="utf-8")
    jobs = release["jobs"]
    assert isinstance(jobs, dict)

    # PyYAML reads the key `on` as True (YAML 1.1).
    assert release[True] == {"push": {"tags": ["v*"]}}
    assert release["permissions"] == {}
    build, publish = jobs["build"], jobs["publish"]
    assert "permissions" not in build
    commands = "\n".join(step.get("run", "") for step in build["steps"])
    assert "python -m build" in commands
    assert "twine check --strict dist/*" in commands
    assert "$GITHUB_REF_NAME" in commands  # the tag must name the version being released
    assert publish["needs"] == "build"
    assert publish["permissions"] == {"id-token": "write"}
    assert publish["environment"]["name"] == "pypi"
    [upload] = [step for step in publish["steps"] if "pypi-publish" in step.get("uses", "")]
    assert upload["uses"].startswith("pypa/gh-action-pypi-publish@")
    assert "with" not in upload  # no user, no password: trusted publishing
    assert not re.search(r"(?i)password|secrets\.", text)
    dist_target = (ROOT / "Makefile").read_text(encoding="utf-8").split("\ndist:", 1)[1]
    assert "-m build --outdir dist ." in dist_target  # make dist checks as the release does
    assert "twine check --strict dist/*" in dist_target


@pytest.mark.parametrize("name", sorted(path.name for path in WORKFLOWS.glob("*.yml")))
def test_every_workflow_pins_its_actions_and_is_linted_like_ci(name: str) -> None:
    """Each workflow pins every action by commit SHA, checks out without keeping
    credentials, and is in make lint's and CI's zizmor and actionlint runs."""
    parsed = workflow(name)
    jobs = parsed["jobs"]
    assert isinstance(jobs, dict)
    for job in jobs.values():
        for step in job["steps"]:
            uses = step.get("uses")
            if uses is None:
                continue
            assert re.fullmatch(r"[^@]+@[0-9a-f]{40}", uses), uses
            if uses.startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    lint_job = "\n".join(
        step.get("run", "") for step in workflow("ci.yml")["jobs"]["workflow-lint"]["steps"]
    )
    path = f".github/workflows/{name}"
    assert re.search(rf"^WORKFLOWS := .*{re.escape(path)}", makefile, re.M)
    assert re.search(rf"^\s*actionlint .*{re.escape(path)}", lint_job, re.M)
    assert re.search(rf"^\s*zizmor --offline .*{re.escape(path)}", lint_job, re.M)
