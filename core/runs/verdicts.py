"""Reviewers' verdicts on slices, kept in one SQLite file beside the runs: `<runs>/verdicts.sqlite`.

One row per saved verdict (run, slice key, verdict, note, reviewer, UTC time, source); nothing is
updated or deleted, so the history stays and the newest row per run and slice is the verdict in force.
WAL lets pages read while another session writes; busy_timeout makes two writers queue instead of
failing. The schema version is PRAGMA user_version. A damaged or locked file raises VerdictStoreError
naming it; the file is never deleted or rewritten.

Near-duplicates: `python -m train audit --data-root DIR --out RUNS/audit.json` leaves the audit where
`preflag_from_audit` reads it; the dashboard and `python -m train verdicts` then flag both slices of
every near-duplicate pair 'label looks wrong' (source "audit"), once, and never over a verdict a
reviewer already gave.
"""
from __future__ import annotations

import csv
import io
import json
import sqlite3
import time
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path

VERDICTS = ("attention on the lesions", "attention on the lungs, off the lesions", "attention outside the lungs",
            "label looks wrong", "image unusable")
LABEL_WRONG = VERDICTS[3]
DB_NAME = "verdicts.sqlite"
AUDIT_NAME = "audit.json"
SCHEMA_VERSION = 1
COLUMNS = ("run", "key", "verdict", "note", "reviewer", "at", "source")
MAX_NOTE = 4000  # a note, not a document: keeps one paste from bloating the file every page reads
BUSY_MS = 5000

_SCHEMA = ("CREATE TABLE IF NOT EXISTS verdicts (id INTEGER PRIMARY KEY AUTOINCREMENT, run TEXT NOT NULL, "
           "key TEXT NOT NULL, verdict TEXT NOT NULL, note TEXT NOT NULL, reviewer TEXT NOT NULL, "
           "at TEXT NOT NULL, source TEXT NOT NULL)",
           "CREATE INDEX IF NOT EXISTS verdicts_run_key ON verdicts (run, key, id)",
           f"PRAGMA user_version = {SCHEMA_VERSION}")


class VerdictError(ValueError):
    """A verdict that cannot be saved as given (unknown verdict, no reviewer)."""


class VerdictStoreError(RuntimeError):
    """The verdict database cannot be used (damaged, locked, newer schema, no runs folder)."""


class VerdictStore:
    def __init__(self, path: str | Path, busy_ms: int = BUSY_MS):
        self.path = Path(path)
        self.busy_ms = busy_ms
        if not self.path.parent.is_dir():
            raise VerdictStoreError(f"{self.path.parent}: no such runs folder")
        with self._connect() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise VerdictStoreError(f"{self.path}: schema version {version} is newer than this code's "
                                        f"({SCHEMA_VERSION}); update the lab")
            if version < SCHEMA_VERSION:
                self._to_wal(conn)  # persistent: set once, with the schema
                conn.execute("BEGIN IMMEDIATE")  # two first openers at once: the second waits, then finds it done
                for statement in _SCHEMA:
                    conn.execute(statement)

    def _to_wal(self, conn: sqlite3.Connection) -> None:
        """Switch the file to WAL. The switch needs the file to itself and SQLite runs no busy handler
        for it: sessions opening a fresh file at once got 'database is locked' at once. Retried here
        within the same busy budget; another session that switched first ends the wait."""
        deadline = time.monotonic() + self.busy_ms / 1000
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower()
                if mode == "wal":
                    return
                problem = sqlite3.OperationalError(f"cannot switch to WAL (journal mode stays {mode})")
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                problem = exc
            if time.monotonic() > deadline:
                raise problem
            time.sleep(0.01)

    @classmethod
    def in_runs(cls, runs: str | Path) -> "VerdictStore":
        return cls(Path(runs) / DB_NAME)

    def _connect(self):
        """A connection wrapped so that every sqlite3 failure surfaces as one VerdictStoreError."""
        return _Guard(self)

    def save(self, run: str, key: str, verdict: str, note: str = "", reviewer: str = "",
             source: str = "reviewer") -> dict:
        reviewer, note = (reviewer or "").strip(), (note or "").strip()
        if verdict not in VERDICTS:
            raise VerdictError(("no verdict chosen" if verdict is None else f"unknown verdict {verdict!r}")
                               + f": choose one of {', '.join(VERDICTS)}")
        if not reviewer:
            raise VerdictError("a verdict needs the reviewer's name")
        if not run or not key:
            raise VerdictError("a verdict needs a run and a slice")
        if len(note) > MAX_NOTE:
            raise VerdictError(f"the note is {len(note)} characters long; keep it under {MAX_NOTE}")
        row = dict(run=run, key=key, verdict=verdict, note=note, reviewer=reviewer[:100],
                   at=datetime.now(timezone.utc).isoformat(timespec="seconds"), source=source)
        with self._connect() as conn:
            conn.execute("INSERT INTO verdicts (run, key, verdict, note, reviewer, at, source) "
                         "VALUES (:run, :key, :verdict, :note, :reviewer, :at, :source)", row)
        return row

    def _rows(self, sql: str, params=()) -> list[dict]:
        with self._connect() as conn:
            conn.row_factory = sqlite3.Row
            return [{c: r[c] for c in COLUMNS} for r in conn.execute(sql, params)]

    def latest(self, run: str) -> dict[str, dict]:
        """The verdict in force per slice of `run` (its newest row)."""
        rows = self._rows("SELECT * FROM verdicts WHERE id IN "
                          "(SELECT MAX(id) FROM verdicts WHERE run = ? GROUP BY key)", (run,))
        return {r["key"]: r for r in rows}

    def history(self, run: str, key: str) -> list[dict]:
        """Every verdict saved for one slice of one run, newest first."""
        return self._rows("SELECT * FROM verdicts WHERE run = ? AND key = ? ORDER BY id DESC", (run, key))

    def count(self, run: str | None = None) -> int:
        with self._connect() as conn:
            sql, params = ("SELECT COUNT(*) FROM verdicts", ()) if run is None else \
                ("SELECT COUNT(*) FROM verdicts WHERE run = ?", (run,))
            return conn.execute(sql, params).fetchone()[0]

    def export_csv(self, run: str | None = None, history: bool = False) -> str:
        """CSV (header: COLUMNS) of the verdicts in force, or of every saved one with `history`;
        one run or all, ordered by run, slice, then time."""
        where = "" if run is None else "WHERE run = ?"
        params = () if run is None else (run,)
        if not history:
            where = f"WHERE id IN (SELECT MAX(id) FROM verdicts {where} GROUP BY run, key)"
        return to_csv(self._rows(f"SELECT * FROM verdicts {where} ORDER BY run, key, id", params))

    def preflag_near_duplicates(self, run: str, pairs: list[dict], keys=None) -> int:
        """Flag both slices of each pair LABEL_WRONG (source "audit") unless the slice already has a
        verdict in this run; `keys`: only slices the run holds. Returns how many were flagged."""
        notes = near_duplicate_notes(pairs, keys)
        todo = sorted(set(notes) - set(self.latest(run)))  # read first: no write lock on every page view
        if not todo:
            return 0
        at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with self._connect() as conn:
            # NOT EXISTS inside the insert: a session flagging at the same moment cannot double a row.
            cur = conn.executemany(
                "INSERT INTO verdicts (run, key, verdict, note, reviewer, at, source) "
                "SELECT ?, ?, ?, ?, 'train audit', ?, 'audit' "
                "WHERE NOT EXISTS (SELECT 1 FROM verdicts WHERE run = ? AND key = ?)",
                [(run, k, LABEL_WRONG, notes[k], at, run, k) for k in todo])
            return cur.rowcount

    def preflag_from_audit(self, runs: str | Path, run: str, keys=None) -> int:
        """preflag_near_duplicates with the pairs of `<runs>/audit.json`, when that file is there."""
        pairs = audit_pairs(runs)
        return 0 if pairs is None else self.preflag_near_duplicates(run, pairs, keys)


