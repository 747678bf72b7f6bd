"""HealthReport and CheckResult: the contract-v1 object, its JSON text, schema, and redaction."""

from __future__ import annotations

import dataclasses
import json
import re
import string
from datetime import datetime, timedelta, timezone
from importlib import resources
from typing import Any

import jsonschema
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from healthfile import CheckResult, HealthReport
from healthfile._limits import MAX_FILE_BYTES
from healthfile._redact import MAX_OUTPUT_CHARS
from healthfile._report import (
    ceil_to_second,
    clean_output,
    describe_exception,
    fit_report,
    format_timestamp,
)
from helpers import CONTRACT_KEYS

CHECK_KEYS = [
    "status",
    "output",
    "duration_ms",
    "consecutive_failures",
    "last_success",
    "critical",
    "groups",
]
TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")

MOMENT = datetime(2024, 5, 17, 12, 30, 45, tzinfo=timezone.utc)


def make_report(**changes: Any) -> HealthReport:
    """Build a realistic report with only the database check, with some fields replaced."""
    fields: dict[str, Any] = {
        "status": "online",
        "database": "connected",
        "timestamp": MOMENT,
        "app_version": "1.2.3",
        "app_name": "myapp",
        "interval_seconds": 30.0,
        "expires_at": MOMENT + timedelta(seconds=33),
        "sequence": 1,
        "started_at": MOMENT - timedelta(seconds=5),
        "pid": 4242,
        "checks": {
            "database": CheckResult(
                "pass", None, duration_ms=0.512, consecutive_failures=0, last_success=MOMENT
            )
        },
    }
    fields.update(changes)
    return HealthReport(**fields)


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    """The JSON Schema shipped inside the package."""
    text = (resources.files("healthfile") / "health.schema.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@pytest.fixture(scope="module")
def validator(schema: dict[str, Any]) -> Any:
    """A draft 2020-12 validator for the shipped schema."""
    return jsonschema.Draft202012Validator(schema)


# --- the object and its text --------------------------------------------------------------


def test_as_dict_has_exactly_the_contract_keys_in_order() -> None:
    """as_dict() returns every contract key and nothing else, in the contract's order."""
    assert list(make_report().as_dict()) == CONTRACT_KEYS


def test_check_as_dict_has_exactly_the_check_keys_in_order() -> None:
    """Each check in the report renders to exactly the contract's check keys, in order."""
    check = make_report().as_dict()["checks"]["database"]

    assert list(check) == CHECK_KEYS
    assert check == {
        "status": "pass",
        "output": None,
        "duration_ms": 0.512,
        "consecutive_failures": 0,
        "last_success": "2024-05-17T12:30:45Z",
        "critical": True,
        "groups": [],
    }


def test_as_dict_values_are_the_report_fields() -> None:
    """as_dict() renders the fields as the contract's JSON types, api_version always v1."""
    assert make_report().as_dict() == {
        "status": "online",
        "database": "connected",
        "timestamp": "2024-05-17T12:30:45Z",
        "app_version": "1.2.3",
        "app_name": "myapp",
        "api_version": "v1",
        "interval_seconds": 30.0,
        "expires_at": "2024-05-17T12:31:18Z",
        "sequence": 1,
        "started_at": "2024-05-17T12:30:40Z",
        "pid": 4242,
        "checks": {
            "database": {
                "status": "pass",
                "output": None,
                "duration_ms": 0.512,
                "consecutive_failures": 0,
                "last_success": "2024-05-17T12:30:45Z",
                "critical": True,
                "groups": [],
            }
        },
        "changes": [],
    }


def test_to_json_is_two_space_indented_with_trailing_newline() -> None:
    """to_json() is the as_dict() object, indented by 2 spaces, ending in one newline."""
    text = make_report().to_json()

    assert text.endswith("}\n")
    assert not text.endswith("\n\n")
    assert json.loads(text) == make_report().as_dict()
    lines = text.splitlines()
    assert lines[0] == "{"
    assert lines[1] == '  "status": "online",'
    assert '    "database": {' in lines
    assert '      "status": "pass",' in lines
    assert text == json.dumps(make_report().as_dict(), indent=2) + "\n"


def test_to_json_keeps_contract_key_order() -> None:
    """The keys appear in the file's text in the contract's order."""
    parsed = json.loads(make_report().to_json())

    assert list(parsed) == CONTRACT_KEYS


def test_to_json_with_database_check_alone_is_under_4_kib() -> None:
    """A report with only the database check stays under 4 KiB, even with the longest output."""
    failing = CheckResult(
        "fail",
        "é" * 1000,  # non-ASCII: the worst case for JSON escaping
        duration_ms=3000.0,
        consecutive_failures=123456789,
        last_success=MOMENT,
    )
    report = make_report(
        status="degraded",
        database="disconnected",
        sequence=2**53,
        checks={"database": failing},
    )

    assert len(report.to_json().encode("utf-8")) < 4096


def test_database_check_alone_with_a_full_history_of_changes_is_under_4_kib() -> None:
    """Ten changes with the longest non-ASCII whys still leave the file under 4 KiB: the
    whys are shortened to fit their budget, and the file says so with an ellipsis."""
    from healthfile._changes import MAX_CHANGES_BYTES, Change

    failing = CheckResult("fail", "é" * 1000, duration_ms=3000.0, last_success=MOMENT)
    report = make_report(
        status="degraded",
        database="disconnected",
        sequence=2**53,
        checks={"database": failing},
        changes=(Change(MOMENT, "degraded", "online", "é" * 200),) * 10,
    )

    written, data = fit_report(report, MAX_FILE_BYTES)

    assert len(data) < 4096
    changes = json.loads(data)["changes"]
    assert len(changes) == 10
    assert all(change["why"].endswith("…") for change in changes)
    rendered = json.dumps({"changes": changes}, indent=2).encode()
    assert len(rendered) - 4 <= MAX_CHANGES_BYTES
    assert written.changes[0].why == changes[0]["why"]


def test_report_is_frozen() -> None:
    """A HealthReport cannot be changed after it is made."""
    report = make_report()

    with pytest.raises(dataclasses.FrozenInstanceError):
        report.status = "degraded"  # type: ignore[misc]


# --- timestamps ---------------------------------------------------------------------------


def test_timestamps_are_utc_whole_seconds_with_z() -> None:
    """Every timestamp of the file is exactly YYYY-MM-DDTHH:MM:SSZ, even with microseconds."""
    moment = MOMENT.replace(microsecond=987654)
    data = make_report(timestamp=moment, expires_at=moment, started_at=moment).as_dict()

    for key in ("timestamp", "expires_at", "started_at"):
        assert TIMESTAMP.fullmatch(data[key]), data[key]
    assert data["timestamp"] == "2024-05-17T12:30:45Z"


def test_non_utc_aware_datetime_is_rendered_in_utc() -> None:
    """An aware datetime in another zone is converted to UTC before rendering."""
    plus_two = timezone(timedelta(hours=2))
    minus_five_thirty = timezone(-timedelta(hours=5, minutes=30))
    early = datetime(2024, 1, 1, 1, 30, 15, tzinfo=plus_two)
    late = datetime(2024, 12, 31, 20, 45, 0, tzinfo=minus_five_thirty)

    data = make_report(timestamp=early, expires_at=late, started_at=early).as_dict()

    assert data["timestamp"] == "2023-12-31T23:30:15Z"
    assert data["expires_at"] == "2025-01-01T02:15:00Z"
    assert format_timestamp(early) == "2023-12-31T23:30:15Z"


def test_check_last_success_is_rendered_in_utc() -> None:
    """A check's last_success is rendered in the same UTC format as the top-level timestamps."""
    plus_nine = timezone(timedelta(hours=9))
    result = CheckResult("pass", last_success=datetime(2024, 3, 1, 8, 0, 1, 500, tzinfo=plus_nine))

    assert result.as_dict()["last_success"] == "2024-02-29T23:00:01Z"


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2024, 5, 17, 12, 30, 45, tzinfo=timezone.utc), "2024-05-17T12:30:45Z"),
        (datetime(2024, 5, 17, 12, 30, 45, 1, tzinfo=timezone.utc), "2024-05-17T12:30:46Z"),
        (datetime(2024, 5, 17, 12, 30, 45, 999999, tzinfo=timezone.utc), "2024-05-17T12:30:46Z"),
        (datetime(2024, 12, 31, 23, 59, 59, 500000, tzinfo=timezone.utc), "2025-01-01T00:00:00Z"),
        (
            datetime(2024, 5, 17, 14, 30, 45, 250000, tzinfo=timezone(timedelta(hours=2))),
            "2024-05-17T12:30:46Z",
        ),
    ],
)
def test_ceil_to_second_rounds_up_to_a_whole_utc_second(moment: datetime, expected: str) -> None:
    """ceil_to_second() rounds a fractional second up, keeps a whole one, and returns UTC."""
    rounded = ceil_to_second(moment)

    assert rounded.tzinfo is not None
    assert rounded.utcoffset() == timedelta(0)
    assert rounded.microsecond == 0
    assert format_timestamp(rounded) == expected


