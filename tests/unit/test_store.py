"""The specs store: uniqueness enforced by the database, ownership, status, events, secrets.

Every test runs on both backends (``store_backend``: SQLite and a real PostgreSQL).
"""

from __future__ import annotations

import threading

import pytest

from pockestrator.migrations import MIGRATIONS
from pockestrator.specs.errors import ErrorCode, FieldIssue
from pockestrator.specs.model import ServiceSpec, parse_spec
from pockestrator.specs.store import (
    API_OWNER,
    Conflict,
    NotFound,
    Store,
    file_owner,
)
from tests.testbed.store_backends import DATABASE_ERRORS, StoreBackend


def spec(name: str, port: int, **extra: object) -> ServiceSpec:
    return parse_spec(
        {"project_name": name, "port": port, "pocketbase_version": "0.29.0", **extra},
        "example.test",
    )


@pytest.fixture
def store(store_backend: StoreBackend) -> Store:
    return Store(store_backend.open())


class TestSchema:
    def test_a_new_database_is_migrated_to_the_latest_version(self, store: Store) -> None:
        assert store.schema_version == len(MIGRATIONS)

    def test_reopening_does_not_migrate_again(
        self, store: Store, store_backend: StoreBackend
    ) -> None:
        store.create_service(spec("keep", 9001))
        store.close()
        again = Store(store_backend.open())
        assert again.schema_version == len(MIGRATIONS)
        assert again.get_service("keep") is not None

    def test_events_cannot_be_rewritten(self, store: Store, store_backend: StoreBackend) -> None:
        event = store.add_event("a", "created", "made")
        with pytest.raises(DATABASE_ERRORS, match="append-only"):
            store_backend.execute_elsewhere(
                "UPDATE events SET message = 'x' WHERE id = ?", event.id
            )


class TestUniqueness:
    def test_a_second_service_with_the_same_name_is_a_duplicate(self, store: Store) -> None:
        store.create_service(spec("app", 9001))
        with pytest.raises(Conflict) as caught:
            store.create_service(spec("app", 9002, domain="elsewhere.example.test"))
        assert [(i.field, i.code) for i in caught.value.issues] == [
            ("project_name", ErrorCode.DUPLICATE_PROJECT_NAME)
        ]

    def test_every_taken_claim_is_reported_at_once(self, store: Store) -> None:
        store.create_service(spec("app", 9001))
        with pytest.raises(Conflict) as caught:
            store.create_service(spec("app", 9001))
        assert {(i.field, i.code) for i in caught.value.issues} == {
            ("project_name", ErrorCode.DUPLICATE_PROJECT_NAME),
            ("port", ErrorCode.PORT_IN_USE),
            ("domain", ErrorCode.DOMAIN_IN_USE),
        }

    def test_a_taken_port_is_in_use(self, store: Store) -> None:
        store.create_service(spec("one", 9001))
        with pytest.raises(Conflict) as caught:
            store.create_service(spec("two", 9001))
        assert caught.value.issues[0].code is ErrorCode.PORT_IN_USE
        assert caught.value.issues[0].field == "port"

    def test_a_taken_domain_is_in_use(self, store: Store) -> None:
        store.create_service(spec("one", 9001, domain="shared.example.test"))
        with pytest.raises(Conflict) as caught:
            store.create_service(spec("two", 9002, domain="shared.example.test"))
        assert caught.value.issues[0].code is ErrorCode.DOMAIN_IN_USE

    def test_changing_a_port_to_a_taken_one_is_refused_and_keeps_the_old_spec(
        self, store: Store
    ) -> None:
        store.create_service(spec("one", 9001))
        store.create_service(spec("two", 9002))
        with pytest.raises(Conflict):
            store.replace_spec("two", spec("two", 9001), API_OWNER)
        record = store.get_service("two")
        assert record is not None and record.spec.port == 9002

    def test_fifty_concurrent_creates_leave_exactly_one_winner_per_name_and_port(
        self, store_backend: StoreBackend
    ) -> None:
        store_backend.open()
        # 50 writers on separate connections: 10 names, each claimed 5 times, and every
        # port claimed twice (by two different names).
        attempts = [(f"svc{i % 10}", 9000 + (i % 25)) for i in range(50)]
        barrier = threading.Barrier(len(attempts))
        outcomes: list[tuple[str, int, str]] = []
        lock = threading.Lock()

        def create(name: str, port: int) -> None:
            store = Store(store_backend.open(pool_size=1))
            barrier.wait()
            try:
                store.create_service(spec(name, port))
                result = "won"
            except Conflict as exc:
                result = exc.issues[0].code.value
            finally:
                store.close()
            with lock:
                outcomes.append((name, port, result))

        threads = [threading.Thread(target=create, args=a) for a in attempts]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        final = Store(store_backend.open())
        services = {s.name: s.spec.port for s in final.list_services()[0]}
        winners = [(n, p) for n, p, result in outcomes if result == "won"]
        assert len(winners) == len(services)
        assert sorted(winners) == sorted(services.items())
        assert len(set(services.values())) == len(services), "a port was given out twice"
        assert len(services) <= 10
        losers = {result for _, _, result in outcomes if result != "won"}
        assert losers <= {"DUPLICATE_PROJECT_NAME", "PORT_IN_USE", "DOMAIN_IN_USE"}


