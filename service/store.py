"""EventStore: events and the event log in SQLite (WAL), event images on disk under data_dir/events/.

One connection shared by all threads behind a lock (`check_same_thread=False` is safe only because of that
lock). Every event message (start/update/end) is appended to `event_log` with a strictly increasing `seq`
in the same transaction as the event row, so a WebSocket client that resumes from seq N misses nothing.
"""
from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from .frames import Event, EventKind, EventMessage

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY, camera_id TEXT NOT NULL, start_ts REAL NOT NULL, end_ts REAL,
    peak_score REAL NOT NULL, peak_ts REAL NOT NULL, snapshot_path TEXT, heatmap_path TEXT,
    frames INTEGER NOT NULL DEFAULT 0, updated_ts REAL NOT NULL, type TEXT NOT NULL DEFAULT 'anomaly');
CREATE INDEX IF NOT EXISTS events_camera_start ON events (camera_id, start_ts);
CREATE INDEX IF NOT EXISTS events_start ON events (start_ts);
CREATE TABLE IF NOT EXISTS event_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, event_id TEXT NOT NULL,
    camera_id TEXT NOT NULL, ts REAL NOT NULL, event TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS event_log_event ON event_log (event_id);
"""
_COLS = "id, camera_id, start_ts, end_ts, peak_score, peak_ts, snapshot_path, heatmap_path, frames, type"


def _event(row: Sequence[Any]) -> Event:
    return Event(*row)


class EventStore:
    def __init__(self, path: str | Path, *, image_root: Path | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        """path: the SQLite file (or ":memory:"); image_root: the folder event image paths are relative to."""
        self.path = str(path)
        self.image_root = image_root
        self._clock = clock
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        with self._lock:
            if self.path != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            columns = {r[1] for r in self._db.execute("PRAGMA table_info(events)")}
            if "type" not in columns:  # a database written before events had a type: all anomalies
                self._db.execute("ALTER TABLE events ADD COLUMN type TEXT NOT NULL DEFAULT 'anomaly'")

    @classmethod
    def open(cls, data_dir: Path, *, clock: Callable[[], float] = time.time) -> EventStore:
        """The service's store: data_dir/events.db, images under data_dir/events/."""
        (data_dir / "events").mkdir(parents=True, exist_ok=True)
        return cls(data_dir / "events.db", image_root=data_dir, clock=clock)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- writes -------------------------------------------------------------------------------------------

    def record(self, kind: EventKind, event: Event) -> EventMessage:
        """Upsert the event and append its message to the log, atomically; returns the message with its seq."""
        now = self._clock()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    f"INSERT INTO events ({_COLS}, updated_ts) VALUES (?,?,?,?,?,?,?,?,?,?,?) "
                    "ON CONFLICT(id) DO UPDATE SET end_ts=excluded.end_ts, peak_score=excluded.peak_score, "
                    "peak_ts=excluded.peak_ts, snapshot_path=excluded.snapshot_path, "
                    "heatmap_path=excluded.heatmap_path, frames=excluded.frames, updated_ts=excluded.updated_ts",
                    (*self._row(event), now))
                cur = self._db.execute(
                    "INSERT INTO event_log (kind, event_id, camera_id, ts, event) VALUES (?,?,?,?,?)",
                    (kind, event.id, event.camera_id, now, json.dumps(event.to_dict())))
                seq = int(cur.lastrowid or 0)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return EventMessage(seq, kind, event)

    @staticmethod
    def _row(e: Event) -> tuple[Any, ...]:
        return (e.id, e.camera_id, e.start_ts, e.end_ts, e.peak_score, e.peak_ts, e.snapshot_path,
                e.heatmap_path, e.frames, e.type)

    def close_dangling(self) -> list[EventMessage]:
        """At startup: events left open by a crash end at their last update (Frigate does the same)."""
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLS}, updated_ts FROM events WHERE end_ts IS NULL").fetchall()
        out = [self.record("end", replace(_event(r[:-1]), end_ts=max(float(r[-1]), float(r[2])))) for r in rows]
        if out:
            log.warning("closed %d event(s) left open by the previous run", len(out))
        return out

    def delete(self, event_id: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT snapshot_path, heatmap_path FROM events WHERE id=?",
                                   (event_id,)).fetchone()
            if row is None:
                return False
            self._db.execute("DELETE FROM events WHERE id=?", (event_id,))
        self._unlink(row)
        return True

    def apply_retention(self, *, max_events: int | None, max_age_s: float | None) -> int:
        """Delete finished events beyond the newest max_events or older than max_age_s, with their images."""
        now = self._clock()
        with self._lock:
            doomed: list[tuple[Any, ...]] = []
            if max_age_s is not None:
                doomed += self._db.execute(
                    "SELECT id, snapshot_path, heatmap_path FROM events WHERE end_ts IS NOT NULL AND start_ts < ?",
                    (now - max_age_s,)).fetchall()
            if max_events is not None:
                doomed += self._db.execute(
                    "SELECT id, snapshot_path, heatmap_path FROM events WHERE end_ts IS NOT NULL "
                    "ORDER BY start_ts DESC LIMIT -1 OFFSET ?", (max_events,)).fetchall()
            ids = sorted({r[0] for r in doomed})
            if ids:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("DELETE FROM events WHERE id=?", [(i,) for i in ids])
                self._db.executemany("DELETE FROM event_log WHERE event_id=?", [(i,) for i in ids])
                self._db.execute("COMMIT")
        for r in doomed:
            self._unlink(r[1:])
        if ids:
            log.info("retention deleted %d event(s)", len(ids))
        return len(ids)

    def _unlink(self, paths: Iterable[str | None]) -> None:
        for rel in paths:
            if rel and self.image_root is not None:
                (self.image_root / rel).unlink(missing_ok=True)

    # -- reads --------------------------------------------------------------------------------------------

    def get(self, event_id: str) -> Event | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_COLS} FROM events WHERE id=?", (event_id,)).fetchone()
        return None if row is None else _event(row)

    def list_events(self, *, camera_id: str | None = None, since: float | None = None,
                    until: float | None = None, active: bool | None = None, event_type: str | None = None,
                    limit: int = 100, offset: int = 0) -> list[Event]:
        """Newest first."""
        where: list[str] = ["1=1"]
        args: list[object] = []
        if camera_id is not None:
            where.append("camera_id=?")
            args.append(camera_id)
        if since is not None:
            where.append("start_ts>=?")
            args.append(since)
        if until is not None:
            where.append("start_ts<?")
            args.append(until)
        if active is not None:
            where.append("end_ts IS NULL" if active else "end_ts IS NOT NULL")
        if event_type is not None:
            where.append("type=?")
            args.append(event_type)
        sql = f"SELECT {_COLS} FROM events WHERE {' AND '.join(where)} ORDER BY start_ts DESC LIMIT ? OFFSET ?"
        with self._lock:
            rows = self._db.execute(sql, (*args, limit, offset)).fetchall()
        return [_event(r) for r in rows]

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def last_seq(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT MAX(seq) FROM event_log").fetchone()
        return int(row[0] or 0)

    def messages_since(self, seq: int, cameras: Iterable[str] | None = None, *,
                       limit: int = 1000) -> list[EventMessage]:
        """Event messages with seq > `seq`, oldest first (each carries the event as it was then)."""
        sql = "SELECT seq, kind, event FROM event_log WHERE seq > ?"
        args: list[object] = [seq]
        cams = None if cameras is None else sorted(set(cameras))
        if cams is not None:
            if not cams:
                return []
            sql += f" AND camera_id IN ({','.join('?' * len(cams))})"
            args += cams
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY seq LIMIT ?", (*args, limit)).fetchall()
        return [EventMessage(int(s), k, Event(**json.loads(e))) for s, k, e in rows]

    def image_path(self, rel: str) -> Path | None:
        """Absolute path of a stored event image, or None (never outside image_root)."""
        if self.image_root is None:
            return None
        root = self.image_root.resolve()
        p = (root / rel).resolve()
        return p if root in p.parents and p.is_file() else None
