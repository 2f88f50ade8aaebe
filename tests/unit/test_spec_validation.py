"""``validate_in_context``: can a well-formed spec be deployed here, now?

The checks against other services (name, port, domain), the agent's own port, the host's
real listeners and the release index. Other services are real rows of a real store, whose
``claims_taken`` says what they hold, as the API asks it. Ports are probed for real: these
tests bind real listening sockets on the loopback interface and never pretend one is
taken. The release index is a tiny in-test class with a fixed list of versions,
implementing the ``ReleaseIndex`` protocol exactly as a controller would.
"""

from __future__ import annotations

import contextlib
import socket
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from pockestrator.specs.errors import ErrorCode
from pockestrator.specs.model import ServiceSpec, parse_spec
from pockestrator.specs.store import NameTakenCode, Store
from pockestrator.specs.validation import (
    ReleaseIndex,
    ReleaseIndexUnavailable,
    ValidationReport,
    latest_stable,
    port_is_bound,
    validate_in_context,
)

DEFAULT_DOMAIN = "example.test"
AGENT_PORT = 8091


class FixedReleaseIndex:
    """A release index that knows a fixed list of versions and counts its calls."""

    def __init__(self, versions: Sequence[str]) -> None:
        self._versions = list(versions)
        self.calls = 0

    async def versions(self) -> Sequence[str]:
        self.calls += 1
        return list(self._versions)


class UnreachableReleaseIndex:
    """A release index that cannot be reached and has nothing cached."""

    async def versions(self) -> Sequence[str]:
        raise ReleaseIndexUnavailable("api.github.com: connection timed out")


class BrokenReleaseIndex:
    """A release index with a bug: anything but ReleaseIndexUnavailable."""

    async def versions(self) -> Sequence[str]:
        raise RuntimeError("bug in the index")


def spec(**changes: Any) -> ServiceSpec:
    data: dict[str, Any] = {
        "project_name": "app",
        "port": 8080,
        "pocketbase_version": "0.29.0",
        **changes,
    }
    return parse_spec(data, DEFAULT_DOMAIN)


def claim(name: str, port: int, domain: str | None = None) -> ServiceSpec:
    """An existing service: what it holds is its name, port and domain."""
    return spec(project_name=name, port=port, **({"domain": domain} if domain else {}))


async def validate(
    candidate: ServiceSpec,
    claims: Sequence[ServiceSpec] = (),
    *,
    agent_port: int | None = AGENT_PORT,
    release_index: ReleaseIndex | None = None,
    check_host_port: bool = False,
    replacing: str | None = None,
    name_code: NameTakenCode = ErrorCode.PROJECT_NAME_EXISTS,
) -> ValidationReport:
    """Validation next to the services ``claims``, in a store of their own, as the API runs
    it (``replacing`` names the service updated); the host probe is off unless a test asks
    for it (ports here are made up)."""
    with tempfile.TemporaryDirectory() as folder:
        store = Store(Path(folder) / "pockestrator.db")
        try:
            for existing in claims:
                store.create_service(existing)
            taken = store.claims_taken(candidate, replacing=replacing, name_code=name_code)
            current = store.get_service(replacing) if replacing else None
        finally:
            store.close()
    return await validate_in_context(
        candidate,
        taken=taken,
        agent_port=agent_port,
        release_index=release_index,
        own_port=current.spec.port if current else None,
        check_host_port=check_host_port,
    )


def problems(issues: Sequence[Any]) -> list[tuple[str, ErrorCode]]:
    return [(issue.field, issue.code) for issue in issues]


@contextlib.contextmanager
def listening(
    host: str = "127.0.0.1", family: socket.AddressFamily = socket.AF_INET
) -> Iterator[int]:
    """A real listening TCP socket on a kernel-chosen port; yields the port."""
    with socket.socket(family, socket.SOCK_STREAM) as server:
        if family == socket.AF_INET6:
            server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        server.bind((host, 0))
        server.listen()
        yield server.getsockname()[1]


