"""The Python sqlite3 side of `cargo bench -p shared-db-sqlite --bench workloads`.

Runs the very SQL text that shared-db-sqlite sends (read from sqlite/.sqlx, which
`.ci/prepare --check` keeps identical to the compiled queries), with the same statements per
transaction and the same pragmas (WAL, busy_timeout, synchronous=NORMAL, foreign_keys), from
threads that each hold one connection (sqlite3 releases the GIL while SQLite works).
Prints one JSON line: {"ops": n, "seconds": s}.

usage: sqlite3_workloads.py <sqlx dir> <db file> w1|w2|w3 <clients> <seconds> [<hash file>]
"""

import decimal
import glob
import json
import random
import sqlite3
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

SQLX, DB, WORKLOAD, CLIENTS, SECONDS = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
QUERIES = [json.load(open(f))["query"] for f in glob.glob(f"{SQLX}/*.json")]


def q(*fragments, without=None):
    """The one query of the crate containing every fragment (and not `without`), as sqlx sends it."""
    found = [s for s in QUERIES if all(f in s for f in fragments) and not (without and without in s)]
    assert len(found) == 1, (fragments, len(found))
    return found[0]


CLAIM = q("SET state = 'processing'", "RETURNING")
BEAT = q("INSERT INTO workers", "ON CONFLICT (id)", without="RETURNING")
CLAIM_EVENT = q("'TASK_PROCESSING'")
COMPLETE = q("SET state = 'completed'")
COMPLETE_EVENT = q("'TASK_COMPLETED'")
RELEASE = q("UPDATE workers SET current_task_id = NULL")
AUTH = q("k.key_hash = ?1")
TOUCH = q("UPDATE user_api_key SET last_used_at")
BALANCE = q("SELECT CAST(credits_balance AS TEXT)", "FROM user_account WHERE id = ?1")
LEDGER = q("INSERT INTO credit_history")
MOVE = q("UPDATE user_account", "SET credits_balance = ?2")


def connect():
    c = sqlite3.connect(DB, timeout=30, isolation_level=None, check_same_thread=False)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA busy_timeout=30000")
    c.execute("PRAGMA synchronous=NORMAL")
    c.execute("PRAGMA foreign_keys=ON")
    return c


def now_text(delta=timedelta()):
    return (datetime.now(timezone.utc) + delta).strftime("%Y-%m-%d %H:%M:%S.%f")


def w1(c, counter, _):
    worker = f"py-{threading.get_ident()}"
    while True:
        token = uuid.uuid4().hex
        c.execute("BEGIN IMMEDIATE")
        row = c.execute(CLAIM, (token,)).fetchone()
        if row is None:
            c.execute("COMMIT")
            return
        plan = str(uuid.UUID(row[0]))
        c.execute(BEAT, (worker, plan))
        ctx = json.dumps({"task_id": plan, "user_id": row[12], "worker_id": worker,
                          "duration_between_pending_and_processing": 0.0}, separators=(",", ":"))
        c.execute(CLAIM_EVENT, (ctx,))
        c.execute("COMMIT")
        c.execute("BEGIN IMMEDIATE")
        c.execute(COMPLETE, (row[0], token))
        c.execute(COMPLETE_EVENT, (json.dumps({"task_id": plan}, separators=(",", ":")),))
        c.execute(RELEASE, (plan,))
        c.execute("COMMIT")
        counter[0] += 1


def w2(c, counter, stop):
    hashes = [h.strip() for h in open(sys.argv[6])]
    while time.monotonic() < stop:
        stale = now_text(timedelta(seconds=-60))
        row = c.execute(AUTH, (random.choice(hashes), stale)).fetchone()
        assert row is not None
        if row[3]:
            c.execute(TOUCH, (row[0], stale))
        counter[0] += 1


def w3(c, counter, stop):
    users = [u.strip() for u in open(sys.argv[6])]
    cent = decimal.Decimal("0.01")
    while time.monotonic() < stop:
        user = random.choice(users)
        c.execute("BEGIN IMMEDIATE")
        balance = decimal.Decimal(c.execute(BALANCE, (user,)).fetchone()[0])
        new = (balance - cent).quantize(decimal.Decimal("0.000000001")).normalize()
        c.execute(LEDGER, (uuid.uuid4().hex, user, "-0.01", "plan_usage_in_progress",
                           "usage_billing_progress", None, None, None, str(new)))
        c.execute(MOVE, (user, str(new)))
        c.execute("COMMIT")
        counter[0] += 1


def main():
    work = {"w1": w1, "w2": w2, "w3": w3}[WORKLOAD]
    conns = [connect() for _ in range(CLIENTS)]
    counters = [[0] for _ in range(CLIENTS)]
    started = time.monotonic()
    stop = started + SECONDS
    threads = [threading.Thread(target=work, args=(c, n, stop)) for c, n in zip(conns, counters)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"ops": sum(n[0] for n in counters), "seconds": time.monotonic() - started}))


if __name__ == "__main__":
    main()
