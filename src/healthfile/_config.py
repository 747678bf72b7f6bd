"""The sidecar's config: a TOML file, or ``[tool.healthfile]`` of a pyproject.toml.

It holds ``healthfile run``'s options and ``[[check]]`` tables. Every key is declared once
below, with its kind; a check type is one small declaration of its own keys and the class
that builds it. Validation walks the file against these declarations, so that every error
names its key's path (``check[2].port``, counting the ``[[check]]`` tables from 1), an
unknown key is refused with the nearest known one, and the JSON Schema shipped for editors
(``config.schema.json``) is generated from the very same declarations.
"""

from __future__ import annotations

import argparse
import difflib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._checks import Check, DiskSpaceCheck, LoopLagCheck, SQLiteCheck
from ._command import CommandCheck
from ._file_age import FileAgeCheck
from ._limits import MAX_NAME_CHARS, MAX_SECONDS, MIN_SECONDS
from ._network import HTTPCheck, TCPCheck
from ._options import validate_name
from ._redact import redact
from ._toml import TOMLFileError, read_toml

__all__ = [
    "CHECK_TYPES",
    "SCHEMA_FILE",
    "Config",
    "ConfigError",
    "json_schema",
    "load_config",
    "with_config_checks",
    "write_schema",
]

SCHEMA_FILE = Path(__file__).with_name("config.schema.json")
# The longest value quoted back in an error message.
_SHOWN_CHARS = 60


class ConfigError(ValueError):
    """A config that cannot be used; the message is one line naming the file and the key."""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_name(value: object) -> bool:
    try:
        validate_name(value)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Kind:
    """What a key takes: a test of the TOML value, what it becomes, and its JSON Schema.

    A ``secret`` kind's values are never quoted back in a message (header values).
    """

    expected: str
    accepts: Callable[[Any], bool]
    schema: Mapping[str, Any]
    convert: Callable[[Any], Any] = field(default=lambda value: value)
    secret: bool = False


def _integer(low: int, high: int | None) -> Kind:
    expected = f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}"
    schema: dict[str, Any] = {"type": "integer", "minimum": low}
    if high is not None:
        schema["maximum"] = high
    return Kind(
        expected,
        lambda value: _is_int(value) and value >= low and (high is None or value <= high),
        schema,
    )


def _seconds(*, allow_zero: bool) -> Kind:
    low = "0 or" if allow_zero else "from"
    return Kind(
        f"a number of seconds {low} {MIN_SECONDS:g} to {MAX_SECONDS}",
        lambda value: (
            _is_number(value)
            and (MIN_SECONDS <= value <= MAX_SECONDS or (allow_zero and value == 0))
        ),
        {"type": "number", "minimum": 0 if allow_zero else MIN_SECONDS, "maximum": MAX_SECONDS},
    )


_NAME_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_NAME_CHARS,
    "pattern": r"^[^,\s]([^,]*[^,\s])?$",
}
TEXT = Kind(
    "a non-empty string",
    lambda value: isinstance(value, str) and bool(value.strip()),
    {"type": "string", "minLength": 1},
)
NAME = Kind(
    f"a name: printable, at most {MAX_NAME_CHARS} characters, no comma, no blank at either end",
    _is_name,
    _NAME_SCHEMA,
)
BOOLEAN = Kind("true or false", lambda value: isinstance(value, bool), {"type": "boolean"})
SECONDS = _seconds(allow_zero=False)
SECONDS_OR_ZERO = _seconds(allow_zero=True)
THRESHOLD = _integer(1, None)
PORT = _integer(1, 65535)
BYTES = _integer(0, None)
RATIO = Kind(
    "a number from 0 to 1",
    lambda value: _is_number(value) and 0 <= value <= 1,
    {"type": "number", "minimum": 0, "maximum": 1},
)
GROUPS = Kind(
    "a list of group names",
    lambda value: isinstance(value, list) and all(_is_name(group) for group in value),
    {"type": "array", "items": _NAME_SCHEMA},
    tuple,
)
ARGV = Kind(
    "a non-empty list of strings: the program and its arguments (no shell)",
    lambda value: (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(arg, str) for arg in value)
        and bool(value[0])
    ),
    {"type": "array", "minItems": 1, "items": {"type": "string"}},
    tuple,
)
METHOD = Kind('"GET" or "HEAD"', lambda value: value in ("GET", "HEAD"), {"enum": ["GET", "HEAD"]})
_STATUS = _integer(100, 599)
STATUSES = Kind(
    "an HTTP status from 100 to 599, or a non-empty list of them",
    lambda value: (
        _STATUS.accepts(value)
        or (isinstance(value, list) and bool(value) and all(map(_STATUS.accepts, value)))
    ),
    {"oneOf": [_STATUS.schema, {"type": "array", "minItems": 1, "items": _STATUS.schema}]},
)
HEADERS = Kind(
    "a table of header names and string values",
    lambda value: isinstance(value, dict) and all(isinstance(v, str) for v in value.values()),
    {"type": "object", "additionalProperties": {"type": "string"}},
    dict,
    secret=True,
)
VERBOSITY = Kind(
    "0, 1 or 2 (or true or false)",
    lambda value: isinstance(value, bool) or (_is_int(value) and 0 <= value <= 2),
    {"oneOf": [{"type": "boolean"}, {"type": "integer", "minimum": 0, "maximum": 2}]},
    int,
)


