"""The REST API under /api/pockestrator: aiohttp handlers over the agent's narrow interface.

``server`` builds the application and its middlewares (errors, Host/Origin guards, bearer
auth) from the route tables of ``system_routes``, ``service_routes`` (a package: reads,
writes, control, validation), ``log_routes`` and ``access_routes``; each operation is one
``routing.Operation``, and ``openapi`` turns the same tables and the pydantic ``models``
(a package: requests, problems, and the answers of each area) into the OpenAPI document.
The agent is reached only through ``context.AgentContext``.

What requests go through on the way in: ``guards`` (Host, Origin), ``auth`` (bearer tokens,
password checks, the client address), ``inputs`` (strict JSON, queries, merge patches);
on the way out: ``views`` (records to models), ``formatting``, ``errors`` (one error body).
``streams`` counts the open log streams against their cap.
"""
