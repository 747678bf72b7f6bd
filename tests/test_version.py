"""read_app_version: pyproject.toml first, then package metadata, else "unknown", never raising."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from healthfile import AsyncHealthService
from healthfile._version import (
    MAX_NESTING,
    MAX_PYPROJECT_BYTES,
    UNKNOWN_VERSION,
    AppIdentity,
    _program_name,
    program_name,
    read_app_identity,
    read_app_version,
)
from helpers import ServiceFactory

NOT_INSTALLED = "healthfile-test-no-such-distribution"


def write_pyproject(directory: Path, text: str) -> Path:
    """Write ``text`` as a pyproject.toml in ``directory`` and return its path."""
    path = directory / "pyproject.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_static_project_version_is_read(tmp_path: Path) -> None:
    """A static [project].version is returned as it is."""
    path = write_pyproject(tmp_path, '[project]\nname = "app"\nversion = "2.5.0rc1"\n')

    assert read_app_version(path) == "2.5.0rc1"


def test_static_version_wins_over_installed_metadata(tmp_path: Path) -> None:
    """A static version is used even when the named project is installed with another one."""
    path = write_pyproject(tmp_path, '[project]\nname = "pytest"\nversion = "0.0.1"\n')

    assert read_app_version(path) == "0.0.1"


def test_version_whitespace_is_stripped(tmp_path: Path) -> None:
    """Whitespace around a static version is removed."""
    path = write_pyproject(tmp_path, '[project]\nname = "app"\nversion = "  3.1.4 \\t"\n')

    assert read_app_version(path) == "3.1.4"


def test_str_path_is_accepted(tmp_path: Path) -> None:
    """The pyproject path may be given as a str."""
    path = write_pyproject(tmp_path, '[project]\nname = "app"\nversion = "1.0"\n')

    assert read_app_version(str(path)) == "1.0"


@pytest.mark.parametrize("name", ["healthfile", "pytest"])
def test_dynamic_version_falls_back_to_installed_distribution(tmp_path: Path, name: str) -> None:
    """A dynamic version is read from importlib.metadata for [project].name."""
    path = write_pyproject(tmp_path, f'[project]\nname = "{name}"\ndynamic = ["version"]\n')

    assert read_app_version(path) == metadata.version(name)


def test_blank_version_falls_back_to_installed_distribution(tmp_path: Path) -> None:
    """A blank version string counts as missing and falls back to the metadata."""
    path = write_pyproject(tmp_path, '[project]\nname = "healthfile"\nversion = "   "\n')

    assert read_app_version(path) == metadata.version("healthfile")


def test_non_string_version_falls_back_to_installed_distribution(tmp_path: Path) -> None:
    """A version that is not a string is ignored in favour of the metadata."""
    path = write_pyproject(tmp_path, '[project]\nname = "healthfile"\nversion = 3\n')

    assert read_app_version(path) == metadata.version("healthfile")


def test_dynamic_version_of_uninstalled_name_is_unknown(tmp_path: Path) -> None:
    """A dynamic version whose project name is not installed reads "unknown"."""
    path = write_pyproject(
        tmp_path, f'[project]\nname = "{NOT_INSTALLED}"\ndynamic = ["version"]\n'
    )

    assert read_app_version(path) == UNKNOWN_VERSION == "unknown"


@pytest.mark.parametrize(
    "text",
    [
        "",
        '[tool.other]\nversion = "1.0"\n',
        'project = "not a table"\n',
        '[project]\ndynamic = ["version"]\n',
        '[project]\nname = 42\ndynamic = ["version"]\n',
        '[project]\nname = "   "\n',
    ],
    ids=["empty", "no-project", "project-not-table", "no-name", "name-not-str", "blank-name"],
)
def test_no_version_and_no_usable_name_is_unknown(tmp_path: Path, text: str) -> None:
    """Without a version and without an installed project name the result is "unknown"."""
    assert read_app_version(write_pyproject(tmp_path, text)) == UNKNOWN_VERSION


def test_missing_file_is_unknown(tmp_path: Path) -> None:
    """A pyproject path that does not exist reads "unknown"."""
    assert read_app_version(tmp_path / "missing" / "pyproject.toml") == UNKNOWN_VERSION


def test_directory_instead_of_file_is_unknown(tmp_path: Path) -> None:
    """A directory at the pyproject path reads "unknown" instead of raising."""
    assert read_app_version(tmp_path) == UNKNOWN_VERSION


def test_none_is_unknown() -> None:
    """pyproject=None means no file to read: "unknown"."""
    assert read_app_version(None) == UNKNOWN_VERSION


@pytest.mark.parametrize(
    "text",
    [
        '[project\nversion = "1.0"\n',
        '[project]\nversion = "1.0\n',
        '[project]\nversion = "1.0"\nversion = "2.0"\n',
        "[project]\nversion = 1.0.0\n",
    ],
    ids=["unclosed-table", "unclosed-string", "duplicate-key", "bare-version"],
)
def test_invalid_toml_is_unknown(tmp_path: Path, text: str) -> None:
    """A file that is not valid TOML reads "unknown"."""
    assert read_app_version(write_pyproject(tmp_path, text)) == UNKNOWN_VERSION


def test_invalid_toml_is_logged(tmp_path: Path, healthfile_logs: pytest.LogCaptureFixture) -> None:
    """Falling back because of invalid TOML logs a warning naming the file."""
    path = write_pyproject(tmp_path, "[project\n")

    read_app_version(path)

    warnings = [r for r in healthfile_logs.records if r.levelno == logging.WARNING]
    assert any(str(path) in record.getMessage() for record in warnings)


@pytest.mark.parametrize(
    "raw",
    [
        bytes(range(256)) * 8,
        b"\xff\xfe\x00\x00[project]\nversion = '1.0'\n",
        b'[project]\nversion = "1.0\xff"\n',
        b"\x00" * 4096,
    ],
    ids=["all-bytes", "utf32-bom", "invalid-utf8-in-string", "nul-bytes"],
)
def test_binary_garbage_is_unknown(tmp_path: Path, raw: bytes) -> None:
    """A file of binary garbage or invalid UTF-8 reads "unknown"."""
    path = tmp_path / "pyproject.toml"
    path.write_bytes(raw)

    assert read_app_version(path) == UNKNOWN_VERSION


def test_file_of_exactly_the_size_limit_is_read(tmp_path: Path) -> None:
    """A pyproject of exactly MAX_PYPROJECT_BYTES is still parsed."""
    head = '[project]\nname = "app"\nversion = "4.0.0"\n# '
    text = head + "x" * (MAX_PYPROJECT_BYTES - len(head) - 1) + "\n"
    path = write_pyproject(tmp_path, text)
    assert path.stat().st_size == MAX_PYPROJECT_BYTES

    assert read_app_version(path) == "4.0.0"


def test_file_over_the_size_limit_is_unknown(tmp_path: Path) -> None:
    """A pyproject one byte over MAX_PYPROJECT_BYTES reads "unknown" even if it starts valid."""
    head = '[project]\nname = "app"\nversion = "4.0.0"\n# '
    text = head + "x" * (MAX_PYPROJECT_BYTES - len(head)) + "\n"
    path = write_pyproject(tmp_path, text)
    assert path.stat().st_size == MAX_PYPROJECT_BYTES + 1

    assert read_app_version(path) == UNKNOWN_VERSION


def test_huge_file_is_unknown_without_reading_it_all(tmp_path: Path) -> None:
    """A 1 TiB (sparse) pyproject reads "unknown": reading it whole would fail or never end."""
    path = write_pyproject(tmp_path, '[project]\nname = "app"\nversion = "4.0.0"\n')
    os.truncate(path, 1 << 40)

    assert read_app_version(path) == UNKNOWN_VERSION


@pytest.mark.parametrize(
    "text",
    [
        "a = " + "[" * 100_000 + "]" * 100_000 + "\n",
        "a = " + "{b = " * 100_000 + "1" + "}" * 100_000 + "\n",
        '[project]\nversion = "5.0"\na = ' + "[" * 100_000 + "]" * 100_000 + "\n",
        "a = " + "[" * 100_000 + "\n",
    ],
    ids=["nested-arrays", "nested-inline-tables", "nested-after-version", "unclosed-nesting"],
)
def test_deeply_nested_toml_never_raises(tmp_path: Path, text: str) -> None:
    """Hostile, deeply nested TOML gives "unknown" or a version, never an exception."""
    assert len(text.encode()) <= MAX_PYPROJECT_BYTES
    path = write_pyproject(tmp_path, text)

    assert read_app_version(path) in {UNKNOWN_VERSION, "5.0"}


def test_absurd_nesting_is_refused_before_parsing(
    tmp_path: Path, healthfile_logs: pytest.LogCaptureFixture
) -> None:
    """Arrays nested 64 deep are refused with a warning; tomllib never recurses that far."""
    nested = "[" * MAX_NESTING + "]" * MAX_NESTING
    path = write_pyproject(tmp_path, f'[project]\nversion = "5.0"\na = {nested}\n')

    assert read_app_version(path) == UNKNOWN_VERSION
    assert "absurdly deep nested arrays or tables" in healthfile_logs.text


def test_ordinary_brackets_and_braces_are_not_nesting(tmp_path: Path) -> None:
    """Many table headers, arrays and inline tables, and brackets in strings, still parse."""
    headers = "".join(f"[tool.t{i}]\nx = [[1, 2], {{a = [3]}}]\n" for i in range(300))
    text = f'[project]\nversion = "5.0"\nre = "[[[[[[[["\n{headers}'
    path = write_pyproject(tmp_path, text)

    assert read_app_version(path) == "5.0"


def test_unreadable_metadata_is_unknown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An error other than 'not installed' while reading metadata also gives "unknown"."""

    def broken_version(name: str) -> str:
        raise OSError("metadata directory vanished")

    monkeypatch.setattr(metadata, "version", broken_version)
    path = write_pyproject(tmp_path, '[project]\nname = "healthfile"\ndynamic = ["version"]\n')

    assert read_app_version(path) == UNKNOWN_VERSION