class TestClaimsTaken:
    """``claims_taken``: the one place that says which name, port and domain are taken."""

    def test_a_spec_that_collides_with_nothing_takes_nothing(self, store: Store) -> None:
        store.create_service(spec("blog", 9001))
        assert store.claims_taken(spec("shop", 9002)) == []

    @pytest.mark.parametrize(
        ("candidate", "expected"),
        [
            (
                spec("blog", 9002, domain="other.example.test"),
                FieldIssue(
                    "project_name",
                    "Project name 'blog' already exists (created through the API)",
                    ErrorCode.DUPLICATE_PROJECT_NAME,
                ),
            ),
            (
                spec("shop", 9001),
                FieldIssue(
                    "port", "Port 9001 is already in use by service 'blog'", ErrorCode.PORT_IN_USE
                ),
            ),
            (
                spec("shop", 9002, domain="blog.example.test"),
                FieldIssue(
                    "domain",
                    "Domain blog.example.test is already used by service 'blog'",
                    ErrorCode.DOMAIN_IN_USE,
                ),
            ),
        ],
        ids=["name", "port", "domain"],
    )
    def test_each_kind_of_claim_has_one_message_and_the_references_code(
        self, store: Store, candidate: ServiceSpec, expected: FieldIssue
    ) -> None:
        store.create_service(spec("blog", 9001))
        assert store.claims_taken(candidate) == [expected]

    def test_every_claim_taken_is_listed_at_once_in_name_port_domain_order(
        self, store: Store
    ) -> None:
        store.create_service(spec("app", 9001, domain="app.elsewhere.test"))
        store.create_service(spec("shop", 9002, domain="shop.example.test"))
        store.create_service(spec("blog", 9003, domain="app.example.test"))
        assert store.claims_taken(spec("app", 9002)) == [
            FieldIssue(
                "project_name",
                "Project name 'app' already exists (created through the API)",
                ErrorCode.DUPLICATE_PROJECT_NAME,
            ),
            FieldIssue(
                "port", "Port 9002 is already in use by service 'shop'", ErrorCode.PORT_IN_USE
            ),
            FieldIssue(
                "domain",
                "Domain app.example.test is already used by service 'blog'",
                ErrorCode.DOMAIN_IN_USE,
            ),
        ]

    def test_the_validate_endpoint_gets_its_own_code_for_a_taken_name(self, store: Store) -> None:
        store.create_service(spec("app", 9001))
        [issue] = store.claims_taken(
            spec("app", 9002, domain="x.example.test"), name_code=ErrorCode.PROJECT_NAME_EXISTS
        )
        assert (issue.field, issue.code) == ("project_name", ErrorCode.PROJECT_NAME_EXISTS)

    def test_a_name_a_spec_file_holds_says_which_file(self, store: Store) -> None:
        store.sync_file("/specs/a.yaml", [spec("app", 9001)])
        [issue] = store.claims_taken(spec("app", 9002, domain="x.example.test"))
        assert issue.message == "Project name 'app' already exists (in spec file /specs/a.yaml)"

    def test_a_service_being_replaced_is_not_in_its_own_way(self, store: Store) -> None:
        store.create_service(spec("app", 9001))
        store.create_service(spec("blog", 9002))
        assert store.claims_taken(spec("app", 9001), replacing="app") == []
        moved = store.claims_taken(spec("app", 9002, domain="blog.example.test"), replacing="app")
        assert [(i.field, i.code) for i in moved] == [
            ("port", ErrorCode.PORT_IN_USE),
            ("domain", ErrorCode.DOMAIN_IN_USE),
        ]

    def test_a_write_is_refused_with_exactly_what_claims_taken_lists(self, store: Store) -> None:
        store.create_service(spec("app", 9001))
        store.create_service(spec("blog", 9002))
        newcomer = spec("app", 9002)
        with pytest.raises(Conflict) as created:
            store.create_service(newcomer)
        assert created.value.issues == store.claims_taken(newcomer)
        moved = spec("app", 9002, domain="blog.example.test")
        with pytest.raises(Conflict) as replaced:
            store.replace_spec("app", moved, API_OWNER)
        assert replaced.value.issues == store.claims_taken(moved, replacing="app")
        assert len(replaced.value.issues) == 2

    def test_a_spec_file_hears_of_every_claim_another_source_holds(self, store: Store) -> None:
        store.sync_file("/specs/a.yaml", [spec("app", 9001)])
        store.create_service(spec("blog", 9002))
        conflicts = store.sync_file(
            "/specs/b.yaml", [spec("app", 9002, domain="blog.example.test"), spec("new", 9003)]
        )
        assert conflicts == {
            "app": [
                FieldIssue(
                    "project_name",
                    "Project name 'app' already exists (in spec file /specs/a.yaml)",
                    ErrorCode.DUPLICATE_PROJECT_NAME,
                ),
                FieldIssue(
                    "port", "Port 9002 is already in use by service 'blog'", ErrorCode.PORT_IN_USE
                ),
                FieldIssue(
                    "domain",
                    "Domain blog.example.test is already used by service 'blog'",
                    ErrorCode.DOMAIN_IN_USE,
                ),
            ]
        }
        # Only the document in conflict waits; the holders are untouched.
        assert store.service_names() == ["app", "blog", "new"]
        holder = store.get_service("app")
        assert holder is not None and holder.source_file == "/specs/a.yaml"

    def test_a_spec_file_changing_its_own_service_is_not_in_its_own_way(self, store: Store) -> None:
        store.sync_file("/specs/a.yaml", [spec("app", 9001)])
        assert store.sync_file("/specs/a.yaml", [spec("app", 9001, description="new")]) == {}
        record = store.get_service("app")
        assert record is not None and record.generation == 2

    def test_a_spec_file_moving_onto_a_taken_port_keeps_its_last_good_spec(
        self, store: Store
    ) -> None:
        store.sync_file("/specs/a.yaml", [spec("app", 9001)])
        store.create_service(spec("blog", 9002))
        conflicts = store.sync_file("/specs/a.yaml", [spec("app", 9002)])
        assert [(i.field, i.code) for i in conflicts["app"]] == [("port", ErrorCode.PORT_IN_USE)]
        record = store.get_service("app")
        assert record is not None and (record.spec.port, record.generation) == (9001, 1)


