"""Province server example: HTTP API with OpenAPI, area-scoped auth, dashboard, live status.

Uses only tcs-core's public API. ``create_app(system, config=...)`` returns an aiohttp
application; ``serve(app)`` starts it on a port; ``python -m province_server`` (with
``examples/`` on ``sys.path``) runs it from the command line. See docs/server.md.
"""

from .api import ApiError, Ctx, Op, Param
from .auth import CredentialStore, RateLimiter
from .config import ServerConfig
from .server import create_app, credentials, openapi_document, serve

__all__ = [
    "ApiError",
    "CredentialStore",
    "Ctx",
    "Op",
    "Param",
    "RateLimiter",
    "ServerConfig",
    "create_app",
    "credentials",
    "openapi_document",
    "serve",
]