@given(
    st.datetimes(
        min_value=datetime(1971, 1, 1),
        max_value=datetime(2200, 1, 1),
        timezones=st.just(timezone.utc),
    )
)
def test_ceil_to_second_is_the_smallest_whole_second_not_before(moment: datetime) -> None:
    """ceil_to_second() is never earlier than its input and less than a second after it."""
    rounded = ceil_to_second(moment)

    assert rounded.microsecond == 0
    assert moment <= rounded < moment + timedelta(seconds=1)


# --- the shipped schema -------------------------------------------------------------------


def test_shipped_schema_is_a_valid_draft_2020_12_schema(schema: dict[str, Any]) -> None:
    """The package's health.schema.json is itself a valid draft 2020-12 schema."""
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize(
    "report",
    [
        make_report(),
        make_report(status="starting", database="timeout"),
        make_report(
            status="degraded",
            database="disconnected",
            checks={
                "database": CheckResult("fail", "x" * 1000, consecutive_failures=3),
                "disk": CheckResult("warn", "low"),
            },
        ),
        make_report(status="stopped", checks={}),
    ],
    ids=["online", "starting", "degraded", "stopped"],
)
def test_report_validates_against_shipped_schema(validator: Any, report: HealthReport) -> None:
    """What to_json() writes validates against the shipped schema."""
    validator.validate(json.loads(report.to_json()))


