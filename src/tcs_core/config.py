"""Deployment settings: where events are stored, and the default zone.

A deployment is described by ``tcs.toml``; every setting has a default, so ``Settings()`` (embedded
SQLite file ``tcs.sqlite`` in the working directory) works with no file at all. Secrets are never
read from the file: a PostgreSQL password comes from the environment variable the file names.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import attrs

from tcs_core.domain.values import DEFAULT_ZONE, _zone
from tcs_core.errors import ValidationError

__all__ = ["Persistence", "Settings"]

Persistence = Literal["popo", "sqlite", "postgres"]
_KINDS = ("popo", "sqlite", "postgres")
_SCHEMA = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def _persistence(value: str) -> Persistence:
    if value not in _KINDS:
        raise ValidationError("persistence", f"{value!r} is not one of {', '.join(_KINDS)}")
    return value  # type: ignore[return-value]


def _positive(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValidationError(attribute.name, "must be positive")


@attrs.frozen
class Settings:
    """Persistence and defaults for one deployment."""

    persistence: Persistence = attrs.field(default="sqlite", converter=_persistence)
    sqlite_path: str = "tcs.sqlite"
    sqlite_lock_timeout_s: float = attrs.field(default=30.0, validator=_positive)
    postgres_dsn: str | None = None
    postgres_password_env: str = "TCS_POSTGRES_PASSWORD"  # noqa: S105 (a variable name)
    postgres_schema: str | None = None
    postgres_pool_size: int = attrs.field(default=5, validator=_positive)
    # A worker whose connection hangs must not hold the store's table lock for long (cluster mode).
    postgres_connect_timeout_s: int = attrs.field(default=5, validator=_positive)
    postgres_idle_in_transaction_timeout_s: int = attrs.field(default=5, validator=_positive)
    zone: str = attrs.field(default=DEFAULT_ZONE, converter=_zone)
    # Projection checkpoints (tcs_core.checkpoints): where, and how many events past the last one
    # make a start or a close write a new one (0: never use them). Default: beside the SQLite file.
    checkpoint_dir: str | None = None
    checkpoint_after_events: int = 50_000

    def __attrs_post_init__(self) -> None:
        if self.persistence == "postgres":
            if not self.postgres_dsn:
                raise ValidationError("postgres_dsn", "set it to postgresql://user@host:port/db")
            parts = urlsplit(self.postgres_dsn)
            if parts.scheme not in ("postgres", "postgresql"):
                raise ValidationError("postgres_dsn", "must start with postgresql://")
            if parts.password:
                raise ValidationError(
                    "postgres_dsn",
                    "contains a password; remove it and set the environment variable named by "
                    f"postgres_password_env ({self.postgres_password_env}) instead",
                )
        if self.postgres_schema is not None and not _SCHEMA.fullmatch(self.postgres_schema):
            raise ValidationError(
                "postgres_schema",
                "use letters, digits and '_' (at most 63, not starting with a digit)",
            )
        if (
            not isinstance(self.checkpoint_after_events, int)
            or isinstance(self.checkpoint_after_events, bool)
            or self.checkpoint_after_events < 0
        ):
            raise ValidationError(
                "checkpoint_after_events", "must be a whole number, 0 to turn checkpoints off"
            )
        for name in (
            "postgres_pool_size",
            "postgres_connect_timeout_s",
            "postgres_idle_in_transaction_timeout_s",
        ):
            if not isinstance(getattr(self, name), int) or isinstance(getattr(self, name), bool):
                raise ValidationError(name, "must be a whole number")

    # -- constructors --------------------------------------------------------------------------

    @classmethod
    def in_memory(cls, **kwargs: Any) -> Settings:
        """Events kept in memory only (tests, simulations)."""
        return cls(persistence="popo", **kwargs)

    @classmethod
    def sqlite(cls, path: str | os.PathLike[str], **kwargs: Any) -> Settings:
        """Embedded SQLite file at ``path``."""
        return cls(persistence="sqlite", sqlite_path=os.fspath(path), **kwargs)

    @classmethod
    def postgres(cls, dsn: str, **kwargs: Any) -> Settings:
        """PostgreSQL at ``dsn`` (no password in it: see ``postgres_password_env``)."""
        return cls(persistence="postgres", postgres_dsn=dsn, **kwargs)

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> Settings:
        """Read the ``[persistence]`` and ``[defaults]`` tables of a ``tcs.toml`` file."""
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ValidationError("config", f"no such file: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ValidationError("config", f"{path} is not valid TOML: {exc}") from None
        known = {"persistence", "defaults", "transports", "areas", "server"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValidationError("config", f"unknown table(s) {unknown} in {path}")
        p = dict(data.get("persistence", {}))
        kwargs: dict[str, Any] = {}
        mapping = {
            "kind": "persistence",
            "sqlite_path": "sqlite_path",
            "sqlite_lock_timeout_s": "sqlite_lock_timeout_s",
            "postgres_dsn": "postgres_dsn",
            "postgres_password_env": "postgres_password_env",
            "postgres_schema": "postgres_schema",
            "postgres_pool_size": "postgres_pool_size",
            "postgres_connect_timeout_s": "postgres_connect_timeout_s",
            "postgres_idle_in_transaction_timeout_s": "postgres_idle_in_transaction_timeout_s",
            "checkpoint_dir": "checkpoint_dir",
            "checkpoint_after_events": "checkpoint_after_events",
        }
        for key, value in p.items():
            if key not in mapping:
                raise ValidationError(f"persistence.{key}", f"unknown setting in {path}")
            kwargs[mapping[key]] = value
        for key in ("sqlite_path", "checkpoint_dir"):
            if isinstance(kwargs.get(key), str) and not Path(kwargs[key]).is_absolute():
                kwargs[key] = str(Path(path).parent / kwargs[key])
        defaults = data.get("defaults", {})
        if "zone" in defaults:
            kwargs["zone"] = defaults["zone"]
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ValidationError("config", f"{path}: {exc}") from None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """``TCS_CONFIG`` (a tcs.toml path), else ``TCS_PERSISTENCE`` / ``TCS_SQLITE_PATH`` /
        ``TCS_POSTGRES_DSN`` / ``TCS_POSTGRES_SCHEMA`` / ``TCS_POSTGRES_POOL_SIZE`` /
        ``TCS_POSTGRES_PASSWORD_ENV`` / ``TCS_CHECKPOINT_DIR`` / ``TCS_CHECKPOINT_AFTER_EVENTS``,
        else the defaults."""
        env = os.environ if environ is None else environ
        if env.get("TCS_CONFIG"):
            return cls.from_toml(env["TCS_CONFIG"])
        kwargs: dict[str, Any] = {}
        if env.get("TCS_PERSISTENCE"):
            kwargs["persistence"] = env["TCS_PERSISTENCE"]
        if env.get("TCS_SQLITE_PATH"):
            kwargs["sqlite_path"] = env["TCS_SQLITE_PATH"]
        if env.get("TCS_POSTGRES_DSN"):
            kwargs["postgres_dsn"] = env["TCS_POSTGRES_DSN"]
        if env.get("TCS_POSTGRES_SCHEMA"):
            kwargs["postgres_schema"] = env["TCS_POSTGRES_SCHEMA"]
        if env.get("TCS_POSTGRES_PASSWORD_ENV"):
            kwargs["postgres_password_env"] = env["TCS_POSTGRES_PASSWORD_ENV"]
        if env.get("TCS_CHECKPOINT_DIR"):
            kwargs["checkpoint_dir"] = env["TCS_CHECKPOINT_DIR"]
        for var, key in (
            ("TCS_POSTGRES_POOL_SIZE", "postgres_pool_size"),
            ("TCS_CHECKPOINT_AFTER_EVENTS", "checkpoint_after_events"),
        ):
            raw = env.get(var)
            if raw:
                try:
                    kwargs[key] = int(raw)
                except ValueError:
                    raise ValidationError(var, f"{raw!r} is not a whole number") from None
        return cls(**kwargs)

    # -- eventsourcing environment ---------------------------------------------------------------

    def eventsourcing_env(self, environ: dict[str, str] | None = None) -> dict[str, str]:
        """The environment variables eventsourcing reads to build the recorder."""
        if self.persistence == "popo":
            return {"PERSISTENCE_MODULE": "eventsourcing.popo"}
        if self.persistence == "sqlite":
            return {
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": self.sqlite_path,
                "SQLITE_LOCK_TIMEOUT": str(int(self.sqlite_lock_timeout_s)),
            }
        env = os.environ if environ is None else environ
        parts = urlsplit(self.postgres_dsn or "")
        out = {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": unquote(parts.path.lstrip("/")) or "postgres",
            "POSTGRES_HOST": parts.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(parts.port or 5432),
            "POSTGRES_USER": unquote(parts.username or "postgres"),
            "POSTGRES_PASSWORD": env.get(self.postgres_password_env, ""),
            "POSTGRES_POOL_SIZE": str(self.postgres_pool_size),
            "POSTGRES_CONNECT_TIMEOUT": str(self.postgres_connect_timeout_s),
            "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": str(
                self.postgres_idle_in_transaction_timeout_s
            ),
        }
        if self.postgres_schema:
            out["POSTGRES_SCHEMA"] = self.postgres_schema
        return out
