"""Server configuration: listen address, auth store, limits, and the secrets it needs.

Secrets (the session key, the first administrator's password) never come from code: each is read
from the environment, or from a ``[server]`` table in a TOML file that names them as
``env:NAME`` (an environment variable) or ``file:PATH`` (a file holding the secret, e.g. a
container secret).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from tcs_core import ValidationError

__all__ = ["ENV_ADMIN_PASSWORD", "ENV_SESSION_KEY", "ServerConfig", "resolve_secret_ref"]

ENV_SESSION_KEY = "TCS_SERVER_SESSION_KEY"
ENV_ADMIN_PASSWORD = "TCS_ADMIN_PASSWORD"  # noqa: S105 (a variable name, not a password)
DEFAULT_PLANS = Path(__file__).resolve().parent.parent / "plans"


def resolve_secret_ref(value: str, environ: Mapping[str, str], field: str) -> str:
    """``env:NAME`` or ``file:PATH`` → the secret; anything else is refused (no literals)."""
    if value.startswith("env:"):
        name = value[4:]
        if name not in environ:
            raise ValidationError(field, f"environment variable {name} is not set")
        return environ[name]
    if value.startswith("file:"):
        try:
            return Path(value[5:]).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValidationError(field, f"cannot read {value[5:]}: {exc.strerror}") from None
    raise ValidationError(field, "give env:NAME or file:PATH, never the secret itself")


def _positive(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValidationError(attribute.name, "must be positive")


@attrs.frozen
class ServerConfig:
    """Everything the province server needs besides the ``SourceSystem`` itself."""

    session_key: str = attrs.field(repr=False)
    admin_username: str = "admin"
    admin_password: str | None = attrs.field(default=None, repr=False)
    # Server-side credentials (password hashes, API token hashes, sessions): a SQLite file.
    auth_db: str = "tcs-server-auth.sqlite"
    host: str = "127.0.0.1"
    port: int = 8080
    default_lang: str = "vi"
    cookie_secure: bool = False  # set True behind HTTPS
    session_ttl_s: float = attrs.field(default=8 * 3600.0, validator=_positive)
    token_ttl_days: int = attrs.field(default=365, validator=_positive)
    # Rate limits: a bucket of `burst` requests refilled at `rate` per second.
    login_burst: int = attrs.field(default=5, validator=_positive)
    login_rate: float = attrs.field(default=5 / 60, validator=_positive)
    token_burst: int = attrs.field(default=120, validator=_positive)
    token_rate: float = attrs.field(default=30.0, validator=_positive)
    bad_token_burst: int = attrs.field(default=10, validator=_positive)
    bad_token_rate: float = attrs.field(default=10 / 60, validator=_positive)
    live_poll_s: float = attrs.field(default=0.5, validator=_positive)
    plans_dir: str = str(DEFAULT_PLANS)
    metrics_public: bool = True

    def __attrs_post_init__(self) -> None:
        if len(self.session_key) < 32:
            raise ValidationError("session_key", "use at least 32 characters of random data")
        if self.default_lang not in ("vi", "en"):
            raise ValidationError("default_lang", "give vi or en")
        if self.admin_password is not None and len(self.admin_password) < 12:
            raise ValidationError("admin_password", "use at least 12 characters")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ServerConfig:
        """Secrets from ``TCS_SERVER_SESSION_KEY`` and ``TCS_ADMIN_PASSWORD``; other settings
        from ``TCS_SERVER_*`` variables or ``overrides``."""
        env = os.environ if environ is None else environ
        if ENV_SESSION_KEY not in env:
            raise ValidationError(
                "session_key", f"set {ENV_SESSION_KEY} (e.g. `openssl rand -hex 32`)"
            )
        values: dict[str, Any] = {
            "session_key": env[ENV_SESSION_KEY],
            "admin_password": env.get(ENV_ADMIN_PASSWORD) or None,
        }
        for name, kind in (("host", str), ("port", int), ("auth_db", str), ("plans_dir", str)):
            raw = env.get(f"TCS_SERVER_{name.upper()}")
            if raw:
                values[name] = kind(raw)
        values.update(overrides)
        return cls(**values)

    @classmethod
    def from_file(
        cls, path: str | Path, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> ServerConfig:
        """The ``[server]`` table of a TOML file; secrets there only as env:NAME / file:PATH."""
        env = os.environ if environ is None else environ
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8")).get("server", {})
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValidationError("config", f"{path}: {exc}") from None
        if not isinstance(data, dict):
            raise ValidationError("server", "must be a table")
        known = {a.name for a in attrs.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValidationError("server", f"unknown setting(s): {', '.join(unknown)}")
        values = dict(data)
        for secret in ("session_key", "admin_password"):
            if secret in values:
                values[secret] = resolve_secret_ref(str(values[secret]), env, secret)
        if "session_key" not in values and ENV_SESSION_KEY in env:
            values["session_key"] = env[ENV_SESSION_KEY]
        if "admin_password" not in values and env.get(ENV_ADMIN_PASSWORD):
            values["admin_password"] = env[ENV_ADMIN_PASSWORD]
        if "session_key" not in values:
            raise ValidationError("session_key", f'set session_key = "env:{ENV_SESSION_KEY}"')
        values.update(overrides)
        return cls(**values)
