"""The Python side of sqlite/tests/python_telemetry.rs: the telemetry tables as a PlanExe service
writes and reads them on SQLite.

Models as the planexe package declares them (plain declarative here): Enum(EventType) by member
name, JSON with none_as_null=False (an attribute set to None stores the JSON text `null`),
UUIDType(binary=False) ids, naive-UTC DateTime, Float, Boolean. WAL and busy_timeout are set at
connect, the app.database way.

usage: telemetry_writer.py <sqlite file> write <plan id> <user id> <raw api key> <secret>
       telemetry_writer.py <sqlite file> read <plan id> <user id> <nonce key>
Prints one JSON line for the Rust test to compare.
"""

import datetime
import enum
import hashlib
import json
import sys
import uuid

from sqlalchemy import JSON, Boolean, Column, DateTime, Enum, Float, Integer, String, Text
from sqlalchemy import create_engine, event, select
from sqlalchemy.orm import Session, declarative_base
from sqlalchemy_utils import UUIDType

Base = declarative_base()


class EventType(enum.Enum):
    GENERIC_ERROR = "generic_error"
    GENERIC_EVENT = "generic_event"
    TASK_PENDING = "task_pending"
    TASK_PROCESSING = "task_processing"
    TASK_FAILED = "task_failed"
    TASK_COMPLETED = "task_completed"


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


class EventItem(Base):
    __tablename__ = "events"
    id = Column(Integer, primary_key=True, autoincrement=True)
    timestamp = Column(DateTime, default=utcnow, nullable=False)
    event_type = Column(Enum(EventType), nullable=False)
    message = Column(Text, nullable=False)
    context = Column(JSON, default=None)


class WorkerItem(Base):
    __tablename__ = "workers"
    id = Column(String(255), primary_key=True)
    started_at = Column(DateTime, default=utcnow, nullable=False)
    last_heartbeat_at = Column(DateTime, default=utcnow, nullable=False)
    current_task_id = Column(String(255))


class NonceItem(Base):
    __tablename__ = "nonces"
    id = Column(Integer, primary_key=True, autoincrement=True)
    nonce_key = Column(String(255), nullable=False, unique=True)
    created_at = Column(DateTime, default=utcnow, nullable=False)
    last_accessed_at = Column(DateTime, default=utcnow, nullable=False)
    request_count = Column(Integer, default=1, nullable=False)
    context = Column(JSON, default=None)


class TokenMetrics(Base):
    __tablename__ = "token_metrics"
    id = Column(Integer, primary_key=True, autoincrement=True)
    timestamp = Column(DateTime, default=utcnow, nullable=False)
    llm_model = Column(String(255), nullable=False)
    task_id = Column(String(255))
    user_id = Column(String(255))
    api_key_id = Column(String(36))
    upstream_provider = Column(String(255))
    upstream_model = Column(String(255))
    input_tokens = Column(Integer)
    output_tokens = Column(Integer)
    thinking_tokens = Column(Integer)
    cost_usd = Column(Float)
    duration_seconds = Column(Float)
    success = Column(Boolean, default=False, nullable=False)
    error_message = Column(Text)
    raw_usage_data = Column(JSON)


class FeedbackItem(Base):
    __tablename__ = "feedback_item"
    id = Column(String(36), primary_key=True, default=lambda: str(uuid.uuid4()))
    received_at = Column(DateTime, nullable=False)
    category = Column(String(32), nullable=False)
    message = Column(Text, nullable=False)
    plan_id = Column(String(36))
    rating = Column(Integer)
    user_id = Column(String(36))
    plan_progress_pct = Column(Float)
    plan_state = Column(String(16))
    plan_current_step = Column(String(128))


class UserApiKey(Base):
    __tablename__ = "user_api_key"
    id = Column(UUIDType(binary=False), default=uuid.uuid4, primary_key=True)
    user_id = Column(UUIDType(binary=False), nullable=False)
    key_hash = Column(String(128), nullable=False, unique=True)
    key_prefix = Column(String(16), nullable=False)
    label = Column("label", String(128))
    key_plaintext = Column(String(64))
    created_at = Column(DateTime, default=utcnow)
    last_used_at = Column(DateTime)
    revoked_at = Column(DateTime)


