"""The run store: every run's config, status, snapshots and metric series, in one SQLite file.

The database lives at ``<root>/runs.db`` in WAL mode, so the pages and the CLI can read while
worker processes write (one writer per run, several runs at once). Each thread and each process
gets its own connection; every write is one short ``BEGIN IMMEDIATE`` transaction.

Arrays are stored as ``.npy``/``.npz`` bytes and always loaded with ``allow_pickle=False``: the
store never unpickles anything. Only the standard library and NumPy are needed to read it.
"""

from __future__ import annotations

import io
import json
import numbers
import os
import re
import shutil
import sqlite3
import threading
import time
import weakref
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from dmlviz.settings import STORE_DIR_ENV, store_dir
from dmlviz.snapshot import SNAPSHOT_KINDS, Snapshot

T = TypeVar("T")

STATUSES = ("queued", "running", "paused", "finished", "stopped", "failed", "diverged", "interrupted")
ACTIVE_STATUSES = ("queued", "running", "paused")

DB_NAME = "runs.db"
SCHEMA_VERSION = 2
#: Free disk space that a store keeps spare: below it, no run starts and a running one stops, while
#: there is still room to record how it ended.
MIN_FREE_BYTES = 100 * 2**20
#: How long a writer waits for another writer's transaction before giving up.
BUSY_TIMEOUT_S = 10.0
#: Snapshot fields that ``series`` takes from the snapshot itself, never from its metrics.
SERIES_AXES = ("step", "epoch", "elapsed")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL DEFAULT '',
        config TEXT NOT NULL,
        config_hash TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL,
        created_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        updated_at REAL NOT NULL,
        error TEXT,
        summary TEXT NOT NULL DEFAULT '{}',
        pid INTEGER,
        tags TEXT NOT NULL DEFAULT '[]'
    )""",
    # The small columns come first so that reading the index of a run's snapshots never touches
    # the overflow pages that hold the array blobs.
    """CREATE TABLE IF NOT EXISTS snapshots (
        run_id INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        step INTEGER NOT NULL,
        epoch REAL NOT NULL,
        elapsed REAL NOT NULL,
        kind TEXT NOT NULL,
        metrics TEXT NOT NULL,
        features BLOB NOT NULL,
        class_means BLOB NOT NULL,
        class_vectors BLOB NOT NULL
    )""",
    "CREATE UNIQUE INDEX IF NOT EXISTS snapshots_run_seq ON snapshots (run_id, seq)",
    """CREATE TABLE IF NOT EXISTS series (
        run_id INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        step INTEGER NOT NULL,
        epoch REAL NOT NULL,
        elapsed REAL NOT NULL,
        name TEXT NOT NULL,
        value REAL
    )""",
    "CREATE INDEX IF NOT EXISTS series_run ON series (run_id)",
    """CREATE TABLE IF NOT EXISTS info (
        run_id INTEGER NOT NULL,
        key TEXT NOT NULL,
        format TEXT NOT NULL,
        value BLOB NOT NULL,
        PRIMARY KEY (run_id, key)
    )""",
)

# A long run keeps every epoch-end and formation snapshot and at most a few hundred clock ticks, spread
# evenly; checked every THIN_EVERY snapshots, so a run holds at most KEEP_TICKS + THIN_EVERY ticks.
KEEP_TICKS = 300
THIN_EVERY = 100

_RUN_COLUMNS = (
    "id, name, config, config_hash, status, created_at, started_at, finished_at, updated_at, error,"
    " summary, pid, tags"
)
#: What each older format needs to become the current one (format 1 had no tags).
_MIGRATIONS = {1: ("ALTER TABLE runs ADD COLUMN tags TEXT NOT NULL DEFAULT '[]'",)}
MAX_TAG_LENGTH = 40

# Connections inherited over fork(): closing them in the child could disturb the parent's locks
# (SQLite's "how to corrupt" guide, section 2.6), so they are kept referenced and never closed.
_INHERITED: list[sqlite3.Connection] = []


#: SQLite's largest integer: a larger number cannot name a run.
MAX_RUN_ID = 2**63 - 1
_DIGITS = re.compile(r"[0-9]{1,19}")  # ASCII only: "²" passes str.isdigit and int() takes "+5"


def parse_run_id(text: str) -> int | None:
    """The run id ``text`` (a link's, a command line's) names, or None for anything that cannot be one
    ("abc", "-1", "²", 10⁴⁰)."""
    text = text.strip()
    value = int(text) if _DIGITS.fullmatch(text) else 0
    return value if 1 <= value <= MAX_RUN_ID else None


class StoreError(RuntimeError):
    """The run store cannot do what was asked; the message says why and what to do."""


@dataclass
class RunRecord:
    """One run as the index knows it (no snapshots)."""

    id: int
    name: str
    config: dict
    config_hash: str
    status: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    updated_at: float
    error: str | None
    summary: dict[str, float]
    pid: int | None
    tags: list[str] = field(default_factory=list)

    @property
    def active(self) -> bool:
        """Whether the run is queued, running or paused."""
        return self.status in ACTIVE_STATUSES

    @property
    def duration(self) -> float | None:
        """Seconds from its start to its end (to its last update while active); None if never started."""
        if self.started_at is None:
            return None
        end = self.updated_at if self.active or self.finished_at is None else self.finished_at
        return max(0.0, end - self.started_at)


@dataclass
class SnapshotInfo:
    """A row of a run's snapshot index, without the arrays."""

    seq: int
    step: int
    epoch: float
    elapsed: float
    kind: str


