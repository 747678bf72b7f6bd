"""`healthfile run --config`: the TOML config, its checks, its precedence, and every bad key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from healthfile import (
    CommandCheck,
    DiskSpaceCheck,
    FileAgeCheck,
    HTTPCheck,
    LoopLagCheck,
    SQLiteCheck,
    TCPCheck,
)
from healthfile._cli import _run_option_parsers
from healthfile._config import SCHEMA_FILE, json_schema
from healthfile._toml import read_toml
from helpers import child_environment, needs_nonblocking_fifos, one_line
from test_cli import invoke

pytestmark = pytest.mark.usefixtures("clean_environment")

ROOT = Path(__file__).resolve().parent.parent
DATABASE = '[[check]]\nname = "database"\ntype = "sqlite"\npath = "app.db"\n'
EVERY_TYPE = """\
health_file = "out/health.json"
interval = 5
check_timeout = 2
start_period = 10
app_name = "shop"
app_version = "1.2.3"
notify_systemd = true
verbose = 1

[[check]]
name = "database"
type = "tcp"
host = "db.internal"
port = 5432
timeout = 1.5
critical = true
groups = ["ready"]
failure_threshold = 3
success_threshold = 2

[[check]]
type = "sqlite"
name = "cache_db"
path = "cache.db"

[[check]]
type = "disk"
path = "data"
min_free_bytes = 1000000
min_free_ratio = 0.1

[[check]]
type = "http"
url = "https://api.internal/healthz"
method = "HEAD"
expect_status = [200, 204]
headers = { Authorization = "Bearer abc" }

[[check]]
type = "command"
name = "plugin"
argv = ["check_tcp", "-H", "db", "-p", "5432"]
critical = false

[[check]]
type = "file-age"
path = "/run/app/heartbeat"
max_age = 60
groups = ["live"]

[[check]]
type = "loop-lag"
warn_after = 0.2
fail_after = 2
"""


def write(directory: Path, text: str, name: str = "healthfile.toml") -> Path:
    """Write a config file; return its path."""
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def run_config(
    path: Path, capsys: pytest.CaptureFixture[str], started_with: list[dict[str, Any]], *more: str
) -> dict[str, Any]:
    """Run `healthfile run --config PATH` in-process; return the options it would run with."""
    status, _, err = invoke(["run", "--config", str(path), *more], capsys)
    assert status == 0, err
    [options] = started_with
    return options


# --- a good config ---------------------------------------------------------------------------


def test_every_check_type_is_built_with_its_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], started_with: list[dict[str, Any]]
) -> None:
    """Each [[check]] becomes its library check, with the common and its own keys."""
    options = run_config(write(tmp_path, EVERY_TYPE), capsys, started_with)

    database = options["database"]
    assert isinstance(database, TCPCheck)
    assert (database.name, database.host, database.port, database.timeout) == (
        "database",
        "db.internal",
        5432,
        1.5,
    )
    assert (database.groups, database.failure_threshold, database.success_threshold) == (
        ("ready",),
        3,
        2,
    )
    cache, disk, http, plugin, heartbeat, lag = options["checks"]
    assert isinstance(cache, SQLiteCheck)
    assert (cache.name, cache.path) == ("cache_db", Path.cwd() / "cache.db")
    assert isinstance(disk, DiskSpaceCheck)
    assert (disk.name, disk.min_free_bytes, disk.min_free_ratio) == ("disk", 1000000, 0.1)
    assert isinstance(http, HTTPCheck)
    assert (http.name, http.method, http.expect_status) == ("http", "HEAD", (200, 204))
    assert http.headers == {"Authorization": "Bearer abc"}
    assert isinstance(plugin, CommandCheck)
    assert (plugin.argv, plugin.critical) == (("check_tcp", "-H", "db", "-p", "5432"), False)
    assert isinstance(heartbeat, FileAgeCheck)
    assert (heartbeat.name, heartbeat.max_age, heartbeat.groups) == ("file_age", 60.0, ("live",))
    assert isinstance(lag, LoopLagCheck)
    assert (lag.name, lag.warn_after, lag.fail_after) == ("event_loop", 0.2, 2.0)


def test_the_run_options_of_the_config_are_used(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], started_with: list[dict[str, Any]]
) -> None:
    """Every run option a config gives reaches the service."""
    options = run_config(write(tmp_path, EVERY_TYPE), capsys, started_with)

    assert options["health_file"] == "out/health.json"
    assert (options["interval"], options["check_timeout"], options["start_period"]) == (5, 2, 10)
    assert (options["app_name"], options["app_version"]) == ("shop", "1.2.3")
    assert (options["notify_systemd"], options["verbose"]) == (True, 1)


def test_a_database_key_is_an_sqlite_database_like_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], started_with: list[dict[str, Any]]
) -> None:
    """`database = PATH` names an SQLite file, as --database does; the checks come along."""
    config = write(tmp_path, 'database = "data/app.db"\n[[check]]\ntype = "disk"\npath = "."\n')

    options = run_config(config, capsys, started_with)

    assert options["database"] == "data/app.db"
    assert [check.name for check in options["checks"]] == ["disk"]


@pytest.mark.parametrize("given", ["option", "environment"])
def test_the_command_line_and_environment_override_a_database_key(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    started_with: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    given: str,
) -> None:
    """--database or HEALTHFILE_DATABASE wins over the config's `database` key."""
    config = write(tmp_path, 'database = "config.db"\n')
    more = ["--database", "cli.db"] if given == "option" else []
    if given == "environment":
        monkeypatch.setenv("HEALTHFILE_DATABASE", "cli.db")

    assert run_config(config, capsys, started_with, *more)["database"] == "cli.db"


