"""A fleet node's sites read their upstream from a file, so that a move's switch needs no
Caddy config load (controllers.caddy.upstreams, render_site, mover_routes)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pockestrator.agent.mover_routes import in_place_forward
from pockestrator.config import AgentConfig, StoreConfig
from pockestrator.controllers.caddy import SiteSettings, render_site
from pockestrator.controllers.caddy.upstreams import (
    local_upstream,
    read_upstream,
    remove_upstream,
    resolve_placeholders,
    upstream_dir,
    upstream_placeholder,
    write_upstream,
)
from pockestrator.specs.errors import ErrorCode
from pockestrator.specs.grammar import GrammarError
from pockestrator.specs.store import ServiceRecord
from tests.testbed.builders import my_app_spec as spec

FOLDER = Path("/etc/caddy/pockestrator.d/upstreams")


def config(tmp_path: Path, backend: str, **fields: Any) -> AgentConfig:
    dsn = "host=db" if backend == "postgresql" else None
    store = StoreConfig(backend=backend, dsn=dsn)  # type: ignore[arg-type]
    return AgentConfig(caddy_sites_dir=tmp_path / "sites", store=store, **fields)


def test_a_fleet_nodes_site_names_its_upstream_file_and_keeps_the_port_in_view() -> None:
    text = render_site(spec(), SiteSettings(tls="off", upstream_dir=FOLDER))
    assert f"reverse_proxy tcp/{{file.{FOLDER}/my-app.upstream}} {{" in text
    assert "reverse_proxy 127.0.0.1" not in text
    # A change of port changes the text (the reconciler rewrites the site, and the file).
    assert "127.0.0.1:8090" in text
    assert render_site(spec(port=8091), SiteSettings(tls="off", upstream_dir=FOLDER)) != text


def test_a_host_of_its_own_renders_the_port_as_before() -> None:
    text = render_site(spec(), SiteSettings(tls="off"))
    assert "reverse_proxy 127.0.0.1:8090 {" in text and "{file." not in text


def test_only_a_node_on_the_shared_store_reads_upstreams_from_files(tmp_path: Path) -> None:
    assert upstream_dir(config(tmp_path, "sqlite")) is None
    assert upstream_dir(config(tmp_path, "postgresql")) == tmp_path / "sites" / "upstreams"


@pytest.mark.parametrize(
    "folder", [Path("/etc/caddy/with space"), Path("/etc/caddy/a}b"), Path("/etc/../root")]
)
def test_an_upstream_file_caddy_could_misread_is_refused(folder: Path) -> None:
    with pytest.raises(GrammarError) as refused:
        upstream_placeholder(folder, "my-app")
    assert refused.value.code == ErrorCode.INVALID_PATH


@pytest.mark.parametrize("name", ["../etc", "My-App", "a/b"])
def test_an_upstream_file_is_named_only_by_a_project_name(name: str) -> None:
    with pytest.raises(GrammarError):
        upstream_placeholder(FOLDER, name)


@pytest.mark.parametrize("address", ["127.0.0.1:80 ", "a b:80", "{env.X}:80", "hôte:80"])
def test_an_address_that_is_not_host_and_port_is_never_written(
    tmp_path: Path, address: str
) -> None:
    with pytest.raises(GrammarError):
        write_upstream(tmp_path, "my-app", address)
    assert read_upstream(tmp_path, "my-app") is None


@pytest.mark.parametrize("port", [80, 1023, 65536, True])
def test_a_local_upstream_is_a_service_port(port: int) -> None:
    with pytest.raises(GrammarError):
        local_upstream(port)


def test_an_upstream_is_rewritten_only_when_it_changes(tmp_path: Path) -> None:
    assert write_upstream(tmp_path, "my-app", "127.0.0.1:8090")
    assert (tmp_path / "my-app.upstream").read_text() == "127.0.0.1:8090\n"
    assert not write_upstream(tmp_path, "my-app", "127.0.0.1:8090")
    assert write_upstream(tmp_path, "my-app", "10.0.0.2:80")
    assert read_upstream(tmp_path, "my-app") == "10.0.0.2:80"
    remove_upstream(tmp_path, "my-app")
    remove_upstream(tmp_path, "my-app")  # twice: nothing to remove is no error
    assert read_upstream(tmp_path, "my-app") is None


def test_requests_in_flight_are_counted_under_the_address_the_file_names(
    tmp_path: Path,
) -> None:
    write_upstream(tmp_path, "my-app", "127.0.0.1:8090")
    placeholder = upstream_placeholder(tmp_path, "my-app")
    missing = upstream_placeholder(tmp_path, "gone")
    counts = {placeholder: 2, "127.0.0.1:8090": 1, missing: 4, "127.0.0.1:9000": 3}
    assert resolve_placeholders(counts) == {"127.0.0.1:8090": 3, missing: 4, "127.0.0.1:9000": 3}


def test_a_file_upstream_that_is_not_ours_is_counted_under_its_own_key(tmp_path: Path) -> None:
    """An operator's own site may read its upstream from any file: its count stays as
    Caddy keys it, and the look does not fail (it would stop every service's sleep)."""
    foreign = f"tcp/{{file.{tmp_path}/Not_A_Name.upstream}}"
    folder = tmp_path / "folder.upstream"
    folder.mkdir()
    as_folder = f"tcp/{{file.{tmp_path}/folder.upstream}}"
    counts = {foreign: 1, as_folder: 2}
    assert resolve_placeholders(counts) == counts


def record(**fields: Any) -> ServiceRecord:
    at = datetime(2026, 12, 2, tzinfo=UTC)
    return ServiceRecord("id1", spec(**fields), "owner", None, at, at, 1, node="beta")


@pytest.mark.parametrize(
    ("backend", "tls", "has_site", "in_place"),
    [
        ("postgresql", "off", True, True),  # the own site kept, its file names the target
        ("postgresql", "off", False, False),  # the site gone: the forward is a route
        ("postgresql", "auto", True, False),  # HTTPS between the Caddies: a route
        ("sqlite", "off", True, False),  # no file-read upstream off a fleet
    ],
)
def test_a_forward_is_kept_in_the_own_site_only_over_plain_http_on_a_fleet_node(
    tmp_path: Path, backend: str, tls: str, has_site: bool, in_place: bool
) -> None:
    node = config(tmp_path, backend, caddy_tls=tls)
    own = {"my-app"} if has_site else set()
    assert in_place_forward(node, record(), own) is in_place