@dataclass(frozen=True, slots=True)
class CheckType:
    """One ``type`` of ``[[check]]``: its own keys, those required, the class that builds it."""

    make: Callable[..., Check]
    keys: Mapping[str, Kind]
    required: tuple[str, ...] = ()


# Keys every check takes, whatever its type (the library's common keyword arguments).
COMMON_KEYS: Mapping[str, Kind] = {
    "name": NAME,
    "timeout": SECONDS,
    "critical": BOOLEAN,
    "groups": GROUPS,
    "failure_threshold": THRESHOLD,
    "success_threshold": THRESHOLD,
}
# No heartbeat: in a sidecar nothing would beat it (a file-age check on a file the app
# touches is the sidecar's heartbeat). loop-lag watches the sidecar's own loop.
CHECK_TYPES: Mapping[str, CheckType] = {
    "sqlite": CheckType(SQLiteCheck, {"path": TEXT}, ("path",)),
    "disk": CheckType(
        DiskSpaceCheck, {"path": TEXT, "min_free_bytes": BYTES, "min_free_ratio": RATIO}, ("path",)
    ),
    "tcp": CheckType(TCPCheck, {"host": TEXT, "port": PORT}, ("host", "port")),
    "http": CheckType(
        HTTPCheck,
        {
            "url": TEXT,
            "method": METHOD,
            "expect_status": STATUSES,
            "headers": HEADERS,
            "ca_file": TEXT,
        },
        ("url",),
    ),
    "command": CheckType(CommandCheck, {"argv": ARGV}, ("argv",)),
    "file-age": CheckType(FileAgeCheck, {"path": TEXT, "max_age": SECONDS}, ("path", "max_age")),
    "loop-lag": CheckType(LoopLagCheck, {"warn_after": SECONDS, "fail_after": SECONDS}),
}
# The run options that are not strings; every other option of `healthfile run` is one.
_RUN_KINDS: Mapping[str, Kind] = {
    "interval": SECONDS,
    "check_timeout": SECONDS,
    "start_period": SECONDS_OR_ZERO,
    "notify_systemd": BOOLEAN,
    "verbose": VERBOSITY,
}

OptionParsers = Mapping[str, Callable[[str], Any]]


def _run_kinds(parsers: OptionParsers) -> dict[str, Kind]:
    """The top-level keys: every option of ``healthfile run`` but ``--config`` itself."""
    keys = [key for key in parsers if key != "config"] + ["notify_systemd", "verbose"]
    return {key: _RUN_KINDS.get(key, TEXT) for key in keys}


@dataclass(frozen=True, slots=True)
class Config:
    """A config file, validated: the run options it gives, and its checks.

    ``options`` holds only the options the file gives (the command line and the
    environment win over them). ``database`` is the check named ``database``, if the file
    has one, and ``database_key`` the path of its table (``check[1]``).
    """

    path: str
    options: dict[str, Any]
    database: Check | None
    database_key: str | None
    checks: list[Check]


