"""The ``healthfile`` command: ``run`` keeps the health file, ``check`` judges it.

Kept light: the service (and asyncio) is imported only by the ``run`` command, so that the
``check`` probe, which monitors run every few seconds, never pays for it.
"""

from __future__ import annotations

import argparse
import math
import os
import stat
import sys
from collections.abc import Callable, Sequence

from ._limits import MAX_SECONDS, MIN_SECONDS

# Only mypy needs typing here (annotations are strings): this module adds no typing import.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

__all__ = ["main"]

ENV_PREFIX = "HEALTHFILE_"


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit status 2.

    With ``nagios_usage`` (``healthfile check --nagios``) a usage error is a plugin's
    UNKNOWN instead: one line on stdout, exit status 3.
    """

    def __init__(self, *args: Any, nagios_usage: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.nagios_usage = nagios_usage

    def error(self, message: str) -> NoReturn:
        if self.nagios_usage:
            from ._judge import emit

            emit(f"HEALTHFILE UNKNOWN - {self.prog}: error: {message}")
            self.exit(3)
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
        if not (
            math.isfinite(value)
            and (value >= MIN_SECONDS or (allow_zero and value == 0))
            and value <= MAX_SECONDS
        ):
            lower = f"0 or >= {MIN_SECONDS:g}" if allow_zero else f">= {MIN_SECONDS:g}"
            raise argparse.ArgumentTypeError(
                f"expected seconds {lower} and <= {MAX_SECONDS}, not {text!r}"
            )
        return value

    parse.__name__ = "seconds"
    return parse


def _text(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a non-empty value")
    return text


def _check_names(text: str) -> tuple[str, ...]:
    """The names of an --only/--ignore/--group value (the judge's own splitting)."""
    from ._judge import split_check_names

    names = split_check_names(text)
    if not names:
        raise argparse.ArgumentTypeError(f"expected check names NAME[,NAME...], not {text!r}")
    return names


def _merged(values: list[tuple[str, ...]] | None) -> tuple[str, ...] | None:
    """The names of a repeated --only/--ignore/--group, in order, each once; None if not given."""
    if values is None:
        return None
    return tuple(dict.fromkeys(name for names in values for name in names))


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


def _http_address(text: str) -> str:
    """``HOST:PORT`` for the built-in HTTP server (checked by the server's own parser)."""
    from ._server import parse_address

    try:
        parse_address(text, "--http")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("--http must be ", "expected ")) from None
    return text


# (option, parser of its value, help); each is also read from HEALTHFILE_<NAME>, and every
# one but --config from the config file.
_RUN_OPTIONS: list[tuple[str, Callable[[str], Any], str]] = [
    (
        "--config",
        _text,
        "TOML file of these options and [[check]] tables, or a pyproject.toml with "
        "[tool.healthfile] (the command line and the environment win over it)",
    ),
    ("--database", _text, "SQLite database to probe, read-only (default: data/app.db)"),
    ("--health-file", _output_path, "health file to keep (default: data/health.json)"),
    ("--interval", _seconds(allow_zero=False), "seconds between cycles (default: 30)"),
    ("--check-timeout", _seconds(allow_zero=False), "seconds a check may take (default: 3)"),
    (
        "--pyproject",
        _text,
        "pyproject.toml to read app_name and app_version from (default: none is read)",
    ),
    ("--app-version", _text, "app_version to report (default: from --pyproject, else unknown)"),
    (
        "--app-name",
        _text,
        "app_name to report and the Prometheus label app (default: [project].name of "
        "--pyproject, else the name of --prometheus-file without its suffix, else that of "
        "--database)",
    ),
    (
        "--start-period",
        _seconds(allow_zero=True),
        "seconds in which failing checks read starting (default: 0)",
    ),
    (
        "--prometheus-file",
        _output_path,
        "also write every report there in the Prometheus text format, for node_exporter's "
        "textfile collector (needs healthfile[prometheus])",
    ),
    (
        "--http",
        _http_address,
        "serve /livez, /readyz, /healthz and a status page on HOST:PORT, e.g. 127.0.0.1:8081 "
        "or [::1]:8081 (needs healthfile[http])",
    ),
]

_RUN_DEFAULTS: dict[str, Any] = {
    "config": None,
    "database": "data/app.db",
    "health_file": "data/health.json",
    "interval": 30.0,
    "check_timeout": 3.0,
    "pyproject": None,
    "app_version": None,
    "app_name": None,
    "start_period": 0.0,
    "prometheus_file": None,
    "http": None,
}

