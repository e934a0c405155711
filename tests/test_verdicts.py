"""The reviewers' verdict store (core/runs/verdicts.py) and `python -m train verdicts`.

The dashboard's verdict form and filter are driven in tests/test_dashboard.py."""
from __future__ import annotations

import csv
import io
import json
import sqlite3
import time

import pytest

from core.runs.verdicts import (
    COLUMNS,
    DB_NAME,
    LABEL_WRONG,
    SCHEMA_VERSION,
    VERDICTS,
    VerdictError,
    VerdictStore,
    VerdictStoreError,
)

PER_PROCESS = 200


@pytest.fixture
def db(tmp_path):
    return tmp_path / DB_NAME


def test_round_trip_and_history(db):
    s = VerdictStore(db)
    s.save("r1", "CT_COVID/a.png", VERDICTS[0], "in the lesion", "Ann")
    s.save("r1", "CT_COVID/a.png", VERDICTS[2], " on the table ", " Bob ")
    s.save("r1", "CT_NonCOVID/b.png", VERDICTS[4], "", "Ann")
    latest = s.latest("r1")
    assert set(latest) == {"CT_COVID/a.png", "CT_NonCOVID/b.png"}
    a = latest["CT_COVID/a.png"]
    assert (a["verdict"], a["note"], a["reviewer"], a["source"]) == (VERDICTS[2], "on the table", "Bob", "reviewer")
    assert a["at"].endswith("+00:00")  # UTC, ISO 8601
    assert [h["verdict"] for h in s.history("r1", "CT_COVID/a.png")] == [VERDICTS[2], VERDICTS[0]]  # newest first
    assert s.latest("other-run") == {}


@pytest.mark.parametrize("verdict,reviewer,message", [("looks fine", "Ann", "unknown verdict 'looks fine'"),
                                                      (None, "Ann", "no verdict chosen"),
                                                      (VERDICTS[0], "  ", "reviewer's name")])
def test_bad_verdicts_are_refused_clearly(db, verdict, reviewer, message):
    s = VerdictStore(db)
    with pytest.raises(VerdictError, match=message):
        s.save("r1", "k.png", verdict, "", reviewer)
    assert s.count() == 0


def test_schema_version_wal_and_reopening(db):
    VerdictStore(db).save("r1", "k.png", VERDICTS[1], "note", "Ann")
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    VerdictStore(db).save("r2", "k.png", VERDICTS[3], "", "Bob")  # a new run: its own verdicts
    again = VerdictStore(db)  # as after a restart
    assert again.latest("r1")["k.png"]["verdict"] == VERDICTS[1]
    assert again.latest("r2")["k.png"]["verdict"] == VERDICTS[3]
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(VerdictStoreError, match="newer"):
        VerdictStore(db)


# Each writer is its own `python -c` process (not multiprocessing: a spawned child re-runs the parent's
# __main__, which after the dashboard's AppTest tests is dashboard/app.py). Both wait for a start file,
# then open the (not yet existing) database and write at the same moment.
WRITER = """
import sys, time
from pathlib import Path
from core.runs.verdicts import VERDICTS, VerdictStore
path, who, go, n = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
while not go.exists():
    time.sleep(0.005)
store = VerdictStore(path)
for i in range(n):
    store.save("run", f"{who}/{i}.png", VERDICTS[i % len(VERDICTS)], f"note {i}", who)
    time.sleep(0.002)  # a pause between saves, as sessions have: otherwise one writer's burst ends before the other wakes
"""


def test_two_processes_writing_at_once_lose_nothing(db, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    go = tmp_path / "go"
    root = Path(__file__).resolve().parent.parent
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(db), who, str(go), str(PER_PROCESS)], cwd=root,
                              stderr=subprocess.PIPE, text=True) for who in ("ann", "bob")]
    time.sleep(1.0)  # both interpreters up and waiting
    t0 = time.perf_counter()
    go.touch()
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    s = VerdictStore(db)
    per = {who: sum(k.startswith(who) for k in s.latest("run")) for who in ("ann", "bob")}
    with sqlite3.connect(db) as conn:  # in the order written: the writers took turns, not one after the other
        order = [r[0] for r in conn.execute("SELECT reviewer FROM verdicts ORDER BY id")]
    turns = sum(a != b for a, b in zip(order, order[1:]))
    print(f"\nconcurrent writers: {per} rows of {2 * PER_PROCESS} written, {s.count()} in the file, "
          f"{turns} changes of writer, {time.perf_counter() - t0:.1f} s")
    assert per == {"ann": PER_PROCESS, "bob": PER_PROCESS} and s.count() == 2 * PER_PROCESS


def test_damaged_file_is_reported_and_left_alone(db):
    garbage = b"this is not an SQLite database\x00" * 64
    db.write_bytes(garbage)
    with pytest.raises(VerdictStoreError, match="not a usable verdict database") as err:
        VerdictStore(db)
    assert str(db) in str(err.value)
    assert db.read_bytes() == garbage


def test_locked_database_is_a_clear_error(db):
    s = VerdictStore(db, busy_ms=200)
    s.save("r1", "k.png", VERDICTS[0], "", "Ann")
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another writer that does not let go
    try:
        with pytest.raises(VerdictStoreError, match="busy") as err:
            s.save("r1", "k.png", VERDICTS[1], "", "Ann")
        assert str(db) in str(err.value)
        assert s.latest("r1")["k.png"]["verdict"] == VERDICTS[0]  # WAL: reading goes on meanwhile
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    s.save("r1", "k.png", VERDICTS[1], "", "Ann")