def with_change(path: list[str], value: Any) -> dict[str, Any]:
    """Return a valid file object with the value at ``path`` replaced."""
    data = make_report().as_dict()
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


@pytest.mark.parametrize(
    "data",
    [
        with_change(["status"], "healthy"),
        with_change(["status"], "Online"),
        with_change(["database"], "ok"),
        with_change(["database"], None),
        with_change(["api_version"], "v2"),
        with_change(["extra"], 1),
        with_change(["checks", "database", "extra"], 1),
        with_change(["checks", "database", "status"], "ok"),
        with_change(["checks", "database", "output"], "x" * 257),
        with_change(["timestamp"], "2024-05-17T12:30:45+00:00"),
        with_change(["timestamp"], "2024-05-17 12:30:45Z"),
        with_change(["timestamp"], "2024-05-17T12:30:45.123Z"),
        with_change(["timestamp"], "2024-05-17T12:30:45"),
        with_change(["expires_at"], "2024-13-17T12:30:45Z"),
        with_change(["started_at"], "2024-05-17T24:00:00Z"),
        with_change(["checks", "database", "last_success"], "yesterday"),
        with_change(["sequence"], 0),
        with_change(["pid"], "4242"),
    ],
    ids=[
        "status-unknown",
        "status-case",
        "database-unknown",
        "database-null",
        "api-version",
        "extra-key",
        "extra-check-key",
        "check-status",
        "output-257",
        "timestamp-offset",
        "timestamp-space",
        "timestamp-fraction",
        "timestamp-no-zone",
        "expires-month-13",
        "started-hour-24",
        "last-success-text",
        "sequence-zero",
        "pid-string",
    ],
)
def test_schema_rejects_what_breaks_the_contract(validator: Any, data: dict[str, Any]) -> None:
    """The shipped schema rejects values, keys and formats the contract does not allow."""
    assert not validator.is_valid(data)


