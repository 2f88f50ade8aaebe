"""What each grammar says when it refuses, word for word, and where each of its bounds lies.

The messages are what an operator reads in the API's errors, the CLI and the spec folder's
issues, next to the stable code; a table of every refusal keeps them from changing by
accident. The boundary rows accept the last value inside each bound and refuse the first
outside it, so an off-by-one in a check cannot pass unseen.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pockestrator.specs import grammar
from pockestrator.specs.errors import ErrorCode
from pockestrator.specs.grammar import GrammarError, version_key

LOCAL = "a" * 64
DOMAIN_189 = "b" * 63 + "." + "c" * 63 + "." + "d" * 61  # 189 characters
LONG_ENCODED = ("a" * 63 + ".") * 4 + "com"  # 259 characters, every label fine


def shown(value: str) -> str:
    """A test id for ``value``: its first 24 characters, each unprintable one (and the
    backslash) as U+XXXX, since mutmut cannot select a test whose id has a backslash."""
    return "".join(
        char if char.isprintable() and char != "\\" else f"U+{ord(char):04X}" for char in value[:24]
    )


def free_text(value: str) -> str:
    return grammar.check_free_text(value, 10)


def app_url(value: str) -> str:
    return grammar.check_http_url(value, ErrorCode.INVALID_VALUE, "app_url")


def smtp_host(value: str) -> str:
    return grammar.check_hostname(value, ErrorCode.INVALID_VALUE, "smtp.host")


HOST_253 = ("a" * 63 + ".") * 3 + "b" * 61  # 253 characters, every label fine
URL_2048 = "https://a.com/" + "p" * (2048 - 14)
NODE_RULE = "must be 1 to 63 lowercase letters, digits and '-', not starting or ending with '-'"
URL_RULE = (
    "app_url must be http(s)://host[:port][/path] with a lowercase host name or IPv4 "
    "address, and no query, fragment, space or quote"
)


REFUSALS: list[tuple[Callable[[str], Any], str, ErrorCode, str]] = [
    (grammar.check_project_name, "", ErrorCode.FIELD_REQUIRED, "project name is required"),
    (
        grammar.check_project_name,
        "a" * 51,
        ErrorCode.NAME_TOO_LONG,
        "project name must be at most 50 characters",
    ),
    (
        grammar.check_project_name,
        "My-App",
        ErrorCode.INVALID_CHARACTERS,
        "project name may contain only lowercase letters a-z, digits and '-'",
    ),
    (
        grammar.check_project_name,
        "1app",
        ErrorCode.NAME_MUST_START_WITH_LETTER,
        "project name must start with a letter",
    ),
    (
        grammar.check_project_name,
        "app-",
        ErrorCode.NAME_ENDS_WITH_HYPHEN,
        "project name must not end with '-'",
    ),
    (
        grammar.check_project_name,
        "ab--cd",
        ErrorCode.INVALID_CHARACTERS,
        "project name must not have '--' in its third and fourth characters "
        "(reserved for IDNA labels such as xn--)",
    ),
    (grammar.check_project_name, "admin", ErrorCode.RESERVED_NAME, "'admin' is a reserved name"),
    (
        grammar.normalize_domain,
        " a.com",
        ErrorCode.INVALID_DOMAIN,
        "domain must not contain spaces or control characters",
    ),
    (
        grammar.normalize_domain,
        "a\x01.com",
        ErrorCode.INVALID_DOMAIN,
        "domain must not contain spaces or control characters",
    ),
    (grammar.normalize_domain, ".", ErrorCode.INVALID_DOMAIN, "domain is empty"),
    (
        grammar.normalize_domain,
        "a" * 1013,
        ErrorCode.DOMAIN_TOO_LONG,
        "domain must be at most 253 characters",
    ),
    (
        grammar.normalize_domain,
        "a_b.com",
        ErrorCode.INVALID_DOMAIN,
        "not a valid hostname: Codepoint U+005F not allowed at position 2 in 'a_b.com'",
    ),
    (
        grammar.normalize_domain,
        "a..com",
        ErrorCode.INVALID_DOMAIN,
        "domain has an empty label ('..')",
    ),
    (
        grammar.normalize_domain,
        LONG_ENCODED,
        ErrorCode.DOMAIN_TOO_LONG,
        "domain must be at most 253 characters once encoded (this one has 259)",
    ),
    (
        grammar.normalize_domain,
        "localhost",
        ErrorCode.INVALID_DOMAIN,
        "'localhost' is a single label; a hostname needs a dot, "
        "e.g. app.example.com or app.localhost",
    ),
    (
        grammar.normalize_domain,
        "1.2.3.4",
        ErrorCode.INVALID_DOMAIN,
        "domain must be a hostname, not an IP address",
    ),
    (
        grammar.check_version,
        "1.2",
        ErrorCode.INVALID_VERSION,
        "version must look like 0.29.0 (optionally with a pre-release, e.g. 0.23.0-rc1)",
    ),
    (
        grammar.check_version,
        "1.2.3-" + "a" * 59,
        ErrorCode.INVALID_VERSION,
        "version must look like 0.29.0 (optionally with a pre-release, e.g. 0.23.0-rc1)",
    ),
    (
        grammar.check_env_name,
        "lower",
        ErrorCode.INVALID_ENV_NAME,
        "environment variable name 'lower' must match [A-Z_][A-Z0-9_]*",
    ),
    (
        grammar.check_env_name,
        "A" * 129,
        ErrorCode.INVALID_ENV_NAME,
        f"environment variable name '{'A' * 40}' must match [A-Z_][A-Z0-9_]*",
    ),
    (
        grammar.check_env_name,
        "LD_PRELOAD",
        ErrorCode.RESERVED_ENV_NAME,
        "LD_PRELOAD is reserved: variables starting with LD_ steer the dynamic loader "
        "(they could load code into the instance)",
    ),
    (
        grammar.check_env_value,
        "x" * 4097,
        ErrorCode.INVALID_ENV_VALUE,
        "value must be at most 4096 characters",
    ),
    (
        grammar.check_env_value,
        "a\nb",
        ErrorCode.INVALID_ENV_VALUE,
        "value must not contain newlines, line separators or other control characters",
    ),
    (
        grammar.check_env_value,
        "a\u202eb",
        ErrorCode.INVALID_ENV_VALUE,
        "must not contain bidirectional override or isolate characters "
        "(U+202A-U+202E, U+2066-U+2069): they make text display differently from what it is",
    ),
    (
        grammar.memory_limit_bytes,
        "12Q",
        ErrorCode.INVALID_MEMORY_LIMIT,
        "memory limit must be bytes with an optional K, M, G or T suffix (e.g. 512M), "
        "a percentage (e.g. 20%) or 'infinity'",
    ),
    (
        grammar.memory_limit_bytes,
        "0%",
        ErrorCode.INVALID_MEMORY_LIMIT,
        "percentage must be 1% to 100%",
    ),
    (
        grammar.memory_limit_bytes,
        "101%",
        ErrorCode.INVALID_MEMORY_LIMIT,
        "percentage must be 1% to 100%",
    ),
    (
        grammar.memory_limit_bytes,
        "15M",
        ErrorCode.INVALID_MEMORY_LIMIT,
        "memory limit must be at least 16M: PocketBase cannot start with less",
    ),
    (
        grammar.memory_limit_bytes,
        "8388608T",
        ErrorCode.INVALID_MEMORY_LIMIT,
        "memory limit must be below 8388608T (2^63 bytes), or systemd would silently apply "
        "no limit; write 'infinity' for no limit",
    ),
    (
        grammar.check_cpu_quota,
        "0%",
        ErrorCode.INVALID_CPU_QUOTA,
        "CPU quota must be a percentage from 1% to 10000% (100% = one core)",
    ),
    (
        grammar.check_cpu_quota,
        "10001%",
        ErrorCode.INVALID_CPU_QUOTA,
        "CPU quota must be a percentage from 1% to 10000% (100% = one core)",
    ),
    (grammar.check_email, "x", ErrorCode.INVALID_EMAIL, "not a valid e-mail address"),
    (
        grammar.check_email,
        f"{LOCAL}@{DOMAIN_189}d",
        ErrorCode.INVALID_EMAIL,
        "not a valid e-mail address",
    ),
    (
        grammar.check_origin,
        "ftp://" + "x" * 70,
        ErrorCode.INVALID_FLAG_VALUE,
        f"origin 'ftp://{'x' * 54}' must be '*' or http(s)://host[:port]",
    ),
    (
        grammar.check_origin,
        "http://a.com:65536",
        ErrorCode.INVALID_FLAG_VALUE,
        "origin 'http://a.com:65536' has port 65536; a port is 1 to 65535, "
        "without leading zeros (browsers send it that way)",
    ),
    (
        grammar.check_origin,
        "http://" + "a" * 50 + ".com:0080",
        ErrorCode.INVALID_FLAG_VALUE,
        f"origin 'http://{'a' * 50}.co' has port 0080; a port is 1 to 65535, "
        "without leading zeros (browsers send it that way)",
    ),
    (
        grammar.check_node_name,
        "-a",
        ErrorCode.INVALID_VALUE,
        f"node '-a' {NODE_RULE} (a node_name of the fleet)",
    ),
    (
        grammar.check_node_name,
        "N" * 80,
        ErrorCode.INVALID_VALUE,
        f"node '{'N' * 70}' {NODE_RULE} (a node_name of the fleet)",
    ),
    (
        grammar.check_target_name,
        "T" * 50,
        ErrorCode.INVALID_TARGET_NAME,
        f"'{'T' * 40}' is not a backup target's name: lowercase letters, digits and '-', "
        "starting with a letter, at most 32 characters",
    ),
    (app_url, "ftp://a.com", ErrorCode.INVALID_VALUE, URL_RULE),
    (app_url, URL_2048 + "p", ErrorCode.INVALID_VALUE, URL_RULE),
    (
        app_url,
        f"https://{HOST_253}b/",
        ErrorCode.INVALID_VALUE,
        "app_url's host must be at most 253 characters",
    ),
    (
        app_url,
        "https://a.com:65536",
        ErrorCode.INVALID_VALUE,
        "app_url's port must be 1 to 65535, without leading zeros",
    ),
    (
        smtp_host,
        HOST_253 + "b",
        ErrorCode.INVALID_VALUE,
        "smtp.host must be a lowercase host name or IPv4 address, e.g. smtp.example.com",
    ),
    (grammar.check_secret_text, "", ErrorCode.INVALID_SECRET, "the secret is empty"),
    (
        grammar.check_secret_text,
        "s" * 4097,
        ErrorCode.INVALID_SECRET,
        "the secret must be at most 4096 characters",
    ),
    (
        grammar.check_secret_text,
        "a\nb",
        ErrorCode.INVALID_SECRET,
        "the secret must be one line without control or bidirectional characters",
    ),
    (
        grammar.body_size_bytes,
        "10 MB",
        ErrorCode.INVALID_BODY_SIZE,
        "max_body_size must be a number with an optional unit B, KB, MB, GB (powers of "
        "1000) or KiB, MiB, GiB (powers of 1024), e.g. 10MB or 50MiB",
    ),
    (
        grammar.sleep_seconds,
        "x" * 50,
        ErrorCode.INVALID_SLEEP_AFTER,
        f"'{'x' * 40}' is not a sleep_after: a whole number and s, m, h or d "
        "(such as 15m), from 5s to 30d",
    ),
    (free_text, "x" * 11, ErrorCode.VALUE_TOO_LONG, "must be at most 10 characters"),
    (
        free_text,
        "a\tb",
        ErrorCode.INVALID_CHARACTERS,
        "must be one line: no newlines, line separators or other control characters",
    ),
    (
        free_text,
        "a\u2066b",
        ErrorCode.INVALID_CHARACTERS,
        "must not contain bidirectional override or isolate characters "
        "(U+202A-U+202E, U+2066-U+2069): they make text display differently from what it is",
    ),
]


@pytest.mark.parametrize(
    ("check", "value", "code", "message"),
    REFUSALS,
    ids=[f"{check.__name__}({shown(value)})" for check, value, _code, _message in REFUSALS],
)
def test_each_refusal_names_its_code_and_says_what_is_wrong(
    check: Callable[[str], Any], value: str, code: ErrorCode, message: str
) -> None:
    with pytest.raises(GrammarError) as refused:
        check(value)
    assert (refused.value.code, refused.value.message) == (code, message)
    assert str(refused.value) == message


ACCEPTED: list[tuple[Callable[[str], Any], str, Any]] = [
    (grammar.check_project_name, "a" * 50, "a" * 50),
    (grammar.normalize_domain, "A.Example.COM.", "a.example.com"),
    (grammar.check_version, "1.2.3-" + "a" * 58, "1.2.3-" + "a" * 58),
    (grammar.check_env_name, "A" * 128, "A" * 128),
    (grammar.check_env_value, "x" * 4096, "x" * 4096),
    (grammar.memory_limit_bytes, "1%", None),
    (grammar.memory_limit_bytes, "100%", None),
    (grammar.memory_limit_bytes, "infinity", None),
    (grammar.memory_limit_bytes, "16M", 16 * 1024**2),
    (grammar.memory_limit_bytes, "1G", 1024**3),
    (grammar.memory_limit_bytes, "2T", 2 * 1024**4),
    (grammar.memory_limit_bytes, "8388607T", 8388607 * 1024**4),
    (grammar.check_cpu_quota, "1%", "1%"),
    (grammar.check_cpu_quota, "10000%", "10000%"),
    (grammar.check_email, f"{LOCAL}@{DOMAIN_189}", f"{LOCAL}@{DOMAIN_189}"),
    (grammar.check_origin, "http://a.com:65535", "http://a.com:65535"),
    (grammar.check_origin, "*", "*"),
    (free_text, "x" * 10, "x" * 10),
    (app_url, URL_2048, URL_2048),
    (app_url, f"https://{HOST_253}/", f"https://{HOST_253}/"),
    (app_url, "https://a.com:65535", "https://a.com:65535"),
    (smtp_host, HOST_253, HOST_253),
    (grammar.check_secret_text, "s" * 4096, "s" * 4096),
    (grammar.check_node_name, "n" * 63, "n" * 63),
]


CONTROLS = "must not contain control, line-separator or bidirectional formatting characters"
SECRET_FILE_PROBLEMS = [
    ("etc/pw", "must be an absolute path (starting with '/')"),
    ("/" + "a" * 4096, "must be at most 4096 characters"),
    ("/run/a\u2028b", CONTROLS),
    ("/run/./pw", "must not have '.' or '..' components"),
    ("/run/pw/", "must name a file: it must not end with '/'"),
    ("/" + "a" * 4095, None),
    ("/run/pw", None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "problem"), SECRET_FILE_PROBLEMS, ids=[shown(p) for p, _ in SECRET_FILE_PROBLEMS]
)
def test_a_secret_files_path_is_refused_saying_why(path: str, problem: str | None) -> None:
    assert grammar.secret_file_problem(path) == problem


@pytest.mark.parametrize(
    ("check", "value", "expected"),
    ACCEPTED,
    ids=[f"{check.__name__}({shown(value)})" for check, value, _expected in ACCEPTED],
)
def test_the_last_value_inside_each_bound_is_accepted(
    check: Callable[[str], Any], value: str, expected: Any
) -> None:
    assert check(value) == expected


def test_an_e_mail_of_exactly_254_characters_is_the_longest_accepted() -> None:
    assert len(f"{LOCAL}@{DOMAIN_189}") == grammar.EMAIL_MAX == 254


@pytest.mark.parametrize(
    ("lower", "higher"),
    [
        ("1.0.0-rc1", "1.0.0"),
        ("1.0.0-1", "1.0.0-alpha"),
        ("1.0.0-rc1", "1.0.0-zeta"),
        ("1.0.0-rc2", "1.0.0-rc12"),
        ("0.9.0", "0.10.0"),
    ],
    ids=[
        "a pre-release before its release",
        "a numeric identifier before text",
        "letters with a number before later text",
        "numbers in a pre-release compared as numbers",
        "versions compared as numbers, not text",
    ],
)
def test_versions_order_as_versions(lower: str, higher: str) -> None:
    assert version_key(lower) < version_key(higher)
