"""Redaction of secrets in check outputs and log lines (imports nothing but ``re``).

Linear in its input and bounded: text longer than a bound is cut *before* it is redacted,
so a secret may be cut in half. A ``key=value`` secret cut in half is still redacted (the
pattern matches what is left of the value; a quoted one runs to the end of the text when
its closing quote is missing); a URL cut before the ``@`` that ends its password no longer
matches, so a cut text whose last token (URL passwords hold no whitespace) holds ``://``
loses that token. A closing bracket after an unquoted value stays when a bracket opened
before its key (within a fixed distance) and the value does not open one itself:
``(password=***)``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ._limits import MAX_OUTPUT_CHARS

__all__ = ["MAX_OUTPUT_CHARS", "MAX_REDACT_CHARS", "clean_output", "hide_values", "redact"]

# The most text one redaction looks at: a log line's traceback; more is cut first.
MAX_REDACT_CHARS = 16 * 1024
# What clean_output looks at: enough that cutting it never touches the 256 kept characters.
_OUTPUT_REDACT_CHARS = 4 * MAX_OUTPUT_CHARS

# The shortest secret value hidden by hide_values(): shorter ones would hide digits of times
# and statuses, and are no secret.
_MIN_HIDDEN_CHARS = 4

# `scheme://user:secret@host`: keep the scheme and user, hide everything up to the last `@`
# of the authority (a password may hold an unencoded `@`). The match starts at `://` (one
# scheme character before it), never at every letter of a long word: that kept it linear.
_URL_PASSWORD = re.compile(r"(?<=[A-Za-z0-9+.\-])(?P<head>://[^\s:/@]*:)[^\s/]+(?=@)")
# `password=...`, `DB_PASSWORD: ...`, `"api_key": "..."`, `access_token=...`: hide the value,
# a quoted one up to its closing quote, or to the end when the quote is never closed.
_KEY_VALUE = re.compile(
    r"""(?P<head>\b\w*?(?:password|passwd|secret|token|api_key)["']?\s*[=:]\s*)"""
    r"""(?P<value>"[^"]*(?:"|\Z)|'[^']*(?:'|\Z)|["']?[^\s&;,"']+)""",
    re.IGNORECASE,
)


# How far before a key an opening bracket is looked for (a constant, so redaction stays
# linear): `(password=hunter2)` keeps its `)`.
_BRACKET_LOOKBACK = 256
_BRACKETS = {")": "(", "]": "[", "}": "{", ">": "<"}


def _hide_value(match: re.Match[str]) -> str:
    value = match["value"]
    opening = value[0] if value[0] in "\"'" else ""
    if opening:
        closing = opening if len(value) > 1 and value[-1] == opening else ""
        return f"{match['head']}{opening}***{closing}"
    before = match.string[max(0, match.start() - _BRACKET_LOOKBACK) : match.start()]
    return f"{match['head']}***{_closing_brackets(before, value)}"


def _closing_brackets(before: str, value: str) -> str:
    """The closing brackets that end ``value`` but close a bracket opened ``before`` its key.

    ``(password=hunter2)`` keeps its ``)``: the value opens no bracket, the text before it
    did. A bracket the value opens itself (``pa(ss)``), or one nothing before it opened
    (``password=hunter2)``), stays part of the value and is hidden with it.
    """
    kept = ""
    while value and value[-1] in _BRACKETS:
        closer = value[-1]
        opener = _BRACKETS[closer]
        unmatched_before = before.count(opener) - before.count(closer) - kept.count(closer)
        unmatched_in_value = value.count(closer) - value.count(opener)
        if unmatched_before <= 0 or unmatched_in_value <= 0:
            break
        kept = closer + kept
        value = value[:-1]
    return kept


def redact(text: str, *, limit: int = MAX_REDACT_CHARS) -> str:
    """Replace passwords in URLs and secret-looking ``key=value`` pairs with ``***``.

    Text longer than ``limit`` characters is cut to it first and ends with ``…``; a last
    token holding ``://`` is dropped (a URL cut before its ``@`` would show its password).
    """
    cut = len(text) > limit
    if cut:
        text = text[:limit]
    text = _URL_PASSWORD.sub(r"\g<head>***", text)
    text = _KEY_VALUE.sub(_hide_value, text)
    if cut:
        # The token the cut ended (scanned by rsplit, in C: it may be the whole bound long).
        tail = "" if not text or text[-1].isspace() else text.rsplit(None, 1)[-1]
        if "://" in tail:
            text = text[: len(text) - len(tail)]
        text += "…"
    return text


def clean_output(text: str | None) -> str | None:
    """Redact secrets, then cut to at most 256 characters (the contract's bound)."""
    if text is None:
        return None
    text = redact(text, limit=_OUTPUT_REDACT_CHARS)
    if len(text) > MAX_OUTPUT_CHARS:
        text = text[: MAX_OUTPUT_CHARS - 1] + "…"
    return text


def hide_values(text: str, values: Iterable[str]) -> str:
    """Replace every occurrence of each of ``values`` (e.g. header values) with ``***``.

    A value is hidden whole, and so is each word of it (``Bearer abc`` hides ``abc`` alone
    too); words shorter than 4 characters are left, as they would hide digits of the text.
    """
    secrets = set()
    for value in values:
        secrets.add(value.strip())
        secrets.update(value.split())
    for secret in sorted(secrets, key=len, reverse=True):  # the whole value before its words
        if len(secret) >= _MIN_HIDDEN_CHARS:
            text = text.replace(secret, "***")
    return text
