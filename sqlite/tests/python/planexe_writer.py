"""The Python side of sqlite/tests/python.rs: a PlanExe service on the shared SQLite file.

Models as the planexe package declares them (Flask-SQLAlchemy's db.Model, here plain
declarative): UUIDType(binary=False) ids, Enum(PlanState) by member name, JSON, Numeric(18, 9),
naive-UTC DateTime. The engine is configured the app.database way: WAL and busy_timeout set at
connect. Writes while the Rust side writes, then reads the Rust side's rows and prints one JSON
summary line for the Rust test to compare.

usage: planexe_writer.py <sqlite file> <user id> <plans> <charges>
"""

import datetime
import decimal
import enum
import json
import os
import sys
import time
import uuid

from sqlalchemy import JSON, Boolean, Column, DateTime, Enum, Integer, Numeric, String, Text
from sqlalchemy import create_engine, event, select, update
from sqlalchemy.orm import Session, declarative_base
from sqlalchemy_utils import UUIDType

Base = declarative_base()


class PlanState(enum.Enum):
    pending = 1
    processing = 2
    completed = 3
    failed = 4
    stopped = 5


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


class PlanItem(Base):
    __tablename__ = "plans"
    id = Column(UUIDType(binary=False), default=uuid.uuid4, primary_key=True)
    timestamp_created = Column(DateTime, default=utcnow)
    state = Column(Enum(PlanState))
    prompt = Column(Text)
    progress_percentage = Column(Numeric(5, 2), default=0.0)
    progress_message = Column(String(128))
    last_seen_timestamp = Column(DateTime, default=utcnow)
    stop_requested = Column(Boolean, default=False)
    user_id = Column(String(256))
    parameters = Column(JSON, default=None)


class UserAccount(Base):
    __tablename__ = "user_account"
    id = Column(UUIDType(binary=False), default=uuid.uuid4, primary_key=True)
    updated_at = Column(DateTime, default=utcnow)
    credits_balance = Column(Numeric(18, 9), nullable=False, default=0)


class CreditHistory(Base):
    __tablename__ = "credit_history"
    id = Column(UUIDType(binary=False), default=uuid.uuid4, primary_key=True)
    user_id = Column(UUIDType(binary=False), nullable=False)
    delta = Column(Numeric(18, 9), nullable=False)
    reason = Column(String(128), nullable=False)
    source = Column(String(32), nullable=False)
    external_id = Column(String(256))
    created_at = Column(DateTime, default=utcnow)


def main():
    path, user_id, plans, charges = sys.argv[1], uuid.UUID(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    engine = create_engine(f"sqlite:///{path}")

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    cost = decimal.Decimal("0.25")
    with engine.connect():
        pass  # connected, pragmas set: tell the Rust side to start writing too
    open(path + ".python-ready", "w").close()
    # Interleaved writes, one commit each, as the services make them.
    for i in range(max(plans, charges)):
        with Session(engine) as s:
            if i < plans:
                s.add(PlanItem(state=PlanState.pending, prompt=f"python plan {i} \u00e9\u6f22",
                               user_id="python", parameters={"from": "python", "n": i}))
            if i < charges:
                # The ledger row and the balance move in one commit; the balance moves relatively.
                s.add(CreditHistory(user_id=user_id, delta=-cost, reason="plan_created_with_usage_cost",
                                    source="python", external_id=f"python-{i}"))
                s.execute(update(UserAccount).where(UserAccount.id == user_id)
                          .values(credits_balance=UserAccount.credits_balance - cost, updated_at=utcnow()))
            s.commit()

    # Read what the Rust side wrote, through the same models, once it says it is done.
    deadline = time.monotonic() + 120
    while not os.path.exists(path + ".rust-done"):
        if time.monotonic() > deadline:
            sys.exit("the Rust side never finished")
        time.sleep(0.01)
    with Session(engine) as s:
        rust_plans = s.scalars(select(PlanItem).where(PlanItem.user_id == "rust")).all()
        rust_rows = s.scalars(select(CreditHistory).where(CreditHistory.source == "api")).all()
        user = s.get(UserAccount, user_id)
        ledger = s.scalars(select(CreditHistory.delta).where(CreditHistory.user_id == user_id)).all()
        summary = {
            "rust_plans": len(rust_plans),
            "rust_plans_exact": sum(
                1 for p in rust_plans
                if isinstance(p.id, uuid.UUID) and p.prompt == f"rust plan {p.parameters['n']} \u00e9\u6f22"
                and p.parameters == {"from": "rust", "n": p.parameters["n"]}
                and p.state in (PlanState.pending, PlanState.processing, PlanState.completed)
                and isinstance(p.timestamp_created, datetime.datetime)
            ),
            "rust_charges": len(rust_rows),
            "rust_charges_exact": sum(1 for r in rust_rows if r.delta == decimal.Decimal("-0.5")),
            "balance": str(user.credits_balance),
            "ledger_sum": str(sum(ledger, decimal.Decimal(0))),
        }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
