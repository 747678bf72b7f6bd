"""A hostile user's attacks on healthfile's promises (issue 11): each must fail safe."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from healthfile._redact import MAX_REDACT_CHARS, clean_output, redact

pytestmark = pytest.mark.reliability


def _hostile(size: int) -> str:
    """Text of about ``size`` characters made to make a backtracking redaction pattern crawl."""
    parts = [
        "a" * (size // 6),  # one long word run
        " ",
        "password=" * (size // 60),
        " ",
        "x://" * (size // 40),
        " ",
        '"' * (size // 60),
        " ",
        "ab://u:" + "p" * (size // 12),  # a URL whose password never meets an @
        " ",
        "token='" + "q" * (size // 12),  # a quote never closed
        " ",
        "Bb1" * (size // 30),
    ]
    return "".join(parts)


def _best_time(call: Callable[[], object], repeat: int = 3) -> float:
    """The shortest of ``repeat`` timings of ``call`` (the least disturbed by a busy machine)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best


def test_redaction_of_1_mb_of_hostile_text_is_linear() -> None:
    """Redacting 1 MB of hostile text costs about ten times 100 kB of it, not a hundred times."""
    large, small = _hostile(1_000_000), _hostile(100_000)

    ratio = _best_time(lambda: redact(large, limit=len(large))) / (
        10 * _best_time(lambda: redact(small, limit=len(small)))
    )

    assert ratio < 4, f"1 MB took {ratio:.1f} times ten 100 kB runs: not linear"


def test_redaction_of_any_text_is_bounded() -> None:
    """1 MB of hostile text is cut before it is redacted: it costs what the bound costs."""
    huge, bound = _hostile(1_000_000), _hostile(MAX_REDACT_CHARS)

    ratio = _best_time(lambda: redact(huge)) / _best_time(lambda: redact(bound))

    assert ratio < 5
    assert len(redact(huge)) <= MAX_REDACT_CHARS + 1


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("connect postgresql://alice:hunter2hunter2@db/app", "hunter2"),
        ("connect postgresql://alice:hunter2@hunter2@db/app", "hunter2"),
        ("retry with password=hunter2hunter2hunter2", "hunter2"),
        ('config {"password": "hunter2 hunter2 hunter2"}', "hunter2"),
        ("token='hunter2 and more hunter2'", "hunter2"),
    ],
)
def test_a_secret_cut_in_half_by_the_bound_never_shows(text: str, secret: str) -> None:
    """Wherever the bound cuts a secret, no part of it (its first 3 characters) shows."""
    for limit in range(len(text) - 20, len(text) + 1):
        redacted = redact(text, limit=limit)
        assert secret[:3] not in redacted, (limit, redacted)


def test_an_output_cut_mid_secret_shows_no_part_of_it() -> None:
    """A check output whose secret straddles the redaction bound shows none of it."""
    text = "x " * 500 + "postgresql://u:" + "hunter2" * 100 + "@db"

    cleaned = clean_output(text)

    assert cleaned is not None
    assert "hunt" not in cleaned