class _Connection(sqlite3.Connection):
    """A connection that can be weakly referenced, so ``RunStore.close`` can find every open one."""


class RunStore:
    """The run store in folder ``root`` (default: :func:`dmlviz.settings.store_dir`).

    Safe to share between threads (each thread gets its own connection) and to use after fork
    (the child opens fresh connections). Many processes may open the same folder at once.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, *, min_free_bytes: int = MIN_FREE_BYTES) -> None:
        self.root: Path = Path(root).expanduser() if root is not None else store_dir()
        self.path: Path = self.root / DB_NAME
        self.min_free_bytes = min_free_bytes
        self._local = threading.local()
        self._lock = threading.Lock()
        self._generation = 0
        self._owner_pid = os.getpid()
        self._open: weakref.WeakSet[_Connection] = weakref.WeakSet()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"store folder {self.root} cannot be created: {exc.strerror or exc}; "
                f"create it yourself or set {STORE_DIR_ENV} to another folder"
            ) from exc
        # A folder that cannot be written but holds a store opens read-only: its runs stay viewable,
        # and anything that would write (a new run first) says why it cannot.
        self.read_only = not os.access(self.root, os.W_OK | os.X_OK)
        if self.read_only and not self.path.exists():
            raise StoreError(
                f"store folder {self.root} is not writable: the run database {DB_NAME} must be created "
                f"and written there; fix the folder's permissions or set {STORE_DIR_ENV} to another folder"
            )
        try:
            self._open_schema()
        except BaseException:
            self.close()
            raise

    # ----------------------------------------------------------------- health

    def check_space(self) -> None:
        """StoreError if the store's disk has less than ``min_free_bytes`` free (a statvfs call)."""
        free = shutil.disk_usage(self.root).free
        if free < self.min_free_bytes:
            raise StoreError(
                f"the disk that holds the run store {self.root} has only {free / 1e6:.0f} MB free; dmlviz keeps "
                f"{self.min_free_bytes / 1e6:.0f} MB spare so that what runs record is never cut off. Free some "
                f"space, delete old runs, or set {STORE_DIR_ENV} to another disk"
            )

    def _check_writable(self) -> None:
        if self.read_only:
            raise StoreError(
                f"the run store folder {self.root} is read-only: its runs can be viewed and exported, but no "
                f"run can be recorded there; fix the folder's permissions or set {STORE_DIR_ENV} to another folder"
            )

    def damage(self, limit: int = 10) -> list[str]:
        """What SQLite's ``quick_check`` finds wrong in the file (up to ``limit`` problems; [] when it is
        sound). Reads every page once: meant for a server's start, not for every page view."""
        try:
            with self._transaction() as db:
                rows = [row[0] for row in db.execute(f"PRAGMA quick_check({int(limit)})")]
        except StoreError as exc:
            return [str(exc)]
        return [] if rows == ["ok"] else rows

    # ----------------------------------------------------------------- runs

    def create_run(
        self,
        config: dict,
        *,
        name: str = "",
        config_hash: str = "",
        status: str = "queued",
        pid: int | None = None,
    ) -> int:
        """Add a run and return its id (ids are never reused, even after a run is deleted)."""
        _check_status(status)
        self.check_space()
        now = time.time()
        started = now if status == "running" else None
        finished = None if status in ACTIVE_STATUSES else now
        config_json = _dumps(config, "config")
        with self._transaction(write=True) as db:
            cur = db.execute(
                "INSERT INTO runs (name, config, config_hash, status, created_at, started_at, finished_at,"
                " updated_at, summary, pid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, '{}', ?)",
                (name, config_json, config_hash, status, now, started, finished, now, pid),
            )
            run_id = cur.lastrowid
        assert run_id is not None
        return run_id

    def get_run(self, run_id: int) -> RunRecord:
        """The run with id ``run_id``; StoreError if there is none."""
        with self._transaction() as db:
            row = db.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise StoreError(f"no run with id {run_id}")
        return _run_record(row)

    def list_runs(self, statuses: Iterable[str] | None = None) -> list[RunRecord]:
        """All runs (or those with one of ``statuses``), newest first."""
        query = f"SELECT {_RUN_COLUMNS} FROM runs"
        params: tuple[str, ...] = ()
        if statuses is not None:
            params = (statuses,) if isinstance(statuses, str) else tuple(statuses)
            for status in params:
                _check_status(status)
            if not params:
                return []
            query += f" WHERE status IN ({', '.join('?' * len(params))})"
        with self._transaction() as db:
            rows = db.execute(query + " ORDER BY id DESC", params).fetchall()
        return [_run_record(row) for row in rows]

    def set_status(
        self, run_id: int, status: str, *, error: str | None = None, pid: int | None = None
    ) -> None:
        """Change a run's status and error (``None`` clears it); ``pid``, when given, replaces its pid.

        ``started_at`` is set the first time the run becomes running; ``finished_at`` is set when
        it reaches a terminal status and cleared if it becomes active again (e.g. resumed).
        """
        _check_status(status)
        now = time.time()
        with self._transaction(write=True) as db:
            cur = db.execute(
                "UPDATE runs SET status = ?, error = ?, updated_at = ?,"
                " started_at = CASE WHEN ? THEN COALESCE(started_at, ?) ELSE started_at END,"
                " finished_at = ?, pid = COALESCE(?, pid) WHERE id = ?",
                (
                    status,
                    error,
                    now,
                    status == "running",
                    now,
                    None if status in ACTIVE_STATUSES else now,
                    pid,
                    run_id,
                ),
            )
            if cur.rowcount == 0:
                raise StoreError(f"no run with id {run_id}")

    def update_summary(self, run_id: int, summary: dict[str, float]) -> None:
        """Merge ``summary`` into the run's summary metrics."""
        values = _numbers(summary, "summary")
        with self._transaction(write=True) as db:
            _merge_summary(db, run_id, values, time.time())

    def rename(self, run_id: int, name: str) -> None:
        """Give a run a new name."""
        # updated_at is left alone: it measures training progress (an active run's duration).
        with self._transaction(write=True) as db:
            if db.execute("UPDATE runs SET name = ? WHERE id = ?", (name, run_id)).rowcount == 0:
                raise StoreError(f"no run with id {run_id}")

    def set_tags(self, run_id: int, tags: Iterable[str]) -> list[str]:
        """Give a run these tags (trimmed, without repeats or empty ones) and return them."""
        clean = list(dict.fromkeys(tag.strip() for tag in tags if tag.strip()))
        if long := [tag for tag in clean if len(tag) > MAX_TAG_LENGTH]:
            raise StoreError(f"a tag has at most {MAX_TAG_LENGTH} characters: {long[0][:MAX_TAG_LENGTH]}…")
        with self._transaction(write=True) as db:
            if db.execute("UPDATE runs SET tags = ? WHERE id = ?", (json.dumps(clean), run_id)).rowcount == 0:
                raise StoreError(f"no run with id {run_id}")
        return clean

    def delete_run(self, run_id: int) -> None:
        """Remove a run with its snapshots, series and info, and give the space back to the disk."""
        with self._transaction(write=True) as db:
            if db.execute("DELETE FROM runs WHERE id = ?", (run_id,)).rowcount == 0:
                raise StoreError(f"no run with id {run_id}")
            for table in ("snapshots", "series", "info"):
                db.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
        try:
            db = self._db()
            # executescript steps the pragma to the end; execute() would free a single page.
            db.executescript("PRAGMA incremental_vacuum;")
            # Passive: moves freed pages into the file without waiting for (or blocking) readers.
            db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def mark_interrupted(self) -> list[int]:
        """Mark active runs whose process is gone as interrupted and return their ids.

        A run's process counts as gone if its pid is unset, no longer exists, is a zombie, or
        (on Linux) now belongs to a process started after the run was last updated, i.e. the pid
        was reused, as happens when a container restarts. Their snapshots are kept.
        """
        if self.read_only:
            return []  # nothing can be marked; the runs show the status they were left with
        marked: list[int] = []
        placeholders = ", ".join("?" * len(ACTIVE_STATUSES))
        with self._transaction(write=True) as db:
            rows = db.execute(
                f"SELECT id, pid, started_at, updated_at FROM runs WHERE status IN ({placeholders})",
                ACTIVE_STATUSES,
            ).fetchall()
            now = time.time()
            for run_id, pid, started_at, updated_at in rows:
                if _process_alive(pid, updated_at):
                    continue
                last = db.execute(
                    "SELECT step FROM snapshots WHERE run_id = ? ORDER BY seq DESC LIMIT 1", (run_id,)
                ).fetchone()
                if last is not None:
                    kept = f"what it recorded up to step {last[0]} is kept"
                elif started_at is None:
                    kept = "it had not started"
                else:
                    kept = "it had not recorded anything yet"
                error = f"the process running it stopped (app restart or crash); {kept}"
                db.execute(
                    "UPDATE runs SET status = 'interrupted', error = ?, finished_at = ?, updated_at = ?"
                    " WHERE id = ?",
                    (error, now, now, run_id),
                )
                marked.append(run_id)
        return marked

    # ----------------------------------------------------------------- run-level info

    def put_info(self, run_id: int, key: str, value: np.ndarray | dict | list | str | int | float) -> None:
        """Store run-level data under ``key``, replacing what was there: arrays as .npy, the rest as JSON."""
        if isinstance(value, np.ndarray):
            fmt, blob = "npy", _npy(value, f"info {key!r}")
        else:
            fmt, blob = "json", _dumps(value, f"info {key!r}").encode()
        with self._transaction(write=True) as db:
            self._require_run(db, run_id)
            db.execute(
                "INSERT OR REPLACE INTO info (run_id, key, format, value) VALUES (?, ?, ?, ?)",
                (run_id, key, fmt, blob),
            )

    def get_info(self, run_id: int, key: str, default: Any = None) -> Any:
        """The value stored under ``key`` for the run, or ``default`` if there is none."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT format, value FROM info WHERE run_id = ? AND key = ?", (run_id, key)
            ).fetchone()
        if row is None:
            return default
        fmt, blob = row
        return self._decoded(lambda b: _load_npy(b) if fmt == "npy" else json.loads(b.decode()), blob,
                             f"the {key!r} of run {run_id}")

    # ----------------------------------------------------------------- snapshots

    def add_snapshot(self, run_id: int, snapshot: Snapshot) -> int:
        """Record a snapshot with its metric series and summary in one transaction; return its seq."""
        if snapshot.kind not in SNAPSHOT_KINDS:
            kinds = ", ".join(SNAPSHOT_KINDS)
            raise ValueError(f"snapshot kind must be one of {kinds}, got {snapshot.kind!r}")
        step, epoch, elapsed = int(snapshot.step), float(snapshot.epoch), float(snapshot.elapsed)
        metrics = _numbers(snapshot.metrics, "metric")
        blobs = (
            _npy(snapshot.features, "features"),
            _npy(snapshot.class_means, "class_means"),
            _npz(snapshot.class_vectors),
        )
        series = [(name, float(value)) for name, value in metrics.items() if name not in SERIES_AXES]
        self.check_space()
        with self._transaction(write=True) as db:
            self._require_run(db, run_id)
            (seq,) = db.execute(
                "SELECT COALESCE(MAX(seq) + 1, 0) FROM snapshots WHERE run_id = ?", (run_id,)
            ).fetchone()
            db.execute(
                "INSERT INTO snapshots (run_id, seq, step, epoch, elapsed, kind, metrics, features,"
                " class_means, class_vectors) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, seq, step, epoch, elapsed, snapshot.kind, _dumps(metrics, "metrics"), *blobs),
            )
            db.executemany(
                "INSERT INTO series (run_id, seq, step, epoch, elapsed, name, value)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(run_id, seq, step, epoch, elapsed, name, value) for name, value in series],
            )
            _merge_summary(db, run_id, {**metrics, "step": step, "epoch": epoch, "elapsed": elapsed}, time.time())
        if snapshot.kind in ("tick", "formation") and seq % THIN_EVERY == 0:
            self.thin_snapshots(run_id, KEEP_TICKS)
        return seq

    def thin_snapshots(self, run_id: int, keep: int) -> int:
        """Keep a long run's store bounded: delete all but ``keep`` of its clock ("tick") snapshots,
        evenly spread over the run; the first and the latest snapshots, every epoch end, every formation
        snapshot (a few dozen a run, whatever its length) and the final one stay, and so do the metric
        series of every snapshot (the curves keep their detail).
        Returns how many were deleted."""
        with self._transaction(write=True) as db:
            seqs = [row[0] for row in db.execute(
                "SELECT seq FROM snapshots WHERE run_id = ? AND kind = 'tick' ORDER BY seq", (run_id,))]
            (first, last) = db.execute("SELECT MIN(seq), MAX(seq) FROM snapshots WHERE run_id = ?",
                                       (run_id,)).fetchone()
            ticks = [seq for seq in seqs if seq not in (first, last)]
            if len(ticks) <= keep:
                return 0
            kept = {ticks[int(i)] for i in np.linspace(0, len(ticks) - 1, keep).round()}
            doomed = [(run_id, seq) for seq in ticks if seq not in kept]
            db.executemany("DELETE FROM snapshots WHERE run_id = ? AND seq = ?", doomed)
        return len(doomed)

    def snapshot_index(self, run_id: int) -> list[SnapshotInfo]:
        """The run's snapshots in seq order, without their arrays."""
        with self._transaction() as db:
            rows = db.execute(
                "SELECT seq, step, epoch, elapsed, kind FROM snapshots WHERE run_id = ? ORDER BY seq",
                (run_id,),
            ).fetchall()
        return [SnapshotInfo(*row) for row in rows]

    def get_snapshot(self, run_id: int, seq: int) -> Snapshot:
        """The run's snapshot number ``seq``; StoreError if there is none."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT step, epoch, elapsed, kind, metrics, features, class_means, class_vectors"
                " FROM snapshots WHERE run_id = ? AND seq = ?",
                (run_id, seq),
            ).fetchone()
            if row is None:
                self._require_run(db, run_id)
                raise StoreError(f"run {run_id} has no snapshot {seq}")
        return self._decoded(_snapshot, row, f"snapshot {seq} of run {run_id}")

    def latest_snapshot(self, run_id: int) -> Snapshot | None:
        """The run's most recent snapshot, or None if it has none yet."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT step, epoch, elapsed, kind, metrics, features, class_means, class_vectors"
                " FROM snapshots WHERE run_id = ? ORDER BY seq DESC LIMIT 1",
                (run_id,),
            ).fetchone()
        return None if row is None else self._decoded(_snapshot, row, f"the latest snapshot of run {run_id}")

    def count_snapshots(self, run_id: int) -> int:
        """How many snapshots the run has."""
        with self._transaction() as db:
            (count,) = db.execute("SELECT COUNT(*) FROM snapshots WHERE run_id = ?", (run_id,)).fetchone()
        return int(count)

    def series(self, run_id: int) -> dict[str, np.ndarray]:
        """The run's metrics over time, one entry per snapshot in seq order.

        ``step`` (int64), ``epoch`` and ``elapsed`` come from the snapshots; every metric is a
        float64 array with NaN where a snapshot lacked it.
        """
        with self._transaction() as db:
            axes = db.execute(
                # The series outlive thinned snapshots: every snapshot ever taken is a point of the curves.
                "SELECT seq, step, epoch, elapsed FROM snapshots WHERE run_id = ? UNION "
                "SELECT DISTINCT seq, step, epoch, elapsed FROM series WHERE run_id = ? ORDER BY seq", (run_id, run_id)
            ).fetchall()
            rows = db.execute("SELECT seq, name, value FROM series WHERE run_id = ?", (run_id,)).fetchall()
        position = {row[0]: i for i, row in enumerate(axes)}
        out: dict[str, np.ndarray] = {
            "step": np.array([row[1] for row in axes], dtype=np.int64),
            "epoch": np.array([row[2] for row in axes], dtype=np.float64),
            "elapsed": np.array([row[3] for row in axes], dtype=np.float64),
        }
        for seq, name, value in rows:
            if name not in out:
                out[name] = np.full(len(axes), np.nan)
            # SQLite stores a NaN as NULL.
            out[name][position[seq]] = np.nan if value is None else value
        return out

    # ----------------------------------------------------------------- the file

    def size_bytes(self) -> int:
        """Bytes the store takes on disk: the database file and its write-ahead log."""
        total = 0
        for path in (self.path, self.path.with_name(DB_NAME + "-wal")):
            try:
                total += path.stat().st_size
            except FileNotFoundError:
                pass
        return total

    def close(self) -> None:
        """Close every connection this process opened; a later call opens new ones."""
        with self._lock:
            owned = list(self._open) if self._owner_pid == os.getpid() else []
            self._open = weakref.WeakSet()
            self._owner_pid = os.getpid()
            self._generation += 1
        for conn in owned:
            conn.close()

    # ----------------------------------------------------------------- internals

    def _db(self) -> sqlite3.Connection:
        """This thread's connection in this process, opened on first use."""
        local = self._local
        pid = os.getpid()
        key = (pid, self._generation)
        if getattr(local, "key", None) != key:
            inherited = getattr(local, "conn", None)
            if inherited is not None and local.key[0] != pid:
                _INHERITED.append(inherited)
            local.conn = self._connect()
            local.key = key
            with self._lock:
                if self._owner_pid != pid:
                    self._open = weakref.WeakSet()
                    self._owner_pid = pid
                self._open.add(local.conn)
        return local.conn

    def _connect(self) -> _Connection:
        target, uri = self.path, False
        if self.read_only:
            # Without its write-ahead log (a store closed cleanly) SQLite needs no lock files: immutable.
            wal = self.path.with_name(DB_NAME + "-wal").exists()
            target, uri = f"{self.path.as_uri()}?mode=ro" + ("" if wal else "&immutable=1"), True
        try:
            conn = sqlite3.connect(
                target,
                timeout=BUSY_TIMEOUT_S,
                isolation_level=None,  # transactions are begun explicitly, see _transaction
                check_same_thread=False,  # only close() crosses threads; each thread has its own
                factory=_Connection,
                uri=uri,
            )
            conn.execute("PRAGMA synchronous = NORMAL")
            # When the WAL restarts, cut it back to 16 MiB (normal use stays under that: it is
            # checkpointed every ~4 MiB), e.g. after delete_run wrote a big vacuum to it.
            conn.execute("PRAGMA journal_size_limit = 16777216")
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        return conn

    def _open_schema(self) -> None:
        db = self._db()
        try:
            if self.read_only:
                mode = "wal"  # as it was written; nothing is changed
            else:
                # Takes effect only on a new, empty database: lets delete_run give space back.
                db.execute("PRAGMA auto_vacuum = INCREMENTAL")
                (mode,) = db.execute("PRAGMA journal_mode = WAL").fetchone()
            (version,) = db.execute("PRAGMA user_version").fetchone()
            # Reads sqlite_master, so a damaged file fails here rather than in the middle of a run.
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        if mode.lower() != "wal":
            raise StoreError(
                f"the run store {self.path} cannot use write-ahead logging (journal mode stays {mode!r}); "
                f"put it on a local disk by setting {STORE_DIR_ENV}"
            )
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the run store {self.path} was written by a newer dmlviz (format {version}, this one reads "
                f"{SCHEMA_VERSION}); upgrade dmlviz or set {STORE_DIR_ENV} to another folder"
            )
        if version == SCHEMA_VERSION:
            return
        if self.read_only:
            raise StoreError(f"the run store {self.path} is in an older format (format {version}) and its folder "
                             f"is read-only, so it cannot be upgraded; fix the folder's permissions or set "
                             f"{STORE_DIR_ENV} to another folder")
        with self._transaction(write=True) as db:
            # A new store gets every table; an older one, what was added since its format.
            statements = _SCHEMA if version == 0 else [change for older in range(version, SCHEMA_VERSION)
                                                      for change in _MIGRATIONS[older]]
            for statement in statements:
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def _transaction(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        """One transaction on this thread's connection, turning SQLite errors into StoreError.

        Writes take the write lock up front (IMMEDIATE) so that ``busy_timeout`` applies; a
        deferred transaction that upgrades to a write fails at once instead of waiting.
        """
        if write:
            self._check_writable()
        db = self._db()
        try:
            db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield db
                db.execute("COMMIT")
            finally:
                if db.in_transaction:
                    db.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def _require_run(self, db: sqlite3.Connection, run_id: int) -> None:
        if db.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
            raise StoreError(f"no run with id {run_id}")

    def _decoded(self, decode: Callable[[Any], T], raw: Any, what: str) -> T:
        """``decode(raw)``, or a StoreError naming what is damaged (the rest of the store stays readable)."""
        try:
            return decode(raw)
        except (ValueError, EOFError, OSError, UnicodeDecodeError, zipfile.BadZipFile, zlib.error) as exc:
            raise StoreError(f"{what} is damaged in {self.path} ({exc}); the run's other records and the other "
                             "runs can still be read") from exc

    def _error(self, exc: sqlite3.Error) -> StoreError:
        """A StoreError that names the file and says what to do."""
        text = str(exc)
        if "not a database" in text or "malformed" in text:
            return StoreError(
                f"the run store {self.path} is damaged or is not a dmlviz database ({text}); move it aside "
                f"(or delete it) to start a new store, or set {STORE_DIR_ENV} to another folder"
            )
        if "locked" in text or "busy" in text:
            return StoreError(
                f"the run store {self.path} stayed busy for over {BUSY_TIMEOUT_S:g} s ({text}); "
                "another process held it too long - try again"
            )
        if "full" in text:
            return StoreError(
                f"the disk that holds the run store {self.path} is full ({text}); what was recorded before is "
                f"kept. Free some space, delete old runs, or set {STORE_DIR_ENV} to another disk"
            )
        if "readonly" in text or "unable to open" in text or "disk" in text:
            return StoreError(
                f"cannot write the run store {self.path} ({text}); "
                "check the folder's permissions and free disk space"
            )
        return StoreError(f"the run store {self.path} failed: {text}")


# --------------------------------------------------------------------- helpers


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-able")


def _dumps(value: object, what: str) -> str:
    try:
        return json.dumps(value, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be plain JSON-able data: {exc}") from exc


def _numbers(values: dict[str, float], what: str) -> dict[str, float]:
    """Plain Python numbers (ints stay ints) from a dict that may hold NumPy scalars."""
    out: dict[str, float] = {}
    for name, value in values.items():
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            out[str(name)] = int(value)
            continue
        try:
            out[str(name)] = float(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{what} {name!r} must be a number, got {value!r}") from exc
    return out


def _merge_summary(db: sqlite3.Connection, run_id: int, values: dict[str, float], now: float) -> None:
    row = db.execute("SELECT summary FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        raise StoreError(f"no run with id {run_id}")
    summary = {**json.loads(row[0]), **values}
    db.execute("UPDATE runs SET summary = ?, updated_at = ? WHERE id = ?", (json.dumps(summary), now, run_id))


def _run_record(row: tuple) -> RunRecord:
    values = list(row)
    values[2] = json.loads(values[2])
    values[10] = json.loads(values[10])
    values[12] = json.loads(values[12])
    return RunRecord(*values)


def _check_plain(array: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype.hasobject:
        raise ValueError(f"{what} must be a numeric array, got dtype {array.dtype}")
    return array


def _npy(array: np.ndarray, what: str) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, _check_plain(array, what), allow_pickle=False)
    return buffer.getvalue()


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **{name: _check_plain(a, f"class_vectors[{name!r}]") for name, a in arrays.items()})
    return buffer.getvalue()


# NumPy parses .npy headers with ast.literal_eval, and CPython 3.11 before 3.11.8 can raise
# "SystemError: AST constructor recursion depth mismatch" when threads do that at once (gh-106905);
# the pages read snapshots from many threads, so header parsing is serialised.
_NPY_LOCK = threading.Lock()


def _load_npy(blob: bytes) -> np.ndarray:
    with _NPY_LOCK:
        return np.load(io.BytesIO(blob), allow_pickle=False)


def _snapshot(row: tuple) -> Snapshot:
    step, epoch, elapsed, kind, metrics, features, class_means, class_vectors = row
    with _NPY_LOCK, np.load(io.BytesIO(class_vectors), allow_pickle=False) as npz:
        vectors = {name: npz[name] for name in npz.files}
    return Snapshot(
        step=int(step),
        epoch=float(epoch),
        elapsed=float(elapsed),
        kind=kind,
        metrics=json.loads(metrics),
        features=_load_npy(features),
        class_means=_load_npy(class_means),
        class_vectors=vectors,
    )


def _process_alive(pid: int | None, updated_at: float) -> bool:
    """Whether ``pid`` is a live process that can still be the one that last updated the run."""
    if pid is None or pid <= 0:  # os.kill(0, ...) would signal our own process group
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists but belongs to another user
    stat = _proc_stat(pid)
    if stat is None:
        return True
    state, started_at = stat
    if state in ("Z", "X"):
        return False
    # A process younger than the run's last update cannot have made it: its pid was reused.
    # The second of slack covers the clock-tick rounding of the start time.
    return started_at is None or started_at <= updated_at + 1.0


def _proc_stat(pid: int) -> tuple[str, float | None] | None:
    """(state, wall-clock start time) of a process from Linux's /proc; None where /proc is missing."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    # The command name (field 2) may itself contain spaces and parentheses.
    fields = stat[stat.rindex(")") + 2 :].split()
    try:
        age = uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (IndexError, ValueError, OSError):
        return fields[0], None
    return fields[0], time.time() - age