def audit_pairs(runs: str | Path) -> list[dict] | None:
    """The near-duplicate pairs `train audit --out <runs>/audit.json` wrote, or None when there is no such file."""
    f = Path(runs) / AUDIT_NAME
    if not f.is_file():
        return None
    try:
        pairs = list(json.loads(f.read_text())["near_duplicates"])
    except (ValueError, KeyError, TypeError) as exc:
        raise VerdictStoreError(f"{f}: not a `train audit` report ({exc})") from exc
    # each pair is read by key (near_duplicate_notes): anything else is said here, naming the file
    bad = next((i for i, p in enumerate(pairs)
                if not (isinstance(p, dict) and isinstance(p.get("a"), str) and isinstance(p.get("b"), str))), None)
    if bad is not None:
        raise VerdictStoreError(f"{f}: not a `train audit` report (near_duplicates[{bad}] is {repr(pairs[bad])[:60]}, "
                                "not a pair of slice keys 'a' and 'b')")
    return pairs


def near_duplicate_notes(pairs: list[dict], keys=None) -> dict[str, str]:
    """slice key -> 'near-duplicate of OTHER (pHash distance d, same class | crosses the class boundary)' for
    both slices of every pair (the first pair naming a slice); `keys`: only these slices."""
    notes = {}
    for p in pairs:
        kind = "crosses the class boundary" if p.get("cross_class") else "same class"
        for a, b in ((p["a"], p["b"]), (p["b"], p["a"])):
            if keys is None or a in keys:
                notes.setdefault(a, f"near-duplicate of {b} (pHash distance {p.get('distance')}, {kind})")
    return notes


def to_csv(rows) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


class _Guard:
    """`with store._connect() as conn`: one transaction, committed on success, closed always;
    sqlite3 errors become a VerdictStoreError that names the file and what to do."""

    def __init__(self, store: VerdictStore):
        self.store = store

    def __enter__(self) -> sqlite3.Connection:
        try:
            self.conn = sqlite3.connect(self.store.path, timeout=self.store.busy_ms / 1000, isolation_level=None)
            self.conn.execute(f"PRAGMA busy_timeout = {int(self.store.busy_ms)}")
        except sqlite3.Error as exc:
            raise _translate(self.store, exc) from exc
        return self.conn

    def __exit__(self, kind, exc, tb) -> bool:
        with closing(self.conn):
            try:
                if self.conn.in_transaction:
                    self.conn.execute("COMMIT" if exc is None else "ROLLBACK")
            except sqlite3.Error as err:
                raise _translate(self.store, err) from err
        if isinstance(exc, sqlite3.Error):
            raise _translate(self.store, exc) from exc
        return False


def _translate(store: VerdictStore, exc: sqlite3.Error) -> VerdictStoreError:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return VerdictStoreError(f"{store.path}: the verdict database is busy (another writer held it for "
                                 f"more than {store.busy_ms / 1000:g} s); try again")
    if "unable to open" in text or "readonly" in text:
        return VerdictStoreError(f"{store.path}: cannot be opened for writing ({text}); check the runs folder's "
                                 "permissions")
    return VerdictStoreError(f"{store.path}: not a usable verdict database ({text}); it was left as it is: "
                             "move it aside to start a new one")
