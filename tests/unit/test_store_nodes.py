"""The nodes of a fleet in the store, on both backends: registration, the lease and whose
clock judges it, which node a service runs on, and what is unique where (a port per node;
names and domains across the fleet)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pockestrator.clock import FakeClock
from pockestrator.database import StoreDatabase
from pockestrator.specs.errors import ErrorCode, SpecInvalid
from pockestrator.specs.model import ServiceSpec, parse_spec
from pockestrator.specs.store import SECRETS_FOLDER, Conflict, NodeInfo, Store
from pockestrator.specs.store.placement import Candidate, choose_node
from tests.testbed.store_backends import StoreBackend

HOUR = timedelta(hours=1)
GIB = 1024**3


def spec(name: str, port: int, **extra: object) -> ServiceSpec:
    return parse_spec(
        {"project_name": name, "port": port, "pocketbase_version": "0.29.0", **extra},
        "example.test",
    )


def node(name: str, **changes: object) -> NodeInfo:
    values: dict[str, object] = {
        "name": name,
        "api_address": f"http://{name}.internal:8091",
        "public_address": f"{name}.example.test",
        "memory_bytes": 8 * 1024**3,
        "cpus": 4,
    }
    values.update(changes)
    return NodeInfo(**values)  # type: ignore[arg-type]


class Fleet:
    """Agents of one fleet: each node's view of one shared store."""

    def __init__(self, database: StoreDatabase) -> None:
        self.database = database

    def store(self, name: str) -> Store:
        """Node ``name``'s store, the node not registered."""
        return Store(self.database, node=name)

    def joined(self, name: str, lease: timedelta = HOUR, **changes: object) -> Store:
        """Node ``name``'s store, the node registered (``changes`` to its info) for ``lease``."""
        store = self.store(name)
        store.register_node(node(name, **changes), lease)
        return store


@pytest.fixture
def fleet(store_backend: StoreBackend) -> Fleet:
    """A fleet's shared store; only PostgreSQL holds one (one host's store is one node)."""
    if store_backend.name != "postgresql":
        pytest.skip("one host's store is one node")
    return Fleet(store_backend.open())


def test_a_registered_node_is_listed_ready_with_its_capacity(store_backend: StoreBackend) -> None:
    store = Store(store_backend.open(), node="a")
    record = store.register_node(node("a"), HOUR)
    assert record.state == "ready" and record.services == 0
    assert [n.name for n in store.list_nodes()] == ["a"]
    listed = store.list_nodes()[0]
    assert (listed.api_address, listed.public_address, listed.memory_bytes, listed.cpus) == (
        "http://a.internal:8091",
        "a.example.test",
        8 * 1024**3,
        4,
    )


def test_registering_again_updates_the_node_and_keeps_when_it_first_came(
    store_backend: StoreBackend,
) -> None:
    clock = FakeClock()
    store = Store(store_backend.open(), node="a", clock=clock)
    first = store.register_node(node("a"), HOUR)
    clock.advance(60)
    again = store.register_node(node("a", api_address="http://10.0.0.9:8091", cpus=8), HOUR)
    assert again.registered_at == first.registered_at
    assert (again.api_address, again.cpus) == ("http://10.0.0.9:8091", 8)
    assert len(store.list_nodes()) == 1


def test_a_node_whose_lease_ended_is_lost_until_it_renews(store_backend: StoreBackend) -> None:
    store = Store(store_backend.open(), node="a")
    store.register_node(node("a"), timedelta(0))
    assert store.list_nodes()[0].state == "lost"
    assert store.renew_lease("a", HOUR) is not None
    assert store.list_nodes()[0].state == "ready"


def test_renewing_a_node_that_is_not_registered_says_so(store_backend: StoreBackend) -> None:
    store = Store(store_backend.open(), node="a")
    assert store.renew_lease("a", HOUR) is None
    assert store.list_nodes() == []


def test_one_hosts_lease_runs_on_the_stores_clock(store_backend: StoreBackend) -> None:
    if store_backend.name != "sqlite":
        pytest.skip("a fleet's leases run on the server's clock (the next test)")
    clock = FakeClock()
    store = Store(store_backend.open(), node="a", clock=clock)
    store.register_node(node("a"), timedelta(seconds=30))
    clock.advance(29)
    assert store.list_nodes()[0].state == "ready"
    clock.advance(2)
    assert store.list_nodes()[0].state == "lost"