_TRUE = ("true", "yes", "on")
_FALSE = ("false", "no", "off", "")

_RUN_DESCRIPTION = """\
Run the health service in the foreground until SIGINT or SIGTERM, then write the final
'stopped' report. Every option can also be given as an environment variable
HEALTHFILE_<NAME> (e.g. HEALTHFILE_INTERVAL=5); the command line wins.

It logs one line per change of status. -v logs every cycle too, -vv also the database
driver's (aiosqlite's) debug lines; HEALTHFILE_VERBOSE=1 or 2 does the same. Switches in
the environment take 1/0, true/false, yes/no or on/off.

exit status
0    stopped by a signal, and the health file says stopped (or another process keeps it)
1    the final 'stopped' report could not be written (the log says why)
2    a bad option or environment variable (one line on stderr)
130  a stop signal again, a second or more after the first: the stop was not waited for
"""

_CHECK_DESCRIPTION = """\
Judge a health file and exit with the verdict, for Docker HEALTHCHECK, Kubernetes exec probes
and Nagios/Icinga. The file is stale once the current time is past its expires_at (or, with
--max-age, once its timestamp is older than that). Prints one line (under 4 KiB).

exit status    default (Docker, Kubernetes)         --nagios
online         0 (warnings included)                0 OK; 1 WARNING with a warning or a
                                                    non-critical failure
starting       0                                    1 WARNING
degraded       1 (0 with --allow-degraded)          2 CRITICAL
stopped        1                                    2 CRITICAL
stale          1                                    2 CRITICAL
unknown_check, 1                                    3 UNKNOWN
unknown_group
clock          1                                    3 UNKNOWN
(timestamp more than 60 s, or --max-age, in the future)
missing,       1                                    3 UNKNOWN
unreadable,
not a health file

The file's status is degraded only when a critical check fails: a warning (a damped
failure, a loop lag past its warn bound) or a non-critical failure leaves it online.

--group NAME[,NAME...] judges the checks of those groups, --only NAME[,NAME...] those checks,
--ignore NAME[,NAME...] all checks but those: every selected check counts, critical or not
(online when none fails, starting while the file says starting, else degraded). Liveness
probes run --group live: where no check is in the group live, it judges the writer alone
(fresh, not stopped). Staleness, stopped and the contract still count; a check or group
(other than live) the file does not hold is unknown_check / unknown_group. --only cannot be
used with --ignore or --group.
"""


def _env_name(option: str) -> str:
    return ENV_PREFIX + option.lstrip("-").replace("-", "_").upper()


def _env_count(name: str, environ: dict[str, str], *, count: bool = False) -> int:
    """A switch (or, with ``count``, a count) from the environment: 1/0, true/false,
    yes/no, on/off (a count also 2, 3, ...); true is 1."""
    raw = environ.get(name, "0").strip().lower()
    if raw.isdigit() and (count or int(raw) <= 1):
        return int(raw)
    if raw in _TRUE + _FALSE:
        return int(raw in _TRUE)
    numbers = "0, 1, 2" if count else "1, 0"
    raise _OptionError(f"{name}: expected {numbers}, true, false, yes, no, on or off, not {raw!r}")


def _metavar(option: str, parse: Callable[[str], Any]) -> str:
    """What an option's value is, in help and usage: SECONDS, PATH or TEXT (as `check` says)."""
    if getattr(parse, "__name__", "") == "seconds":
        return "SECONDS"
    if option.endswith("-file") or option in ("--database", "--pyproject", "--config"):
        return "PATH"
    if option == "--http":
        return "HOST:PORT"
    return "TEXT"


