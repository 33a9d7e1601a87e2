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
import sys
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
from dmlviz.status import ACTIVE, RunStatus

T = TypeVar("T")

DB_NAME = "runs.db"
SCHEMA_VERSION = 4
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
        tags TEXT NOT NULL DEFAULT '[]',
        owner TEXT
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
        class_vectors BLOB NOT NULL,
        decision BLOB,
        forces BLOB
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
    " summary, pid, tags, owner"
)
#: What each older format needs to become the current one (format 1 had no tags, format 2 no owner, format 3
#: no decision maps and forces).
_MIGRATIONS = {1: ("ALTER TABLE runs ADD COLUMN tags TEXT NOT NULL DEFAULT '[]'",),
               2: ("ALTER TABLE runs ADD COLUMN owner TEXT",),
               3: ("ALTER TABLE snapshots ADD COLUMN decision BLOB", "ALTER TABLE snapshots ADD COLUMN forces BLOB")}
MAX_TAG_LENGTH = 40
MAX_TAGS = 20  # tags a run may have
MAX_NAME_LENGTH = 200  # characters of a run's name (RunConfig's name is held to it too)

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


class StoreFault(StoreError):
    """The store's file, folder or disk failed (damaged, unreadable, read-only, busy), not what was asked
    of it: a command line reports it with its own exit status."""


class StoreFull(StoreFault):
    """The disk that holds the store is full, or below the space the store keeps spare."""