class TestAliasClaims:
    """Aliases are domains like the main one: no domain answers for two services."""

    @pytest.mark.parametrize(
        ("holder", "candidate", "field"),
        [
            ({"domain": "a.example.test"}, {"proxy": {"aliases": ["a.example.test"]}}, "0"),
            (
                {"proxy": {"aliases": ["www.example.test"]}},
                {"proxy": {"aliases": ["x.example.test", "www.example.test"]}},
                "1",
            ),
            ({"proxy": {"aliases": ["shop.example.test"]}}, {"domain": "shop.example.test"}, ""),
        ],
        ids=["alias-on-a-domain", "alias-on-an-alias", "domain-on-an-alias"],
    )
    def test_a_domain_another_service_answers_to_is_taken_whichever_field_holds_it(
        self, store: Store, holder: dict[str, object], candidate: dict[str, object], field: str
    ) -> None:
        store.create_service(spec("blog", 9001, **holder))
        newcomer = spec("shop", 9002, **candidate)
        [issue] = store.claims_taken(newcomer)
        assert (issue.field, issue.code) == (
            f"proxy.aliases.{field}" if field else "domain",
            ErrorCode.DOMAIN_IN_USE,
        )
        assert "already used by service 'blog'" in issue.message
        with pytest.raises(Conflict) as refused:
            store.create_service(newcomer)
        assert refused.value.issues == [issue]

    def test_every_taken_alias_is_listed_after_the_domain(self, store: Store) -> None:
        store.create_service(spec("blog", 9001, proxy={"aliases": ["b.example.test"]}))
        store.create_service(spec("wiki", 9002, domain="w.example.test"))
        taken = store.claims_taken(
            spec(
                "shop",
                9003,
                domain="b.example.test",
                proxy={"aliases": ["free.example.test", "w.example.test", "blog.example.test"]},
            )
        )
        assert [(issue.field, issue.message) for issue in taken] == [
            ("domain", "Domain b.example.test is already used by service 'blog'"),
            ("proxy.aliases.1", "Domain w.example.test is already used by service 'wiki'"),
            ("proxy.aliases.2", "Domain blog.example.test is already used by service 'blog'"),
        ]

    def test_an_alias_let_go_by_a_change_or_a_deletion_is_free_again(self, store: Store) -> None:
        store.create_service(spec("blog", 9001, proxy={"aliases": ["old.example.test"]}))
        wanted = spec("shop", 9002, proxy={"aliases": ["old.example.test"]})
        assert store.claims_taken(wanted) != []
        store.replace_spec("blog", spec("blog", 9001), API_OWNER)
        assert store.claims_taken(wanted) == []
        store.replace_spec(
            "blog", spec("blog", 9001, proxy={"aliases": ["old.example.test"]}), API_OWNER
        )
        store.delete_service("blog")
        assert store.claims_taken(wanted) == []
        store.create_service(wanted)

    def test_a_service_keeps_its_own_aliases_when_it_is_replaced(self, store: Store) -> None:
        mine = spec("blog", 9001, proxy={"aliases": ["www.example.test"]})
        store.create_service(mine)
        changed = spec("blog", 9001, proxy={"aliases": ["www.example.test"], "hold_requests": 0})
        assert store.claims_taken(changed, replacing="blog") == []
        assert store.replace_spec("blog", changed, API_OWNER).spec == changed

    def test_a_spec_file_with_a_taken_alias_waits_and_the_holder_keeps_it(
        self, store: Store
    ) -> None:
        store.create_service(spec("blog", 9001, proxy={"aliases": ["www.example.test"]}))
        conflicts = store.sync_file(
            "/specs/a.yaml", [spec("shop", 9002, proxy={"aliases": ["www.example.test"]})]
        )
        assert [(issue.field, issue.code) for issue in conflicts["shop"]] == [
            ("proxy.aliases.0", ErrorCode.DOMAIN_IN_USE)
        ]
        assert store.service_names() == ["blog"]
        store.sync_file(
            "/specs/a.yaml", [spec("shop", 9002, proxy={"aliases": ["s.example.test"]})]
        )
        assert store.service_names() == ["blog", "shop"]

    def test_the_database_itself_refuses_a_domain_held_twice(
        self, store: Store, store_backend: StoreBackend
    ) -> None:
        store.create_service(spec("blog", 9001, proxy={"aliases": ["www.example.test"]}))
        store.create_service(spec("shop", 9002))
        with pytest.raises(DATABASE_ERRORS, match=r"(?i)unique"):
            store_backend.execute_elsewhere(
                "INSERT INTO service_domains (domain, name) VALUES ('www.example.test', 'shop')",
            )