@pytest.mark.parametrize("skew", [timedelta(days=-3650), timedelta(days=3650)])
def test_a_fleets_lease_runs_on_the_servers_clock_whatever_a_hosts_says(
    store_backend: StoreBackend, skew: timedelta
) -> None:
    if store_backend.name != "postgresql":
        pytest.skip("one host's store has no server clock")
    # A host whose clock is ten years off neither ends a lease nor keeps one alive.
    wrong = FakeClock(datetime.now(UTC) + skew)
    store = Store(store_backend.open(), node="a", clock=wrong)
    record = store.register_node(node("a"), HOUR)
    assert abs(record.lease_expires_at - (datetime.now(UTC) + HOUR)) < timedelta(minutes=5)
    assert store.list_nodes()[0].state == "ready"
    store.register_node(node("a"), timedelta(0))
    assert store.list_nodes()[0].state == "lost"


def test_services_stored_before_there_were_nodes_are_adopted_by_the_first_agent(
    store_backend: StoreBackend,
) -> None:
    database = store_backend.open()
    Store(database).create_service(spec("old", 9001))
    store = Store(database, node="a")
    assert store.node_of("old") == ""
    assert store.register_node(node("a"), HOUR).services == 1
    assert store.node_of("old") == "a"
    store.create_service(spec("new", 9002))
    assert store.node_of("new") == "a"
    assert store.node_of("missing") is None


def test_a_port_is_unique_per_node(fleet: Fleet) -> None:
    on_a, on_b = fleet.store("a"), fleet.store("b")
    on_a.create_service(spec("one", 9001))
    on_b.create_service(spec("two", 9001))  # another node: free
    with pytest.raises(Conflict) as caught:
        on_a.create_service(spec("three", 9001))
    assert [(i.field, i.code) for i in caught.value.issues] == [("port", ErrorCode.PORT_IN_USE)]
    assert "service 'one'" in caught.value.issues[0].message
    assert {s.name: on_a.node_of(s.name) for s in on_a.list_services()[0]} == {
        "one": "a",
        "two": "b",
    }


def test_names_and_domains_are_unique_across_the_fleet(store_backend: StoreBackend) -> None:
    database = store_backend.open()
    on_a, on_b = Store(database, node="a"), Store(database, node="b")
    on_a.create_service(spec("app", 9001, domain="app.example.test"))
    with pytest.raises(Conflict) as caught:
        on_b.create_service(spec("app", 9002, domain="other.example.test"))
    assert [i.code for i in caught.value.issues] == [ErrorCode.DUPLICATE_PROJECT_NAME]
    with pytest.raises(Conflict) as caught:
        on_b.create_service(spec("shop", 9003, domain="app.example.test"))
    assert [i.code for i in caught.value.issues] == [ErrorCode.DOMAIN_IN_USE]


def test_a_service_replaced_keeps_its_node_and_its_port_is_judged_there(fleet: Fleet) -> None:
    on_a, on_b = fleet.store("a"), fleet.store("b")
    on_a.create_service(spec("one", 9001))
    on_b.create_service(spec("two", 9002))
    # Through b's API, a's service moves to a port b uses: free on a.
    on_b.replace_spec("one", spec("one", 9002), "api")
    assert on_b.node_of("one") == "a"
    assert on_b.claims_taken(spec("one", 9002), replacing="one") == []
    assert [i.code for i in on_b.claims_taken(spec("three", 9002))] == [ErrorCode.PORT_IN_USE]


@pytest.mark.parametrize(
    ("nodes", "needed", "chosen"),
    [
        # name, memory, reserved, services, port free
        ([("a", 8, 0, 0, True), ("b", 16, 0, 0, True)], None, "b"),
        ([("a", 8, 0, 0, True), ("b", 16, 12, 3, True)], None, "a"),
        ([("a", 8, 0, 0, True), ("b", 16, 0, 0, False)], None, "a"),
        ([("a", 8, 0, 0, False), ("b", 16, 0, 0, False)], None, None),
        ([("a", 8, 7, 1, True), ("b", 4, 3, 1, True)], 2, None),
        ([("a", 8, 5, 1, True), ("b", 4, 3, 1, True)], 2, "a"),
        ([("a", 8, 0, 2, True), ("b", 8, 0, 1, True)], None, "b"),  # fewer services
        ([("b", 8, 0, 0, True), ("a", 8, 0, 0, True)], None, "a"),  # then the name
    ],
)
def test_the_scheduler_takes_the_most_memory_left_where_the_port_is_free(
    nodes: list[tuple[str, int, int, int, bool]], needed: int | None, chosen: str | None
) -> None:
    found = [
        Candidate(name, memory * GIB, reserved * GIB, services, free)
        for name, memory, reserved, services, free in nodes
    ]
    picked = choose_node(found, None if needed is None else needed * GIB)
    assert (picked.name if picked else None) == chosen


