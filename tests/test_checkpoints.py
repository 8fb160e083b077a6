"""Projection checkpoints: a restart loads the saved read models and replays only the tail, with
exactly the state a full replay gives; a checkpoint that does not fit is ignored, never trusted."""

from __future__ import annotations

import json
import logging
import shutil
from datetime import date, tzinfo
from enum import Enum
from pathlib import Path
from typing import Any
from uuid import UUID

import attrs
import pytest

from tcs_core import Settings, SourceSystem, ValidationError, load_history
from tcs_core.checkpoints import CheckpointStore
from tcs_core.kpi import Kpis, generate_history
from tcs_core.projections import Projection

AS_OF = date(2024, 12, 14)


def norm(x: Any) -> Any:
    """A comparable form of a projection's state: sets and dict orders do not matter."""
    if isinstance(x, UUID | date | Enum | str | int | float | bytes | type(None)):
        return x
    if isinstance(x, Projection):
        return norm(x.__getstate__())
    if isinstance(x, tzinfo):  # pytz zones refer to themselves
        return str(x)
    if isinstance(x, dict):
        return sorted(((repr(norm(k)), norm(v)) for k, v in x.items()), key=lambda kv: kv[0])
    if isinstance(x, set | frozenset):
        return sorted((norm(v) for v in x), key=repr)
    if isinstance(x, list | tuple):
        return [norm(v) for v in x]
    if attrs.has(type(x)):
        return (type(x).__name__, norm(attrs.asdict(x, recurse=False)))
    if hasattr(x, "__dict__") and not isinstance(x, type):
        return (type(x).__name__, norm(vars(x)))
    if hasattr(x, "__slots__"):
        slots = [s for c in type(x).__mro__ for s in getattr(c, "__slots__", ())]
        return (type(x).__name__, [norm(getattr(x, s, None)) for s in slots])
    return x


def indexes(app: SourceSystem) -> list[Any]:
    """Every read model of the application, in comparable form."""
    return [norm(p) for p in app._projections]


def settings(db: Path, **kwargs: Any) -> Settings:
    return Settings.sqlite(db, **kwargs)


@attrs.frozen
class Store:
    """A store file, a copy of it with the indexes' checkpoint written, and what a full
    replay of it holds."""

    db: Path
    checkpointed: Path
    expected: list[Any]


@pytest.fixture(scope="module")
def province_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """An SQLite store with the legacy + 2025 structure and Gia Lai's (legacy 64) example
    history (devices, outages, dispatches, feedback): about 45,000 events."""
    folder = tmp_path_factory.mktemp("ckpt")
    db = folder / "store.sqlite"
    app = SourceSystem(settings(db, checkpoint_after_events=0))
    app.bootstrap_admin("admin")
    load_history(app)
    generate_history(
        app,
        "64",
        seed=3,
        end=date(2025, 6, 30),
        outages_per_year=2,
        bulletins_per_year=2,
        feedback_per_year=1,
    )
    # what a start replaying the whole log holds (the writer's live state is not the measure)
    expected = indexes(SourceSystem(settings(db, checkpoint_after_events=0)))
    (folder / "checkpointed").mkdir()
    checkpointed = folder / "checkpointed" / "store.sqlite"
    shutil.copy(db, checkpointed)
    assert (
        SourceSystem(settings(checkpointed, checkpoint_after_events=1000)).loaded_checkpoint is None
    )
    return Store(db, checkpointed, expected)


def fresh_copy(store: Path, tmp_path: Path) -> Path:
    """A copy of ``store`` in ``tmp_path``, with its checkpoints if it has any."""
    db = tmp_path / "store.sqlite"
    shutil.copy(store, db)
    if Path(str(store) + ".checkpoints").exists():
        shutil.copytree(Path(str(store) + ".checkpoints"), Path(str(db) + ".checkpoints"))
    return db