# app_name came after 0.1.0: v1 files written before it lack it, so the schema cannot require it.
ADDED_KEYS = ["app_name", "changes"]


@pytest.mark.parametrize("key", [key for key in CONTRACT_KEYS if key not in ADDED_KEYS])
def test_schema_requires_every_contract_key(validator: Any, key: str) -> None:
    """The shipped schema rejects a file missing any one contract key of 0.1.0."""
    data = make_report().as_dict()
    del data[key]

    assert not validator.is_valid(data)


def test_schema_accepts_a_v1_file_written_before_app_name(validator: Any) -> None:
    """A file without app_name (as 0.1.0 wrote it) still validates: api_version stays v1."""
    data = make_report().as_dict()
    del data["app_name"]

    assert data["api_version"] == "v1"
    assert validator.is_valid(data)


@pytest.mark.parametrize("value", ["", 7, None])
def test_schema_rejects_an_app_name_that_is_not_a_name(validator: Any, value: Any) -> None:
    """When present, app_name is a non-empty string."""
    assert not validator.is_valid(with_change(["app_name"], value))


def test_app_name_follows_app_version_in_the_file() -> None:
    """as_dict() writes app_name right after app_version, with the report's value."""
    data = make_report(app_name="billing").as_dict()

    keys = list(data)
    assert keys[keys.index("app_version") + 1] == "app_name"
    assert data["app_name"] == "billing"


def test_schema_accepts_output_of_exactly_256_characters(validator: Any) -> None:
    """An output at the 256-character bound is valid."""
    assert validator.is_valid(with_change(["checks", "database", "output"], "x" * 256))


# --- CheckResult --------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["ok", "PASS", "failed", "", None, 1])
def test_check_result_rejects_unknown_status(status: Any) -> None:
    """CheckResult accepts only pass, warn and fail."""
    with pytest.raises(ValueError, match="status must be"):
        CheckResult(status)


@pytest.mark.parametrize("output", [b"bytes", 42, ["list"], ValueError("boom")])
def test_check_result_rejects_non_str_output(output: Any) -> None:
    """CheckResult's output must be a str or None."""
    with pytest.raises(TypeError, match="output must be a str or None"):
        CheckResult("fail", output)


def test_check_result_cuts_output_to_256_characters() -> None:
    """An output longer than 256 characters is cut to 256, keeping its beginning."""
    result = CheckResult("fail", "abcdefghij" * 100)

    assert result.output is not None
    assert len(result.output) == MAX_OUTPUT_CHARS == 256
    assert result.output.startswith("abcdefghij" * 25)


def test_check_result_keeps_output_of_exactly_256_characters() -> None:
    """An output of exactly 256 characters is kept as it is."""
    text = "y" * 256

    assert CheckResult("warn", text).output == text


def test_check_result_redacts_output() -> None:
    """CheckResult's output is redacted when the result is made."""
    result = CheckResult("fail", "cannot connect: password=hunter2")

    assert result.output == "cannot connect: password=***"


def test_check_result_replace_keeps_validation() -> None:
    """dataclasses.replace() returns a validated changed copy and leaves the original as it was."""
    original = CheckResult("pass")
    changed = dataclasses.replace(original, status="fail", consecutive_failures=2)

    assert (changed.status, changed.consecutive_failures) == ("fail", 2)
    assert (original.status, original.consecutive_failures) == ("pass", 0)
    with pytest.raises(ValueError, match="status must be"):
        dataclasses.replace(original, status="broken")  # type: ignore[arg-type]