@dataclass
class RunRecord:
    """One run as the index knows it (no snapshots)."""

    id: int
    name: str
    config: dict
    config_hash: str
    status: RunStatus
    created_at: float
    started_at: float | None
    finished_at: float | None
    updated_at: float
    error: str | None
    summary: dict[str, float]
    pid: int | None
    tags: list[str] = field(default_factory=list)
    owner: str | None = None  # the page visitor who started it (None: a script or the command line)

    @property
    def active(self) -> bool:
        """Whether the run is queued, running or paused."""
        return self.status in ACTIVE

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

    def __init__(self, root: str | os.PathLike[str] | None = None, *, min_free_bytes: int = MIN_FREE_BYTES,
                 read_only: bool = False) -> None:
        """``read_only``: open the store for reading only (SQLite's ``mode=ro``), as the command line's
        ``runs list`` and ``runs show`` do, so that they work on a full disk; writes then say why not."""
        self.root: Path = Path(root).expanduser() if root is not None else store_dir()
        self.path: Path = self.root / DB_NAME
        self.min_free_bytes = min_free_bytes
        self._local = threading.local()
        self._lock = threading.Lock()
        self._generation = 0
        self._owner_pid = os.getpid()
        self._open: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._immutable = False  # a read-only store opened without lock files (see _open_schema)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreFault(
                f"store folder {self.root} cannot be created: {exc.strerror or exc}; "
                f"create it yourself or set {STORE_DIR_ENV} to another folder"
            ) from exc
        # A folder that cannot be written but holds a store opens read-only: its runs stay viewable,
        # and anything that would write (a new run first) says why it cannot.
        self.folder_read_only = not os.access(self.root, os.W_OK | os.X_OK)
        # Asked to read only, a store that does not exist yet is created all the same (an empty one).
        self.read_only = self.folder_read_only or (read_only and self.path.exists())
        if self.read_only and not self.path.exists():
            raise StoreFault(
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
            raise StoreFull(
                f"the disk that holds the run store {self.root} has only {free / 1e6:.0f} MB free; dmlviz keeps "
                f"{self.min_free_bytes / 1e6:.0f} MB spare so that what runs record is never cut off. Free some "
                f"space, delete old runs, or set {STORE_DIR_ENV} to another disk"
            )

    def _check_writable(self) -> None:
        if self.read_only and not self.folder_read_only:
            raise StoreFault(f"the run store {self.path} was opened for reading only; nothing can be recorded "
                             "through this connection to it")
        if self.read_only:
            raise StoreFault(
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
        status: RunStatus = RunStatus.QUEUED,
        pid: int | None = None,
        owner: str | None = None,
    ) -> int:
        """Add a run and return its id (ids are never reused, even after a run is deleted)."""
        status = _check_status(status)
        self.check_space()
        now = time.time()
        started = now if status == RunStatus.RUNNING else None
        finished = None if status.active else now
        config_json = _dumps(config, "config")
        with self._transaction(write=True) as db:
            cur = db.execute(
                "INSERT INTO runs (name, config, config_hash, status, created_at, started_at, finished_at,"
                " updated_at, summary, pid, owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?, '{}', ?, ?)",
                (name, config_json, config_hash, status, now, started, finished, now, pid, owner),
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

    def list_runs(self, statuses: RunStatus | Iterable[RunStatus] | None = None) -> list[RunRecord]:
        """All runs (or those with one of ``statuses``), newest first."""
        query = f"SELECT {_RUN_COLUMNS} FROM runs"
        params: tuple[str, ...] = ()
        if statuses is not None:
            params = (statuses,) if isinstance(statuses, str) else tuple(statuses)
            params = tuple(_check_status(status) for status in params)
            if not params:
                return []
            query += f" WHERE status IN ({', '.join('?' * len(params))})"
        with self._transaction() as db:
            rows = db.execute(query + " ORDER BY id DESC", params).fetchall()
        return [_run_record(row) for row in rows]

    def set_status(self, run_id: int, status: RunStatus, *, error: str | None = None, pid: int | None = None,
                   was: Iterable[RunStatus] | None = None) -> bool:
        """Move a run to ``status`` with ``error`` (``None`` clears it) and, when given, a new ``pid``, if it is
        in a status it may come from (``status.comes_from``, narrowed to ``was`` when given); False, with
        nothing changed, if it is not (it ended meanwhile, or was started or stopped by someone else).

        The check and the change are one ``UPDATE … WHERE status IN (…)``, so two writers (a worker recording
        its end, the app or the CLI marking it) never undo each other: a run that ended stays as it ended.
        ``started_at`` is set the first time the run runs; ``finished_at`` when it ends.
        """
        status = _check_status(status)
        allowed = status.comes_from if was is None else status.comes_from & {_check_status(s) for s in was}
        with self._transaction(write=True) as db:
            if _move(db, run_id, status, error, pid, allowed):
                return True
            if db.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                raise StoreError(f"no run with id {run_id}")
            return False

    def update_summary(self, run_id: int, summary: dict[str, float]) -> None:
        """Merge ``summary`` into the run's summary metrics."""
        values = _numbers(summary, "summary")
        with self._transaction(write=True) as db:
            _merge_summary(db, run_id, values, time.time())

    def rename(self, run_id: int, name: str) -> None:
        """Give a run a new name (trimmed; at most :data:`MAX_NAME_LENGTH` characters)."""
        name = name.strip()
        if len(name) > MAX_NAME_LENGTH:
            raise StoreError(f"a run's name has at most {MAX_NAME_LENGTH} characters, got {len(name)}")
        # updated_at is left alone: it measures training progress (an active run's duration).
        with self._transaction(write=True) as db:
            if db.execute("UPDATE runs SET name = ? WHERE id = ?", (name, run_id)).rowcount == 0:
                raise StoreError(f"no run with id {run_id}")

    def set_tags(self, run_id: int, tags: Iterable[str]) -> list[str]:
        """Give a run these tags (trimmed, without repeats or empty ones) and return them."""
        clean = list(dict.fromkeys(tag.strip() for tag in tags if tag.strip()))
        if long := [tag for tag in clean if len(tag) > MAX_TAG_LENGTH]:
            raise StoreError(f"a tag has at most {MAX_TAG_LENGTH} characters, got {len(long[0])} "
                             f"({long[0][:MAX_TAG_LENGTH]}…)")
        if len(clean) > MAX_TAGS:
            raise StoreError(f"a run has at most {MAX_TAGS} tags, got {len(clean)}")
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

    def mark_interrupted(self, run_ids: Iterable[int] | None = None) -> list[int]:
        """Mark active runs (of ``run_ids``, or all) whose process is gone as interrupted; return their ids.

        A run's process counts as gone if its pid is unset, no longer exists, is a zombie, or
        (on Linux) now belongs to a process started after the run was last updated, i.e. the pid
        was reused, as happens when a container restarts. Their snapshots are kept.
        """
        if self.read_only:
            return []  # nothing can be marked; the runs show the status they were left with
        marked: list[int] = []
        placeholders = ", ".join("?" * len(ACTIVE))
        wanted = None if run_ids is None else set(run_ids)
        with self._transaction(write=True) as db:
            rows = db.execute(
                f"SELECT id, pid, started_at, updated_at FROM runs WHERE status IN ({placeholders})",
                tuple(ACTIVE),
            ).fetchall()
            rows = [row for row in rows if wanted is None or row[0] in wanted]
            for run_id, pid, started_at, updated_at in rows:
                if process_alive(pid, updated_at):
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
                if _move(db, run_id, RunStatus.INTERRUPTED, error, None, ACTIVE):
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
            _npz(snapshot.decision, compressed=True) if snapshot.decision else None,
            _npz(snapshot.forces) if snapshot.forces else None,
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
                " class_means, class_vectors, decision, forces) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                "SELECT step, epoch, elapsed, kind, metrics, features, class_means, class_vectors, decision, forces"
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
                "SELECT step, epoch, elapsed, kind, metrics, features, class_means, class_vectors, decision, forces"
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
            # A store only asked to read (its folder writable) takes the lock files as usual, unless they
            # cannot be made (a full disk, see _open_schema).
            immutable = self._immutable or (self.folder_read_only and not self._wal_bytes())
            target, uri = f"{self.path.as_uri()}?mode=ro" + ("&immutable=1" if immutable else ""), True
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

    def _wal_bytes(self) -> int:
        """The size of the store's write-ahead log (0 when there is none)."""
        try:
            return self.path.with_name(DB_NAME + "-wal").stat().st_size
        except OSError:
            return 0

    def _open_schema(self) -> None:
        try:
            self._read_schema()
        except StoreError as exc:
            cause = exc.__cause__
            # On a full disk even a reader fails: it cannot make the lock file (runs.db-shm) that SQLite
            # shares between connections. A store with nothing in its log can be read without one.
            if not (self.read_only and not self._immutable and isinstance(cause, sqlite3.Error)
                    and _errorname(cause).startswith(("SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_READONLY"))
                    and not self._wal_bytes()):
                raise
            self.close()
            self._immutable = True
            self._read_schema()

    def _read_schema(self) -> None:
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
        if self.read_only and not self.folder_read_only:
            # Only asked to read, in a folder that can be written: upgraded as any opening would, then read.
            self.close()
            self.read_only = self._immutable = False
            try:
                self._read_schema()
            finally:
                self.close()
                self.read_only = True
            return
        if self.read_only:
            raise StoreFault(f"the run store {self.path} is in an older format (format {version}) and its folder "
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
            raise StoreFault(f"{what} is damaged in {self.path} ({exc}); the run's other records and the other "
                             "runs can still be read") from exc

    def _error(self, exc: sqlite3.Error) -> StoreError:
        """A StoreError that names the file, the real cause where it can be found, and what to do."""
        text, name = str(exc), _errorname(exc)
        if (lost := self._lost_wal()) is not None:
            return StoreFault(
                f"the run store's write-ahead log {self.path.name}-wal was deleted or cut short while the store "
                f"was in use ({lost}; SQLite: {text}). What was written since its last checkpoint is held only by "
                "the processes that still have the store open: stop them all (the app's server, command-line "
                f"runs), and the last one to close writes it back into {self.path}; then start again. Never "
                f"delete {self.path.name}-wal or {self.path.name}-shm while the store is in use"
            )
        if "not a database" in text or "malformed" in text or name.startswith("SQLITE_CORRUPT"):
            if (short := _truncation(self.path)) is not None:
                return StoreFault(
                    f"the run store {self.path} is cut short ({short}), as when a copy or the disk stopped "
                    "midway; `python -m dmlviz runs check` says which runs can still be read, and "
                    "`python -m dmlviz runs check --salvage DIR` copies them into a new store in DIR"
                )
            return StoreFault(
                f"the run store {self.path} is damaged or is not a dmlviz database ({text}); move it aside "
                f"(or delete it) to start a new store, or set {STORE_DIR_ENV} to another folder"
            )
        if "locked" in text or "busy" in text:
            return StoreFault(
                f"the run store {self.path} stayed busy for over {BUSY_TIMEOUT_S:g} s ({text}); "
                "another process held it too long - try again"
            )
        if "full" in text or name == "SQLITE_FULL" or name == "SQLITE_IOERR_SHMSIZE":
            return StoreFull(
                f"the disk that holds the run store {self.path} is full ({text}); what was recorded before is "
                f"kept. Free some space, delete old runs, or set {STORE_DIR_ENV} to another disk"
            )
        if "readonly" in text or name.startswith("SQLITE_READONLY"):
            return StoreFault(
                f"cannot write the run store {self.path} ({text}): the file or its folder cannot be written; "
                f"fix their permissions or set {STORE_DIR_ENV} to another folder"
            )
        if "unable to open" in text or "disk" in text or name.startswith(("SQLITE_IOERR", "SQLITE_CANTOPEN")):
            free = shutil.disk_usage(self.root).free if self.root.exists() else None
            space = f"; its disk has {free / 1e6:.0f} MB free" if free is not None else ""
            return StoreFault(
                f"cannot read or write the run store {self.path} ({name or text}){space}: check that the file "
                "and its folder can be read and written, and the disk under it"
            )
        return StoreFault(f"the run store {self.path} failed: {text}")

    def _lost_wal(self) -> str | None:
        """How the write-ahead log falls short of what SQLite's index of it (runs.db-shm) says it holds,
        or None when it does not (or there is no index to tell)."""
        wal = self.path.with_name(DB_NAME + "-wal")
        try:
            header = self.path.with_name(DB_NAME + "-shm").read_bytes()[:48]
        except OSError:
            return None
        if len(header) < 48 or header[12] != 1:  # isInit: the index describes a log
            return None
        # WalIndexHdr in the machine's byte order: szPage (u16) at 14, mxFrame (u32) at 16.
        page = int.from_bytes(header[14:16], sys.byteorder)
        frames = int.from_bytes(header[16:20], sys.byteorder)
        page = 65536 if page == 1 else page
        needed = 32 + frames * (24 + page) if frames else 0
        try:
            size = wal.stat().st_size
        except FileNotFoundError:
            return f"{wal.name} is missing, its index expects {frames} page(s) in it" if frames else None
        except OSError:
            return None
        if size < needed:
            return f"{wal.name} holds {size} bytes, its index expects {frames} page(s), {needed} bytes"
        return None


def _errorname(exc: sqlite3.Error) -> str:
    """SQLite's name for the error (SQLITE_IOERR_SHORT_READ, ...); '' where Python does not say."""
    return getattr(exc, "sqlite_errorname", "") or ""


def _truncation(path: Path) -> str | None:
    """How much of the file is missing, when its header names more pages than it holds; else None."""
    try:
        with path.open("rb") as file:
            header = file.read(100)
            size = os.fstat(file.fileno()).st_size
    except OSError:
        return None
    if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
        return None
    page = int.from_bytes(header[16:18], "big")
    page = 65536 if page == 1 else page
    pages = int.from_bytes(header[28:32], "big")
    # The header's page count holds only while its "valid for" number matches the change counter.
    if header[24:28] != header[92:96] or not pages or page < 512:
        return None
    if size >= pages * page:
        return None
    return (f"its header says {pages} pages of {page} bytes, {pages * page / 1e6:.1f} MB, but the file holds "
            f"{size / 1e6:.1f} MB")


# --------------------------------------------------------------------- helpers


def _move(db: sqlite3.Connection, run_id: int, status: RunStatus, error: str | None, pid: int | None,
          allowed: Iterable[RunStatus]) -> bool:
    """Set a run's status if it is one of ``allowed``: the one statement that changes a run's status."""
    allowed = tuple(allowed)
    if not allowed:
        return False
    now = time.time()
    cur = db.execute(
        "UPDATE runs SET status = ?, error = ?, updated_at = ?,"
        " started_at = CASE WHEN ? THEN COALESCE(started_at, ?) ELSE started_at END,"
        " finished_at = ?, pid = COALESCE(?, pid)"
        f" WHERE id = ? AND status IN ({', '.join('?' * len(allowed))})",
        (status, error, now, status == RunStatus.RUNNING, now, None if status.active else now, pid, run_id, *allowed),
    )
    return cur.rowcount == 1


def _check_status(status: str) -> RunStatus:
    """``status`` as a ``RunStatus``; ValueError naming the statuses there are if it is none of them."""
    try:
        return RunStatus(status)
    except ValueError:
        raise ValueError(f"status must be one of {', '.join(RunStatus)}, got {status!r}") from None


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
    values[4] = RunStatus(values[4])
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


def _npz(arrays: dict[str, np.ndarray], compressed: bool = False) -> bytes:
    buffer = io.BytesIO()
    save = np.savez_compressed if compressed else np.savez  # a decision map is mostly runs of one class
    save(buffer, **{name: _check_plain(a, f"array {name!r}") for name, a in arrays.items()})
    return buffer.getvalue()


def _load_npz(blob: bytes | None) -> dict[str, np.ndarray]:
    if blob is None:
        return {}
    with _NPY_LOCK, np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


# NumPy parses .npy headers with ast.literal_eval, and CPython 3.11 before 3.11.8 can raise
# "SystemError: AST constructor recursion depth mismatch" when threads do that at once (gh-106905);
# the pages read snapshots from many threads, so header parsing is serialised.
_NPY_LOCK = threading.Lock()


def _load_npy(blob: bytes) -> np.ndarray:
    with _NPY_LOCK:
        return np.load(io.BytesIO(blob), allow_pickle=False)


def _snapshot(row: tuple) -> Snapshot:
    step, epoch, elapsed, kind, metrics, features, class_means, class_vectors, decision, forces = row
    return Snapshot(
        step=int(step),
        epoch=float(epoch),
        elapsed=float(elapsed),
        kind=kind,
        metrics=json.loads(metrics),
        features=_load_npy(features),
        class_means=_load_npy(class_means),
        class_vectors=_load_npz(class_vectors),
        decision=_load_npz(decision),
        forces=_load_npz(forces),
    )


@dataclass
class RunSalvage:
    """What could be read of one run of a damaged store (``salvage``)."""

    id: int
    name: str = ""
    status: str = ""
    record: bool = False  # its row in the index of runs
    snapshots: int = 0
    last_step: int | None = None  # the step of the latest snapshot read
    recorded_step: int | None = None  # the step of the latest snapshot the run recorded (its summary)
    series: int = 0  # points of its curves
    info: int = 0  # run-level facts (the model, the probe's labels, ...)

    @property
    def whole(self) -> bool:
        """Whether the run reads as it was recorded: its record, its info, and snapshots up to its last."""
        return self.record and self.info > 0 and (self.recorded_step is None or self.last_step == self.recorded_step)

    def describe(self) -> str:
        head = f"run {self.id}" + (f" ({self.name})" if self.name else "") + (f", {self.status}" if self.status else "")
        if not self.record:
            return f"{head}: lost (its record cannot be read; {self.snapshots} snapshot(s) of it can)"
        upto = "" if self.last_step is None else f" up to step {self.last_step}"
        if self.recorded_step is not None and self.last_step != self.recorded_step:
            upto += f" of {self.recorded_step}"
        parts = f"{self.snapshots} snapshot(s){upto}, {self.series} curve point(s), {self.info} info record(s)"
        if self.whole:
            return f"{head}: readable ({parts})"
        return f"{head}: {'partly readable' if self.snapshots else 'nothing to draw'} ({parts})"


#: Row ids tried one by one past a part of a table that cannot be read, before the rest counts as lost.
SALVAGE_PROBES = 100_000


def salvage(path: str | os.PathLike[str], out: str | os.PathLike[str] | None = None,
            probes: int = SALVAGE_PROBES) -> list[RunSalvage]:
    """What can still be read of each run of the store file ``path`` (cut short or damaged), run by run;
    with ``out``, a folder, copies it into a new store there (run ids kept). The file is only read.

    SQLite refuses a file shorter than its header says; with ``writable_schema`` on (read-only here) it
    reads what the file holds, and every table is read row by row around the pages that are missing."""
    path = Path(path)
    if not path.exists():
        raise StoreError(f"there is no run store at {path}")
    wal = path.with_name(path.name + "-wal")
    has_log = wal.exists() and wal.stat().st_size > 0
    try:
        db = sqlite3.connect(f"{path.as_uri()}?mode=ro" + ("" if has_log else "&immutable=1"), uri=True,
                             isolation_level=None)
        db.execute("PRAGMA writable_schema = ON")  # read a file shorter than its header says
        db.execute("PRAGMA query_only = ON")
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error as exc:
        raise StoreFault(f"nothing can be read from {path}: its first pages are damaged ({exc})") from exc
    runs: dict[int, RunSalvage] = {}
    target = None
    if out is not None:
        out = Path(out)
        if (out / DB_NAME).exists():
            raise StoreError(f"{out / DB_NAME} exists already; name an empty or new folder to salvage into")
        target = RunStore(out, min_free_bytes=0)
    write = target._db() if target is not None else None

    def run(run_id: int) -> RunSalvage:
        return runs.setdefault(run_id, RunSalvage(run_id))

    def copy(table: str, columns: str, rows: Iterator[tuple]) -> Iterator[tuple]:
        """Yields the rows, and writes each into the salvaged store."""
        count = 0
        marks = ", ".join("?" * len(columns.split(",")))
        if write is not None:
            write.execute("BEGIN IMMEDIATE")
        try:
            for row in rows:
                yield row
                if write is not None and (table == "runs" or row[0] in runs and runs[row[0]].record):
                    write.execute(f"INSERT OR IGNORE INTO {table} ({columns}) VALUES ({marks})", row)
                    count += 1
                    if count % 500 == 0:
                        write.execute("COMMIT")
                        write.execute("BEGIN IMMEDIATE")
        finally:
            if write is not None and write.in_transaction:
                write.execute("COMMIT")

    if "runs" in tables:
        # A store of an older format lacks the newer columns (the last ones); the new store's defaults fill them.
        present = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
        run_columns = ", ".join(c for c in _RUN_COLUMNS.replace(" ", "").split(",") if c in present)
        for row in copy("runs", run_columns, _readable_rows(db, "runs", run_columns, probes)):
            record = run(row[0])
            record.record, record.name, record.status = True, row[1], row[4]
            try:
                step = json.loads(row[10]).get("step")
                record.recorded_step = int(step) if step is not None else None
            except (ValueError, TypeError, AttributeError):
                pass
    columns = "run_id, seq, step, epoch, elapsed, kind, metrics, features, class_means, class_vectors"
    if "snapshots" in tables and "decision" in {row[1] for row in db.execute("PRAGMA table_info(snapshots)")}:
        columns += ", decision, forces"
    if "snapshots" in tables:
        for row in copy("snapshots", columns, _readable_rows(db, "snapshots", columns, probes)):
            record = run(row[0])
            record.snapshots += 1
            record.last_step = row[2] if record.last_step is None else max(record.last_step, row[2])
    if "series" in tables:
        columns = "run_id, seq, step, epoch, elapsed, name, value"
        for row in copy("series", columns, _readable_rows(db, "series", columns, probes)):
            run(row[0]).series += 1
    if "info" in tables:
        for row in copy("info", "run_id, key, format, value", _readable_rows(db, "info", "run_id, key, format, value",
                                                                           probes)):
            run(row[0]).info += 1
    db.close()
    if target is not None:
        target.close()
    return [runs[run_id] for run_id in sorted(runs)]


def _readable_rows(db: sqlite3.Connection, table: str, columns: str, probes: int) -> Iterator[tuple]:
    """Every row of ``table`` that can be read, in rowid order: a scan that meets a page it cannot read
    goes on at the next row id that reads (tried one by one, at most ``probes`` of them)."""
    query = f"SELECT rowid, {columns} FROM {table}"
    last = 0
    while True:
        try:
            for row in db.execute(f"{query} WHERE rowid > ? ORDER BY rowid", (last,)):
                last = row[0]
                yield row[1:]
            return
        except sqlite3.DatabaseError:
            pass
        for rowid in range(last + 1, last + 1 + probes):
            try:
                row = db.execute(f"{query} WHERE rowid = ?", (rowid,)).fetchone()
            except sqlite3.DatabaseError:
                continue
            if row is not None:
                last = rowid
                yield row[1:]
                break
        else:
            return


def process_alive(pid: int | None, updated_at: float | None = None) -> bool:
    """Whether ``pid`` is a live process (not a zombie) that can still be the one that last updated a run
    at ``updated_at``: the one test of liveness, for a run's process, a worker's app and the CLI."""
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
    return started_at is None or updated_at is None or started_at <= updated_at + 1.0


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
