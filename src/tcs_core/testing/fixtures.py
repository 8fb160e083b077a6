"""Pytest fixtures for suites that test against tcs-core (a pytest plugin).

Enable in a ``conftest.py``::

    pytest_plugins = ["tcs_core.testing.fixtures"]

Fixtures:

- ``tcs_settings``: ``Settings`` for each persistence a test should pass on, parametrised as
  ``popo`` (in memory) and ``sqlite`` (a fresh file in ``tmp_path``);
- ``source_system``: a ``SourceSystem`` on those settings with the administrator ``"admin"``
  bootstrapped (admin over every area, both special permissions);
- ``small_province``: ``source_system`` plus the hand-built tree and principals described in
  ``build_small_province``.

The builders (``make_source_system``, ``build_small_province``) are plain functions too, for use
outside pytest or inside Hypothesis tests (which must not use function-scoped fixtures per
example).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from tcs_core.app import SourceSystem
from tcs_core.config import Settings
from tcs_core.domain.values import AreaKind, Permission, Role

__all__ = [
    "ADMIN",
    "APPROVER_C1",
    "APPROVER_P1",
    "OPERATOR_C1",
    "PERSISTENCES",
    "SMALL_PROVINCE_AREAS",
    "SMALL_PROVINCE_SINCE",
    "build_small_province",
    "make_settings",
    "make_source_system",
    "small_province",
    "source_system",
    "tcs_settings",
]

#: Persistence kinds ``tcs_settings`` is parametrised over (PostgreSQL needs a server: not here).
PERSISTENCES: tuple[str, ...] = ("popo", "sqlite")

#: Username of the bootstrapped administrator.
ADMIN = "admin"
#: Operator over commune C1's subtree (no special permission).
OPERATOR_C1 = "op.c1"
#: Approver over commune C1's subtree (no special permission).
APPROVER_C1 = "appr.c1"
#: Approver over the whole province P1, with the ``emergency`` and ``sms_sender`` permissions.
APPROVER_P1 = "appr.p1"

#: Date from which the small province's areas exist (in the past, so "now" lookups resolve).
SMALL_PROVINCE_SINCE = date(2025, 7, 1)

#: ``(code, name, kind, parent code)`` of every area of the small province, parents first.
SMALL_PROVINCE_AREAS: tuple[tuple[str, str, AreaKind, str | None], ...] = (
    ("P1", "Tỉnh Thử Nghiệm", AreaKind.PROVINCE, None),
    ("C1", "Xã Ea Tiêu", AreaKind.COMMUNE, "P1"),
    ("C2", "Phường Hòa Thuận", AreaKind.WARD, "P1"),
    ("V11", "Thôn Một", AreaKind.VILLAGE, "C1"),
    ("V12", "Buôn Kô Đung", AreaKind.VILLAGE, "C1"),
    ("V21", "Tổ dân phố Hai", AreaKind.VILLAGE, "C2"),
)


def make_settings(persistence: str, directory: str | Path | None = None) -> Settings:
    """``Settings`` for ``"popo"`` or ``"sqlite"`` (a ``tcs.sqlite`` file in ``directory``)."""
    if persistence == "popo":
        return Settings.in_memory()
    if persistence == "sqlite":
        if directory is None:
            raise ValueError("sqlite settings need a directory for the database file")
        return Settings.sqlite(Path(directory) / "tcs.sqlite")
    raise ValueError(f"unknown persistence {persistence!r}; use one of {PERSISTENCES}")


def make_source_system(settings: Settings, admin: str = ADMIN) -> SourceSystem:
    """A ``SourceSystem`` on ``settings`` with ``admin`` bootstrapped as the first principal."""
    app = SourceSystem(settings)
    app.bootstrap_admin(admin, "Quản trị hệ thống")
    return app


def build_small_province(app: SourceSystem, actor: str = ADMIN) -> SourceSystem:
    """Create a small province and its principals on ``app`` (as ``actor``, an admin); return it.

    Areas, all effective ``SMALL_PROVINCE_SINCE`` (2025-07-01)::

        P1  Tỉnh Thử Nghiệm (province)
        ├── C1  Xã Ea Tiêu (commune)
        │   ├── V11  Thôn Một (village)
        │   └── V12  Buôn Kô Đung (village)
        └── C2  Phường Hòa Thuận (ward)
            └── V21  Tổ dân phố Hai (village)

    Principals (besides the admin):

    - ``op.c1`` (``OPERATOR_C1``): operator over C1;
    - ``appr.c1`` (``APPROVER_C1``): approver over C1;
    - ``appr.p1`` (``APPROVER_P1``): approver over P1, with ``emergency`` and ``sms_sender``.
    """
    for code, name, kind, parent in SMALL_PROVINCE_AREAS:
        app.create_area(
            code, name, kind, parent=parent, effective=SMALL_PROVINCE_SINCE, actor=actor
        )
    app.create_principal(
        OPERATOR_C1, grants=[(Role.OPERATOR, "C1")], display_name="Cán bộ xã Ea Tiêu", actor=actor
    )
    app.create_principal(
        APPROVER_C1, grants=[(Role.APPROVER, "C1")], display_name="Chủ tịch xã", actor=actor
    )
    app.create_principal(
        APPROVER_P1,
        grants=[(Role.APPROVER, "P1")],
        permissions=[Permission.EMERGENCY, Permission.SMS_SENDER],
        display_name="Sở Văn hóa tỉnh",
        actor=actor,
    )
    return app


@pytest.fixture(params=PERSISTENCES)
def tcs_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings per persistence: ``popo`` (in memory) and ``sqlite`` (a file in ``tmp_path``)."""
    return make_settings(str(request.param), tmp_path)


@pytest.fixture
def source_system(tcs_settings: Settings) -> Iterator[SourceSystem]:
    """A ``SourceSystem`` on ``tcs_settings`` with the administrator ``"admin"`` bootstrapped."""
    app = make_source_system(tcs_settings)
    try:
        yield app
    finally:
        app.close()


@pytest.fixture
def small_province(source_system: SourceSystem) -> SourceSystem:
    """``source_system`` with province P1 (communes C1, C2; villages V11, V12, V21) and the
    principals ``op.c1`` (operator C1), ``appr.c1`` (approver C1) and ``appr.p1`` (approver P1
    with emergency + sms_sender); see ``build_small_province``."""
    return build_small_province(source_system)
