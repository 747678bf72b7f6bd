"""The public surface of `import healthfile`: names, version, laziness."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata

import pytest

import healthfile

EXPECTED_ALL = {
    "AsyncHealthService",
    "AtomicWriter",
    "Check",
    "CheckResult",
    "CheckStillRunning",
    "CommandCheck",
    "DiskSpaceCheck",
    "FileAgeCheck",
    "FunctionCheck",
    "HTTPCheck",
    "HealthCheckService",
    "HealthReport",
    "HeartbeatCheck",
    "LoopLagCheck",
    "SQLiteCheck",
    "TCPCheck",
    "UnsafeDirectoryError",
    "__version__",
    "asgi_app",
    "cancel_on_signals",
    "check",
}
HEAVY_MODULES = ["asyncio", "aiosqlite", "aiofiles", "aiohttp"]


def test_all_is_the_expected_set() -> None:
    """healthfile.__all__ names exactly the public API, each once."""
    assert set(healthfile.__all__) == EXPECTED_ALL
    assert len(healthfile.__all__) == len(EXPECTED_ALL)


def test_all_is_sorted() -> None:
    """__all__ is kept sorted."""
    assert list(healthfile.__all__) == sorted(healthfile.__all__)


@pytest.mark.parametrize("name", sorted(EXPECTED_ALL))
def test_every_public_name_resolves(name: str) -> None:
    """Every name in __all__ is an attribute of the package."""
    assert getattr(healthfile, name) is not None


@pytest.mark.parametrize("name", sorted(EXPECTED_ALL - {"__version__"}))
def test_public_names_are_defined_where_they_say(name: str) -> None:
    """Public classes and functions carry their own name and live in a healthfile module."""
    value = getattr(healthfile, name)

    assert value.__name__ == name
    assert value.__module__.startswith("healthfile.")


def test_star_import_gives_every_public_name() -> None:
    """`from healthfile import *` binds every name of __all__."""
    namespace: dict[str, object] = {}
    exec("from healthfile import *", namespace)

    assert namespace.keys() >= EXPECTED_ALL


def test_version_comes_from_package_metadata() -> None:
    """__version__ equals the installed distribution's version."""
    assert healthfile.__version__ == metadata.version("healthfile")


def test_dir_is_sorted_all() -> None:
    """dir(healthfile) lists the public API, sorted."""
    assert dir(healthfile) == sorted(healthfile.__all__)


def test_unknown_attribute_raises_attribute_error() -> None:
    """An attribute the package does not have raises AttributeError naming it."""
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = healthfile.no_such_name


def test_private_helpers_are_not_resolved_lazily() -> None:
    """Names private to the modules (e.g. read_app_version) are not package attributes."""
    assert not hasattr(healthfile, "read_app_version")
    assert not hasattr(healthfile, "clean_output")


def modules_after(code: str) -> list[str]:
    """Run ``code`` in a fresh interpreter and return which heavy modules it imported."""
    script = (
        f"import sys\n{code}\n"
        "import json\n"
        f"print(json.dumps([m for m in {HEAVY_MODULES!r} if m in sys.modules]))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    loaded: list[str] = json.loads(completed.stdout.strip().splitlines()[-1])
    return loaded


def test_a_fresh_interpreter_does_not_import_the_heavy_modules() -> None:
    """The check below is meaningful: plain Python starts without asyncio and friends."""
    assert modules_after("pass") == []


def test_import_healthfile_does_not_import_asyncio_aiosqlite_or_aiofiles() -> None:
    """`import healthfile` alone pulls in neither asyncio, aiosqlite, aiofiles nor aiohttp."""
    assert modules_after("import healthfile") == []


def test_the_check_modules_are_imported_on_first_use() -> None:
    """The sidecar's checks are not imported by `import healthfile`; touching one imports it."""
    code = (
        "import healthfile\n"
        "modules = ('healthfile._network', 'healthfile._command', 'healthfile._file_age')\n"
        "assert not any(name in sys.modules for name in modules), sys.modules.keys()\n"
        "healthfile.TCPCheck\n"
        "assert 'healthfile._network' in sys.modules\n"
    )
    # A TCPCheck needs asyncio, never aiohttp: that comes with the first HTTPCheck made.
    assert modules_after(code) == ["asyncio"]


def test_version_and_report_do_not_import_asyncio() -> None:
    """Reading __version__ and the report types, as the probe does, stays light."""
    code = "import healthfile\nhealthfile.__version__\nhealthfile.HealthReport\n"

    assert modules_after(code) == []


def test_service_import_is_lazy_but_works() -> None:
    """Touching AsyncHealthService imports asyncio then, and only then."""
    assert "asyncio" in modules_after("import healthfile\nhealthfile.AsyncHealthService\n")


def test_asgi_app_does_not_import_the_service() -> None:
    """Touching asgi_app loads neither the service nor aiosqlite nor aiofiles: it only judges."""
    code = (
        "import sys, json, healthfile\nhealthfile.asgi_app\n"
        "print(json.dumps([m for m in ('healthfile._service', 'healthfile._cycle', "
        "'aiosqlite', 'aiofiles') if m in sys.modules]))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )

    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout) == []