def test_a_config_without_a_database_takes_one_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], started_with: list[dict[str, Any]]
) -> None:
    """A config with no database of its own runs with --database."""
    config = write(tmp_path, '[[check]]\ntype = "tcp"\nhost = "localhost"\nport = 80\n')

    assert run_config(config, capsys, started_with, "--database", "x.db")["database"] == "x.db"


@pytest.mark.parametrize(
    ("cli", "env", "expected"),
    [([], None, 5.0), ([], "7", 7.0), (["--interval", "9"], "7", 9.0)],
)
def test_the_command_line_wins_over_the_environment_over_the_config(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    started_with: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    cli: list[str],
    env: str | None,
    expected: float,
) -> None:
    """Precedence: the command line, then the environment, then the config, then defaults."""
    if env is not None:
        monkeypatch.setenv("HEALTHFILE_INTERVAL", env)
    config = write(tmp_path, f"interval = 5\n{DATABASE}")

    options = run_config(config, capsys, started_with, *cli)

    assert options["interval"] == expected
    assert options["check_timeout"] == 3.0  # not in the config: the default


def test_environment_wins_over_the_configs_verbose_and_notify_systemd(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    started_with: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HEALTHFILE_VERBOSE and HEALTHFILE_NOTIFY_SYSTEMD win over the config's keys."""
    monkeypatch.setenv("HEALTHFILE_VERBOSE", "0")
    monkeypatch.setenv("HEALTHFILE_NOTIFY_SYSTEMD", "0")
    config = write(tmp_path, f"verbose = 2\nnotify_systemd = true\n{DATABASE}")

    options = run_config(config, capsys, started_with)

    assert (options["verbose"], options["notify_systemd"]) == (0, False)


def test_the_config_is_found_through_healthfile_config(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    started_with: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HEALTHFILE_CONFIG names the config when --config is not given."""
    monkeypatch.setenv("HEALTHFILE_CONFIG", str(write(tmp_path, f"app_name = 'env'\n{DATABASE}")))

    status, _, err = invoke(["run"], capsys)

    assert status == 0, err
    assert started_with[0]["app_name"] == "env"


def test_a_pyproject_is_read_from_its_tool_healthfile_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], started_with: list[dict[str, Any]]
) -> None:
    """--config pyproject.toml reads [tool.healthfile], and app_version from the same file."""
    pyproject = write(
        tmp_path,
        """\
        [project]
        name = "shop"
        version = "2.0.0"

        [tool.healthfile]
        interval = 10

        [[tool.healthfile.check]]
        name = "database"
        type = "sqlite"
        path = "app.db"
        """,
        "pyproject.toml",
    )

    options = run_config(pyproject, capsys, started_with)

    assert (options["interval"], options["pyproject"]) == (10, str(pyproject))
    assert isinstance(options["database"], SQLiteCheck)


def test_any_file_with_a_tool_healthfile_table_is_read_from_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], started_with: list[dict[str, Any]]
) -> None:
    """A file of another name holding [tool.healthfile] is read like a pyproject."""
    config = write(tmp_path, '[tool.healthfile]\ndatabase = "a.db"\npyproject = "p.toml"\n')

    options = run_config(config, capsys, started_with)

    assert (options["database"], options["pyproject"]) == ("a.db", "p.toml")


@pytest.mark.parametrize(
    ("table", "name", "groups"),
    [
        ('type = "sqlite"\npath = "a.db"', "database", ()),
        ('type = "disk"\npath = "."', "disk", ()),
        ('type = "tcp"\nhost = "a"\nport = 1', "tcp", ()),
        ('type = "http"\nurl = "http://a/"', "http", ()),
        ('type = "command"\nargv = ["true"]', "command", ()),
        ('type = "file-age"\npath = "hb"\nmax_age = 1', "file_age", ()),
        ('type = "loop-lag"', "event_loop", ("live",)),
    ],
)
def test_a_check_without_a_name_takes_its_types_name(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    started_with: list[dict[str, Any]],
    table: str,
    name: str,
    groups: tuple[str, ...],
) -> None:
    """A check without `name` takes its type's default name (and groups)."""
    config = write(tmp_path, f'database = "x.db"\n[[check]]\n{table}\n')
    if name == "database":
        config = write(tmp_path, f"[[check]]\n{table}\n")

    options = run_config(config, capsys, started_with)

    made = options["database"] if name == "database" else options["checks"][0]
    assert (made.name, made.groups) == (name, groups)


def test_verbose_may_be_true_or_false(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], started_with: list[dict[str, Any]]
) -> None:
    """`verbose = true` is -v."""
    options = run_config(write(tmp_path, f"verbose = true\n{DATABASE}"), capsys, started_with)

    assert options["verbose"] == 1


def test_relative_paths_are_relative_to_the_working_directory(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    started_with: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A relative path in a config in another directory is taken from the working directory."""
    elsewhere = tmp_path / "etc"
    elsewhere.mkdir()
    config = write(elsewhere, f'{DATABASE}[[check]]\ntype = "file-age"\npath = "hb"\nmax_age = 1\n')
    monkeypatch.chdir(tmp_path)

    options = run_config(config, capsys, started_with)

    assert options["database"].path == tmp_path / "app.db"
    assert options["checks"][0].path == tmp_path / "hb"


@pytest.mark.parametrize(
    ("database", "expected"),
    [(TCPCheck("db", 5432, name="database"), "sidecar"), (SQLiteCheck("data/orders.db"), "orders")],
)
def test_without_app_name_a_config_names_the_app_by_its_database_or_itself(
    database: object, expected: str
) -> None:
    """Without app_name, a config's SQLite database names the app, else the config file."""
    from healthfile._run import _identity

    options = {
        "app_name": None,
        "app_version": "1.0",
        "pyproject": None,
        "prometheus_file": None,
        "database": database,
        "config": "etc/sidecar.toml",
    }

    assert _identity(options).name == expected


# --- a bad config: one line naming the file and the key ------------------------------------------

TCP = '[[check]]\ntype = "tcp"\nhost = "db"\n'
BAD_CONFIGS = [
    (
        "port-string",
        f'{DATABASE}{TCP}port = "80"',
        'check[2].port: expected an integer from 1 to 65535, not "80"',
    ),
    (
        "port-zero",
        f"{DATABASE}{TCP}port = 0",
        "check[2].port: expected an integer from 1 to 65535, not 0",
    ),
    (
        "port-high",
        f"{DATABASE}{TCP}port = 70000",
        "check[2].port: expected an integer from 1 to 65535, not 70000",
    ),
    (
        "port-float",
        f"{DATABASE}{TCP}port = 80.0",
        "check[2].port: expected an integer from 1 to 65535, not 80.0",
    ),
    ("port-missing", f"{DATABASE}{TCP}", "check[2].port: missing: a tcp check needs host and port"),
    (
        "unknown-top-key",
        f"intervall = 5\n{DATABASE}",
        'intervall: unknown key (did you mean "interval"?); the top level takes database, ',
    ),
    (
        "dashed-key",
        f'health-file = "x.json"\n{DATABASE}',
        'health-file: unknown key (did you mean "health_file"?); ',
    ),
    ("config-in-config", f'config = "other.toml"\n{DATABASE}', "config: unknown key"),
    (
        "unknown-check-key",
        f"{DATABASE}{TCP}port = 80\nprot = 81",
        (
            'check[2].prot: unknown key (did you mean "port"?); a tcp check takes type, name, '
            "timeout, critical, groups, failure_threshold, success_threshold, host, port"
        ),
    ),
    (
        "unknown-type",
        f'{DATABASE}[[check]]\ntype = "tpc"',
        (
            'check[2].type: unknown type "tpc" (did you mean "tcp"?); one of "sqlite", "disk", '
            '"tcp", "http", "command", "file-age", "loop-lag"'
        ),
    ),
    (
        "heartbeat-type",
        f'{DATABASE}[[check]]\ntype = "heartbeat"',
        'check[2].type: unknown type "heartbeat"; one of ',
    ),
    (
        "type-not-a-string",
        f"{DATABASE}[[check]]\ntype = 5",
        "check[2].type: unknown type 5; one of ",
    ),
    (
        "type-missing",
        f'{DATABASE}[[check]]\nname = "x"',
        'check[2].type: missing; one of "sqlite", ',
    ),
    (
        "no-database",
        '[[check]]\ntype = "tcp"\nname = "api"\nhost = "a"\nport = 1',
        (
            'no database: add a [[check]] named "database" (of any type), or database = "PATH" of '
            "an SQLite file"
        ),
    ),
    ("empty-file", "", 'no database: add a [[check]] named "database"'),
    (
        "two-databases",
        f"{DATABASE}{DATABASE}",
        'check[2].name: "database" is the name of check[1] too; check names are unique',
    ),
    (
        "duplicate-default-names",
        f"{DATABASE}{TCP}port = 1\n{TCP}port = 2",
        'check[3].name: "tcp" is the name of check[2] too; ',
    ),
    (
        "database-twice",
        f'database = "a.db"\n{DATABASE}',
        (
            "database: the database is given twice: by this key and by check[1], the check named "
            '"database"'
        ),
    ),
    (
        "interval-zero",
        f"interval = 0\n{DATABASE}",
        "interval: expected a number of seconds from 0.001 to 31622400, not 0",
    ),
    (
        "interval-string",
        f'interval = "30"\n{DATABASE}',
        'interval: expected a number of seconds from 0.001 to 31622400, not "30"',
    ),
    (
        "interval-inf",
        f"interval = inf\n{DATABASE}",
        "interval: expected a number of seconds from 0.001 to 31622400, not Infinity",
    ),
    (
        "start-period-negative",
        f"start_period = -1\n{DATABASE}",
        "start_period: expected a number of seconds 0 or 0.001 to 31622400, not -1",
    ),
    (
        "health-file-number",
        f"health_file = 5\n{DATABASE}",
        "health_file: expected a non-empty string, not 5",
    ),
    ("health-file-directory", f'health_file = "."\n{DATABASE}', "health_file: '.' is a directory"),
    (
        "app-name-blank",
        f'app_name = " "\n{DATABASE}',
        'app_name: expected a non-empty string, not " "',
    ),
    (
        "notify-number",
        f"notify_systemd = 1\n{DATABASE}",
        "notify_systemd: expected true or false, not 1",
    ),
    (
        "verbose-three",
        f"verbose = 3\n{DATABASE}",
        "verbose: expected 0, 1 or 2 (or true or false), not 3",
    ),
    (
        "timeout-negative",
        f"{DATABASE}timeout = -1",
        "check[1].timeout: expected a number of seconds from 0.001 to 31622400, not -1",
    ),
    (
        "critical-string",
        f'{DATABASE}critical = "yes"',
        'check[1].critical: expected true or false, not "yes"',
    ),
    (
        "groups-string",
        f'{DATABASE}groups = "live"',
        'check[1].groups: expected a list of group names, not "live"',
    ),
    (
        "group-with-comma",
        f'{DATABASE}groups = ["a,b"]',
        'check[1].groups: expected a list of group names, not ["a,b"]',
    ),
    (
        "threshold-zero",
        f"{DATABASE}failure_threshold = 0",
        "check[1].failure_threshold: expected an integer >= 1, not 0",
    ),
    (
        "name-empty",
        f'{DATABASE}[[check]]\ntype = "disk"\npath = "."\nname = ""',
        (
            "check[2].name: expected a name: printable, at most 64 characters, no comma, no blank "
            'at either end, not ""'
        ),
    ),
    (
        "argv-string",
        f'{DATABASE}[[check]]\ntype = "command"\nargv = "check_tcp -p 80"',
        (
            "check[2].argv: expected a non-empty list of strings: the program and its arguments "
            '(no shell), not "check_tcp -p 80"'
        ),
    ),
    (
        "argv-empty",
        f'{DATABASE}[[check]]\ntype = "command"\nargv = []',
        (
            "check[2].argv: expected a non-empty list of strings: the program and its arguments "
            "(no shell), not []"
        ),
    ),
    (
        "argv-missing",
        f'{DATABASE}[[check]]\ntype = "command"',
        "check[2].argv: missing: a command check needs argv",
    ),
    (
        "method-post",
        f'{DATABASE}[[check]]\ntype = "http"\nurl = "http://a/"\nmethod = "POST"',
        'check[2].method: expected "GET" or "HEAD", not "POST"',
    ),
    (
        "status-high",
        f'{DATABASE}[[check]]\ntype = "http"\nurl = "http://a/"\nexpect_status = 600',
        (
            "check[2].expect_status: expected an HTTP status from 100 to 599, or a non-empty list "
            "of them, not 600"
        ),
    ),
    (
        "headers-not-strings",
        f'{DATABASE}[[check]]\ntype = "http"\nurl = "http://a/"\nheaders = {{ X-Token = 5 }}',
        "check[2].headers: expected a table of header names and string values",
    ),
    (
        "headers-secret-never-shown",
        f'{DATABASE}[[check]]\ntype = "http"\nurl = "http://a/"\nheaders = "Bearer s3cret"',
        "check[2].headers: expected a table of header names and string values",
    ),
    (
        "url-ftp",
        f'{DATABASE}[[check]]\ntype = "http"\nurl = "ftp://a/"',
        "check[2]: url must be an http:// or https:// URL with a host, not ftp://a/",
    ),
    (
        "url-password-hidden",
        f'{DATABASE}[[check]]\ntype = "http"\nurl = "gopher://u:hunter2@a/"',
        "check[2]: url must be an http:// or https:// URL with a host, not gopher://a/",
    ),
    (
        "max-age-missing",
        f'{DATABASE}[[check]]\ntype = "file-age"\npath = "hb"',
        "check[2].max_age: missing: a file-age check needs path and max_age",
    ),
    (
        "ratio-two",
        f'{DATABASE}[[check]]\ntype = "disk"\npath = "."\nmin_free_ratio = 2',
        "check[2].min_free_ratio: expected a number from 0 to 1, not 2",
    ),
    (
        "lag-bounds",
        f'{DATABASE}[[check]]\ntype = "loop-lag"\nwarn_after = 2\nfail_after = 1',
        "check[2]: warn_after (2) must not exceed fail_after (1)",
    ),
    (
        "one-bracket",
        '[check]\ntype = "disk"',
        "check: expected [[check]] tables (two brackets), not one [check]",
    ),
    ("check-not-a-table", "check = [1, 2]", "check[1]: expected a [[check]] table, not 1"),
    ("not-toml", "interval = = 5", "is not valid TOML: Invalid value (at line 1, column 12)"),
]


@pytest.mark.parametrize(
    ("text", "expected"), [pytest.param(text, line, id=name) for name, text, line in BAD_CONFIGS]
)
def test_a_bad_config_exits_2_with_one_line_naming_the_file_and_the_key(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    started_with: list[dict[str, Any]],
    text: str,
    expected: str,
) -> None:
    """Each bad key gives exit 2 and one line: the file, the key's path, what it expects."""
    config = write(tmp_path, text + "\n")

    status, out, err = invoke(["run", "--config", str(config)], capsys)

    assert (status, out) == (2, "")
    line = one_line(err)
    if expected.startswith("is not valid TOML"):
        assert line == f"healthfile run: error: {config} {expected}"
    else:
        assert line.startswith(f"healthfile run: error: {config}: {expected}"), line
    assert "s3cret" not in line
    assert "hunter2" not in line
    assert started_with == []


def test_a_bad_key_in_a_pyproject_names_its_full_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], started_with: list[dict[str, Any]]
) -> None:
    """In a pyproject, the key's path starts at tool.healthfile."""
    pyproject = write(
        tmp_path,
        '[[tool.healthfile.check]]\ntype = "tcp"\nhost = "db"\nport = 0\n',
        "pyproject.toml",
    )

    status, _, err = invoke(["run", "--config", str(pyproject)], capsys)

    assert status == 2
    assert one_line(err) == (
        f"healthfile run: error: {pyproject}: tool.healthfile.check[1].port: expected an "
        "integer from 1 to 65535, not 0"
    )


