"""From the store's records and the host view's answers to the API's response models (pure).

What the host shows comes from ``api.context.HostView`` (the agent's observations); these
functions only shape it.
"""

from __future__ import annotations

from pockestrator.accounts.store import TokenRecord
from pockestrator.api.context import ServiceRuntime
from pockestrator.api.errors import Problem
from pockestrator.api.formatting import short_hash
from pockestrator.api.models.access import TokenView
from pockestrator.api.models.logs import LogEntryView
from pockestrator.api.models.problems import Issue
from pockestrator.api.models.services import CertificateView, EventView, RuntimeStatus, Service
from pockestrator.config import AgentConfig
from pockestrator.journal import LogEntry
from pockestrator.specs.copying import copied
from pockestrator.specs.errors import FieldIssue
from pockestrator.specs.model import unit_name
from pockestrator.specs.public_url import PublicPorts, service_url
from pockestrator.specs.store import Event, ServiceRecord, ServiceStatus


def service_state(
    status: ServiceStatus | None, asleep: bool = False, node_lost: bool = False
) -> str:
    """The state the service's status records; ``deploying`` until it has a status;
    ``sleeping`` for an active one that sleeps (``agent.sleep``); ``node_lost`` whatever
    it recorded when its node's lease has ended (what it recorded is no longer known)."""
    if node_lost:
        return "node_lost"
    if status is None:
        return "deploying"
    return "sleeping" if asleep and status.state == "active" else status.state


def issue_view(problem: Problem | FieldIssue) -> Issue:
    return Issue(field=problem.field, message=problem.message, code=str(problem.code))


def service_view(
    record: ServiceRecord,
    status: ServiceStatus | None,
    config: AgentConfig,
    ports: PublicPorts,
    asleep: bool = False,
    node_lost: bool = False,
) -> Service:
    """The spec's fields as they are (the view takes those the API shows), then the
    record's and the status's; ``ports`` are Caddy's, for the URL."""
    spec = record.spec
    return Service.model_validate(
        {
            **spec.model_dump(mode="json"),
            "id": record.id,
            # Where it runs: the scheduler's choice when the spec named none; on a single
            # host, the host's node name.
            "node": record.node or config.node,
            "desired_state": record.desired_state,
            "status": service_state(status, asleep, node_lost),
            "created_at": record.created_at,
            "updated_at": record.updated_at,
            "systemd_config_hash": short_hash(status.systemd_config_hash if status else None),
            "caddy_config_hash": short_hash(status.caddy_config_hash if status else None),
            "last_health_check": status.last_health_check if status else None,
            "url": service_url(spec, config, ports),
            "service_name": unit_name(spec.project_name),
            "source": "file" if record.source_file else "api",
            "source_file": record.source_file,
            "deployed_version": status.deployed_version if status else None,
            "health_ok": status.health_ok if status else None,
            "last_error": status.last_error if status else None,
            "generation": record.generation,
            "observed_generation": status.observed_generation if status else None,
            "secret_env_names": sorted(spec.secret_env),
            "certificate": certificate_view(status),
        }
    )


def certificate_view(status: ServiceStatus | None) -> CertificateView | None:
    """The certificate the reconciler last saw Caddy serve; None before it first asked."""
    if status is None or status.certificate_checked_at is None:
        return None
    before, after = status.certificate_not_before, status.certificate_not_after
    return CertificateView(
        not_before=before,
        not_after=after,
        renews_after=after - (after - before) / 3 if before and after else None,
        issuer=status.certificate_issuer,
        checked_at=status.certificate_checked_at,
    )


def runtime_view(runtime: ServiceRuntime, status: ServiceStatus | None) -> RuntimeStatus:
    return copied(
        RuntimeStatus,
        runtime,
        last_checked=runtime.checked_at,
        error_message=runtime.error_message(status),
    )


def event_view(event: Event) -> EventView:
    return copied(EventView, event)


def token_view(token: TokenRecord) -> TokenView:
    return copied(TokenView, token, revoked=token.revoked_at is not None)


def log_entry_view(entry: LogEntry) -> LogEntryView:
    return copied(LogEntryView, entry, line=entry.as_line())