def test_restart_loads_the_checkpoint_and_replays_only_the_tail(
    province_store: Store, tmp_path: Path
) -> None:
    """The first open replays everything and writes the checkpoint; the next starts from it,
    replays only what was recorded after, and holds exactly what a full replay holds."""
    db = fresh_copy(province_store.db, tmp_path)
    first = SourceSystem(settings(db, checkpoint_after_events=1000))
    assert first.loaded_checkpoint is None
    ckpt = Path(str(db) + ".checkpoints") / "source-system.ckpt"
    assert ckpt.exists() and ckpt.stat().st_mode & 0o777 == 0o600
    head = first.position
    district = next(v for v in first.areas.children(first.area("64", AS_OF).area_id, AS_OF))
    first.create_area(
        "99999", "Xã Mới", "commune", parent=district.code, effective=AS_OF, actor="admin"
    )
    first.register_device(
        "Loa xã mới", "ip_speaker", area="99999", transport="sip",
        address="sip:loa@10.0.0.9", channels=["audio"], actor="admin",
    )  # fmt: skip

    second = SourceSystem(settings(db, checkpoint_after_events=1000))
    assert second.loaded_checkpoint is not None and second.loaded_checkpoint.position == head
    assert second.position == first.position
    assert second.devices.at_address("sip:loa@10.0.0.9")
    rebuilt = SourceSystem(settings(db, checkpoint_after_events=0))
    assert rebuilt.loaded_checkpoint is None
    assert indexes(second) == indexes(rebuilt) == indexes(first)


def test_kpis_restart_from_their_checkpoint_with_the_same_answers(
    province_store: Store, tmp_path: Path
) -> None:
    """``Kpis(app)`` writes its checkpoint after a long replay; the next ``Kpis`` starts from
    it and every indicator as of a date equals the full replay's, also after new events."""
    db = fresh_copy(province_store.db, tmp_path)
    app = SourceSystem(settings(db, checkpoint_after_events=1000))
    first = Kpis(app)
    assert first.loaded_checkpoint is None
    assert (Path(str(db) + ".checkpoints") / "kpi-60s.ckpt").exists()
    commune = next(
        v
        for v in app.areas.subtree(app.area("64", AS_OF).area_id, AS_OF)
        if v.kind.is_commune_level
    )
    station = app.register_station(
        "Đài xã mới", area=commune.code, kind="wired", commissioned_year=2010,
        effective=date(2024, 1, 1), actor="admin",
    )  # fmt: skip
    app.convert_station(station, effective=date(2024, 3, 1), actor="admin")

    again = Kpis(SourceSystem(settings(db, checkpoint_after_events=1000)))
    assert again.loaded_checkpoint is not None
    full = Kpis(SourceSystem(settings(db, checkpoint_after_events=0)))
    assert full.loaded_checkpoint is None
    for day in (date(2022, 6, 30), AS_OF):
        a = again.as_of("64", day, scope_on=AS_OF)
        b = full.as_of("64", day, scope_on=AS_OF)
        assert a.values.keys() == b.values.keys()
        for key, value in a.values.items():
            other = b[key]
            assert (value.numerator, value.denominator, value.breakdown, value.parts) == (
                other.numerator, other.denominator, other.breakdown, other.parts
            ), key  # fmt: skip
    assert norm(again.projection) == norm(full.projection)


def _tamper(path: Path, **changes: Any) -> None:
    head, _, payload = path.read_bytes().partition(b"\n")
    header = json.loads(head)
    header.update(changes)
    path.write_bytes(json.dumps(header).encode() + b"\n" + payload)


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        ("another-store", "another store"),
        ("other-code", "another version of the code"),
        ("truncated", "checksum differs"),
        ("garbage", "unreadable"),
        ("ahead", "the store is behind it"),
    ],
)
def test_a_checkpoint_that_does_not_fit_is_ignored(
    province_store: Store,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    damage: str,
    why: str,
) -> None:
    """A checkpoint of another store, of other code, damaged, or ahead of the store is not
    loaded: the application says why in its log, rebuilds from the log, and opens correctly."""
    db = fresh_copy(province_store.checkpointed, tmp_path)
    ckpt = Path(str(db) + ".checkpoints") / "source-system.ckpt"
    expected = province_store.expected
    if damage == "another-store":
        other = tmp_path / "other.sqlite"
        app = SourceSystem(settings(other, checkpoint_after_events=0))
        app.bootstrap_admin("admin")
        load_history(app)
        (tmp_path / "other.sqlite.checkpoints").mkdir()
        shutil.copy(ckpt, tmp_path / "other.sqlite.checkpoints" / ckpt.name)
        db, ckpt = other, tmp_path / "other.sqlite.checkpoints" / ckpt.name
        expected = indexes(SourceSystem(settings(other, checkpoint_after_events=0)))
    elif damage == "other-code":
        _tamper(ckpt, fingerprint="0" * 32)
    elif damage == "truncated":
        ckpt.write_bytes(ckpt.read_bytes()[:-100])
    elif damage == "garbage":
        ckpt.write_bytes(b"\x00\xff not a checkpoint")
    elif damage == "ahead":
        _tamper(ckpt, position=10**9)
    caplog.set_level(logging.INFO, logger="tcs_core.checkpoints")
    app = SourceSystem(settings(db, checkpoint_after_events=10**9))
    assert app.loaded_checkpoint is None
    assert why in caplog.text
    assert indexes(app) == expected