def test_a_pyproject_without_a_tool_healthfile_table_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], started_with: list[dict[str, Any]]
) -> None:
    """--config pyproject.toml with no [tool.healthfile] says so."""
    pyproject = write(tmp_path, '[project]\nname = "x"\n', "pyproject.toml")

    status, _, err = invoke(["run", "--config", str(pyproject)], capsys)

    assert (status, one_line(err)) == (
        2,
        f"healthfile run: error: {pyproject}: no [tool.healthfile] table",
    )


@pytest.mark.parametrize(
    ("how", "named"), [("option", "--database"), ("environment", "HEALTHFILE_DATABASE")]
)
def test_a_database_check_and_a_database_from_outside_are_refused(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    started_with: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    how: str,
    named: str,
) -> None:
    """A config's check named database and --database (or its variable): ambiguous, refused."""
    config = write(tmp_path, DATABASE)
    argv = ["run", "--config", str(config)]
    if how == "option":
        argv += ["--database", "other.db"]
    else:
        monkeypatch.setenv("HEALTHFILE_DATABASE", "other.db")

    status, _, err = invoke(argv, capsys)

    assert (status, one_line(err)) == (
        2,
        f'healthfile run: error: {config}: check[1] is the check named "database", and '
        f"{named} gives another database: give it once",
    )


