"""The patterns the schema states for numbers in ranges admit exactly what their checks
take, at every bound of every unit: memory limits, request body sizes, sleeps, IPv4
networks; and the decimal ranges they are built of, at every edge.

Each pattern is built by the call (``grammar.memory_limit_stated()``, ...), here, in the
test: what is judged is the code that builds it. The document's side (jsonschema_rs
reading what the OpenAPI document states) is test_api_document_values.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable

import pytest

from pockestrator.specs import grammar


def takes(check: Callable[[str], object], value: str) -> bool:
    try:
        check(value)
    except grammar.GrammarError:
        return False
    return True


def disagreements(
    pattern: grammar.Pattern, check: Callable[[str], object], values: Iterable[str]
) -> list[tuple[str, bool]]:
    """The values the pattern admits (True) or refuses (False) against its check."""
    return [
        (value, admitted)
        for value in values
        if (admitted := pattern.fullmatch(value) is not None) != takes(check, value)
    ]


def around(*bounds: int) -> set[int]:
    """Each bound, one below and one above it (none below 0)."""
    return {max(0, bound + step) for bound in bounds for step in (-1, 0, 1)}


def test_a_stated_memory_limit_is_one_the_grammar_takes_at_every_bound_of_every_unit() -> None:
    values = []
    for power, unit in enumerate(("", "K", "M", "G", "T")):
        least = -(-grammar.MEMORY_MIN_BYTES // 1024**power)
        most = grammar.MEMORY_MAX_BYTES // 1024**power
        for number in around(0, 1, 2, 9, 10, least, most, 10**15 - 1, 10**14):
            digits = str(number)
            values += [digits + unit, "0" + digits + unit, digits.zfill(15) + unit]
            values.append(digits.zfill(16) + unit)  # 16 digits: more than systemd reads
    for number in around(0, 1, 10, 99, 100):
        values += [f"{number}%", f"0{number}%", f"{number:03}%", f"{number:04}%"]
    values += ["infinity", "Infinity", "infinity%", "16MB", "16m", "", "%", "M"]
    assert disagreements(grammar.memory_limit_stated(), grammar.memory_limit_bytes, values) == []
    # The bounds themselves, in their own units: each is stated.
    admitted = grammar.memory_limit_stated().fullmatch
    assert all(admitted(v) for v in ("16777216", "16384K", "16M", "1G", "1T", "8388607T"))
    assert all(admitted(v) for v in ("999999999999999", "999999999999999K", "8796093022207M"))
    assert all(admitted(v) for v in ("8589934591G", "000000000000016M", "1%", "100%", "001%"))


def test_a_stated_body_size_is_one_the_grammar_takes_at_every_bound_of_every_unit() -> None:
    units = {"": 1, "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3}
    units |= {"KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
    values = []
    for unit, factor in units.items():
        least = -(-grammar.BODY_SIZE_MIN_BYTES // factor)
        most = grammar.BODY_SIZE_MAX_BYTES // factor
        for number in around(0, 1, 2, 10, least, most, 10**9, 10**10):
            values += [f"{number}{unit}", f"0{number}{unit}"]
    values += ["1kb", "1Kib", "1 KB", "KB", "", "1TB", "1.5MB"]
    assert disagreements(grammar.body_size_stated(), grammar.body_size_bytes, values) == []
    admitted = grammar.body_size_stated().fullmatch
    assert all(admitted(v) for v in ("1000", "1000B", "1KB", "1073741824", "1073741824B"))
    assert all(admitted(v) for v in ("1073741KB", "1073MB", "1GB", "1048576KiB", "1GiB"))


def test_a_stated_sleep_after_is_one_the_grammar_takes_at_every_bound_of_every_unit() -> None:
    values = []
    for unit, seconds in grammar.SLEEP_UNITS.items():
        least = -(-grammar.SLEEP_AFTER_MIN // seconds)
        most = grammar.SLEEP_AFTER_MAX // seconds
        for number in around(0, 1, 2, 9, 10, least, most, 10**6, 10**7):
            values += [f"{number}{unit}", f"0{number}{unit}"]
    values += ["15", "15 m", "1.5h", "-5m", "15M", "1w", "", "m"]
    assert disagreements(grammar.sleep_after_stated(), grammar.sleep_seconds, values) == []
    admitted = grammar.sleep_after_stated().fullmatch
    assert all(admitted(v) for v in ("5s", "2592000s", "1m", "43200m", "1h", "720h", "1d", "30d"))


def test_a_stated_ipv4_network_is_one_egress_takes_for_every_prefix() -> None:
    addresses = [
        "0.0.0.0", "255.255.255.255", "10.20.30.40", "192.168.128.0", "172.16.0.0",
        "1.2.3.4", "128.0.0.0", "254.254.254.254", "0.0.0.1",
    ]  # fmt: skip
    values = []
    for address in addresses:
        for prefix in range(0, 34):
            values.append(f"{address}/{prefix}")
            if prefix <= 32:
                network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
                values.append(str(network))
    values += ["10.0.0.0/08", "10.0.0.0/", "010.0.0.0/8", "10.0.0/8", "10.0.0.0.0/8"]
    values += ["256.0.0.0/8", "1.2.3.4/-1", "1.2.3.4/+8", "256.0.0.0/1", "10.256.0.0/9"]
    values += ["1.2.3.4.0/33", "1.2.3.4.128/33"]  # five octets
    assert disagreements(grammar.ipv4_network(), grammar.check_egress, values) == []
    admitted = grammar.ipv4_network().fullmatch
    assert all(admitted(v) for v in ("128.0.0.0/1", "10.0.0.0/8", "10.16.0.0/12", "1.2.3.4/32"))
    assert all(admitted(v) for v in ("255.255.255.254/31", "0.0.0.0/32", "255.255.240.0/20"))


@pytest.mark.parametrize(
    ("low", "high"),
    [(1, 9), (7, 7), (1, 100), (10, 99), (16, 1024), (19, 91), (120, 129), (999, 1001),
     (100, 999), (5, 2_592_000), (1000, 1_073_741_824), (1, 65535), (101, 199), (190, 210)],
)  # fmt: skip
def test_a_decimal_range_matches_exactly_its_numbers_at_every_edge(low: int, high: int) -> None:
    numbers = set(range(0, 1100)) | around(low, high, (low + high) // 2)
    numbers |= {10**power + step for power in range(1, 11) for step in (-1, 0, 1)}
    pattern = re.compile(grammar.decimal_range(low, high))
    assert [
        n for n in sorted(numbers) if bool(pattern.fullmatch(str(n))) != (low <= n <= high)
    ] == []
    assert not pattern.fullmatch("0" + str(low))  # no leading zero without ``digits``
    # With ``digits``, zeros may lead up to that many digits in all, and no further.
    digits = len(str(high)) + 1
    padded = re.compile(grammar.decimal_range(low, high, digits=digits))
    for n in sorted(numbers):
        assert bool(padded.fullmatch(str(n).zfill(digits))) == (low <= n <= high), n
        assert not padded.fullmatch(str(n).zfill(digits + 1)), n
    narrow = re.compile(grammar.decimal_range(low, high, digits=len(str(low))))
    assert [n for n in sorted(numbers) if bool(narrow.fullmatch(str(n)))] == [
        n for n in sorted(numbers) if low <= n <= high and len(str(n)) == len(str(low))
    ]
