"""The ``healthfile`` console script: a fast path for the probe, argparse for the rest.

Monitors run ``healthfile check`` every few seconds on every pod, so a well-formed
``check`` command line is parsed here without importing argparse (about 5 ms of a ~45 ms
start). Anything else — ``run``, ``--help``, an abbreviation, a bad value — goes to the
full parser in ``_cli``, which also words every error.
"""

from __future__ import annotations

import os
import sys

from ._limits import MAX_SECONDS, MIN_SECONDS

# Only mypy needs typing here (annotations are strings): this module adds no typing import.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

__all__ = ["main"]

_FLAGS = {"--allow-degraded": "allow_degraded", "--nagios": "nagios", "--json": "as_json"}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``healthfile`` command line; return the exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["check"]:
        parsed = _parse_check(arguments[1:], os.environ)
        if parsed is not None:
            from ._judge import run_check

            health_file, max_age, flags = parsed
            return run_check(health_file, max_age=max_age, **flags)
    from ._cli import main as parse_fully

    return parse_fully(arguments)


def _parse_check(
    arguments: list[str], environ: Mapping[str, str]
) -> tuple[str, float | None, dict[str, Any]] | None:
    """Parse a well-formed ``check`` command line; None for anything the full parser should see.

    Returns the health file, ``--max-age`` and the flags (with ``only``/``ignore``/``groups``
    when given) as ``run_check`` keywords.
    """
    health_file = environ.get("HEALTHFILE_HEALTH_FILE", "data/health.json")
    max_age: float | None = None
    flags: dict[str, Any] = dict.fromkeys(_FLAGS.values(), False)
    rest = iter(arguments)
    for argument in rest:
        name, equals, value = argument.partition("=")
        if name in _FLAGS and not equals:
            flags[_FLAGS[name]] = True
            continue
        if name not in ("--health-file", "--max-age", "--only", "--ignore", "--group"):
            return None
        if not equals:
            value = next(rest, "")
        if not value.strip() or value.startswith("-"):
            return None
        if name == "--health-file":
            health_file = value
            continue
        if name in ("--only", "--ignore", "--group"):
            from ._judge import split_check_names

            names = split_check_names(value)
            if not names:
                return None
            key = "groups" if name == "--group" else name[2:]
            flags[key] = tuple(dict.fromkeys((*flags.get(key, ()), *names)))
            continue
        try:
            max_age = float(value)
        except ValueError:
            return None
        if not MIN_SECONDS <= max_age <= MAX_SECONDS:  # also refuses nan
            return None
    if not health_file.strip() or ("only" in flags and ("ignore" in flags or "groups" in flags)):
        return None  # the full parser words the error
    return health_file, max_age, flags