# --- in the service -----------------------------------------------------------------------


def read_json(path: Path) -> Any:
    """Read the health file the way a monitor does."""
    with path.open(encoding="utf-8") as file:
        return json.load(file)


@pytest.mark.asyncio
async def test_app_version_argument_wins_over_pyproject(
    make_service: ServiceFactory, tmp_path: Path, health_file: Path
) -> None:
    """AsyncHealthService(app_version=...) is reported instead of the pyproject's version."""
    pyproject = write_pyproject(tmp_path, '[project]\nname = "app"\nversion = "9.9.9"\n')
    service = make_service(pyproject=pyproject, app_version="1.2.3")

    await service.start()

    assert service.last_report is not None
    assert service.last_report.app_version == "1.2.3"
    assert read_json(health_file)["app_version"] == "1.2.3"


@pytest.mark.asyncio
async def test_service_reports_pyproject_version_without_argument(
    make_service: ServiceFactory, tmp_path: Path, health_file: Path
) -> None:
    """Without app_version the service reports the pyproject's [project].version."""
    pyproject = write_pyproject(tmp_path, '[project]\nname = "app"\nversion = "9.9.9"\n')
    service = make_service(pyproject=pyproject)

    await service.start()

    assert service.last_report is not None
    assert service.last_report.app_version == "9.9.9"
    assert read_json(health_file)["app_version"] == "9.9.9"


