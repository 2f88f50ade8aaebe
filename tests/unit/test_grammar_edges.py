"""The grammar's remaining edges: a Pattern as it is built, the exact refusals of egress,
backup ids and schedules, and the bounds those checks and the domain's raw length keep.
"""

from __future__ import annotations

import pytest

from pockestrator.specs import grammar
from pockestrator.specs.errors import ErrorCode
from pockestrator.specs.grammar import GrammarError, Pattern


def refusal(check: object, value: str) -> tuple[ErrorCode, str]:
    assert callable(check)
    with pytest.raises(GrammarError) as refused:
        check(value)
    return refused.value.code, refused.value.message


def test_a_pattern_keeps_its_text_anchors_it_for_json_schema_and_matches_whole_values() -> None:
    pattern = Pattern(r"[a-z]+(?:-[0-9])?")
    assert pattern.text == r"[a-z]+(?:-[0-9])?"
    assert pattern.json == r"^(?:[a-z]+(?:-[0-9])?)$"
    assert repr(pattern) == r"Pattern('[a-z]+(?:-[0-9])?')"
    assert pattern.fullmatch("abc-1") is not None
    assert pattern.fullmatch("abc-1x") is None
    assert pattern.fullmatch("xabc-12") is None


def test_a_check_made_of_a_parser_answers_the_value_itself_once_it_parses() -> None:
    seen: list[str] = []

    def parse(value: str) -> int:
        seen.append(value)
        if not value.isdigit():
            raise GrammarError(ErrorCode.INVALID_VALUE, "digits only")
        return int(value)

    check = grammar.value_once_parsed(parse)
    assert check("042") == "042"
    with pytest.raises(GrammarError):
        check("4x")
    assert seen == ["042", "4x"]


def test_a_pattern_reads_its_classes_as_ascii_only() -> None:
    # \w and \d mean ASCII letters and digits here, as in JSON Schema's ECMA-262 reading.
    words = Pattern(r"\w+")
    assert words.fullmatch("abc_1") is not None
    assert words.fullmatch("é") is None
    assert Pattern(r"\d+").fullmatch("٣") is None  # an Arabic-Indic digit


SIXTY = "1" * 60
EGRESS_HINT = (
    " must be 'any' or an IP address or network such as 192.0.2.10 or 10.0.0.0/8 "
    "(with no host bits set); host names cannot be filtered"
)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("smtp.example.com", "'smtp.example.com'" + EGRESS_HINT),
        ("10.0.0.1/8", "'10.0.0.1/8'" + EGRESS_HINT),
        ("10.0.0.0/255.0.0.0", "'10.0.0.0/255.0.0.0'" + EGRESS_HINT),
        (SIXTY + "2345", f"'{SIXTY}'" + EGRESS_HINT),
        ("2001:DB8::1", "write '2001:DB8::1' as 2001:db8::1"),
        ("10.0.0.0/08", "write '10.0.0.0/08' as 10.0.0.0/8"),
        ("0.0.0.0/0", "write 'any' to allow every address"),
        ("::/0", "write 'any' to allow every address"),
    ],
    ids=[
        "host-name",
        "host-bits",
        "netmask",
        "long",
        "uppercase",
        "zero-padded",
        "v4-all",
        "v6-all",
    ],
)
def test_an_egress_refusal_says_what_to_write_instead(value: str, message: str) -> None:
    assert refusal(grammar.check_egress, value) == (ErrorCode.INVALID_EGRESS, message)


@pytest.mark.parametrize("value", ["any", "192.0.2.10", "10.0.0.0/8", "2001:db8::/32", "::1"])
def test_a_canonical_egress_is_accepted_as_written(value: str) -> None:
    assert grammar.check_egress(value) == value


def test_a_backup_id_that_is_not_a_utc_second_is_an_invalid_value() -> None:
    assert refusal(grammar.check_snapshot_id, "x" * 50) == (
        ErrorCode.INVALID_VALUE,
        f"'{'x' * 40}' is not a backup id (the UTC second it was taken: 20261202T031500Z)",
    )
    assert grammar.check_snapshot_id("20261202T031500Z-2") == "20261202T031500Z-2"


SCHEDULE_HINT = (
    " is not a schedule: five cron fields such as '0 3 * * *' "
    "(minute hour day month weekday, UTC) or @hourly, @daily, @weekly, @monthly"
)
MINUTES = ",".join(str(minute) for minute in range(34))  # 91 characters


def test_a_schedule_refusal_names_the_schedule_and_the_forms_it_can_take() -> None:
    assert refusal(grammar.check_schedule, "y" * 70) == (
        ErrorCode.INVALID_SCHEDULE,
        f"'{'y' * 60}'" + SCHEDULE_HINT,
    )


def test_a_schedule_of_100_characters_is_the_longest_accepted() -> None:
    longest, too_long = f"{MINUTES} 13 * * *", f"{MINUTES} 3 * * 1,2"
    assert (len(longest), len(too_long)) == (100, 101)
    assert grammar.check_schedule(longest) == longest
    assert refusal(grammar.check_schedule, too_long) == (
        ErrorCode.INVALID_SCHEDULE,
        f"'{too_long[:60]}'" + SCHEDULE_HINT,
    )


def test_a_domain_of_1012_characters_is_judged_label_by_label_not_cut_off_by_its_length() -> None:
    # Past 4 x 253 characters the text is refused unread; at 1012 it is still encoded and
    # refused for its encoded length, which says how long it is.
    domain = ".".join(["a" * 63] * 15) + "." + "b" * 52
    assert len(domain) == 1012
    assert refusal(grammar.normalize_domain, domain) == (
        ErrorCode.DOMAIN_TOO_LONG,
        "domain must be at most 253 characters once encoded (this one has 1012)",
    )
    assert refusal(grammar.normalize_domain, domain + "b") == (
        ErrorCode.DOMAIN_TOO_LONG,
        "domain must be at most 253 characters",
    )