class _Version(argparse.Action):
    """``--version``: read the installed version only when asked (the probe never pays)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print healthfile's version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        from importlib.metadata import version

        sys.stdout.write(f"healthfile {version('healthfile')}\n")  # as argparse's own: stdout
        parser.exit(0)


def _build_parser(*, nagios_usage: bool = False) -> _Parser:
    parser = _Parser(
        nagios_usage=nagios_usage,
        prog="healthfile",
        description="Keep a JSON health file for monitors, or judge one.",
    )
    parser.add_argument("--version", action=_Version)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    run = commands.add_parser(
        "run",
        help="run the health service in the foreground until SIGINT or SIGTERM",
        description=_RUN_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for option, parse, text in _RUN_OPTIONS:
        run.add_argument(
            option,
            type=parse,
            default=None,
            metavar=_metavar(option, parse),
            help=f"{text} [env: {_env_name(option)}]",
        )
    run.add_argument(
        "--notify-systemd",
        action="store_true",
        default=None,
        help=(
            "send READY=1, WATCHDOG=1 and STOPPING=1 to NOTIFY_SOCKET (systemd Type=notify, "
            "WatchdogSec=) [env: HEALTHFILE_NOTIFY_SYSTEMD=1]"
        ),
    )
    run.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=None,
        help="log every cycle, not only status changes; -vv also aiosqlite's debug lines "
        "[env: HEALTHFILE_VERBOSE=1 or 2]",
    )
    check = commands.add_parser(
        "check",
        help="judge a health file; exit 0 when healthy (a probe for Docker, Kubernetes, Nagios)",
        description=_CHECK_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        nagios_usage=nagios_usage,
    )
    check.add_argument(
        "--health-file",
        type=_text,
        default=None,
        metavar="PATH",
        help="health file to judge (default: data/health.json) [env: HEALTHFILE_HEALTH_FILE]",
    )
    check.add_argument(
        "--max-age",
        type=_seconds(allow_zero=False),
        default=None,
        metavar="SECONDS",
        help="also stale when the report's timestamp is older than this",
    )
    check.add_argument(
        "--allow-degraded",
        action="store_true",
        help="exit 0 for degraded too (default convention only)",
    )
    check.add_argument(
        "--only",
        type=_check_names,
        action="append",
        metavar="NAME[,NAME...]",
        help="judge the status from these checks alone",
    )
    check.add_argument(
        "--ignore",
        type=_check_names,
        action="append",
        metavar="NAME[,NAME...]",
        help="judge the status from all checks but these",
    )
    check.add_argument(
        "--group",
        type=_check_names,
        action="append",
        dest="groups",
        metavar="NAME[,NAME...]",
        help="judge the status from the checks of these groups (e.g. live for liveness)",
    )
    check.add_argument(
        "--nagios",
        action="store_true",
        help="Nagios plugin output and exit codes: HEALTHFILE OK|WARNING|CRITICAL|UNKNOWN",
    )
    check.add_argument(
        "--json",
        action="store_true",
        dest="as_json",
        help="print the verdict as one JSON object (verdict, status, exit_code, age_seconds, "
        "reason, health_file)",
    )
    return parser


def _resolve_run_options(
    args: argparse.Namespace, environ: dict[str, str], config: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Fill options not given on the command line from HEALTHFILE_* variables, then from the
    ``config`` file's options, then defaults."""
    config = config or {}
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
        if value is None:
            value = config.get(key)
        values[key] = _RUN_DEFAULTS[key] if value is None else value
    verbose = args.verbose
    if verbose is None and "HEALTHFILE_VERBOSE" in environ:
        verbose = _env_count("HEALTHFILE_VERBOSE", environ, count=True)
    values["verbose"] = config.get("verbose", 0) if verbose is None else verbose
    notify = args.notify_systemd
    if notify is None and "HEALTHFILE_NOTIFY_SYSTEMD" in environ:
        notify = _env_count("HEALTHFILE_NOTIFY_SYSTEMD", environ) > 0
    values["notify_systemd"] = config.get("notify_systemd", False) if notify is None else notify
    return values


def _run_option_parsers() -> dict[str, Callable[[str], Any]]:
    """Each ``run`` option's parser by its key (``health_file``): what a config may set."""
    return {option.lstrip("-").replace("-", "_"): parse for option, parse, _ in _RUN_OPTIONS}