def free_port() -> int:
    """A port nothing listens on right now (the kernel just handed it out and it was closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# --- a spec with nothing in its way -----------------------------------------------------------


class TestASpecWithNothingInItsWay:
    async def test_a_spec_next_to_unrelated_services_is_valid_with_every_check_true(self) -> None:
        port = free_port()
        report = await validate(
            spec(port=port), [claim("blog", port + 1), claim("shop", 8082)], check_host_port=True
        )
        assert report.valid
        assert report.errors == [] and report.warnings == []
        assert report.checks == {
            "project_name_available": True,
            "port_available": True,
            "domain_valid": True,
            "version_exists": True,
        }

    async def test_without_a_release_index_the_version_is_not_checked(self) -> None:
        report = await validate(spec(pocketbase_version="9.9.9"), release_index=None)
        assert report.valid and report.checks["version_exists"]


# --- project_name -----------------------------------------------------------------------------


class TestTheNameMustBeFree:
    async def test_a_name_another_service_holds_exists_already(self) -> None:
        report = await validate(spec(), [claim("app", 9000, "other.example.test")])
        assert problems(report.errors) == [("project_name", ErrorCode.PROJECT_NAME_EXISTS)]
        assert "app" in report.errors[0].message
        assert report.checks["project_name_available"] is False
        assert not report.valid

    async def test_the_caller_chooses_the_code_for_a_taken_name(self) -> None:
        report = await validate(
            spec(),
            [claim("app", 9000, "other.example.test")],
            name_code=ErrorCode.DUPLICATE_PROJECT_NAME,
        )
        assert problems(report.errors) == [("project_name", ErrorCode.DUPLICATE_PROJECT_NAME)]

    async def test_a_service_being_replaced_does_not_conflict_with_itself(self) -> None:
        own = claim("app", 8080)
        report = await validate(spec(), [own], replacing="app")
        assert report.valid
        assert report.checks["project_name_available"] is True


# --- port -------------------------------------------------------------------------------------


class TestThePortMustBeFree:
    async def test_the_agents_own_port_is_reserved(self) -> None:
        report = await validate(spec(port=AGENT_PORT))
        assert problems(report.errors) == [("port", ErrorCode.PORT_RESERVED)]
        assert report.checks["port_available"] is False

    async def test_a_port_another_service_holds_is_in_use_and_the_holder_is_named(self) -> None:
        report = await validate(spec(), [claim("blog", 8080)])
        assert problems(report.errors) == [("port", ErrorCode.PORT_IN_USE)]
        assert "blog" in report.errors[0].message
        assert report.checks["port_available"] is False

    async def test_a_service_keeping_its_own_port_does_not_conflict(self) -> None:
        report = await validate(spec(), [claim("app", 8080)], replacing="app")
        assert report.valid

    async def test_a_service_moving_onto_another_services_port_is_in_use(self) -> None:
        report = await validate(
            spec(port=8081), [claim("app", 8080), claim("blog", 8081)], replacing="app"
        )
        assert problems(report.errors) == [("port", ErrorCode.PORT_IN_USE)]

    async def test_the_agents_port_outranks_another_service_on_it(self) -> None:
        report = await validate(spec(port=AGENT_PORT), [claim("blog", AGENT_PORT)])
        assert problems(report.errors) == [("port", ErrorCode.PORT_RESERVED)]
        assert report.checks["port_available"] is False

    async def test_the_agents_port_is_reported_once_even_when_it_is_listening(self) -> None:
        with listening() as agent_port:
            report = await validate(
                spec(port=agent_port), agent_port=agent_port, check_host_port=True
            )
        assert problems(report.errors) == [("port", ErrorCode.PORT_RESERVED)]


class TestThePortMustNotBeBoundOnTheHost:
    async def test_a_port_a_process_listens_on_is_in_use(self) -> None:
        with listening() as port:
            report = await validate(spec(port=port), check_host_port=True)
        assert problems(report.errors) == [("port", ErrorCode.PORT_IN_USE)]
        assert "another process" in report.errors[0].message
        assert report.checks["port_available"] is False

    async def test_a_listener_on_every_ipv4_address_holds_the_loopback_port(self) -> None:
        with listening("0.0.0.0") as port:
            report = await validate(spec(port=port), check_host_port=True)
        assert problems(report.errors) == [("port", ErrorCode.PORT_IN_USE)]

    async def test_a_dual_stack_ipv6_listener_holds_the_loopback_port(self) -> None:
        if not socket.has_ipv6:
            pytest.skip("this machine has no IPv6 sockets")
        with contextlib.ExitStack() as stack:
            try:
                port = stack.enter_context(listening("::", socket.AF_INET6))
            except OSError as exc:
                pytest.skip(f"cannot listen on [::]: {exc}")
            report = await validate(spec(port=port), check_host_port=True)
        assert problems(report.errors) == [("port", ErrorCode.PORT_IN_USE)]

    async def test_a_free_port_passes(self) -> None:
        port = free_port()
        report = await validate(spec(port=port), check_host_port=True)
        assert report.valid
        assert report.checks["port_available"] is True

    async def test_a_port_freed_by_its_listener_is_free_again(self) -> None:
        with listening() as port:
            assert port_is_bound(port)
        assert not port_is_bound(port)

    async def test_a_port_left_in_time_wait_by_a_reusable_listener_is_free(self) -> None:
        # Go's listeners (PocketBase's) set SO_REUSEADDR, as this one does; when the
        # server side closes first, its end of the connection stays in TIME_WAIT.
        with socket.socket() as server:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind(("127.0.0.1", 0))
            server.listen()
            port = server.getsockname()[1]
            with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
                accepted, _ = server.accept()
                accepted.close()
                assert client.recv(1) == b""
        with socket.socket() as plain, pytest.raises(OSError):
            plain.bind(("127.0.0.1", port))  # the TIME_WAIT entry is really there
        report = await validate(spec(port=port), check_host_port=True)
        assert report.valid

    async def test_the_host_probe_can_be_turned_off(self) -> None:
        with listening() as port:
            report = await validate(spec(port=port), check_host_port=False)
        assert report.valid

    async def test_a_service_keeping_its_port_is_not_probed_since_its_instance_listens_there(
        self,
    ) -> None:
        with listening() as port:
            report = await validate(
                spec(port=port), [claim("app", port)], replacing="app", check_host_port=True
            )
        assert report.valid

    async def test_a_service_moving_to_a_bound_port_is_probed(self) -> None:
        with listening() as port:
            report = await validate(
                spec(port=port), [claim("app", 8080)], replacing="app", check_host_port=True
            )
        assert problems(report.errors) == [("port", ErrorCode.PORT_IN_USE)]


# --- domain -----------------------------------------------------------------------------------


class TestTheDomainMustBeUnique:
    async def test_a_domain_another_service_serves_is_in_use_and_the_holder_is_named(
        self,
    ) -> None:
        report = await validate(
            spec(domain="shop.example.com"), [claim("shop", 8081, "shop.example.com")]
        )
        assert problems(report.errors) == [("domain", ErrorCode.DOMAIN_IN_USE)]
        assert "shop" in report.errors[0].message

    @pytest.mark.parametrize(
        "look_alike",
        [
            "SHOP.Example.COM",
            "shop.example.com.",
            "\uff53\uff48\uff4f\uff50.example.com",
            "sh\u00adop.example.com",
            "shop\u200b.example.com",
        ],
        ids=["case", "trailing-dot", "fullwidth", "soft-hyphen", "zero-width-space"],
    )
    async def test_a_look_alike_that_normalises_to_a_taken_domain_is_in_use(
        self, look_alike: str
    ) -> None:
        report = await validate(spec(domain=look_alike), [claim("shop", 8081, "shop.example.com")])
        assert problems(report.errors) == [("domain", ErrorCode.DOMAIN_IN_USE)]

    async def test_a_cyrillic_look_alike_is_a_different_domain(self) -> None:
        report = await validate(
            spec(domain="\u0455hop.example.com"), [claim("shop", 8081, "shop.example.com")]
        )
        assert report.valid

    async def test_a_default_domain_that_another_service_chose_explicitly_is_in_use(
        self,
    ) -> None:
        report = await validate(spec(), [claim("other", 8081, "app.example.test")])
        assert problems(report.errors) == [("domain", ErrorCode.DOMAIN_IN_USE)]

    async def test_a_service_keeping_its_own_domain_does_not_conflict(self) -> None:
        report = await validate(spec(), [claim("app", 8080)], replacing="app")
        assert report.valid


# --- pocketbase_version -----------------------------------------------------------------------


class TestTheVersionMustExist:
    async def test_a_version_the_index_does_not_have_is_not_found(self) -> None:
        index = FixedReleaseIndex(["0.28.0", "0.29.0"])
        report = await validate(spec(pocketbase_version="0.30.0"), release_index=index)
        assert problems(report.errors) == [("pocketbase_version", ErrorCode.VERSION_NOT_FOUND)]
        assert "0.30.0" in report.errors[0].message
        assert report.checks["version_exists"] is False
        assert index.calls == 1

    async def test_the_latest_version_passes_without_a_warning(self) -> None:
        index = FixedReleaseIndex(["0.28.0", "0.29.0"])
        report = await validate(spec(pocketbase_version="0.29.0"), release_index=index)
        assert report.valid and report.warnings == []
        assert report.checks["version_exists"] is True

    async def test_an_older_version_passes_with_a_not_latest_warning_naming_the_latest(
        self,
    ) -> None:
        index = FixedReleaseIndex(["0.28.0", "0.29.0"])
        report = await validate(spec(pocketbase_version="0.28.0"), release_index=index)
        assert report.valid
        assert problems(report.warnings) == [("pocketbase_version", ErrorCode.VERSION_NOT_LATEST)]
        assert "0.29.0" in report.warnings[0].message

    async def test_latest_is_decided_as_versions_not_as_text(self) -> None:
        index = FixedReleaseIndex(["0.9.0", "0.10.0"])
        older = await validate(spec(pocketbase_version="0.9.0"), release_index=index)
        newer = await validate(spec(pocketbase_version="0.10.0"), release_index=index)
        assert problems(older.warnings) == [("pocketbase_version", ErrorCode.VERSION_NOT_LATEST)]
        assert newer.warnings == []

    async def test_a_release_outranks_its_own_release_candidate(self) -> None:
        index = FixedReleaseIndex(["1.0.0-rc1", "1.0.0"])
        candidate = await validate(spec(pocketbase_version="1.0.0-rc1"), release_index=index)
        release = await validate(spec(pocketbase_version="1.0.0"), release_index=index)
        assert problems(candidate.warnings) == [
            ("pocketbase_version", ErrorCode.VERSION_NOT_LATEST)
        ]
        assert release.warnings == []

    async def test_a_pre_release_newer_than_the_latest_release_is_not_warned_about(self) -> None:
        index = FixedReleaseIndex(["0.22.0", "0.23.0-rc12"])
        report = await validate(spec(pocketbase_version="0.23.0-rc12"), release_index=index)
        assert report.valid and report.warnings == []

    async def test_an_unreachable_index_is_a_warning_and_the_spec_stays_valid(self) -> None:
        report = await validate(spec(), release_index=UnreachableReleaseIndex())
        assert report.valid
        assert problems(report.warnings) == [
            ("pocketbase_version", ErrorCode.VERSION_CHECK_UNAVAILABLE)
        ]
        assert "connection timed out" in report.warnings[0].message
        assert report.checks["version_exists"] is True

    async def test_a_bug_in_the_index_is_not_mistaken_for_an_unreachable_index(self) -> None:
        with pytest.raises(RuntimeError, match="bug in the index"):
            await validate(spec(), release_index=BrokenReleaseIndex())


class TestTheLatestStableVersion:
    def test_the_latest_stable_version_ignores_pre_releases_and_compares_as_versions(
        self,
    ) -> None:
        assert latest_stable(["0.9.0", "0.10.0", "0.11.0-rc1"]) == "0.10.0"

    def test_there_is_no_latest_stable_version_among_only_pre_releases(self) -> None:
        assert latest_stable(["1.0.0-rc1", "1.0.0-rc2"]) is None
        assert latest_stable([]) is None


# --- everything at once -----------------------------------------------------------------------


class TestEveryProblemIsReportedAtOnce:
    async def test_a_taken_name_port_domain_and_a_missing_version_are_all_reported(
        self,
    ) -> None:
        index = FixedReleaseIndex(["0.28.0"])
        report = await validate(
            spec(domain="shop.example.com"),
            [claim("app", 9000, "x.example.test"), claim("shop", 8080, "shop.example.com")],
            release_index=index,
        )
        assert sorted(problems(report.errors)) == sorted(
            [
                ("project_name", ErrorCode.PROJECT_NAME_EXISTS),
                ("port", ErrorCode.PORT_IN_USE),
                ("domain", ErrorCode.DOMAIN_IN_USE),
                ("pocketbase_version", ErrorCode.VERSION_NOT_FOUND),
            ]
        )
        assert report.checks == {
            "project_name_available": False,
            "port_available": False,
            "domain_valid": True,
            "version_exists": False,
        }
        assert not report.valid
