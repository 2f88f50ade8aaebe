"""The grammars of spec values, tried with ordinary and hostile input.

Every value a spec carries ends up in a unit file, a Caddy site, a directory name or a
command line, so each grammar is tested on both sides: what passes (and how it is
normalised) and what is refused, with the exact error code. Hostile input here means path
traversal, newlines and other control characters, braces and Caddy placeholders, quotes,
Unicode look-alikes and very long strings. Property tests (hypothesis) check that nothing
outside a grammar is ever accepted, whatever the text.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pockestrator.specs import grammar
from pockestrator.specs.errors import ErrorCode
from pockestrator.specs.grammar import GrammarError

NAME_GRAMMAR = re.compile(r"[a-z][a-z0-9-]*", re.ASCII)
DOMAIN_CHARACTERS = re.compile(r"[a-z0-9.-]+", re.ASCII)
DOMAIN_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)
ENV_NAME_GRAMMAR = re.compile(r"[A-Z_][A-Z0-9_]*", re.ASCII)
# Every Unicode control character (Cc), the line and paragraph separators, and the
# bidirectional embeddings, overrides and isolates.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
BIDI_CONTROLS = re.compile(r"[\u202a-\u202e\u2066-\u2069]")

# The reserved names exactly as the issue lists them.
ISSUE_RESERVED_NAMES = {
    "admin",
    "api",
    "www",
    "mail",
    "ftp",
    "root",
    "system",
    "caddy",
    "systemd",
    "pockestrator",
}

# Characters that make hypothesis' text hit the edges of the grammars far more often than
# uniformly random code points do.
HOSTILE_CHARACTERS = [
    *"abcxyzABCXYZ0129-._ ",
    *"{}$#,;:'\"`/\\%@*|()[]+=~!?&<>",
    "\n",
    "\r",
    "\t",
    "\x00",
    "\x1b",
    "\x7f",
    "\x85",
    "\u00a0",
    "\u00ad",  # soft hyphen
    "\u200b",  # zero-width space
    "\u2028",  # line separator
    "\u202e",  # right-to-left override
    "\u2066",  # left-to-right isolate
    "\u200f",  # right-to-left mark
    "\x9b",  # C1 control sequence introducer
    "\u2010",  # hyphen
    "\u2212",  # minus sign
    "\u3002",  # ideographic full stop
    "\uff0e",  # fullwidth full stop
    "\uff41",  # fullwidth a
    "\uff5b",  # fullwidth left brace
    "\u0430",  # Cyrillic a
    "\u0131",  # dotless i
    "\u212a",  # Kelvin sign
    "\u00fc",
    "\u00df",
    "\U0001f4a9",
]
hostile_text = st.text(alphabet=st.sampled_from(HOSTILE_CHARACTERS), max_size=80)
any_text = st.one_of(st.text(max_size=300), hostile_text)


def refusal(check: Callable[[str], object], value: str) -> GrammarError:
    """The GrammarError ``check`` raises for ``value`` (the test fails if it accepts it)."""
    with pytest.raises(GrammarError) as caught:
        check(value)
    assert caught.value.message, "every refusal explains itself"
    return caught.value


def accepts(check: Callable[[str], object], value: str) -> bool:
    try:
        check(value)
    except GrammarError:
        return False
    return True


# --- project_name -----------------------------------------------------------------------------


class TestProjectNamesThatPass:
    @pytest.mark.parametrize(
        "name",
        ["a", "app", "my-app", "app2", "a1-b2-c3", "a--b", "admin-panel", "api2", "a" * 50],
    )
    def test_a_lowercase_name_that_starts_with_a_letter_is_returned_unchanged(
        self, name: str
    ) -> None:
        assert grammar.check_project_name(name) == name

    def test_the_reserved_names_are_exactly_the_ones_the_issue_lists(self) -> None:
        assert grammar.RESERVED_NAMES == ISSUE_RESERVED_NAMES

    def test_a_reserved_word_inside_a_longer_name_is_allowed(self) -> None:
        assert grammar.check_project_name("caddy-admin") == "caddy-admin"


class TestProjectNamesThatAreRefused:
    def test_an_empty_name_is_a_missing_name(self) -> None:
        assert refusal(grammar.check_project_name, "").code is ErrorCode.FIELD_REQUIRED

    @pytest.mark.parametrize("length", [51, 64, 10_000, 1_000_000])
    def test_a_name_longer_than_fifty_characters_is_too_long(self, length: int) -> None:
        error = refusal(grammar.check_project_name, "a" * length)
        assert error.code is ErrorCode.NAME_TOO_LONG
        assert "50" in error.message

    @pytest.mark.parametrize(
        "name",
        [
            pytest.param("My-App", id="uppercase"),
            pytest.param("my_app", id="underscore"),
            pytest.param("my.app", id="dot"),
            pytest.param("my app", id="space"),
            pytest.param("../etc", id="parent-directory"),
            pytest.param("app/../../etc", id="traversal"),
            pytest.param("app/x", id="slash"),
            pytest.param("app\\x", id="backslash"),
            pytest.param("app\n", id="trailing-newline"),
            pytest.param("app\nExecStartPre=/bin/sh", id="newline-injection"),
            pytest.param("app\r", id="carriage-return"),
            pytest.param("app\x00", id="nul"),
            pytest.param("app\t", id="tab"),
            pytest.param("{app}", id="braces"),
            pytest.param("app{$HOME}", id="caddy-placeholder"),
            pytest.param("app#x", id="hash"),
            pytest.param("app;x", id="semicolon"),
            pytest.param("app'x", id="single-quote"),
            pytest.param('app"x', id="double-quote"),
            pytest.param("app%i", id="systemd-specifier"),
            pytest.param("app@x", id="systemd-template-at"),
            pytest.param("app,x", id="comma"),
            pytest.param("app$x", id="dollar"),
            pytest.param("\u0430pp", id="cyrillic-a"),
            pytest.param("\uff41pp", id="fullwidth-a"),
            pytest.param("app\u200b", id="zero-width-space"),
            pytest.param("app\u00ad", id="soft-hyphen"),
            pytest.param("app\u2010x", id="unicode-hyphen"),
            pytest.param("app\u2212x", id="minus-sign"),
            pytest.param("\u0131app", id="dotless-i"),
            pytest.param("\u212aapp", id="kelvin-sign"),
            pytest.param("app\u202e", id="right-to-left-override"),
            pytest.param("app\U0001f4a9", id="emoji"),
            pytest.param("xn--app", id="idna-prefix"),
            pytest.param("ab--c", id="double-hyphen-in-third-and-fourth-place"),
        ],
    )
    def test_a_name_with_anything_but_a_z_digits_and_hyphens_has_invalid_characters(
        self, name: str
    ) -> None:
        assert refusal(grammar.check_project_name, name).code is ErrorCode.INVALID_CHARACTERS

    @pytest.mark.parametrize("name", ["1app", "9", "-app", "-", "0-a"])
    def test_a_name_that_starts_with_a_digit_or_hyphen_must_start_with_a_letter(
        self, name: str
    ) -> None:
        error = refusal(grammar.check_project_name, name)
        assert error.code is ErrorCode.NAME_MUST_START_WITH_LETTER

    @pytest.mark.parametrize("name", ["app-", "a-", "my-app--"])
    def test_a_name_that_ends_with_a_hyphen_is_refused(self, name: str) -> None:
        assert refusal(grammar.check_project_name, name).code is ErrorCode.NAME_ENDS_WITH_HYPHEN

    @pytest.mark.parametrize("name", sorted(ISSUE_RESERVED_NAMES))
    def test_a_reserved_name_is_refused(self, name: str) -> None:
        error = refusal(grammar.check_project_name, name)
        assert error.code is ErrorCode.RESERVED_NAME
        assert name in error.message


class TestProjectNameProperties:
    @given(
        st.one_of(
            any_text,
            st.from_regex(r"[a-z0-9-]{0,55}", fullmatch=True),
            st.from_regex(r"[a-z][a-z0-9-]{0,52}", fullmatch=True),
        )
    )
    @example("xn--a")
    @example("a" * 51)
    @example("admin")
    def test_an_accepted_name_only_ever_has_the_characters_of_the_grammar(self, text: str) -> None:
        if not accepts(grammar.check_project_name, text):
            return
        assert NAME_GRAMMAR.fullmatch(text)
        assert 1 <= len(text) <= 50
        assert not text.endswith("-")
        assert text[2:4] != "--"
        assert text not in ISSUE_RESERVED_NAMES

    @given(st.from_regex(r"[a-z][a-z0-9-]{0,52}", fullmatch=True))
    def test_every_accepted_name_is_also_a_valid_dns_label(self, text: str) -> None:
        if not accepts(grammar.check_project_name, text):
            return
        domain = f"{text}.example.com"
        assert grammar.normalize_domain(domain) == domain


# --- domain -----------------------------------------------------------------------------------


class TestDomainsThatPass:
    @pytest.mark.parametrize(
        ("given_domain", "normalised"),
        [
            pytest.param("app.example.com", "app.example.com", id="plain"),
            pytest.param("APP.Example.COM", "app.example.com", id="uppercase-is-lowered"),
            pytest.param("app.example.com.", "app.example.com", id="trailing-dot-dropped"),
            pytest.param("app.localhost", "app.localhost", id="localhost-subdomain"),
            pytest.param("a-b.c-d.example", "a-b.c-d.example", id="hyphens-inside-labels"),
            pytest.param("0x7f.example", "0x7f.example", id="digits-and-letters"),
            pytest.param(
                "\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45\uff0e\uff43\uff4f\uff4d",
                "example.com",
                id="fullwidth-letters-map-to-ascii",
            ),
            pytest.param("a\u3002com", "a.com", id="ideographic-full-stop-is-a-dot"),
            pytest.param("b\u00fccher.example", "xn--bcher-kva.example", id="umlaut-to-punycode"),
            pytest.param("xn--bcher-kva.example", "xn--bcher-kva.example", id="a-label-kept"),
            pytest.param("\u00df.de", "xn--zca.de", id="sharp-s-idna-2008"),
            pytest.param("app\u00ad.example.com", "app.example.com", id="soft-hyphen-dropped"),
            pytest.param("app\u200b.example.com", "app.example.com", id="zero-width-dropped"),
        ],
    )
    def test_a_domain_is_idna_normalised_to_lowercase_ascii(
        self, given_domain: str, normalised: str
    ) -> None:
        assert grammar.normalize_domain(given_domain) == normalised

    def test_a_cyrillic_look_alike_becomes_visibly_different_punycode(self) -> None:
        normalised = grammar.normalize_domain("\u0430pp.example.com")
        assert normalised.startswith("xn--")
        assert normalised != "app.example.com"
        assert DOMAIN_CHARACTERS.fullmatch(normalised)

    def test_a_domain_of_exactly_253_characters_passes(self) -> None:
        domain = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
        assert len(domain) == 253
        assert grammar.normalize_domain(domain) == domain

    def test_a_label_of_exactly_63_characters_passes(self) -> None:
        domain = "a" * 63 + ".example.com"
        assert grammar.normalize_domain(domain) == domain


class TestDomainsThatAreRefused:
    @pytest.mark.parametrize(
        "domain",
        [
            pytest.param("", id="empty"),
            pytest.param(".", id="only-a-dot"),
            pytest.param("..", id="two-dots"),
            pytest.param("a..b", id="empty-label"),
            pytest.param(".a.com", id="leading-dot"),
            pytest.param(" app.com", id="leading-space"),
            pytest.param("app.com ", id="trailing-space"),
            pytest.param("app .com", id="inner-space"),
            pytest.param("app.com\n", id="trailing-newline"),
            pytest.param("app.com\nreverse_proxy evil:80", id="newline-injection"),
            pytest.param("app.com\r\nx", id="crlf"),
            pytest.param("app\tcom", id="tab"),
            pytest.param("app.com\x00", id="nul"),
            pytest.param("app.com\u00a0", id="no-break-space"),
            pytest.param("app\u3000.com", id="ideographic-space"),
            pytest.param("a\x85b.com", id="next-line"),
            pytest.param("a\u2028.com", id="line-separator"),
            pytest.param("{app}.com", id="braces"),
            pytest.param("app.com{", id="opening-brace"),
            pytest.param("app}.com", id="closing-brace"),
            pytest.param("{$HOME}.com", id="caddy-env-placeholder"),
            pytest.param("app.{env.X}.com", id="caddy-placeholder"),
            pytest.param("\uff5ba\uff5d.com", id="fullwidth-braces"),
            pytest.param("app.com#x", id="hash"),
            pytest.param("app.com,evil.com", id="comma"),
            pytest.param("app.com, evil.com", id="comma-space"),
            pytest.param('"app".com', id="double-quotes"),
            pytest.param("'app'.com", id="single-quotes"),
            pytest.param("app`.com", id="backtick"),
            pytest.param("app.com/x", id="path"),
            pytest.param("../app.com", id="traversal"),
            pytest.param("app\\x.com", id="backslash"),
            pytest.param("app.com:80", id="port"),
            pytest.param("user@app.com", id="userinfo"),
            pytest.param("*.app.com", id="wildcard"),
            pytest.param("a_b.com", id="underscore"),
            pytest.param("a%2e.com", id="percent"),
            pytest.param("app.com;x", id="semicolon"),
            pytest.param("a|b.com", id="pipe"),
            pytest.param("a+b.com", id="plus"),
            pytest.param("(a).com", id="parentheses"),
            pytest.param("[::1]", id="ipv6-literal"),
            pytest.param("-a.com", id="label-starts-with-hyphen"),
            pytest.param("a-.com", id="label-ends-with-hyphen"),
            pytest.param("ab--cd.com", id="double-hyphen-not-idna"),
            pytest.param("xn--zz.com", id="broken-a-label"),
            pytest.param("xn--.com", id="empty-a-label"),
            pytest.param("\U0001f4a9.la", id="emoji"),
            pytest.param("xn--ls8h.la", id="emoji-a-label"),
            pytest.param("a\u2024com", id="one-dot-leader"),
            pytest.param("a" * 64 + ".com", id="label-of-64"),
            pytest.param("\u00e4" * 60 + ".com", id="label-too-long-once-encoded"),
            pytest.param("1.2.3.4", id="ipv4"),
            pytest.param("127.1", id="short-ipv4"),
            pytest.param("10.0.0.1.", id="ipv4-trailing-dot"),
        ],
    )
    def test_anything_but_a_hostname_is_an_invalid_domain(self, domain: str) -> None:
        assert refusal(grammar.normalize_domain, domain).code is ErrorCode.INVALID_DOMAIN

    @pytest.mark.parametrize("length", [1013, 100_000, 5_000_000])
    def test_very_long_input_is_too_long_before_any_idna_work(self, length: int) -> None:
        error = refusal(grammar.normalize_domain, "a" * length)
        assert error.code is ErrorCode.DOMAIN_TOO_LONG
        assert "253" in error.message

    @pytest.mark.parametrize(
        "domain",
        [
            pytest.param(".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 62]), id="ascii-254"),
            pytest.param(".".join(["b\u00fcch\u00e9r" * 5] * 7), id="unicode-286-once-encoded"),
        ],
    )
    def test_a_domain_over_253_characters_is_too_long(self, domain: str) -> None:
        error = refusal(grammar.normalize_domain, domain)
        assert error.code is ErrorCode.DOMAIN_TOO_LONG
        assert "253" in error.message

    def test_the_length_is_that_of_the_encoded_form_not_of_the_text_given(self) -> None:
        # 16 accented letters are 26 characters once encoded (xn--4cacdcefii1ajy8at2b3bi).
        label = "äöüéèêëïîôûçñåøæ"
        fits = ".".join([label] * 9)  # 152 as written, 242 encoded
        assert len(grammar.normalize_domain(fits)) == 242
        too_long = ".".join([label] * 10)  # 169 as written, 269 encoded
        assert len(too_long) < 253
        error = refusal(grammar.normalize_domain, too_long)
        assert error.code is ErrorCode.DOMAIN_TOO_LONG
        assert "269" in error.message

    @pytest.mark.parametrize(
        "domain",
        [
            pytest.param("import", id="caddy-import-directive"),
            pytest.param("localhost", id="localhost"),
            pytest.param("intranet", id="intranet"),
            pytest.param("import.", id="trailing-dot-only"),
            pytest.param("\uff49\uff4d\uff50\uff4f\uff52\uff54", id="fullwidth-import"),
            pytest.param("b\u00fccher", id="one-international-label"),
        ],
    )
    def test_a_single_label_is_refused_because_a_hostname_needs_a_dot(self, domain: str) -> None:
        error = refusal(grammar.normalize_domain, domain)
        assert error.code is ErrorCode.INVALID_DOMAIN
        assert "dot" in error.message
        assert "app.localhost" in error.message


class TestDomainProperties:
    @given(
        st.one_of(
            any_text,
            st.from_regex(r"[a-zA-Z0-9.-]{1,80}", fullmatch=True),
            st.lists(st.from_regex(r"[a-z0-9-]{1,70}", fullmatch=True), max_size=6).map(".".join),
        )
    )
    @example("a.com.")
    @example("\uff5ba\uff5d.com")
    @example("xn--zz.com")
    def test_an_accepted_domain_is_ascii_lowercase_hostname_and_normalising_is_stable(
        self, text: str
    ) -> None:
        try:
            normalised = grammar.normalize_domain(text)
        except GrammarError:
            return
        assert DOMAIN_CHARACTERS.fullmatch(normalised)
        assert len(normalised) <= 253
        assert all(DOMAIN_LABEL.fullmatch(label) for label in normalised.split("."))
        assert not normalised.replace(".", "").isdigit()
        assert "." in normalised
        assert grammar.normalize_domain(normalised) == normalised


# --- pocketbase_version -----------------------------------------------------------------------


class TestVersions:
    @pytest.mark.parametrize(
        "version",
        ["0.29.0", "0.23.0-rc12", "1.0.0-rc.1", "1.0.0-alpha.beta.1", "0.0.0", "999999.0.0"],
    )
    def test_a_version_of_three_numbers_with_an_optional_pre_release_passes(
        self, version: str
    ) -> None:
        assert grammar.check_version(version) == version

    @pytest.mark.parametrize(
        "version",
        [
            pytest.param("v0.29.0", id="leading-v"),
            pytest.param("0.29", id="two-numbers"),
            pytest.param("0.29.0.1", id="four-numbers"),
            pytest.param("00.1.0", id="leading-zero-major"),
            pytest.param("0.01.0", id="leading-zero-minor"),
            pytest.param("1.0.0-", id="empty-pre-release"),
            pytest.param("1.0.0-rc..1", id="empty-pre-release-part"),
            pytest.param("1.0.0-rc_1", id="underscore"),
            pytest.param("1.0.0+build", id="build-metadata"),
            pytest.param("1000000.0.0", id="seven-digit-number"),
            pytest.param("1.0.0-\u03b1", id="greek-alpha"),
            pytest.param("\uff11.0.0", id="fullwidth-digit"),
            pytest.param("0.29.0\n", id="trailing-newline"),
            pytest.param("../0.29.0", id="traversal"),
            pytest.param("latest", id="word"),
            pytest.param("", id="empty"),
            pytest.param("1.0.0-" + "a" * 60, id="longer-than-64"),
        ],
    )
    def test_anything_else_is_an_invalid_version(self, version: str) -> None:
        assert refusal(grammar.check_version, version).code is ErrorCode.INVALID_VERSION

    def test_versions_compare_as_versions_not_as_text(self) -> None:
        assert grammar.version_key("0.10.0") > grammar.version_key("0.9.0")
        assert grammar.version_key("1.0.0") > grammar.version_key("0.99.99")
        assert grammar.version_key("1.0.0") > grammar.version_key("1.0.0-rc1")
        assert grammar.version_key("1.0.0-rc.10") > grammar.version_key("1.0.0-rc.2")

    def test_pre_releases_sort_by_their_dotted_parts(self) -> None:
        versions = ["1.0.0", "1.0.0-rc.10", "1.0.0-alpha.1", "1.0.0-beta", "1.0.0-alpha"]
        assert sorted(versions, key=grammar.version_key) == [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-beta",
            "1.0.0-rc.10",
            "1.0.0",
        ]

    def test_letters_followed_by_a_number_compare_by_the_number(self) -> None:
        # PocketBase tags pre-releases v0.23.0-rc1 ... v0.23.0-rc12, without a dot.
        assert grammar.version_key("0.23.0-rc12") > grammar.version_key("0.23.0-rc2")
        assert grammar.version_key("0.23.0-rc10") > grammar.version_key("0.23.0-rc9")
        assert grammar.version_key("1.0.0-beta2") > grammar.version_key("1.0.0-beta1")
        assert grammar.version_key("1.0.0-beta10") > grammar.version_key("1.0.0-alpha20")
        assert grammar.version_key("1.0.0-rc1") > grammar.version_key("1.0.0-rc")

    def test_pocketbase_release_candidates_sort_in_release_order(self) -> None:
        tags = [f"0.23.0-rc{number}" for number in range(1, 16)]
        shuffled = sorted([*tags, "0.23.0", "0.22.21"], key=lambda tag: tag[::-1])
        assert sorted(shuffled, key=grammar.version_key) == ["0.22.21", *tags, "0.23.0"]
        assert max(tags, key=grammar.version_key) == "0.23.0-rc15"

    def test_other_pre_release_parts_keep_semver_order(self) -> None:
        # Digits first, or letters after the digits: plain ASCII order, as semver says.
        assert grammar.version_key("1.0.0-2rc") < grammar.version_key("1.0.0-rc")
        assert grammar.version_key("1.0.0-rc1a") < grammar.version_key("1.0.0-rcb")
        assert grammar.version_key("1.0.0-rc.2") < grammar.version_key("1.0.0-rc.10")

    def test_two_different_versions_never_have_the_same_key(self) -> None:
        assert grammar.version_key("1.0.0-rc02") != grammar.version_key("1.0.0-rc2")

    @given(
        st.from_regex(r"[A-Za-z]{1,6}", fullmatch=True),
        st.integers(0, 10**9),
        st.integers(0, 10**9),
    )
    def test_a_pre_release_of_letters_and_a_number_orders_by_that_number(
        self, letters: str, first: int, second: int
    ) -> None:
        key_one = grammar.version_key(f"1.2.3-{letters}{first}")
        key_two = grammar.version_key(f"1.2.3-{letters}{second}")
        assert (key_one < key_two) == (first < second)

    def test_a_version_with_a_hyphen_is_a_pre_release(self) -> None:
        assert grammar.is_prerelease("0.23.0-rc12")
        assert not grammar.is_prerelease("0.23.0")

    def test_the_sort_key_of_a_non_version_is_an_invalid_version(self) -> None:
        assert refusal(grammar.version_key, "0.10").code is ErrorCode.INVALID_VERSION

    @given(
        st.tuples(*[st.integers(0, 999_999)] * 3),
        st.tuples(*[st.integers(0, 999_999)] * 3),
    )
    def test_stable_versions_order_like_their_numbers(
        self, first: tuple[int, int, int], second: tuple[int, int, int]
    ) -> None:
        key_one = grammar.version_key(".".join(map(str, first)))
        key_two = grammar.version_key(".".join(map(str, second)))
        assert (key_one < key_two) == (first < second)
        assert (key_one == key_two) == (first == second)

    @given(
        st.tuples(*[st.integers(0, 999_999)] * 3),
        st.from_regex(r"[0-9A-Za-z]{1,8}(\.[0-9A-Za-z]{1,8}){0,3}", fullmatch=True),
    )
    def test_a_pre_release_sorts_below_its_release(
        self, numbers: tuple[int, int, int], pre_release: str
    ) -> None:
        release = ".".join(map(str, numbers))
        assert grammar.version_key(f"{release}-{pre_release}") < grammar.version_key(release)


# --- env --------------------------------------------------------------------------------------


class TestEnvironmentNames:
    @pytest.mark.parametrize("name", ["A", "_", "GOMEMLIMIT", "PB_ENCRYPTION_KEY", "A1", "X" * 128])
    def test_an_uppercase_name_of_letters_digits_and_underscores_passes(self, name: str) -> None:
        assert grammar.check_env_name(name) == name

    @pytest.mark.parametrize(
        "name",
        [
            pytest.param("", id="empty"),
            pytest.param("gomemlimit", id="lowercase"),
            pytest.param("1A", id="starts-with-digit"),
            pytest.param("A-B", id="hyphen"),
            pytest.param("A B", id="space"),
            pytest.param("A=B", id="equals"),
            pytest.param("A.B", id="dot"),
            pytest.param("$A", id="dollar"),
            pytest.param("A\n", id="newline"),
            pytest.param("A\x00", id="nul"),
            pytest.param("A\nExecStartPre=/bin/sh", id="newline-injection"),
            pytest.param("\uff21B", id="fullwidth"),
            pytest.param("\u00c4", id="umlaut"),
            pytest.param("\u0410", id="cyrillic-a"),
            pytest.param("X" * 129, id="longer-than-128"),
            pytest.param("A" * 100_000, id="very-long"),
        ],
    )
    def test_anything_else_is_an_invalid_environment_name(self, name: str) -> None:
        assert refusal(grammar.check_env_name, name).code is ErrorCode.INVALID_ENV_NAME

    @pytest.mark.parametrize(
        "name", ["LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "LD_DEBUG_OUTPUT", "LD_"]
    )
    def test_the_dynamic_loaders_variables_are_reserved(self, name: str) -> None:
        error = refusal(grammar.check_env_name, name)
        assert error.code is ErrorCode.RESERVED_ENV_NAME
        assert name in error.message

    @pytest.mark.parametrize("name", ["LD", "OLD_PRELOAD", "LDAP_URL", "_LD_PRELOAD"])
    def test_names_that_only_look_like_the_loaders_pass(self, name: str) -> None:
        assert grammar.check_env_name(name) == name

    @given(st.one_of(any_text, st.from_regex(r"[A-Za-z0-9_]{1,20}", fullmatch=True)))
    def test_an_accepted_name_only_has_the_characters_of_the_grammar(self, text: str) -> None:
        if accepts(grammar.check_env_name, text):
            assert ENV_NAME_GRAMMAR.fullmatch(text)
            assert len(text) <= 128


class TestEnvironmentValues:
    @pytest.mark.parametrize(
        "value",
        [
            "",
            "x",
            "value with spaces",
            "quotes \" and ' and $HOME and %h and {braces} and # and ,",
            "\u00fcn\u00efc\u00f6d\u00e9 \u2603",
            "x" * 4096,
        ],
    )
    def test_printable_text_up_to_4096_characters_passes_unchanged(self, value: str) -> None:
        assert grammar.check_env_value(value) == value

    @pytest.mark.parametrize(
        "value",
        [
            pytest.param("\n", id="newline"),
            pytest.param("a\nb", id="inner-newline"),
            pytest.param("x\nExecStartPre=/bin/sh", id="newline-injection"),
            pytest.param("a\rb", id="carriage-return"),
            pytest.param("a\x00b", id="nul"),
            pytest.param("\x1b[31mred", id="escape-sequence"),
            pytest.param("a\x7fb", id="delete"),
            pytest.param("a\tb", id="tab"),
            pytest.param("x" * 4097, id="longer-than-4096"),
            pytest.param("x" * 1_000_000, id="very-long"),
        ],
    )
    def test_control_characters_and_overlong_values_are_invalid(self, value: str) -> None:
        assert refusal(grammar.check_env_value, value).code is ErrorCode.INVALID_ENV_VALUE

    @pytest.mark.parametrize(
        "value",
        [
            pytest.param("a\x85b", id="next-line-c1-control"),
            pytest.param("a\x9bb", id="c1-control-sequence-introducer"),
            pytest.param("a\u2028b", id="line-separator"),
            pytest.param("a\u2029b", id="paragraph-separator"),
        ],
    )
    def test_unicode_newlines_and_c1_controls_are_invalid(self, value: str) -> None:
        assert refusal(grammar.check_env_value, value).code is ErrorCode.INVALID_ENV_VALUE

    @pytest.mark.parametrize(
        "character", [*"\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"]
    )
    def test_bidirectional_overrides_and_isolates_are_invalid(self, character: str) -> None:
        error = refusal(grammar.check_env_value, f"safe{character}txt.exe")
        assert error.code is ErrorCode.INVALID_ENV_VALUE
        assert "bidirectional" in error.message

    def test_right_to_left_text_and_direction_marks_pass(self) -> None:
        value = "\u05e9\u05dc\u05d5\u05dd \u200fshalom\u200e"
        assert grammar.check_env_value(value) == value

    @given(any_text)
    def test_an_accepted_value_never_holds_a_control_or_bidi_character(self, text: str) -> None:
        if accepts(grammar.check_env_value, text):
            assert not CONTROL_CHARACTERS.search(text)
            assert not BIDI_CONTROLS.search(text)
            assert len(text) <= 4096


# --- resources --------------------------------------------------------------------------------


class TestMemoryLimits:
    @pytest.mark.parametrize(
        ("value", "size"),
        [
            ("512M", 512 * 1024**2),
            ("1G", 1024**3),
            ("16M", 16 * 1024**2),
            ("16777216", 16 * 1024**2),
            ("1T", 1024**4),
            ("infinity", None),
            ("20%", None),
            ("100%", None),
        ],
    )
    def test_systemd_sizes_percentages_and_infinity_pass(
        self, value: str, size: int | None
    ) -> None:
        assert grammar.memory_limit_bytes(value) == size

    @pytest.mark.parametrize(
        "value",
        [
            pytest.param("15M", id="below-16M"),
            pytest.param("2048K", id="kilobytes-below-16M"),
            pytest.param("16777215", id="one-byte-below-16M"),
            pytest.param("0", id="zero"),
            pytest.param("0%", id="zero-percent"),
            pytest.param("101%", id="over-100-percent"),
            pytest.param("512m", id="lowercase-suffix"),
            pytest.param("512MB", id="two-letter-suffix"),
            pytest.param("1P", id="unknown-suffix"),
            pytest.param("1.5G", id="fraction"),
            pytest.param("-1", id="negative"),
            pytest.param("", id="empty"),
            pytest.param(" 512M", id="leading-space"),
            pytest.param("512M\n", id="trailing-newline"),
            pytest.param("512M\nMemoryMax=infinity", id="newline-injection"),
            pytest.param("\uff15\uff11\uff12M", id="fullwidth-digits"),
            pytest.param("Infinity", id="capitalised-infinity"),
            pytest.param("9" * 100_000, id="very-long"),
        ],
    )
    def test_anything_else_is_an_invalid_memory_limit(self, value: str) -> None:
        assert refusal(grammar.memory_limit_bytes, value).code is ErrorCode.INVALID_MEMORY_LIMIT

    @pytest.mark.parametrize("value", ["999999999999999T", "999999999999999G", "16777216T"])
    def test_a_size_systemd_cannot_hold_is_an_invalid_memory_limit(self, value: str) -> None:
        error = refusal(grammar.memory_limit_bytes, value)
        assert error.code is ErrorCode.INVALID_MEMORY_LIMIT
        assert "infinity" in error.message

    def test_the_largest_size_is_just_below_2_to_the_63_bytes(self) -> None:
        assert grammar.memory_limit_bytes("8388607T") == 8388607 * 1024**4
        assert grammar.memory_limit_bytes("999999999999999") == 999999999999999
        error = refusal(grammar.memory_limit_bytes, "8388608T")
        assert error.code is ErrorCode.INVALID_MEMORY_LIMIT

    @given(st.integers(0, 10**15 - 1), st.sampled_from(["", "K", "M", "G", "T"]))
    def test_an_accepted_size_fits_a_signed_64_bit_number(self, number: int, suffix: str) -> None:
        try:
            size = grammar.memory_limit_bytes(f"{number}{suffix}")
        except GrammarError:
            return
        assert size is not None
        assert 16 * 1024**2 <= size < 2**63


class TestCpuQuotas:
    @pytest.mark.parametrize("value", ["1%", "50%", "100%", "200%", "10000%"])
    def test_a_whole_percentage_from_1_to_10000_passes(self, value: str) -> None:
        assert grammar.check_cpu_quota(value) == value

    @pytest.mark.parametrize(
        "value",
        [
            pytest.param("0%", id="zero"),
            pytest.param("10001%", id="over-10000"),
            pytest.param("050%", id="leading-zero"),
            pytest.param("50", id="no-percent-sign"),
            pytest.param("1.5%", id="fraction"),
            pytest.param("-5%", id="negative"),
            pytest.param("50%\n", id="trailing-newline"),
            pytest.param("50% ", id="trailing-space"),
            pytest.param("\uff15\uff10%", id="fullwidth-digits"),
            pytest.param("5" * 100_000 + "%", id="very-long"),
        ],
    )
    def test_anything_else_is_an_invalid_cpu_quota(self, value: str) -> None:
        assert refusal(grammar.check_cpu_quota, value).code is ErrorCode.INVALID_CPU_QUOTA


# --- superuser_email and flags.origins --------------------------------------------------------


class TestEmails:
    @pytest.mark.parametrize(
        "email",
        [
            "admin@example.com",
            "a@b.co",
            "first.last+tag@sub.example.org",
            "x" * 64 + "@a.io",
            "a@1.com",
            "a@b-c.d-e",
            "x{y}'z@x.io",
        ],
    )
    def test_an_ascii_address_with_a_dotted_domain_passes(self, email: str) -> None:
        assert grammar.check_email(email) == email

    @pytest.mark.parametrize(
        "email",
        [
            pytest.param("admin", id="no-at"),
            pytest.param("a@b", id="single-label-domain"),
            pytest.param("a b@c.com", id="space"),
            pytest.param("a@b.com\n", id="trailing-newline"),
            pytest.param("a@b.com\nBcc: x@y.z", id="header-injection"),
            pytest.param('"a"@b.com', id="quoted-local-part"),
            pytest.param("a@b.com,c@d.com", id="two-addresses"),
            pytest.param("a@[127.0.0.1]", id="address-literal"),
            pytest.param("a@-b.com", id="label-starts-with-hyphen"),
            pytest.param("a@b..com", id="empty-label"),
            pytest.param("\u00e4@b.com", id="non-ascii-local-part"),
            pytest.param("a@\u0430pple.com", id="cyrillic-domain"),
            pytest.param("x" * 65 + "@b.com", id="local-part-over-64"),
            pytest.param("a@" + "b" * 250 + ".com", id="over-254"),
            pytest.param("a@b.com" * 100_000, id="very-long"),
            # What PocketBase's validator refuses (its superuser would never be made, and
            # the service never start): checked against the binary of the test mirror.
            pytest.param("0@0.0", id="top-level-label-of-digits"),
            pytest.param("a@b.c1", id="top-level-label-ending-in-a-digit"),
            pytest.param("a..b@x.com", id="two-dots-in-a-row"),
            pytest.param(".a@x.com", id="leading-dot"),
            pytest.param("a.@x.com", id="trailing-dot"),
        ],
    )
    def test_anything_else_is_an_invalid_email(self, email: str) -> None:
        assert refusal(grammar.check_email, email).code is ErrorCode.INVALID_EMAIL


class TestOrigins:
    @pytest.mark.parametrize(
        "origin",
        [
            "*",
            "https://app.example.com",
            "http://localhost:8080",
            "http://127.0.0.1:3000",
            "https://xn--bcher-kva.example",
        ],
    )
    def test_a_star_or_a_lowercase_http_origin_passes(self, origin: str) -> None:
        assert grammar.check_origin(origin) == origin

    @pytest.mark.parametrize(
        "origin",
        [
            pytest.param("https://a.com/", id="trailing-slash"),
            pytest.param("https://a.com/path", id="path"),
            pytest.param("https://A.com", id="uppercase"),
            pytest.param("javascript:alert(1)", id="javascript"),
            pytest.param("ftp://a.com", id="other-scheme"),
            pytest.param("https://a.com,https://b.com", id="comma-splits-the-flag"),
            pytest.param("https://*.a.com", id="wildcard-host"),
            pytest.param("https://a.com\n", id="trailing-newline"),
            pytest.param("https://a.com --dir=/", id="second-argument"),
            pytest.param("https://b\u00fccher.example", id="unicode-host"),
            pytest.param("https://-a.com", id="label-starts-with-hyphen"),
            pytest.param("https://user@a.com", id="userinfo"),
            pytest.param("", id="empty"),
        ],
    )
    def test_anything_else_is_an_invalid_flag_value(self, origin: str) -> None:
        assert refusal(grammar.check_origin, origin).code is ErrorCode.INVALID_FLAG_VALUE

    @pytest.mark.parametrize("origin", ["https://a.com:99999", "https://a.com:0"])
    def test_an_origin_with_a_port_outside_1_to_65535_is_invalid(self, origin: str) -> None:
        error = refusal(grammar.check_origin, origin)
        assert error.code is ErrorCode.INVALID_FLAG_VALUE
        assert "65535" in error.message

    @pytest.mark.parametrize("origin", ["https://a.com:080", "https://a.com:00443"])
    def test_an_origin_port_with_leading_zeros_is_invalid(self, origin: str) -> None:
        assert refusal(grammar.check_origin, origin).code is ErrorCode.INVALID_FLAG_VALUE

    @pytest.mark.parametrize("origin", ["https://a.com:1", "http://a.com:65535"])
    def test_the_ends_of_the_port_range_pass_in_an_origin(self, origin: str) -> None:
        assert grammar.check_origin(origin) == origin


# --- description and created_by ---------------------------------------------------------------


class TestFreeText:
    def test_one_printable_line_within_the_bound_passes(self) -> None:
        text = 'My app \u2603 with {braces} and "quotes" and 100% of it'
        assert grammar.check_free_text(text, 500) == text
        assert grammar.check_free_text("x" * 500, 500) == "x" * 500

    @pytest.mark.parametrize("length", [501, 1_000_000])
    def test_text_over_the_bound_is_too_long(self, length: int) -> None:
        error = refusal(lambda value: grammar.check_free_text(value, 500), "x" * length)
        assert error.code is ErrorCode.VALUE_TOO_LONG

    @pytest.mark.parametrize("text", ["a\nb", "a\rb", "a\x00b", "\x1b[2J", "a\tb", "a\x7f"])
    def test_control_characters_are_invalid_characters(self, text: str) -> None:
        error = refusal(lambda value: grammar.check_free_text(value, 500), text)
        assert error.code is ErrorCode.INVALID_CHARACTERS

    @pytest.mark.parametrize(
        "text", ["a\x85b", "a\x9bb", "a\u2028b", "a\u2029b"], ids=["nel", "csi", "ls", "ps"]
    )
    def test_unicode_line_breaks_and_c1_controls_are_invalid_characters(self, text: str) -> None:
        error = refusal(lambda value: grammar.check_free_text(value, 500), text)
        assert error.code is ErrorCode.INVALID_CHARACTERS

    @pytest.mark.parametrize("text", ["invoice\u202efdp.exe", "a\u2066b\u2069", "\u202ax\u202c"])
    def test_bidirectional_overrides_are_invalid_characters(self, text: str) -> None:
        error = refusal(lambda value: grammar.check_free_text(value, 500), text)
        assert error.code is ErrorCode.INVALID_CHARACTERS
        assert "bidirectional" in error.message

    def test_right_to_left_text_passes(self) -> None:
        text = "\u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627 \u200f!"
        assert grammar.check_free_text(text, 500) == text

    @given(any_text)
    def test_accepted_text_is_one_line_and_not_disguised(self, text: str) -> None:
        if accepts(lambda value: grammar.check_free_text(value, 500), text):
            assert not CONTROL_CHARACTERS.search(text)
            assert not BIDI_CONTROLS.search(text)
            assert len(text.splitlines()) <= 1

    def test_control_characters_are_detected_anywhere(self) -> None:
        assert grammar.has_control_characters("/run/secrets/\npw")
        assert grammar.has_control_characters("/run/secrets/\x85pw")
        assert grammar.has_control_characters("/run/secrets/\u2029pw")
        assert not grammar.has_control_characters("/run/secrets/pw")

    def test_bidirectional_controls_are_detected_anywhere(self) -> None:
        assert grammar.has_bidi_controls("/run/\u202egp.txt")
        assert not grammar.has_bidi_controls("/run/\u200f.txt")
