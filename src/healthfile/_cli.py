"""The ``healthfile`` command: ``run`` keeps the health file in the foreground.

Kept light: the service (and asyncio) is imported only by the ``run`` command, so that a
probe command never pays for it.
"""

from __future__ import annotations

import argparse
import math
import os
import stat
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

__all__ = ["main"]

ENV_PREFIX = "HEALTHFILE_"


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class _OptionError(Exception):
    """A value (from the command line or the environment) that cannot be used."""


def _seconds(*, allow_zero: bool) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a number of seconds, not {text!r}"
            ) from None
        limit = 366 * 24 * 3600
        if (
            not math.isfinite(value)
            or value < 0
            or (value == 0 and not allow_zero)
            or value > limit
        ):
            lower = ">= 0" if allow_zero else "> 0"
            raise argparse.ArgumentTypeError(
                f"expected seconds {lower} and <= {limit}, not {text!r}"
            )
        return value

    parse.__name__ = "seconds"
    return parse


def _text(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a non-empty value")
    return text


def _output_path(text: str) -> str:
    """A path the service may replace: not a directory, device, socket or pipe."""
    _text(text)
    try:
        mode = os.lstat(text).st_mode
    except OSError:
        return text
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        raise argparse.ArgumentTypeError(f"{text!r} is {kind}")
    return text


# (option, parser of its value, help); each is also read from HEALTHFILE_<NAME>.
_RUN_OPTIONS: list[tuple[str, Callable[[str], Any], str]] = [
    ("--database", _text, "SQLite database to probe, read-only (default: data/app.db)"),
    ("--health-file", _output_path, "health file to keep (default: data/health.json)"),
    ("--interval", _seconds(allow_zero=False), "seconds between cycles (default: 30)"),
    ("--check-timeout", _seconds(allow_zero=False), "seconds a check may take (default: 3)"),
    ("--pyproject", _text, "pyproject.toml to read app_version from (default: pyproject.toml)"),
    ("--app-version", _text, "app_version to report; wins over --pyproject"),
    (
        "--start-period",
        _seconds(allow_zero=True),
        "seconds in which failing checks read starting (default: 0)",
    ),
]

_RUN_DEFAULTS: dict[str, Any] = {
    "database": "data/app.db",
    "health_file": "data/health.json",
    "interval": 30.0,
    "check_timeout": 3.0,
    "pyproject": "pyproject.toml",
    "app_version": None,
    "start_period": 0.0,
}


def _env_name(option: str) -> str:
    return ENV_PREFIX + option.lstrip("-").replace("-", "_").upper()


def _build_parser() -> _Parser:
    parser = _Parser(
        prog="healthfile",
        description="Keep a JSON health file for monitors, or judge one.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    run = commands.add_parser(
        "run",
        help="run the health service in the foreground until SIGINT or SIGTERM",
        description=(
            "Run the health service in the foreground until SIGINT or SIGTERM, then write "
            "the final 'stopped' report and exit 0. Every option can also be given as an "
            "environment variable HEALTHFILE_<NAME> (e.g. HEALTHFILE_INTERVAL=5); the "
            "command line wins."
        ),
    )
    for option, parse, text in _RUN_OPTIONS:
        run.add_argument(
            option, type=parse, default=None, help=f"{text} [env: {_env_name(option)}]"
        )
    run.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=None,
        help="log every cycle, not only status changes [env: HEALTHFILE_VERBOSE=1]",
    )
    return parser


def _resolve_run_options(args: argparse.Namespace, environ: dict[str, str]) -> dict[str, Any]:
    """Fill options not given on the command line from HEALTHFILE_* variables, then defaults."""
    values: dict[str, Any] = {}
    for option, parse, _ in _RUN_OPTIONS:
        key = option.lstrip("-").replace("-", "_")
        value = getattr(args, key)
        env = _env_name(option)
        if value is None and env in environ:
            try:
                value = parse(environ[env])
            except argparse.ArgumentTypeError as exc:
                raise _OptionError(f"{env}: {exc}") from None
        values[key] = _RUN_DEFAULTS[key] if value is None else value
    verbose = args.verbose
    if verbose is None:
        raw = environ.get("HEALTHFILE_VERBOSE", "0")
        if not raw.isdigit():
            raise _OptionError(f"HEALTHFILE_VERBOSE: expected 0, 1 or 2, not {raw!r}")
        verbose = int(raw)
    values["verbose"] = verbose
    return values


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``healthfile`` command line; return the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command == "run":
        try:
            options = _resolve_run_options(args, dict(os.environ))
        except _OptionError as exc:
            parser.exit(2, f"healthfile run: error: {exc}\n")
        from ._run import run_service

        return run_service(options)
    raise AssertionError(f"unknown command {args.command!r}")  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