def _show(value: object) -> str:
    """A TOML value quoted back in a message: JSON, redacted, cut short."""
    text = json.dumps(value, default=str, ensure_ascii=False)
    if len(text) > _SHOWN_CHARS:
        text = text[: _SHOWN_CHARS - 1] + "…"
    return redact(text)


def _nearest(word: str, choices: list[str]) -> str:
    """`` (did you mean "x"?)`` for the nearest of ``choices``, or nothing."""
    near = difflib.get_close_matches(word.replace("-", "_"), choices, n=1, cutoff=0.6)
    near = near or difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f' (did you mean "{near[0]}"?)' if near else ""


class _Reader:
    """Walks one file's table against the declarations; every error names its key's path."""

    def __init__(self, path: str, prefix: str, parsers: OptionParsers) -> None:
        self.path = path
        self.prefix = prefix
        self.parsers = parsers

    def fail(self, key: str, message: str) -> ConfigError:
        """The error for ``key``: one line, the file and the key's whole path first."""
        return ConfigError(f"{self.path}: {self.prefix}{key}: {message}")

    def value(self, key: str, kind: Kind, value: object) -> Any:
        """Convert ``value`` of ``key`` by its kind, or refuse it saying what was expected."""
        if kind.accepts(value):
            return kind.convert(value)
        shown = "" if kind.secret else f", not {_show(value)}"
        raise self.fail(key, f"expected {kind.expected}{shown}")

    def unknown(self, where: str, key: str, known: list[str], what: str) -> ConfigError:
        """The error for a key no declaration has, with the nearest known one."""
        near = _nearest(key, known)
        return self.fail(f"{where}{key}", f"unknown key{near}; {what} takes {', '.join(known)}")

    def options(self, table: Mapping[str, Any]) -> dict[str, Any]:
        """Read the top-level keys: ``healthfile run``'s options."""
        kinds = _run_kinds(self.parsers)
        options = {}
        for key, value in table.items():
            if key == "check":
                continue
            if key not in kinds:
                raise self.unknown("", key, [*kinds, "check"], "the top level")
            options[key] = self.value(key, kinds[key], value)
            parse = self.parsers.get(key)
            if parse is not None and kinds[key] is TEXT:
                try:  # the command line's own test of the value (an output path's kind)
                    options[key] = parse(options[key])
                except (ValueError, argparse.ArgumentTypeError) as exc:
                    raise self.fail(key, str(exc)) from None
        return options

    def check(self, key: str, table: object) -> Check:
        """Build the check a ``[[check]]`` table declares."""
        if not isinstance(table, dict):
            raise self.fail(key, f"expected a [[check]] table, not {_show(table)}")
        type_name = table.get("type")
        if not isinstance(type_name, str) or type_name not in CHECK_TYPES:
            types = ", ".join(f'"{name}"' for name in CHECK_TYPES)
            if type_name is None:
                raise self.fail(f"{key}.type", f"missing; one of {types}")
            near = _nearest(type_name, list(CHECK_TYPES)) if isinstance(type_name, str) else ""
            raise self.fail(f"{key}.type", f"unknown type {_show(type_name)}{near}; one of {types}")
        declared = CHECK_TYPES[type_name]
        kinds = {**COMMON_KEYS, **declared.keys}
        arguments = {}
        for name, value in table.items():
            if name == "type":
                continue
            if name not in kinds:
                raise self.unknown(f"{key}.", name, ["type", *kinds], f"a {type_name} check")
            arguments[name] = self.value(f"{key}.{name}", kinds[name], value)
        missing = [name for name in declared.required if name not in table]
        if missing:
            needs = " and ".join(declared.required)
            raise self.fail(f"{key}.{missing[0]}", f"missing: a {type_name} check needs {needs}")
        try:
            return declared.make(**arguments)
        except (TypeError, ValueError, ImportError) as exc:
            raise self.fail(key, str(exc)) from None

    def checks(self, tables: object) -> list[tuple[str, Check]]:
        """Build every ``[[check]]``, in order, with its key's path; refuse a repeated name."""
        if tables is None:
            return []
        if not isinstance(tables, list):
            raise self.fail("check", "expected [[check]] tables (two brackets), not one [check]")
        made = []
        names: dict[str, str] = {}
        for index, table in enumerate(tables, start=1):
            key = f"check[{index}]"
            check = self.check(key, table)
            first = names.setdefault(check.name, key)
            if first != key:
                raise self.fail(
                    f"{key}.name",
                    f"{_show(check.name)} is the name of {self.prefix}{first} too; check "
                    "names are unique (a check's default name is its type's)",
                )
            made.append((key, check))
        return made


