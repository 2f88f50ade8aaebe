"""The value types' part makers (``specs.values.parsers``): what each states in the schema is
what its parser holds a value to, with the code it was given."""

from __future__ import annotations

from typing import Annotated, Any, get_args

import pytest
from pydantic import BeforeValidator, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from pockestrator.specs import grammar
from pockestrator.specs.errors import ErrorCode
from pockestrator.specs.values.parsers import (
    InSchema,
    grammar_checked,
    http_url,
    matching,
    one_line,
    whole_number,
)


def refusal(adapter: TypeAdapter[Any], value: Any) -> tuple[str, str]:
    with pytest.raises(ValidationError) as refused:
        adapter.validate_python(value)
    error = refused.value.errors()[0]
    return error["type"], error["msg"]


@pytest.mark.parametrize(("low", "high"), [(1, 10), (0, 120)])
def test_whole_number_states_the_bounds_its_parser_refuses_beyond(low: int, high: int) -> None:
    adapter = TypeAdapter(
        Annotated[int, *whole_number("count", low, high, " s", ErrorCode.INVALID_BATCH)]
    )
    assert adapter.json_schema() == {"type": "integer", "minimum": low, "maximum": high}
    assert adapter.validate_python(str(high)) == high
    assert refusal(adapter, high + 1) == (
        "INVALID_BATCH",
        f"count must be from {low} to {high} s",
    )


def test_whole_number_refuses_with_the_flag_code_unless_told_another() -> None:
    adapter = TypeAdapter(Annotated[int, *whole_number("hooks_pool", 1, 1000)])
    assert refusal(adapter, True)[0] == "INVALID_FLAG_VALUE"


def test_grammar_checked_puts_what_it_states_between_the_constraints_and_the_parser() -> None:
    stated = InSchema({"not": {"const": "x"}})
    parts = get_args(Annotated[str, *grammar_checked(grammar.check_version, stated, max_length=9)])[
        1:
    ]
    assert isinstance(parts[0], FieldInfo)
    assert parts[1] is stated
    assert isinstance(parts[2], BeforeValidator)


def test_matching_states_its_pattern_and_refuses_with_its_code_and_message() -> None:
    adapter = TypeAdapter(
        Annotated[str, *matching(ErrorCode.INVALID_S3, grammar.S3_REGION, "region is off")]
    )
    assert adapter.json_schema()["pattern"] == grammar.S3_REGION.json
    assert adapter.validate_python("us-east-1") == "us-east-1"
    assert refusal(adapter, "us east") == ("INVALID_S3", "region is off")


def test_http_url_names_its_field_and_keeps_its_code() -> None:
    adapter = TypeAdapter(Annotated[str, *http_url(ErrorCode.INVALID_APP_URL, "app_url")])
    assert adapter.json_schema()["maxLength"] == grammar.URL_MAX
    code, message = refusal(adapter, "ftp://example.com")
    assert code == "INVALID_APP_URL"
    assert "app_url" in message


def test_one_line_refuses_a_second_line_and_an_empty_value_with_its_code() -> None:
    adapter = TypeAdapter(Annotated[str, *one_line(ErrorCode.INVALID_SMTP, "name", 20)])
    assert adapter.json_schema()["minLength"] == 1
    assert refusal(adapter, "two\nlines")[0] == "INVALID_SMTP"
    assert refusal(adapter, "") == ("INVALID_SMTP", "name must not be empty")