# --- redaction ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://user:secret@host/db", "postgresql://user:***@host/db"),
        ("connect to mysql+pymysql://app:s3cr3t@db:3306/x failed", None),
        ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
        ("password=hunter2", "password=***"),
        ("passwd=hunter2", "passwd=***"),
        ("secret=hunter2", "secret=***"),
        ("token=hunter2", "token=***"),
        ("api_key=hunter2", "api_key=***"),
        ("PASSWORD=hunter2", "PASSWORD=***"),
        ("Token=hunter2", "Token=***"),
        ("Api_Key=hunter2", "Api_Key=***"),
        ("password: hunter2", "password: ***"),
        ("password = hunter2", "password = ***"),
        ('{"password": "hunter2"}', '{"password": "***"}'),
        ('{"password": "x"}', '{"password": "***"}'),
        ("{'token': 'hunter2'}", "{'token': '***'}"),
        ("host=db user=app password=hunter2 dbname=x", "host=db user=app password=*** dbname=x"),
        ("https://api.invalid/v1?token=hunter2&page=2", "https://api.invalid/v1?token=***&page=2"),
    ],
)
def test_clean_output_redacts_each_secret_form(text: str, expected: str | None) -> None:
    """URL passwords and password/passwd/secret/token/api_key values become ***."""
    cleaned = clean_output(text)

    assert cleaned is not None
    for secret in ("hunter2", "s3cr3t", '"x"'):
        assert secret not in cleaned
    assert "***" in cleaned
    if expected is not None:
        assert cleaned == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(password=hunter2, token=abc123)", "(password=***, token=***)"),
        ("connect(password=hunter2)", "connect(password=***)"),
        ("[token=abc123]", "[token=***]"),
        ("{token: abc123}", "{token: ***}"),
        ("<token=abc123>", "<token=***>"),
        ("((token=abc123))", "((token=***))"),
        ("(password='hunter2')", "(password='***')"),
        ('(password="hunter2")', '(password="***")'),
        ("'password=hunter2'", "'password=***'"),
        ('"password=hunter2"', '"password=***"'),
        ('{"password": "x", "user": "app"}', '{"password": "***", "user": "app"}'),
        ("(postgresql://app:hunter2@db/x)", "(postgresql://app:***@db/x)"),
        ("GET /v1?token=abc123&page=2)", "GET /v1?token=***&page=2)"),
        ("(GET /v1?token=abc123)", "(GET /v1?token=***)"),
        ("(password=pa(ss))", "(password=***)"),
        ("password=hunter2)", "password=***"),
    ],
)
def test_redaction_keeps_the_brackets_and_quotes_around_a_secret(text: str, expected: str) -> None:
    """A closing bracket or quote after a secret stays; one the secret holds is hidden with it."""
    assert clean_output(text) == expected


def test_clean_output_keeps_the_url_user() -> None:
    """A URL's user stays readable while its password is hidden."""
    cleaned = clean_output("postgresql://user:secret@host/db")

    assert cleaned is not None
    assert "user" in cleaned
    assert "secret" not in cleaned


def test_clean_output_redacts_several_secrets_in_one_string() -> None:
    """Every secret of a string is redacted, not only the first."""
    text = (
        "failed postgresql://alice:pw-one@db/app; retry with password=pw-two, "
        'token=pw-three and {"api_key": "pw-four"} secret=pw-five'
    )

    cleaned = clean_output(text)

    assert cleaned is not None
    for secret in ("pw-one", "pw-two", "pw-three", "pw-four", "pw-five"):
        assert secret not in cleaned
    assert cleaned.count("***") == 5
    assert "alice" in cleaned


@pytest.mark.parametrize(
    "text",
    [
        "",
        "database is locked",
        "OperationalError: unable to open database file",
        "https://example.invalid/path?page=2&sort=asc",
        "user alice connected to host db:5432",
        "timed out after 3.0 s",
    ],
)
def test_clean_output_leaves_text_without_secrets_unchanged(text: str) -> None:
    """Text with nothing secret-looking passes through unchanged."""
    assert clean_output(text) == text


def test_clean_output_of_none_is_none() -> None:
    """clean_output(None) is None (a check with no output)."""
    assert clean_output(None) is None


def test_clean_output_redacts_before_cutting() -> None:
    """A secret straddling the 256-character cut is still redacted, not half shown."""
    text = "x" * 240 + " password=" + "hunter2" * 10

    cleaned = clean_output(text)

    assert cleaned is not None
    assert len(cleaned) <= 256
    assert "hunter" not in cleaned