def load_config(path: str, parsers: OptionParsers) -> Config:
    """Read and validate the config at ``path``.

    A file named ``pyproject.toml``, or any file with a ``[tool.healthfile]`` table, is read
    from that table; it then also names itself as the ``pyproject`` that gives
    ``app_version``, unless it says otherwise. ``parsers`` are ``healthfile run``'s own
    tests of its string options, by key: the config accepts every one of them.

    :raises ConfigError: one line naming the file and the key.
    """
    try:
        document = read_toml(Path(path))
    except TOMLFileError as exc:
        raise ConfigError(str(exc)) from None
    tool = document.get("tool")
    nested = isinstance(tool, dict) and "healthfile" in tool
    if Path(path).name == "pyproject.toml" or nested:
        table = tool.get("healthfile") if isinstance(tool, dict) else None
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: no [tool.healthfile] table")
        reader = _Reader(path, "tool.healthfile.", parsers)
    else:
        table = document
        reader = _Reader(path, "", parsers)
    options = reader.options(table)
    checks = reader.checks(table.get("check"))
    if reader.prefix:
        options.setdefault("pyproject", path)
    named = [(key, check) for key, check in checks if check.name == "database"]
    database_key, database = named[0] if named else (None, None)
    if database is not None and "database" in options:
        raise reader.fail(
            "database",
            f"the database is given twice: by this key and by {reader.prefix}{database_key}, "
            'the check named "database"',
        )
    return Config(
        path=path,
        options=options,
        database=database,
        database_key=None if database_key is None else reader.prefix + database_key,
        checks=[check for _, check in checks if check is not database],
    )


def with_config_checks(
    config: Config, options: dict[str, Any], *, database_given_by: str | None
) -> dict[str, Any]:
    """``options`` resolved for ``healthfile run``, with the config's database and checks.

    ``database_given_by`` names where a database path came from when not from the config
    (``--database``, ``HEALTHFILE_DATABASE``): with a check named ``database`` in the
    config, the database would be given twice, and that is refused rather than guessed.

    :raises ConfigError: for a database given twice, or not at all.
    """
    options = dict(options)
    if config.database is not None:
        if database_given_by is not None:
            raise ConfigError(
                f'{config.path}: {config.database_key} is the check named "database", and '
                f"{database_given_by} gives another database: give it once"
            )
        options["database"] = config.database
    elif database_given_by is None and "database" not in config.options:
        raise ConfigError(
            f'{config.path}: no database: add a [[check]] named "database" (of any type), '
            'or database = "PATH" of an SQLite file'
        )
    options["checks"] = config.checks
    return options


def json_schema(parsers: OptionParsers) -> dict[str, Any]:
    """The JSON Schema of a config file (editors complete and check TOML with it)."""
    variants = []
    for name, declared in CHECK_TYPES.items():
        kinds = {**COMMON_KEYS, **declared.keys}
        variants.append(
            {
                "type": "object",
                "properties": {
                    "type": {"const": name},
                    **{key: dict(kind.schema) for key, kind in kinds.items()},
                },
                "required": ["type", *declared.required],
                "additionalProperties": False,
            }
        )
    properties: dict[str, Any] = {
        key: dict(kind.schema) for key, kind in _run_kinds(parsers).items()
    }
    properties["check"] = {"type": "array", "items": {"oneOf": variants}}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "healthfile run --config",
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }


def write_schema() -> None:
    """Write ``config.schema.json`` next to this module (after a change of the declarations)."""
    from ._cli import _run_option_parsers

    text = json.dumps(json_schema(_run_option_parsers()), indent=2) + "\n"
    SCHEMA_FILE.write_text(text, encoding="utf-8")