class TestOwnership:
    def test_a_file_cannot_take_a_name_the_api_holds(self, store: Store) -> None:
        store.create_service(spec("app", 9001))
        conflicts = store.sync_file("/specs/a.yaml", [spec("app", 9005)])
        assert [issue.code for issue in conflicts["app"]] == [ErrorCode.OWNED_BY_OTHER_SOURCE]
        record = store.get_service("app")
        assert record is not None and record.owner == API_OWNER and record.spec.port == 9001

    def test_the_api_cannot_change_a_file_owned_service(self, store: Store) -> None:
        store.sync_file("/specs/a.yaml", [spec("app", 9001)])
        with pytest.raises(Conflict) as caught:
            store.replace_spec("app", spec("app", 9002), API_OWNER)
        assert caught.value.issues[0].code is ErrorCode.OWNED_BY_FILE
        assert "/specs/a.yaml" in caught.value.issues[0].message
        with pytest.raises(Conflict):
            store.delete_service("app", owner=API_OWNER)

    def test_a_file_sync_removes_what_the_file_no_longer_holds(self, store: Store) -> None:
        store.sync_file("/specs/a.yaml", [spec("one", 9001), spec("two", 9002)])
        store.sync_file("/specs/a.yaml", [spec("one", 9001)])
        assert store.service_names() == ["one"]
        deletion = store.pending_deletion("two")
        assert deletion is not None and deletion.purge is False

    def test_a_name_being_deleted_cannot_be_created_again_until_the_host_is_clean(
        self, store: Store
    ) -> None:
        store.create_service(spec("app", 9001))
        store.delete_service("app", purge=True)
        with pytest.raises(Conflict) as caught:
            store.create_service(spec("app", 9001))
        assert caught.value.issues[0].code is ErrorCode.DELETION_PENDING
        store.finish_deletion("app")
        store.create_service(spec("app", 9001))

    def test_a_spec_moved_to_another_file_carries_on_without_a_deletion(self, store: Store) -> None:
        created = store.sync_file("/specs/a.yaml", [spec("app", 9001)])
        assert created == {}
        first = store.get_service("app")
        store.sync_file("/specs/a.yaml", [])
        assert store.sync_file("/specs/b.yaml", [spec("app", 9001)]) == {}
        moved = store.get_service("app")
        assert moved is not None and first is not None
        assert moved.source_file == "/specs/b.yaml"
        assert store.pending_deletion("app") is None

    def test_a_purged_service_is_not_adopted_by_a_file(self, store: Store) -> None:
        store.sync_file("/specs/a.yaml", [spec("app", 9001)])
        store.delete_service("app", purge=True)
        conflicts = store.sync_file("/specs/b.yaml", [spec("app", 9001)])
        assert [issue.code for issue in conflicts["app"]] == [ErrorCode.DELETION_PENDING]

    def test_stop_on_a_file_service_is_an_override_that_a_file_change_replaces(
        self, store: Store
    ) -> None:
        store.sync_file("/specs/a.yaml", [spec("app", 9001)])
        record = store.set_desired_state("app", "stopped")
        assert record.run_override == "stopped" and record.desired_state == "stopped"
        # The same file content keeps the override...
        store.sync_file("/specs/a.yaml", [spec("app", 9001)])
        record = store.get_service("app")
        assert record is not None and record.desired_state == "stopped"
        # ...a new desired_state in the file is newer intent.
        store.sync_file("/specs/a.yaml", [spec("app", 9001, desired_state="stopped")])
        store.sync_file("/specs/a.yaml", [spec("app", 9001, desired_state="running")])
        record = store.get_service("app")
        assert record is not None and record.run_override is None
        assert record.desired_state == "running"

    def test_stop_on_an_api_service_changes_its_spec(self, store: Store) -> None:
        store.create_service(spec("app", 9001))
        record = store.set_desired_state("app", "stopped")
        assert record.spec.desired_state == "stopped" and record.run_override is None
        assert record.generation == 2

    def test_services_are_found_by_id_or_name(self, store: Store) -> None:
        created = store.create_service(spec("app", 9001))
        by_id = store.get_service(created.id)
        assert by_id is not None and by_id.name == "app"
        assert len(created.id) == 12
        with pytest.raises(NotFound):
            store.delete_service("nope")

    def test_a_name_that_is_another_services_id_finds_the_named_service(
        self, store: Store, store_backend: StoreBackend
    ) -> None:
        store.create_service(spec("app", 9001))
        # An id is 12 hex digits, so a project name can spell one (made so here).
        store_backend.execute_elsewhere(
            "UPDATE services SET id = 'abcdef123456' WHERE name = 'app'"
        )
        named = store.create_service(spec("abcdef123456", 9002))
        found = store.get_service("abcdef123456")
        assert found is not None and found.id == named.id
        by_id = store.get_service(named.id)
        assert by_id is not None and by_id.name == "abcdef123456"


