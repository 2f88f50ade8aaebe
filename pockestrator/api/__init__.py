"""The REST API under /api/pockestrator: aiohttp handlers over the agent's narrow interface.

``server`` builds the application and its middlewares (errors, Host/Origin guards, bearer
auth) from the route tables of ``system_routes``, ``service_routes``, ``log_routes`` and
``access_routes``; ``openapi`` turns the same tables and the pydantic ``models`` into the
OpenAPI document. The agent is reached only through ``context.AgentContext``.
"""