def test_a_missing_config_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], started_with: list[dict[str, Any]]
) -> None:
    """A config that does not exist exits 2 naming it."""
    missing = tmp_path / "nowhere.toml"

    status, _, err = invoke(["run", "--config", str(missing)], capsys)

    assert (status, one_line(err)) == (
        2,
        f"healthfile run: error: cannot read {missing}: No such file or directory",
    )


def test_an_oversized_config_is_refused_unread(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], started_with: list[dict[str, Any]]
) -> None:
    """A config over 1 MiB is refused before it is parsed."""
    config = write(tmp_path, "# " + "x" * (1 << 20) + "\n")

    status, _, err = invoke(["run", "--config", str(config)], capsys)

    assert (status, one_line(err)) == (
        2,
        f"healthfile run: error: {config} is larger than 1048576 bytes",
    )


@needs_nonblocking_fifos
def test_a_fifo_as_config_is_refused_without_blocking(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], started_with: list[dict[str, Any]]
) -> None:
    """A FIFO named as the config is refused at once: it is not a regular file."""
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)

    status, _, err = invoke(["run", "--config", str(fifo)], capsys)

    assert (status, one_line(err)) == (2, f"healthfile run: error: {fifo} is not a regular file")


def test_an_http_check_without_aiohttp_is_a_config_error(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    started_with: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without aiohttp an http check is refused in one line naming the extra."""
    monkeypatch.setitem(sys.modules, "aiohttp", None)
    config = write(tmp_path, f'{DATABASE}[[check]]\ntype = "http"\nurl = "http://a/"\n')

    status, _, err = invoke(["run", "--config", str(config)], capsys)

    assert (status, one_line(err)) == (
        2,
        f"healthfile run: error: {config}: check[2]: the http check needs aiohttp "
        "(the extra healthfile[http-check]): pip install aiohttp",
    )


def test_a_bad_config_in_a_real_process_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    """The installed command, given a bad config, exits 2 with one line and no traceback."""
    config = write(tmp_path, f"{DATABASE}{TCP}port = 99999\n")
    script = Path(sys.executable).with_name("healthfile")

    done = subprocess.run(
        [str(script), "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_environment(),
        check=False,
    )

    assert (done.returncode, done.stdout) == (2, "")
    assert one_line(done.stderr) == (
        f"healthfile run: error: {config}: check[2].port: expected an integer from 1 to 65535, "
        "not 99999"
    )


def test_an_http_check_without_aiohttp_in_a_real_process(tmp_path: Path) -> None:
    """A Python without aiohttp refuses an http check in one line, exit 2."""
    config = write(tmp_path, f'{DATABASE}[[check]]\ntype = "http"\nurl = "http://a/"\n')
    code = (
        "import sys; sys.modules['aiohttp'] = None\n"
        "from healthfile._cli import main\n"
        f"sys.exit(main(['run', '--config', {str(config)!r}]))\n"
    )

    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_environment(),
        check=False,
    )

    assert done.returncode == 2
    assert one_line(done.stderr).endswith("(the extra healthfile[http-check]): pip install aiohttp")


# --- the JSON Schema for editors ------------------------------------------------------------------


def test_the_shipped_json_schema_is_the_one_the_declarations_make() -> None:
    """config.schema.json is generated from the same declarations the validator walks."""
    generated = json_schema(_run_option_parsers())

    assert json.loads(SCHEMA_FILE.read_text(encoding="utf-8")) == generated, (
        "regenerate it: python -c 'from healthfile._config import write_schema; write_schema()'"
    )


def test_the_json_schema_accepts_a_good_config_and_refuses_bad_ones(tmp_path: Path) -> None:
    """The schema accepts what the validator accepts, and refuses bad keys and values too."""
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)

    assert list(validator.iter_errors(read_toml(write(tmp_path, EVERY_TYPE)))) == []
    for name, text, _ in BAD_CONFIGS:
        if name in SCHEMA_REFUSES:
            document = read_toml(write(tmp_path, text + "\n", f"{name}.toml"))
            assert list(validator.iter_errors(document)), name


# What a schema can tell (types, keys, bounds); the rest (names, the database) is the
# validator's alone.
SCHEMA_REFUSES = {
    "port-string",
    "port-zero",
    "port-missing",
    "unknown-top-key",
    "dashed-key",
    "unknown-check-key",
    "unknown-type",
    "type-missing",
    "interval-zero",
    "critical-string",
    "groups-string",
    "group-with-comma",
    "argv-string",
    "argv-empty",
    "method-post",
    "status-high",
    "headers-not-strings",
    "max-age-missing",
    "one-bracket",
}