def test_a_service_of_the_api_goes_to_the_node_with_the_most_memory_left_and_says_why(
    fleet: Fleet,
) -> None:
    on_a = fleet.joined("a", memory_bytes=8 * GIB)
    fleet.joined("b", memory_bytes=4 * GIB)
    first = on_a.create_service(spec("one", 9001, resources={"memory_max": "6G"}))
    assert first.node == "a"
    # a has 2 GiB left, b 4: the next goes to b although a's API received it.
    second = on_a.create_service(spec("two", 9002, resources={"memory_max": "1G"}))
    assert second.node == "b"
    placed = [e for e in on_a.list_events("two") if e.kind == "placed"]
    assert len(placed) == 1 and placed[0].details["node"] == "b"
    assert placed[0].details["received_by"] == "a"
    assert {c["node"]: c["free_bytes"] for c in placed[0].details["candidates"]} == {
        "a": 2 * GIB,
        "b": 4 * GIB,
    }


def test_a_lost_node_gets_no_new_service(fleet: Fleet) -> None:
    on_a = fleet.joined("a", memory_bytes=1 * GIB)
    fleet.joined("b", timedelta(0), memory_bytes=64 * GIB)
    assert on_a.create_service(spec("one", 9001)).node == "a"


def test_one_hosts_store_is_one_node_even_when_the_host_is_renamed(
    store_backend: StoreBackend,
) -> None:
    if store_backend.name != "sqlite":
        pytest.skip("in a fleet a renamed host is a new node")
    database = store_backend.open()
    old = Store(database, node="old-name")
    old.register_node(node("old-name"), HOUR)
    old.create_service(spec("app", 9001))
    old.delete_service("app")
    old.create_service(spec("kept", 9002))
    renamed = Store(database, node="new-name")
    assert renamed.register_node(node("new-name"), HOUR).services == 1
    assert [n.name for n in renamed.list_nodes()] == ["new-name"]
    assert renamed.node_of("kept") == "new-name"
    assert renamed.local_service_names() == ["app", "kept"]  # the deletion is its too


def test_in_a_fleet_another_nodes_services_are_not_this_nodes_to_reconcile(
    fleet: Fleet,
) -> None:
    on_a = fleet.joined("a")
    on_a.create_service(spec("mine", 9001))
    on_b = fleet.joined("b")
    assert on_b.local_service_names() == [] and on_a.local_service_names() == ["mine"]
    on_a.delete_service("mine")
    assert on_a.local_service_names() == ["mine"], "its deletion is a's to finish"
    assert on_b.pending_deletion("mine") is not None
    assert on_b.runs_here("a") is False and on_b.runs_here("") is True
    assert on_b.running_ports() == {}


def test_the_pre_flight_check_judges_the_port_where_placement_would_put_the_service(
    fleet: Fleet,
) -> None:
    on_a, on_b = fleet.joined("a"), fleet.joined("b")
    on_b.create_service(spec("held", 9001))
    assert on_b.node_of("held") == "a"  # a tie: the first name
    # Through a's API, port 9001 is taken on a but free on b, where it will go.
    assert on_a.claims_taken(spec("new", 9001)) == []
    assert on_a.create_service(spec("new", 9001)).node == "b"
    assert [i.code for i in on_a.claims_taken(spec("third", 9001))] == [ErrorCode.PORT_IN_USE]


def test_a_spec_naming_its_node_runs_there_and_an_unknown_node_is_refused(fleet: Fleet) -> None:
    on_a = fleet.joined("a", memory_bytes=64 * GIB)
    fleet.joined("b", memory_bytes=1 * GIB)
    # b has less memory left, but the spec says b.
    assert on_a.create_service(spec("pinned", 9001, node="b")).node == "b"
    placed = [e for e in on_a.list_events("pinned") if e.kind == "placed"]
    assert placed[0].message == "placed on node b, as its spec says"
    with pytest.raises(Conflict) as caught:
        on_a.create_service(spec("lost", 9002, node="zeta"))
    assert [(i.field, i.code) for i in caught.value.issues] == [("node", ErrorCode.INVALID_VALUE)]
    assert "No node named 'zeta'" in caught.value.issues[0].message
    assert on_a.get_service("lost") is None


