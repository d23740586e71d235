"""The Python side of sqlite/tests/python_accounts.rs: the PlanExe frontend's accounts on the
shared SQLite file.

Models as the planexe package declares them (UUIDType(binary=False) ids, Boolean, JSON,
Numeric(18, 9), naive-UTC DateTime), the engine configured the app.database way (WAL and
busy_timeout at connect). Signs users in the frontend's way (the user row, commit, then the
provider link, commit) and applies purchases its way (look the payment up, insert it, commit,
then the ledger row and the balance, commit), while the Rust side does the same through
shared-db; then reads the Rust side's rows and prints one JSON summary line.

usage: accounts_writer.py <sqlite file> <payer user id> <count>
"""

import datetime
import decimal
import json
import os
import sys
import time
import uuid

from sqlalchemy import JSON, Boolean, Column, DateTime, Integer, Numeric, String
from sqlalchemy import create_engine, event, select, update
from sqlalchemy.orm import Session, declarative_base
from sqlalchemy_utils import UUIDType

Base = declarative_base()


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


class UserAccount(Base):
    __tablename__ = "user_account"
    id = Column(UUIDType(binary=False), default=uuid.uuid4, primary_key=True)
    created_at = Column(DateTime, default=utcnow)
    updated_at = Column(DateTime, default=utcnow)
    email = Column(String(256))
    name = Column(String(256))
    is_admin = Column(Boolean, nullable=False, default=False)
    free_plan_used = Column(Boolean, nullable=False, default=False)
    credits_balance = Column(Numeric(18, 9), nullable=False, default=0)
    last_login_at = Column(DateTime)


class UserProvider(Base):
    __tablename__ = "user_provider"
    id = Column(UUIDType(binary=False), default=uuid.uuid4, primary_key=True)
    user_id = Column(UUIDType(binary=False), nullable=False)
    provider = Column(String(32), nullable=False)
    provider_user_id = Column(String(256), nullable=False)
    email = Column(String(256))
    raw_profile = Column(JSON)
    created_at = Column(DateTime, default=utcnow)
    last_login_at = Column(DateTime, default=utcnow)


class PaymentRecord(Base):
    __tablename__ = "payment_record"
    id = Column(UUIDType(binary=False), default=uuid.uuid4, primary_key=True)
    user_id = Column(UUIDType(binary=False), nullable=False)
    provider = Column(String(32), nullable=False)
    provider_payment_id = Column(String(256), nullable=False)
    credits = Column(Numeric(18, 9), nullable=False)
    amount = Column(Integer, nullable=False)
    currency = Column(String(16), nullable=False)
    status = Column(String(32), nullable=False)
    raw_payload = Column(JSON)
    created_at = Column(DateTime, default=utcnow)


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
    path, payer, count = sys.argv[1], uuid.UUID(sys.argv[2]), int(sys.argv[3])
    engine = create_engine(f"sqlite:///{path}")

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    credits = decimal.Decimal("0.125")
    with engine.connect():
        pass  # connected, pragmas set: tell the Rust side to start writing too
    open(path + ".python-ready", "w").close()
    for i in range(count):
        # OAuth sign-in, the frontend's two commits: the user, then the link.
        with Session(engine) as s:
            user = UserAccount(email=f"py{i}@example.com", name=f"Py {i}", last_login_at=utcnow())
            s.add(user)
            s.commit()
            s.add(UserProvider(user_id=user.id, provider="github", provider_user_id=f"py-{i}",
                               email=f"py{i}@example.com", raw_profile={"login": f"py-{i}"}))
            s.commit()
        # A purchase, the frontend's way: look up, record and commit, then credit and commit.
        # The balance moves relatively (the frontend's read-modify-write would lose the Rust
        # side's concurrent credits; this test is about the two sides' rows, not that bug).
        payment_id = f"py_pay_{i}"
        with Session(engine) as s:
            known = s.scalars(select(PaymentRecord).where(
                PaymentRecord.provider == "stripe",
                PaymentRecord.provider_payment_id == payment_id).limit(1)).first()
            if known is not None:
                sys.exit(f"{payment_id} already recorded")
            s.add(PaymentRecord(user_id=payer, provider="stripe", provider_payment_id=payment_id,
                                credits=credits, amount=100, currency="usd", status="completed",
                                raw_payload={"id": payment_id}))
            s.commit()
            s.add(CreditHistory(user_id=payer, delta=credits, reason="credits_purchased",
                                source="stripe", external_id=payment_id))
            s.execute(update(UserAccount).where(UserAccount.id == payer)
                      .values(credits_balance=UserAccount.credits_balance + credits, updated_at=utcnow()))
            s.commit()

    # Read what the Rust side wrote, through the same models, once it says it is done.
    deadline = time.monotonic() + 120
    while not os.path.exists(path + ".rust-done"):
        if time.monotonic() > deadline:
            sys.exit("the Rust side never finished")
        time.sleep(0.01)
    with Session(engine) as s:
        links = s.scalars(select(UserProvider).where(UserProvider.provider_user_id.like("rust-%"))).all()
        linked_users_exact = 0
        for link in links:
            n = int(link.provider_user_id.removeprefix("rust-"))
            user = s.get(UserAccount, link.user_id)
            if (isinstance(link.id, uuid.UUID) and user is not None and user.name == f"Rust {n}"
                    and user.email == f"rust{n}@example.com" and link.raw_profile == {"login": f"rust-{n}"}
                    and user.is_admin is False and user.credits_balance == 0
                    and isinstance(user.last_login_at, datetime.datetime)):
                linked_users_exact += 1
        payments = s.scalars(select(PaymentRecord).where(
            PaymentRecord.provider_payment_id.like("rust_pay_%"))).all()
        payments_exact = sum(
            1 for p in payments
            if isinstance(p.id, uuid.UUID) and p.user_id == payer and p.credits == decimal.Decimal("0.5")
            and p.amount == 400 and p.currency == "usd" and p.status == "completed"
            and p.raw_payload == {"id": p.provider_payment_id}
            and isinstance(p.created_at, datetime.datetime)
        )
        purchases = s.scalars(select(CreditHistory).where(CreditHistory.reason == "credits_purchased",
                                                          CreditHistory.external_id.like("rust_pay_%"))).all()
        ledger = s.scalars(select(CreditHistory.delta).where(CreditHistory.user_id == payer)).all()
        summary = {
            "rust_links": len(links),
            "rust_linked_users_exact": linked_users_exact,
            "rust_payments": len(payments),
            "rust_payments_exact": payments_exact,
            "rust_purchase_rows_exact": sum(1 for r in purchases if r.delta == decimal.Decimal("0.5")
                                            and r.source == "stripe" and r.user_id == payer),
            "balance": str(s.get(UserAccount, payer).credits_balance),
            "ledger_sum": str(sum(ledger, decimal.Decimal(0))),
        }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