def test_a_checkpoint_that_cannot_be_written_does_not_stop_the_start(
    province_store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A checkpoint directory that cannot be created (here a file stands in its place) costs a
    warning, not the start: the application opens from the log."""
    db = fresh_copy(province_store.db, tmp_path)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    app = SourceSystem(settings(db, checkpoint_after_events=1000, checkpoint_dir=str(blocker)))
    assert "checkpoint not written" in caplog.text
    assert indexes(app) == province_store.expected


def test_checkpoint_settings_come_from_toml_and_environment(tmp_path: Path) -> None:
    """``checkpoint_dir`` (relative to the tcs.toml) and ``checkpoint_after_events`` are read
    from the file and from TCS_CHECKPOINT_*; nonsense is refused with the setting named; an
    in-memory store and PostgreSQL without a directory keep none."""
    f = tmp_path / "tcs.toml"
    f.write_text('[persistence]\ncheckpoint_dir = "ckpt"\ncheckpoint_after_events = 7\n')
    s = Settings.from_toml(f)
    assert s.checkpoint_dir == str(tmp_path / "ckpt") and s.checkpoint_after_events == 7
    e = Settings.from_env({"TCS_CHECKPOINT_DIR": "/x", "TCS_CHECKPOINT_AFTER_EVENTS": "0"})
    assert e.checkpoint_dir == "/x" and CheckpointStore.for_settings(e) is None
    with pytest.raises(ValidationError, match="TCS_CHECKPOINT_AFTER_EVENTS"):
        Settings.from_env({"TCS_CHECKPOINT_AFTER_EVENTS": "many"})
    with pytest.raises(ValidationError, match="checkpoint_after_events"):
        Settings(checkpoint_after_events=-1)
    assert CheckpointStore.for_settings(Settings.in_memory()) is None
    assert CheckpointStore.for_settings(Settings.postgres("postgresql://u@h/db")) is None
    pg = Settings.postgres("postgresql://u@h/db", checkpoint_dir=str(tmp_path))
    store = CheckpointStore.for_settings(pg)
    assert store is not None and store.directory == tmp_path
    with pytest.raises(ValueError, match="bad checkpoint name"):
        store.path("../etc/passwd")


def test_close_writes_a_checkpoint_after_a_long_run(tmp_path: Path) -> None:
    """A process that applied more than ``checkpoint_after_events`` events since the last
    checkpoint writes one when it closes, so a long-running server restarts from its last state;
    fewer events write nothing."""
    db = tmp_path / "tcs.sqlite"
    ckpt = Path(str(db) + ".checkpoints") / "source-system.ckpt"
    app = SourceSystem(settings(db, checkpoint_after_events=3))
    app.bootstrap_admin("admin")
    app.close()
    assert not ckpt.exists()  # one event: below the threshold
    app = SourceSystem(settings(db, checkpoint_after_events=3))
    for code in ("01", "02", "04"):
        app.create_area(
            code, f"Tỉnh {code}", "province", parent=None, effective=AS_OF, actor="admin"
        )
    app.close()
    reopened = SourceSystem(settings(db, checkpoint_after_events=3))
    assert reopened.loaded_checkpoint is not None
    assert reopened.loaded_checkpoint.position == reopened.position == 4
    assert [v.code for v in reopened.areas.all_at(AS_OF)] == ["01", "02", "04"]
    reopened.close()
