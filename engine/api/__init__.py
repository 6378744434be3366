"""The admin HTTP API: loopback by default, a bearer token on every call but /health, JSON in
and out, described by openapi.yaml. The CLI's live commands (`status`, later agents, queues,
campaigns) talk to the daemon through it."""
from engine.api.server import AdminApi

__all__ = ["AdminApi"]