class TestListing:
    def test_filters_and_pages_report_the_total(self, store: Store) -> None:
        for index in range(7):
            store.create_service(spec(f"svc{index}", 9000 + index))
        store.update_status("svc3", state="active")
        store.update_status("svc4", state="active")
        page, total = store.list_services(limit=3, offset=2)
        assert total == 7 and [r.name for r in page] == ["svc2", "svc3", "svc4"]
        active, total_active = store.list_services(state="active")
        assert total_active == 2 and [r.name for r in active] == ["svc3", "svc4"]
        deploying, _ = store.list_services(state="deploying")
        assert len(deploying) == 5
        by_domain, _ = store.list_services(domain="svc1.example.test")
        assert [r.name for r in by_domain] == ["svc1"]


class TestStatusAndEvents:
    def test_status_fields_round_trip(self, store: Store) -> None:
        status = store.update_status(
            "app", state="active", pid=42, config_match=True, memory_bytes=1024
        )
        assert (status.state, status.pid, status.config_match, status.memory_bytes) == (
            "active",
            42,
            True,
            1024,
        )
        with pytest.raises(ValueError, match="unknown status fields"):
            store.update_status("app", bogus=1)
        with pytest.raises(ValueError, match="invalid state"):
            store.update_status("app", state="exploded")

    def test_events_list_newest_first_and_page_back(self, store: Store) -> None:
        ids = [store.add_event("app", "step", f"n{i}", {"i": i}).id for i in range(5)]
        store.add_event("other", "step", "elsewhere")
        newest = store.list_events("app", limit=2)
        assert [e.message for e in newest] == ["n4", "n3"]
        older = store.list_events("app", limit=10, before=ids[3])
        assert [e.details["i"] for e in older] == [2, 1, 0]

    def test_a_superuser_password_can_be_taken_once(self, store: Store) -> None:
        store.put_superuser_password("app", "s3cret")
        assert store.take_superuser_password("app") == "s3cret"
        assert store.take_superuser_password("app") is None


