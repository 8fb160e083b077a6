"""Projection checkpoints: open a store of millions of events in seconds, not minutes.

The read models (``SourceSystem``'s indexes, the KPI projection) are rebuilt on start by replaying
their topics from the notification log. On a national store that is slow: 1.4 million events cost
about half a minute. A checkpoint is a projection's state saved with the log position it reflects;
on start the checkpoint is loaded and only the tail of the log after that position is replayed.

A checkpoint is a cache, never the record. It is ignored, and the projection rebuilt from the log,
when any of these holds:

- the code that builds the projection changed (the fingerprint covers the source of the modules
  that define it, and the Python version);
- the store is not the one it was taken from, or was rewritten (the first event of the log and
  the event at the checkpoint's position must both be the ones it saw);
- the store is behind it (its position is beyond the head of the log);
- the file is truncated or corrupt (a SHA-256 of the state is checked before anything is read).

Files live in a directory of their own (default: ``<sqlite file>.checkpoints`` beside an SQLite
store; none for PostgreSQL unless ``checkpoint_dir`` is set, because each worker machine keeps its
own), one file per projection, written atomically (temporary file, fsync, rename) with mode 0600.
The state is a pickle: the directory must be as trusted as the program itself, like the SQLite
file it sits beside. Nothing secret is in it (the projections hold no credentials).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import os
import pickle
import sys
import tempfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from tcs_core.projections import Projection

if TYPE_CHECKING:
    from tcs_core.config import Settings

__all__ = ["Checkpoint", "CheckpointStore", "code_fingerprint"]

log = logging.getLogger("tcs_core.checkpoints")

_MAGIC = "tcs-checkpoint/1"
_PROTOCOL = 5


def code_fingerprint(classes: Iterable[type[Any]], settings: Sequence[object] = ()) -> str:
    """A digest of the source files defining ``classes`` and their tcs_core bases, of the Python
    version and of ``settings`` (what the projections were built with, e.g. the zone): a
    checkpoint taken by other code or with other settings is not loaded."""
    files: set[str] = set()
    for cls in classes:
        for klass in cls.__mro__:
            module = sys.modules.get(klass.__module__)
            path = getattr(module, "__file__", None)
            if path and klass.__module__.split(".")[0] == "tcs_core":
                files.add(path)
    digest = hashlib.sha256(f"{sys.version_info[:2]}|{_MAGIC}|{_PROTOCOL}|{settings!r}".encode())
    for path in sorted(files):
        digest.update(Path(path).name.encode())
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:32]


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Pause the cyclic collector: (un)pickling millions of small objects otherwise triggers it
    again and again, which measured more than twice as slow (6.1 s against 2.5 s for 30 MB)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@attrs.frozen
class Checkpoint:
    """What a checkpoint file says of itself (its header)."""

    name: str
    fingerprint: str
    position: int
    anchors: tuple[tuple[int, str], ...]  # (notification id, what was recorded there)
    saved_at: str
    size: int  # bytes of the compressed state
    path: Path


def _anchor(recorder: Any, notification_id: int) -> str | None:
    """What the log holds at ``notification_id`` (originator, version, topic, a digest of the
    stored state), or None if nothing is there."""
    if notification_id < 1:
        return ""
    found = recorder.select_notifications(start=notification_id, limit=1)
    if not found or found[0].id != notification_id:
        return None
    n = found[0]
    # The stored state holds the event's timestamp: two stores built alike (ids here are often
    # deterministic, e.g. areas by code and date) still differ in it.
    state = hashlib.sha256(bytes(n.state)).hexdigest()[:16]
    return f"{n.originator_id}:{n.originator_version}:{n.topic}:{state}"


class CheckpointStore:
    """Checkpoint files in one directory, one per projection name."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    @classmethod
    def for_settings(cls, settings: Settings) -> CheckpointStore | None:
        """The deployment's store: ``checkpoint_dir`` if set; beside the SQLite file if not;
        None for an in-memory store, for PostgreSQL without ``checkpoint_dir``, or when
        ``checkpoint_after_events`` is 0 (checkpoints off)."""
        if settings.checkpoint_after_events == 0 or settings.persistence == "popo":
            return None
        if settings.checkpoint_dir:
            return cls(settings.checkpoint_dir)
        if settings.persistence == "sqlite" and settings.sqlite_path not in ("", ":memory:"):
            if "mode=memory" in settings.sqlite_path:
                return None
            return cls(settings.sqlite_path + ".checkpoints")
        return None

    def path(self, name: str) -> Path:
        """The file of checkpoint ``name``."""
        if not name or not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
            raise ValueError(f"bad checkpoint name {name!r}")
        return self.directory / f"{name}.ckpt"

    def save(
        self, name: str, state: Any, *, position: int, fingerprint: str, recorder: Any
    ) -> Checkpoint:
        """Write ``state`` as checkpoint ``name`` at log ``position`` (atomically)."""
        with _no_gc():
            payload = zlib.compress(pickle.dumps(state, protocol=_PROTOCOL), 1)
        anchors = ((1, _anchor(recorder, 1)), (position, _anchor(recorder, position)))
        if any(a is None for _, a in anchors):
            raise ValueError(f"position {position} is not in the log")
        header = {
            "magic": _MAGIC,
            "name": name,
            "fingerprint": fingerprint,
            "position": position,
            "anchors": [[i, a] for i, a in anchors],
            "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "sha256": hashlib.sha256(payload).hexdigest(),
            "size": len(payload),
        }
        target = self.path(name)
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(json.dumps(header).encode() + b"\n")
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return self._info(header, target)

    def load(self, name: str, *, fingerprint: str, recorder: Any) -> tuple[Checkpoint, Any] | None:
        """Checkpoint ``name`` and its state, if it is valid for this code and this store; None
        (and a log line saying why) if not."""
        target = self.path(name)
        try:
            with target.open("rb") as f:
                header = json.loads(f.readline())
                payload = f.read()
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("checkpoint %s unreadable, rebuilding from the log: %s", target, exc)
            return None
        why = self._invalid(header, payload, fingerprint, recorder)
        if why:
            log.info("checkpoint %s not used (%s): rebuilding from the log", target, why)
            return None
        try:
            with _no_gc():
                state = pickle.loads(zlib.decompress(payload))  # noqa: S301 (our file, checked)
        except Exception as exc:
            log.warning("checkpoint %s undecodable, rebuilding from the log: %s", target, exc)
            return None
        return self._info(header, target), state

    def restore(
        self,
        name: str,
        projections: Sequence[Projection],
        *,
        recorder: Any,
        code: Iterable[type[Any]] = (),
        settings: Sequence[object] = (),
    ) -> Checkpoint | None:
        """Load checkpoint ``name`` into ``projections`` in place, if it was written by
        ``write`` for projections of these types, with this code (the projections' own and
        ``code``'s) and ``settings``, from this store; the checkpoint, or None (rebuild)."""
        fingerprint = code_fingerprint([*(type(p) for p in projections), *code], settings)
        found = self.load(name, fingerprint=fingerprint, recorder=recorder)
        if found is None:
            return None
        info, saved = found
        if not isinstance(saved, tuple) or len(saved) != len(projections):
            log.warning("checkpoint %s holds other projections: rebuilding", info.path)
            return None
        if any(type(a) is not type(b) for a, b in zip(saved, projections, strict=True)):
            log.warning("checkpoint %s holds other projections: rebuilding", info.path)
            return None
        for live, state in zip(projections, saved, strict=True):
            live.restore(state)
        log.info("checkpoint %s loaded at event %d", name, info.position)
        return info

    def write(
        self,
        name: str,
        projections: Sequence[Projection],
        *,
        position: int,
        recorder: Any,
        code: Iterable[type[Any]] = (),
        settings: Sequence[object] = (),
    ) -> Checkpoint:
        """Save ``projections`` (which reflect the log up to ``position``) as checkpoint
        ``name``; the caller holds whatever keeps them still meanwhile."""
        fingerprint = code_fingerprint([*(type(p) for p in projections), *code], settings)
        return self.save(
            name, tuple(projections), position=position, fingerprint=fingerprint, recorder=recorder
        )

    def write_quietly(
        self,
        name: str,
        projections: Sequence[Projection],
        *,
        position: int,
        recorder: Any,
        code: Iterable[type[Any]] = (),
        settings: Sequence[object] = (),
    ) -> Checkpoint | None:
        """``write``, but a failure (a full or read-only disk) is a warning, not an error: the
        log is still the record."""
        try:
            info = self.write(
                name, projections, position=position, recorder=recorder, code=code,
                settings=settings,
            )  # fmt: skip
        except Exception as exc:
            log.warning("checkpoint not written (%s): %s", name, exc)
            return None
        log.info("checkpoint %s written at event %d (%s)", name, info.position, info.path)
        return info

    def _invalid(self, header: Any, payload: bytes, fingerprint: str, recorder: Any) -> str:
        if not isinstance(header, dict) or header.get("magic") != _MAGIC:
            return "not a checkpoint file"
        if header.get("fingerprint") != fingerprint:
            return "taken by another version of the code, or with other settings"
        if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
            return "damaged: checksum differs"
        position = header.get("position")
        anchors = header.get("anchors")
        if not isinstance(position, int) or position < 0 or not isinstance(anchors, list):
            return "no position"
        # The first event tells another store; then the head and the checkpoint's own event.
        for notification_id, anchor in anchors[:1]:
            if _anchor(recorder, notification_id) != anchor:
                return "another store: its first event differs"
        head = recorder.max_notification_id() or 0
        if position > head:
            return f"the store is behind it (head {head}, checkpoint at {position})"
        for notification_id, anchor in anchors[1:]:
            if _anchor(recorder, notification_id) != anchor:
                return f"the store differs at event {notification_id}: a rewritten store"
        return ""

    def _info(self, header: dict[str, Any], path: Path) -> Checkpoint:
        return Checkpoint(
            name=header["name"],
            fingerprint=header["fingerprint"],
            position=header["position"],
            anchors=tuple((int(i), str(a)) for i, a in header["anchors"]),
            saved_at=header["saved_at"],
            size=header["size"],
            path=path,
        )