@pytest.mark.parametrize(
    "text",
    [
        "DB_PASSWORD=hunter2",
        "POSTGRES_PASSWORD=hunter2",
        "access_token=hunter2",
        "https://api.invalid/v1?access_token=hunter2",
        "client_secret=hunter2",
        "GITHUB_TOKEN=hunter2",
    ],
)
def test_clean_output_redacts_keys_with_a_prefix(text: str) -> None:
    """A password/token/secret key with a prefix joined by `_` (DB_PASSWORD=…) is redacted too."""
    cleaned = clean_output(text)

    assert cleaned is not None
    assert "hunter2" not in cleaned


SAFE_SECRET = st.text(alphabet=string.ascii_letters + string.digits + "._~+-!$%()*", min_size=4)
KEYS = st.sampled_from(["password", "passwd", "secret", "token", "api_key"]).flatmap(
    lambda key: st.sampled_from([key, key.upper(), key.capitalize()])
)
SEPARATORS = st.sampled_from(["=", ": ", " = ", ":", '": "', "='", "':'"])
ENDINGS = st.sampled_from(["", " ", "&", ";", ",", "\n", '"', "'"])


@given(
    before=st.text(max_size=40),
    key=KEYS,
    separator=SEPARATORS,
    secret=SAFE_SECRET,
    ending=ENDINGS,
    after=st.text(max_size=40),
)
def test_secret_value_never_appears_in_clean_output(
    before: str, key: str, separator: str, secret: str, ending: str, after: str
) -> None:
    """For any text with an embedded key/value secret of safe characters, the value is hidden."""
    tail = ending + after if ending else ""
    text = f"{before} {key}{separator}{secret}{tail}"
    assume(text.count(secret) == 1)

    cleaned = clean_output(text)

    assert cleaned is not None
    assert secret not in cleaned


@given(
    secret=st.text(alphabet=string.ascii_letters + string.digits + "._~+-!$%*", min_size=4),
    key=KEYS,
    opening=st.sampled_from(["(", "[", "{", "<"]),
)
def test_secret_in_brackets_never_appears_and_its_bracket_stays(
    secret: str, key: str, opening: str
) -> None:
    """For any bracket-free secret in `(key=secret)`, the secret is hidden, the bracket kept."""
    closing = {"(": ")", "[": "]", "{": "}", "<": ">"}[opening]
    text = f"{opening}{key}={secret}{closing}"

    cleaned = clean_output(text)

    assert cleaned is not None
    assert secret not in cleaned
    assert cleaned == f"{opening}{key}=***{closing}"


@given(
    scheme=st.sampled_from(["postgresql", "mysql+aiomysql", "redis", "amqp", "https"]),
    user=st.text(alphabet=string.ascii_lowercase, max_size=8),
    secret=st.text(alphabet=string.ascii_letters + string.digits + "._~+-!$%*", min_size=4),
    before=st.text(max_size=40),
    after=st.text(max_size=40),
)
def test_url_password_never_appears_in_clean_output(
    scheme: str, user: str, secret: str, before: str, after: str
) -> None:
    """For any URL with a password of safe characters, the password is hidden."""
    text = f"{before} {scheme}://{user}:{secret}@host/db {after}"
    assume(text.count(secret) == 1)

    cleaned = clean_output(text)

    assert cleaned is not None
    assert secret not in cleaned


# --- describe_exception -------------------------------------------------------------------


def test_describe_exception_is_type_colon_message() -> None:
    """describe_exception() renders `Type: message`."""
    assert describe_exception(ValueError("bad value")) == "ValueError: bad value"


def test_describe_exception_with_empty_message_is_just_the_type() -> None:
    """An exception with an empty message is rendered as its type name alone."""
    assert describe_exception(TimeoutError()) == "TimeoutError"
    assert describe_exception(RuntimeError("")) == "RuntimeError"


def test_describe_exception_redacts_and_bounds() -> None:
    """describe_exception() output is redacted and at most 256 characters."""
    exc = ConnectionError("postgresql://app:hunter2@db/app " + "z" * 500)

    text = describe_exception(exc)

    assert text.startswith("ConnectionError: postgresql://app:***@db/app ")
    assert "hunter2" not in text
    assert len(text) <= 256