def test_file_owner_names_the_file() -> None:
    assert file_owner("/etc/pockestrator/specs/a.yaml") == "file:/etc/pockestrator/specs/a.yaml"


def test_running_ports_follow_the_desired_state_and_its_override(store: Store) -> None:
    store.create_service(spec("api-run", 9001))
    store.create_service(spec("api-stop", 9002, desired_state="stopped"))
    store.sync_file("/specs/a.yaml", [spec("file-run", 9003), spec("file-held", 9004)])
    store.set_desired_state("file-held", "stopped")
    assert store.running_ports() == {"api-run": 9001, "file-run": 9003}


def test_a_probe_round_does_not_bring_back_the_status_of_a_deleted_service(
    store: Store,
) -> None:
    store.create_service(spec("gone", 9001))
    store.create_service(spec("kept", 9002))
    store.delete_service("gone")
    store.finish_deletion("gone")
    store.update_statuses({"gone": {"health_ok": False}, "kept": {"health_ok": True}})
    assert store.get_status("gone") is None
    kept = store.get_status("kept")
    assert kept is not None and kept.health_ok is True


def test_the_first_superusers_created_are_kept_in_the_status(store: Store) -> None:
    try:
        store.update_status("blog", superusers=("a@example.test", "b@example.test"))
        status = store.get_status("blog")
        assert status is not None and status.superusers == ("a@example.test", "b@example.test")
        assert store.update_status("blog", state="active").superusers == (
            "a@example.test",
            "b@example.test",
        )
    finally:
        store.close()