@pytest.mark.asyncio
async def test_unreadable_version_does_not_change_status(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    """A pyproject that cannot be read gives "unknown" and the service is still online."""
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_bytes(b"\xff\xfe garbage")
    service = make_service(pyproject=pyproject)

    await service.start()

    assert service.last_report is not None
    assert service.last_report.app_version == UNKNOWN_VERSION
    assert service.last_report.status == "online"


# --- app_name ------------------------------------------------------------------------------


def test_identity_is_project_name_and_version_from_one_read(tmp_path: Path) -> None:
    """read_app_identity gives [project].name (stripped) and the version read_app_version gives."""
    path = write_pyproject(tmp_path, '[project]\nname = " billing "\nversion = "2.0"\n')

    assert read_app_identity(path) == AppIdentity("billing", "2.0")
    assert read_app_identity(path).version == read_app_version(path)


def test_identity_reads_the_pyproject_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One call opens the file once for both the name and the version."""
    path = write_pyproject(tmp_path, '[project]\nname = "billing"\nversion = "2.0"\n')
    opened: list[object] = []
    real_open = os.open

    def counting_open(file: Any, *args: Any, **kwargs: Any) -> int:
        opened.append(file)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(os, "open", counting_open)
    read_app_identity(path)
    assert opened == [path]


def test_identity_name_without_project_name_is_the_program(tmp_path: Path) -> None:
    """Without [project].name (or without a pyproject) the name is the running program's."""
    path = write_pyproject(tmp_path, '[project]\nversion = "2.0"\n')

    assert read_app_identity(path) == AppIdentity(program_name(), "2.0")
    assert read_app_identity(None) == AppIdentity(program_name(), UNKNOWN_VERSION)
    assert read_app_identity(tmp_path / "missing.toml").name == program_name()


@pytest.mark.parametrize("name", ["healthfile", "HealthFile", " healthfile "])
def test_healthfiles_own_pyproject_is_not_an_apps_identity(tmp_path: Path, name: str) -> None:
    """A pyproject whose project is healthfile itself gives the fallback name and no version."""
    path = write_pyproject(tmp_path, f'[project]\nname = "{name}"\nversion = "9.9"\n')

    assert read_app_identity(path) == AppIdentity(program_name(), UNKNOWN_VERSION)
    assert read_app_identity(path, fallback_name=lambda: "billing") == AppIdentity(
        "billing", UNKNOWN_VERSION
    )


def test_fallback_name_is_asked_only_without_a_project_name(tmp_path: Path) -> None:
    """fallback_name is called when the pyproject names no project, and not otherwise."""
    named = write_pyproject(tmp_path, '[project]\nname = "shop"\nversion = "2.0"\n')
    asked: list[str] = []

    def fallback() -> str:
        asked.append("asked")
        return "watched"

    assert read_app_identity(named, fallback_name=fallback) == AppIdentity("shop", "2.0")
    assert asked == []
    assert read_app_identity(None, fallback_name=fallback) == AppIdentity(
        "watched", UNKNOWN_VERSION
    )
    assert asked == ["asked"]


def run_program_name(*argv: str, cwd: Path) -> str:
    """The app_name a fresh interpreter started with ``argv`` finds for itself."""
    done = subprocess.run([*argv], capture_output=True, text=True, timeout=60, check=False, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


PRINT_NAME = "from healthfile._version import program_name; print(program_name())"


def test_program_name_of_a_script_is_its_stem(tmp_path: Path) -> None:
    """`python worker.py` (no distribution owns it) is named "worker"."""
    (tmp_path / "worker.py").write_text(PRINT_NAME + "\n")

    assert run_program_name(sys.executable, "worker.py", cwd=tmp_path) == "worker"


def test_program_name_of_python_c_is_python(tmp_path: Path) -> None:
    """`python -c ...` has no script: it is named "python"."""
    assert run_program_name(sys.executable, "-c", PRINT_NAME, cwd=tmp_path) == "python"


def test_program_name_under_python_m_is_the_package(tmp_path: Path) -> None:
    """`python -m myworker` is named after the package, not "__main__"."""
    package = tmp_path / "myworker"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(PRINT_NAME + "\n")

    assert run_program_name(sys.executable, "-m", "myworker", cwd=tmp_path) == "myworker"


@pytest.mark.parametrize(
    ("script", "distribution"), [("healthfile", "healthfile"), ("py.test", "pytest")]
)
def test_program_name_of_a_console_script_is_its_distribution(
    tmp_path: Path, script: str, distribution: str
) -> None:
    """An installed console script is named after the distribution that owns it."""
    path = Path(sys.executable).parent / script
    if not path.exists():
        pytest.skip(f"no {script} console script next to this interpreter")
    code = f"import sys; sys.argv[0] = {str(path)!r}; {PRINT_NAME}"

    assert run_program_name(sys.executable, "-c", code, cwd=tmp_path) == distribution


def test_program_name_under_python_m_of_an_installed_package_is_its_distribution(
    tmp_path: Path,
) -> None:
    """`python -m pytest` is named after the installed distribution pytest (its metadata Name)."""
    code = (
        "import importlib.machinery, sys\n"
        "spec = importlib.machinery.ModuleSpec('pytest.__main__', None)\n"
        "sys.modules['__main__'].__spec__ = spec\n"
        "sys.argv[0] = '/somewhere/pytest/__main__.py'\n" + PRINT_NAME
    )

    assert (
        run_program_name(sys.executable, "-c", code, cwd=tmp_path)
        == metadata.metadata("pytest")["Name"]
    )


@pytest.mark.asyncio
async def test_service_writes_app_name_from_pyproject(
    make_service: ServiceFactory, tmp_path: Path, health_file: Path
) -> None:
    """Without app_name= the file's app_name is [project].name of the pyproject."""
    path = write_pyproject(tmp_path, '[project]\nname = "billing"\nversion = "2.0"\n')
    service = make_service(pyproject=path)
    await service.start()

    assert service.last_report is not None
    assert service.last_report.app_name == "billing"
    assert read_json(health_file)["app_name"] == "billing"


@pytest.mark.asyncio
async def test_app_name_argument_wins_over_pyproject(
    make_service: ServiceFactory, tmp_path: Path, health_file: Path
) -> None:
    """app_name= wins over [project].name; the version still comes from the pyproject."""
    path = write_pyproject(tmp_path, '[project]\nname = "billing"\nversion = "2.0"\n')
    service = make_service(pyproject=path, app_name="billing-eu")
    await service.start()

    document = read_json(health_file)
    assert (document["app_name"], document["app_version"]) == ("billing-eu", "2.0")


@pytest.mark.asyncio
async def test_app_name_without_pyproject_is_the_program(
    make_service: ServiceFactory, health_file: Path
) -> None:
    """With no pyproject to read, app_name is the running program's (never empty)."""
    service = make_service(pyproject=None)
    await service.start()

    assert read_json(health_file)["app_name"] == program_name() != ""


@pytest.mark.parametrize("value", ["", "   ", "a" * 129])
def test_bad_app_name_is_refused_at_construction(value: Any) -> None:
    """app_name must be a non-empty string of at most 128 characters or None, like app_version."""
    with pytest.raises(ValueError, match="app_name"):
        AsyncHealthService(app_name=value)
    with pytest.raises(ValueError, match="app_version"):
        AsyncHealthService(app_version=value)


@pytest.mark.parametrize("value", [3, b"app", 1.0])
def test_app_name_of_the_wrong_type_is_a_type_error(value: Any) -> None:
    """app_name and app_version that are not strings raise TypeError naming the argument."""
    with pytest.raises(TypeError, match="app_name must be a string or None"):
        AsyncHealthService(app_name=value)
    with pytest.raises(TypeError, match="app_version must be a string or None"):
        AsyncHealthService(app_version=value)


@pytest.mark.asyncio
async def test_name_and_version_too_long_for_the_file_are_written_as_unknown(
    make_service: ServiceFactory,
    tmp_path: Path,
    health_file: Path,
    healthfile_logs: pytest.LogCaptureFixture,
) -> None:
    """A pyproject name or version past 128 characters is logged and written as unknown."""
    long_name, long_version = "n" * 129, "1." + "0" * 200
    path = write_pyproject(
        tmp_path, f'[project]\nname = "{long_name}"\nversion = "{long_version}"\n'
    )
    service = make_service(pyproject=path)
    await service.start()

    document = read_json(health_file)
    assert (document["app_name"], document["app_version"]) == ("unknown", "unknown")
    assert "app_name read from the project is longer than 128" in healthfile_logs.text
    assert "app_version read from the project is longer than 128" in healthfile_logs.text


def test_unreadable_distribution_metadata_falls_back_to_the_script_name(
    monkeypatch: pytest.MonkeyPatch, healthfile_logs: pytest.LogCaptureFixture
) -> None:
    """Metadata that cannot be read is logged, and the program is named after its script."""

    def broken(**_: object) -> object:
        raise OSError("metadata unreadable")

    monkeypatch.setattr(metadata, "entry_points", broken)
    _program_name.cache_clear()
    try:
        assert _program_name("/usr/local/bin/billing-worker", None) == "billing-worker"
    finally:
        _program_name.cache_clear()
    assert "metadata unreadable" in healthfile_logs.text