def _with_config(
    args: argparse.Namespace, environ: dict[str, str], options: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The run options with those of the config file and its checks (``--config``), and how
    the config gave the options it gave (``health_file in sidecar.toml``)."""
    from ._config import load_config, with_config_checks

    path = options["config"]
    config = load_config(path, _run_option_parsers())
    options = _resolve_run_options(args, environ, config.options)
    given_by = "--database" if args.database is not None else None
    if given_by is None and "HEALTHFILE_DATABASE" in environ:
        given_by = "HEALTHFILE_DATABASE"
    given = {key: f"{key} = {value!r} in {path}" for key, value in config.options.items()}
    if config.database is not None:
        given["database"] = f"{config.database_key} in {path}"
    return with_config_checks(config, options, database_given_by=given_by), given


def _given_as(
    args: argparse.Namespace,
    environ: dict[str, str],
    key: str,
    value: object,
    config: dict[str, str] | None = None,
) -> str:
    """How the user gave a ``run`` option: ``--health-file PATH``, ``HEALTHFILE_…=PATH``, in
    the ``config`` file, or not."""
    flag = "--" + key.replace("_", "-")
    if getattr(args, key) is not None:
        return f"{flag} {value}"
    env = _env_name(flag)
    if env in environ:
        return f"{env}={value}"
    if config and key in config:
        return config[key]
    return f"{flag} {value} (the default)"


def _check_health_file(args: argparse.Namespace, environ: dict[str, str]) -> str:
    """The file to judge: --health-file, else HEALTHFILE_HEALTH_FILE, else data/health.json."""
    if args.health_file is not None:
        path: str = args.health_file
        return path
    raw = environ.get("HEALTHFILE_HEALTH_FILE")
    if raw is None:
        return "data/health.json"
    try:
        return _text(raw)
    except argparse.ArgumentTypeError as exc:
        raise _OptionError(f"HEALTHFILE_HEALTH_FILE: {exc}") from None


def _check_usage_error(message: str, *, nagios: bool) -> NoReturn:
    """Exit for a bad ``check`` option: 2 with one line on stderr, or Nagios' UNKNOWN (3)."""
    if nagios:
        from ._judge import emit

        emit(f"HEALTHFILE UNKNOWN - healthfile check: error: {message}")
        raise SystemExit(3)
    sys.stderr.write(f"healthfile check: error: {message}\n")
    raise SystemExit(2)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``healthfile`` command line; return the exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    nagios = arguments[:1] == ["check"] and "--nagios" in arguments
    parser = _build_parser(nagios_usage=nagios)
    args = parser.parse_args(arguments)
    if args.command == "check":
        try:
            health_file = _check_health_file(args, dict(os.environ))
        except _OptionError as exc:
            _check_usage_error(str(exc), nagios=args.nagios)
        only, ignore, groups = _merged(args.only), _merged(args.ignore), _merged(args.groups)
        if only is not None and ignore is not None:
            _check_usage_error("--only and --ignore cannot be used together", nagios=args.nagios)
        if only is not None and groups is not None:
            _check_usage_error("--only and --group cannot be used together", nagios=args.nagios)
        # Only the judge: no service, no asyncio (a probe runs every few seconds).
        from ._judge import run_check

        return run_check(
            health_file,
            max_age=args.max_age,
            allow_degraded=args.allow_degraded,
            nagios=args.nagios,
            as_json=args.as_json,
            only=only,
            ignore=ignore,
            groups=groups,
        )
    if args.command == "run":
        environ = dict(os.environ)
        config_given: dict[str, str] = {}
        try:
            options = _resolve_run_options(args, environ)
            if options["config"] is None:
                del options["config"]
            else:
                options, config_given = _with_config(args, environ, options)
        except (_OptionError, ValueError) as exc:  # ValueError: _config.ConfigError
            parser.exit(2, f"healthfile run: error: {exc}\n")
        if options["prometheus_file"] is not None:
            from ._prometheus import require_prometheus_client

            try:
                require_prometheus_client()
            except ImportError:
                parser.exit(
                    2,
                    "healthfile run: error: --prometheus-file needs prometheus_client (the "
                    "extra healthfile[prometheus]): pip install prometheus_client\n",
                )
        if options["http"] is not None:
            from ._server import require_h11

            try:
                require_h11()
            except ImportError as exc:
                parser.exit(2, f"healthfile run: error: --http: {exc}\n")
        from ._settings import refuse_shared_files

        try:
            refuse_shared_files(
                getattr(options["database"], "path", options["database"]),  # a config's check
                options["health_file"],
                options["prometheus_file"],
                labels={
                    key: _given_as(args, environ, key, options[key], config_given)
                    for key in ("database", "health_file", "prometheus_file")
                },
            )
        except ValueError as exc:
            parser.exit(2, f"healthfile run: error: {exc}\n")
        from ._run import run_service

        return run_service(options)
    raise AssertionError(f"unknown command {args.command!r}")  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