def engine_for(path):
    engine = create_engine(f"sqlite:///{path}")

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    return engine


def write(engine, plan_id, user_id, raw_key, secret):
    nonce_key = f"CREATE_{uuid.uuid4()}"
    key_id = uuid.uuid4()
    feedback_id = str(uuid.uuid4())
    with Session(engine) as s:
        s.add(EventItem(event_type=EventType.TASK_FAILED, message="python failed",
                        context={"task_id": plan_id, "reason": "timeout \u00e9"}))
        s.add(EventItem(event_type=EventType.GENERIC_EVENT, message="python null context", context=None))
        s.add(WorkerItem(id="python-worker", current_task_id=plan_id,
                         started_at=utcnow() - datetime.timedelta(hours=3),
                         last_heartbeat_at=utcnow() - datetime.timedelta(hours=2)))
        s.add(NonceItem(nonce_key=nonce_key, context={"user_agent": "python", "ip_address": "10.1.2.3"}))
        s.add(TokenMetrics(llm_model="py-model", task_id=plan_id, user_id=user_id, input_tokens=11,
                           output_tokens=22, cost_usd=0.375, duration_seconds=1.25, success=True,
                           raw_usage_data={"prompt_tokens": 11}))
        s.add(TokenMetrics(llm_model="py-model", task_id=plan_id, user_id=user_id, input_tokens=5,
                           success=False, error_message="rate limited", raw_usage_data=None))
        s.add(FeedbackItem(id=feedback_id, received_at=utcnow(), category="bug",
                           message="from python \u00e9\u6f22", plan_id=plan_id, rating=4, user_id=user_id,
                           plan_progress_pct=12.5, plan_state="processing", plan_current_step="wbs"))
        s.add(UserApiKey(id=key_id, user_id=uuid.UUID(user_id), label="python key",
                         key_hash=hashlib.sha256(f"{secret}:{raw_key}".encode()).hexdigest(),
                         key_prefix=raw_key[:10], key_plaintext=raw_key))
        s.commit()
    return {"nonce_key": nonce_key, "api_key_id": str(key_id), "feedback_id": feedback_id}


def read(engine, plan_id, user_id, nonce_key):
    """What Python reads of the rows the Rust side wrote, through the same models."""
    with Session(engine) as s:
        nonce = s.scalars(select(NonceItem).where(NonceItem.nonce_key == nonce_key)).one()
        metrics = s.scalars(select(TokenMetrics).where(TokenMetrics.llm_model == "rust-model")
                            .order_by(TokenMetrics.id)).all()
        feedback = s.scalars(select(FeedbackItem).where(FeedbackItem.category == "rust")).one()
        events = s.scalars(select(EventItem).where(EventItem.message.like("rust %"))
                           .order_by(EventItem.id)).all()
        worker = s.get(WorkerItem, "rust-worker")
        return {
            "nonce": [nonce.request_count, nonce.context, isinstance(nonce.created_at, datetime.datetime)],
            "metrics": [[m.task_id, m.user_id, m.input_tokens, m.cost_usd, m.success, m.raw_usage_data,
                         m.error_message, isinstance(m.timestamp, datetime.datetime)] for m in metrics],
            "feedback": [feedback.plan_id, feedback.rating, feedback.plan_state, feedback.message,
                         feedback.plan_progress_pct, isinstance(feedback.received_at, datetime.datetime)],
            "events": [[e.event_type.name, e.context] for e in events],
            "worker": [worker.current_task_id, isinstance(worker.last_heartbeat_at, datetime.datetime)],
        }


def main():
    path, mode = sys.argv[1], sys.argv[2]
    engine = engine_for(path)
    if mode == "write":
        out = write(engine, *sys.argv[3:7])
    else:
        out = read(engine, *sys.argv[3:6])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