def test_a_secret_value_for_a_service_of_another_node_is_refused_and_nothing_kept(
    store_backend: StoreBackend,
) -> None:
    if store_backend.name != "postgresql":
        pytest.skip("one host's store is one node")
    database = store_backend.open()
    on_a = Store(database, node="a")
    on_a.register_node(node("a"), HOUR)
    Store(database, node="b").register_node(node("b"), HOUR)
    secret = {"smtp": {"host": "smtp.example.com", "password": {"value": "hunter2-secret"}}}
    with pytest.raises(Conflict) as caught:
        on_a.create_service(spec("mailer", 9001, node="b", settings=secret))
    assert [(i.field, i.code) for i in caught.value.issues] == [
        ("settings.smtp.password", ErrorCode.SECRET_ON_ANOTHER_NODE)
    ]
    assert "Send this request to 'b's API" in caught.value.issues[0].message
    assert on_a.get_service("mailer") is None
    folder = on_a.path.parent / SECRETS_FOLDER
    assert not folder.exists() or not any(folder.rglob("*.*")), "no value was kept"
    # The same spec sent to the owning node's store is taken; so is one on the receiver.
    assert Store(database, node="b").create_service(spec("mailer", 9001, node="b", settings=secret))
    assert on_a.create_service(spec("local", 9002, node="a", settings=secret)).node == "a"
    # A change bringing a new value to another node's service is refused too.
    with pytest.raises(Conflict) as caught:
        on_a.replace_spec("mailer", spec("mailer", 9001, node="b", settings=secret), "api")
    assert caught.value.issues[0].code == ErrorCode.SECRET_ON_ANOTHER_NODE


def test_a_services_node_cannot_change_once_it_exists(store_backend: StoreBackend) -> None:
    store = Store(store_backend.open(), node="a")
    store.register_node(node("a"), HOUR)
    store.create_service(spec("app", 9001))
    with pytest.raises(Conflict) as caught:
        store.replace_spec("app", spec("app", 9001, node="b"), "api")
    assert [(i.field, i.code) for i in caught.value.issues] == [("node", ErrorCode.INVALID_VALUE)]
    kept = store.get_service("app")
    assert kept is not None and kept.node == "a" and kept.spec.node is None
    # Naming the node it runs on is no change of node.
    assert store.replace_spec("app", spec("app", 9001, node="a"), "api").node == "a"


def test_a_spec_file_cannot_send_its_service_to_another_node(store_backend: StoreBackend) -> None:
    store = Store(store_backend.open(), node="a")
    conflicts = store.sync_file("/specs/x.yaml", [spec("elsewhere", 9001, node="b")])
    assert [(i.field, i.code) for i in conflicts["elsewhere"]] == [
        ("node", ErrorCode.INVALID_VALUE)
    ]
    assert store.get_service("elsewhere") is None


@pytest.mark.parametrize("name", ["", "-a", "a-", "A", "a_b", "a" * 64, "a.b"])
def test_a_node_name_outside_the_grammar_is_refused_naming_the_field(name: str) -> None:
    with pytest.raises(SpecInvalid) as caught:
        spec("app", 9001, node=name)
    assert [(i.field, i.code) for i in caught.value.issues] == [("node", ErrorCode.INVALID_VALUE)]


@pytest.mark.parametrize(
    ("spreads", "chosen"),
    [
        ((0, 0), "a"),  # a tie: the most memory left (a)
        ((1, 0), "b"),  # a holds one with the key already: b, although it has less left
        ((1, 1), "a"),
    ],
)
def test_a_spread_key_sends_services_to_different_nodes_first(
    spreads: tuple[int, int], chosen: str
) -> None:
    found = [
        Candidate("a", 16 * GIB, 0, 1, True, spread=spreads[0]),
        Candidate("b", 8 * GIB, 0, 1, True, spread=spreads[1]),
    ]
    picked = choose_node(found, None)
    assert picked is not None and picked.name == chosen


def test_services_with_one_spread_key_land_on_different_nodes(fleet: Fleet) -> None:
    on_a = fleet.joined("a", memory_bytes=64 * GIB)
    fleet.joined("b", memory_bytes=8 * GIB)
    hint = {"spread": "shop"}
    first = on_a.create_service(spec("shop-1", 9001, placement=hint))
    second = on_a.create_service(spec("shop-2", 9002, placement=hint))
    assert {first.node, second.node} == {"a", "b"}
    # Without the hint, the most memory left wins: a.
    assert on_a.create_service(spec("other", 9003)).node == "a"
