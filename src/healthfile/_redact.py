"""Redaction of secrets in check outputs and log lines (imports nothing but ``re``)."""

from __future__ import annotations

import re

__all__ = ["MAX_OUTPUT_CHARS", "clean_output", "redact"]

MAX_OUTPUT_CHARS = 256

# `scheme://user:secret@host`: keep the scheme and user, hide everything up to the last `@`
# of the authority (a password may hold an unencoded `@`).
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*:)[^\s/]+(?=@)")
# `password=...`, `DB_PASSWORD: ...`, `"api_key": "..."`, `access_token=...`: hide the value,
# a quoted one up to its closing quote.
_KEY_VALUE = re.compile(
    r"""(?P<head>\b\w*?(?:password|passwd|secret|token|api_key)["']?\s*[=:]\s*)"""
    r"""(?P<value>"[^"]*"|'[^']*'|["']?[^\s&;,"']+)""",
    re.IGNORECASE,
)


def _hide_value(match: re.Match[str]) -> str:
    value = match["value"]
    opening = value[0] if value[0] in "\"'" else ""
    closing = opening if len(value) > 1 and value[-1] == opening else ""
    return f"{match['head']}{opening}***{closing}"


def redact(text: str) -> str:
    """Replace passwords in URLs and secret-looking ``key=value`` pairs with ``***``."""
    text = _URL_PASSWORD.sub(r"\g<head>***", text)
    return _KEY_VALUE.sub(_hide_value, text)


def clean_output(text: str | None) -> str | None:
    """Redact secrets, then cut to at most 256 characters (the contract's bound)."""
    if text is None:
        return None
    text = redact(text)
    if len(text) > MAX_OUTPUT_CHARS:
        text = text[: MAX_OUTPUT_CHARS - 1] + "…"
    return text