def test_csv_export(db):
    s = VerdictStore(db)
    s.save("r1", "b.png", VERDICTS[0], "first, with a comma", "Ann")
    s.save("r1", "b.png", VERDICTS[1], 'second "quoted"', "Bob")
    s.save("r2", "a.png", VERDICTS[2], "", "Ann")
    rows = list(csv.DictReader(io.StringIO(s.export_csv())))
    assert tuple(rows[0]) == COLUMNS
    assert [(r["run"], r["key"], r["verdict"]) for r in rows] == [("r1", "b.png", VERDICTS[1]), ("r2", "a.png", VERDICTS[2])]
    assert rows[0]["note"] == 'second "quoted"'
    assert [r["note"] for r in csv.DictReader(io.StringIO(s.export_csv("r1", history=True)))] == \
        ["first, with a comma", 'second "quoted"']


def test_near_duplicates_preflagged_once(db, tmp_path):
    s = VerdictStore(db)
    s.save("r1", "c.png", VERDICTS[0], "", "Ann")  # a reviewer's verdict is never overridden
    pairs = [{"a": "a.png", "b": "b.png", "distance": 2, "cross_class": True},
             {"a": "c.png", "b": "d.png", "distance": 4, "cross_class": False},
             {"a": "e.png", "b": "elsewhere.png", "distance": 1, "cross_class": False}]
    keys = {"a.png", "b.png", "c.png", "d.png", "e.png"}
    assert s.preflag_near_duplicates("r1", pairs, keys) == 4
    assert s.preflag_near_duplicates("r1", pairs, keys) == 0
    latest = s.latest("r1")
    assert {k for k, v in latest.items() if v["verdict"] == LABEL_WRONG and v["source"] == "audit"} == \
        {"a.png", "b.png", "d.png", "e.png"}
    assert latest["c.png"]["verdict"] == VERDICTS[0]
    assert "near-duplicate of b.png" in latest["a.png"]["note"] and "class boundary" in latest["a.png"]["note"]
    (tmp_path / "audit.json").write_text(json.dumps({"near_duplicates": pairs}))
    assert s.preflag_from_audit(tmp_path, "r2", {"a.png"}) == 1
    (tmp_path / "audit.json").write_text("{not json")
    with pytest.raises(VerdictStoreError, match="audit.json"):
        s.preflag_from_audit(tmp_path, "r2")


def _runs_folder(tmp_path):
    runs = tmp_path / "runs"
    (runs / "r1").mkdir(parents=True)
    (runs / "r1" / "config.json").write_text("{}")
    (runs / "r1" / "predictions.csv").write_text("key,split,label\nx/a.png,test,1\nx/b.png,test,0\n")
    (runs / "audit.json").write_text(json.dumps({"near_duplicates": [{"a": "x/a.png", "b": "x/b.png", "distance": 3}]}))
    VerdictStore.in_runs(runs).save("r1", "x/c.png", VERDICTS[4], "", "Ann")
    return runs


def test_cli_exports_csv(tmp_path, capsys):
    from train.__main__ import main

    runs = _runs_folder(tmp_path)
    out = tmp_path / "verdicts.csv"
    assert main(["verdicts", "--runs", str(runs), "--csv", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [(r["key"], r["verdict"], r["source"]) for r in rows] == \
        [("x/a.png", LABEL_WRONG, "audit"), ("x/b.png", LABEL_WRONG, "audit"), ("x/c.png", VERDICTS[4], "reviewer")]
    capsys.readouterr()
    assert main(["verdicts", "--runs", str(runs), "--run", "r1", "--history"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == ",".join(COLUMNS)


@pytest.mark.parametrize("case", ["no runs folder", "no such run", "damaged database"])
def test_cli_user_errors_exit_2_with_one_line(tmp_path, capsys, case):
    from train.__main__ import main

    runs = _runs_folder(tmp_path)
    args = ["verdicts", "--runs", str(runs)]
    if case == "no runs folder":
        args[2] = str(tmp_path / "missing")
    elif case == "no such run":
        args += ["--run", "r9"]
    else:
        for f in runs.glob(DB_NAME + "*"):
            f.unlink()
        (runs / DB_NAME).write_bytes(b"garbage" * 100)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err



TRIALS = 12  # fresh files, each opened by every session at one common instant (a broken retry fails most runs)
OPENER = """
import sys, time
from core.runs.verdicts import VerdictStore
folder, name, start, gap, trials = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
for t in range(trials):
    time.sleep(max(0.0, start + t * gap - time.time()))
    VerdictStore(f"{folder}/t{t}/{name}")
"""


def test_sessions_opening_a_fresh_file_at_once_all_get_it(tmp_path):
    """SQLite runs no busy handler for `PRAGMA journal_mode=WAL`: before the retry, 8 sessions opening
    a fresh file at once failed in about a third of the tries with 'database is locked'. The 8 sessions are
    8 interpreters started once; each trial is a fresh file they all open at the same instant."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    for trial in range(TRIALS):
        (tmp_path / f"t{trial}").mkdir()
    start = time.time() + 1.0  # every interpreter up before the first common instant
    procs = [subprocess.Popen([sys.executable, "-c", OPENER, str(tmp_path), DB_NAME, str(start), "0.25",
                               str(TRIALS)],
                              cwd=root, stderr=subprocess.PIPE, text=True) for _ in range(8)]
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, [e for e in errors if e][0]
    for trial in range(TRIALS):
        with sqlite3.connect(tmp_path / f"t{trial}" / DB_NAME) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
