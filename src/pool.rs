//! [`Pool`]: sqlx's pool with a return path that costs no round trip.
//!
//! sqlx's `PoolConnection` pings the server every time it goes back to the pool (a
//! `Sync`/`ReadyForQuery` exchange in a spawned task, `sqlx-core` 0.9
//! `pool/connection.rs`, `Floating::return_to_pool`), and nothing configures it away. For a
//! service that borrows a connection per statement that is a second round trip per statement:
//! pooled throughput was half to three quarters of pgbench's (BENCHMARKS.md, "The pooled
//! return path").
//!
//! [`Pool`] keeps connections that it has taken out of sqlx's pool on a stack of its own and
//! hands them back to the next caller without sending anything. A connection goes back to sqlx
//! (where the release ping checks it, and sqlx closes it when it fails, is past its lifetime or
//! was opened before a failover switch) instead of onto the stack when it is **in doubt**:
//!
//! - its last statement run through the pool as an executor failed, or its future was dropped
//!   before the statement finished (cancelled);
//! - it is inside a transaction ([`sqlx::Connection::is_in_transaction`]), or has a rollback or
//!   other message queued and not yet sent ([`sqlx::Connection::should_flush`]);
//! - it has been out of sqlx's pool longer than the bound (`Config::ping_idle_after`, 10 s by
//!   default): so a connection that sat idle that long is checked by sqlx (ping on release,
//!   and sqlx's own `ping_idle_after` check on acquire) before anyone uses it again, and sqlx's
//!   `idle_timeout`, `max_lifetime` and `min_connections` keep working within that bound; a
//!   background sweep returns such connections even when no request comes;
//! - with failover, it was taken out of sqlx's pool before the last switch of primary;
//! - the pool is closed.
//!
//! After a statement on the stack's connections fails because the connection was lost, every
//! connection parked before that moment goes back to sqlx (and is checked) rather than to a
//! caller: one cut (a server restart, a proxy dropping idle sessions) costs at most the one
//! statement that found it, and a retry runs on a checked or new connection.
//!
//! Connections on the stack still hold their sqlx permit, so `max_connections` bounds both
//! together. A caller that finds the stack empty waits on sqlx's pool *and* on the stack at the
//! same time, and a connection coming back is handed directly to the longest waiter: a caller
//! never waits on sqlx while a connection sits parked.
//!
//! Why not a patched sqlx: the ping is in sqlx-core's private return path; a fork is a
//! maintenance debt on every sqlx release, and upstream does not take outside patches for it.
//! Why not deadpool: it would replace sqlx's pool (the failover hooks, `before_acquire`,
//! `after_connect`, the acquire-time metrics, `axum-sqlx-tx`'s `PgPool`) rather than add to
//! it; this manager is deadpool's "fast" recycling on top of sqlx's own connections, with
//! sqlx's pool still opening, checking, timing and closing every connection.

use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_core::future::BoxFuture;
use futures_core::stream::{BoxStream, Stream};
use futures_util::TryStreamExt;
use futures_util::future::{Either as Race, select};
use sqlx::Either;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgPool, PgQueryResult, PgRow, PgStatement, PgTypeInfo};
use sqlx::{Connection, Execute, Executor, PgConnection, Postgres, Transaction};
use tokio::sync::oneshot;

use crate::failover::Failover;

/// The primary's (or the replica's) connection pool: sqlx's [`PgPool`] plus a stack of
/// connections that go back to callers with no round trip (see the [module docs](self)).
///
/// Use `&Pool` as the executor of a single statement (`db.pool()`): it implements
/// [`sqlx::Executor`], so every `impl PgExecutor<'_>` function takes it. [`Pool::acquire`] gives
/// a [`PooledConnection`] for several statements. The sqlx pool underneath is reachable
/// through `Deref` (`&*pool`, or any `&PgPool` parameter by deref coercion) for what needs
/// sqlx's own type; connections taken from it directly return the sqlx way (with the ping).
///
/// Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    sqlx: PgPool,
    state: Mutex<State>,
    /// A connection out of sqlx's pool longer than this goes back to it.
    out_for_at_most: Duration,
    failover: Option<Arc<Failover>>,
    /// Callers waiting for a connection now.
    pending: AtomicU64,
    /// The runtime the pool was built on: sqlx returns a connection in a task of its own, so a
    /// stack dropped outside any runtime (a `BlockingDatabase` dropped) returns them there.
    runtime: Option<tokio::runtime::Handle>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let parked = std::mem::take(&mut self.lock().idle);
        if parked.is_empty() || tokio::runtime::Handle::try_current().is_ok() {
            return;
        }
        match &self.runtime {
            // a runtime that has shut down drops the task: the connection closes with it
            Some(runtime) => {
                let _inside = runtime.enter();
                drop(parked);
            }
            // not reached (no runtime, no connection to park); closes each without sqlx
            None => parked.into_iter().for_each(|p| drop(p.conn.detach())),
        }
    }
}

#[derive(Default)]
struct State {
    /// Parked connections, the one released last on top.
    idle: Vec<Parked>,
    /// Callers that found `idle` empty, longest waiting first.
    waiters: VecDeque<oneshot::Sender<Parked>>,
    /// A connection of this pool was found lost at this moment: every connection parked before
    /// it goes back to sqlx to be checked.
    lost_at: Option<Instant>,
}

struct Parked {
    conn: PoolConnection<Postgres>,
    /// When sqlx's pool handed this connection out (it was checked then).
    taken_at: Instant,
    parked_at: Instant,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("size", &self.size())
            .field("idle", &self.num_idle())
            .field("parked", &self.num_parked())
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// Wraps `sqlx` with the default bound ([`crate::config::PING_WHEN_IDLE_FOR`]) and no
    /// failover.
    pub fn new(sqlx: PgPool) -> Self {
        Self::with_bound(sqlx, crate::config::PING_WHEN_IDLE_FOR, None)
    }

    /// Wraps `sqlx`; a connection stays out of it at most `out_for_at_most` between two checks.
    pub(crate) fn with_bound(
        sqlx: PgPool,
        out_for_at_most: Duration,
        failover: Option<Arc<Failover>>,
    ) -> Self {
        let pool = Pool {
            inner: Arc::new(Inner {
                sqlx,
                state: Mutex::default(),
                out_for_at_most,
                failover,
                pending: AtomicU64::new(0),
                runtime: tokio::runtime::Handle::try_current().ok(),
            }),
        };
        pool.spawn_sweeper();
        pool
    }

    /// Returns connections parked past the bound to sqlx even when no caller comes (so sqlx's
    /// idle timeout and lifetime checks see them). Ends with the last clone of the pool.
    fn spawn_sweeper(&self) {
        let Some(runtime) = self.inner.runtime.clone() else {
            return; // no runtime: the sweep happens on acquire and release only
        };
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let every = self.inner.out_for_at_most.max(Duration::from_millis(100));
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(inner) = weak.upgrade() else { return };
                if inner.sqlx.is_closed() {
                    return;
                }
                let stale = inner.take_stale(&mut inner.lock());
                drop(stale);
            }
        });
    }

    /// sqlx's pool underneath.
    pub fn sqlx(&self) -> &PgPool {
        &self.inner.sqlx
    }

    /// A connection: the one released last when one is parked (no round trip), else one from
    /// sqlx's pool (a sqlx-idle one, or a new one; bounded by `acquire_timeout`), or one
    /// released by another caller while this one waits, whichever comes first.
    pub async fn acquire(&self) -> Result<PooledConnection, sqlx::Error> {
        let inner = &self.inner;
        let started = Instant::now();
        let parked = match inner.pop() {
            Ok(parked) => parked,
            Err(mut handed) => {
                inner.pending.fetch_add(1, Ordering::Relaxed);
                let _waiting = Waiting(&inner.pending);
                let from_sqlx = std::pin::pin!(inner.sqlx.acquire());
                match select(from_sqlx, &mut handed).await {
                    Race::Left((from_sqlx, _)) => {
                        // A connection handed over meanwhile is used if sqlx failed, else it
                        // goes back.
                        handed.close();
                        match (from_sqlx, handed.try_recv()) {
                            (Ok(conn), late) => {
                                if let Ok(parked) = late {
                                    inner.release(parked);
                                }
                                return Ok(PooledConnection::new(conn, Instant::now(), inner));
                            }
                            (Err(_), Ok(parked)) => parked,
                            (Err(e), Err(_)) => return Err(e),
                        }
                    }
                    Race::Right((Ok(parked), _)) => parked,
                    // not reached: a waiter's sender is only dropped by sending on it
                    Race::Right((Err(_), from_sqlx)) => {
                        return Ok(PooledConnection::new(
                            from_sqlx.await?,
                            Instant::now(),
                            inner,
                        ));
                    }
                }
            }
        };
        // sqlx times its own acquires; this one took a parked connection (at once, or handed
        // over while waiting).
        #[cfg(feature = "metrics")]
        tracing::trace!(
            target: "sqlx::pool::acquire",
            acquired_after_secs = started.elapsed().as_secs_f64(),
            "parked connection"
        );
        #[cfg(not(feature = "metrics"))]
        let _ = started;
        Ok(PooledConnection::new(parked.conn, parked.taken_at, inner))
    }

    /// Begins a transaction on a connection of the pool; it rolls back when dropped
    /// uncommitted. The connection goes back to sqlx afterwards (checked by its ping), as a
    /// transaction's connection is in doubt until then.
    pub async fn begin(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        let conn = self.acquire().await?.into_sqlx();
        Transaction::begin(conn, None).await
    }

    /// Open connections: in use, parked here, and idle in sqlx's pool.
    pub fn size(&self) -> u32 {
        self.inner.sqlx.size()
    }

    /// Connections not in use: parked here plus idle in sqlx's pool.
    pub fn num_idle(&self) -> usize {
        self.inner.sqlx.num_idle() + self.num_parked()
    }

    /// Connections parked here (taken out of sqlx's pool, not in use).
    pub fn num_parked(&self) -> usize {
        self.inner.lock().idle.len()
    }

    /// Callers of [`Pool::acquire`] (and statements run on the pool) waiting for a connection
    /// now (`db.client.connection.pending_requests`).
    pub fn pending_requests(&self) -> u64 {
        self.inner.pending.load(Ordering::Relaxed)
    }

    /// Closes the pool: parked connections go back to sqlx, then sqlx closes every connection,
    /// waiting for those in use.
    pub async fn close(&self) {
        let parked = std::mem::take(&mut self.inner.lock().idle);
        drop(parked);
        self.inner.sqlx.close().await;
    }
}

impl Deref for Pool {
    type Target = PgPool;

    fn deref(&self) -> &PgPool {
        &self.inner.sqlx
    }
}

/// Counts one waiting caller while it lives.
struct Waiting<'a>(&'a AtomicU64);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the stack consistent (pushes and pops only).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The connection released last that is still fit to hand out, or a place in the queue.
    fn pop(&self) -> Result<Parked, oneshot::Receiver<Parked>> {
        let mut unfit = Vec::new();
        let popped = {
            let mut state = self.lock();
            unfit.extend(self.take_stale(&mut state));
            loop {
                match state.idle.pop() {
                    Some(p) if self.fit(&p, state.lost_at) => break Ok(p),
                    Some(p) => unfit.push(p),
                    None => {
                        // callers that got a connection from sqlx meanwhile, or gave up
                        state.waiters.retain(|w| !w.is_closed());
                        let (tx, rx) = oneshot::channel();
                        state.waiters.push_back(tx);
                        break Err(rx);
                    }
                }
            }
        };
        // dropped outside the lock: each goes back to sqlx (which pings it in a task of its own)
        drop(unfit);
        popped
    }

    /// May `p` go to a caller without a check?
    fn fit(&self, p: &Parked, lost_at: Option<Instant>) -> bool {
        p.taken_at.elapsed() < self.out_for_at_most
            && lost_at.is_none_or(|lost| p.parked_at > lost)
            && !self.predates_switch(p.taken_at)
    }

    fn predates_switch(&self, taken_at: Instant) -> bool {
        // sqlx's `before_acquire` retired connections older than a switch when this one was
        // taken, so it is older than the last switch only if taken before it.
        self.failover
            .as_ref()
            .is_some_and(|f| f.predates_switch(taken_at.elapsed()))
    }

    /// Removes the parked connections that have been out of sqlx's pool past the bound.
    fn take_stale(&self, state: &mut State) -> Vec<Parked> {
        let now = Instant::now();
        let fresh = |p: &Parked| now.saturating_duration_since(p.taken_at) < self.out_for_at_most;
        if state.idle.iter().all(fresh) {
            return Vec::new();
        }
        let (fresh, stale) = std::mem::take(&mut state.idle).into_iter().partition(fresh);
        state.idle = fresh;
        stale
    }

    /// Parks `parked`, or hands it to the longest waiting caller.
    fn release(&self, mut parked: Parked) {
        let stale = {
            let mut state = self.lock();
            while let Some(waiter) = state.waiters.pop_front() {
                match waiter.send(parked) {
                    Ok(()) => return,
                    Err(back) => parked = back, // that caller got one from sqlx, or gave up
                }
            }
            state.idle.push(parked);
            self.take_stale(&mut state)
        };
        drop(stale);
    }

    /// Notes that a connection of this pool was lost just now.
    fn lost(&self) {
        let parked = {
            let mut state = self.lock();
            state.lost_at = Some(Instant::now());
            std::mem::take(&mut state.idle)
        };
        // all go back to sqlx, which pings each: the dead ones are closed, the others come back
        drop(parked);
    }
}

/// A connection from a [`Pool`]; dereferences to [`PgConnection`]. When dropped it goes back
/// to the pool's stack (no round trip) unless it is in doubt (see the [module docs](self)), in
/// which case it goes back to sqlx, which pings it.
pub struct PooledConnection {
    conn: Option<PoolConnection<Postgres>>,
    taken_at: Instant,
    pool: Arc<Inner>,
    /// False while a statement run by the pool's executor has not finished well.
    settled: bool,
}

impl std::fmt::Debug for PooledConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledConnection").finish_non_exhaustive()
    }
}

impl PooledConnection {
    fn new(conn: PoolConnection<Postgres>, taken_at: Instant, pool: &Arc<Inner>) -> Self {
        PooledConnection {
            conn: Some(conn),
            taken_at,
            pool: pool.clone(),
            settled: true,
        }
    }

    /// sqlx's pool connection inside: it returns to sqlx's pool (with sqlx's ping), never to
    /// this pool's stack.
    pub fn into_sqlx(mut self) -> PoolConnection<Postgres> {
        self.conn.take().expect("connection present until dropped")
    }

    /// Closes this connection instead of returning it (the pool opens another when needed).
    pub fn close_on_drop(&mut self) {
        if let Some(conn) = self.conn.as_mut() {
            conn.close_on_drop();
        }
    }

    /// Marks the connection in doubt until [`PooledConnection::settle`] (a statement starts).
    fn unsettle(&mut self) {
        self.settled = false;
    }

    /// The statement finished. A connection whose statement failed stays in doubt (it goes
    /// back to sqlx, which checks it); one that was lost also sends every parked connection
    /// back to be checked.
    fn settle(&mut self, error: Option<&sqlx::Error>) {
        match error {
            None => self.settled = true,
            Some(e) if is_lost(e) => self.pool.lost(),
            Some(_) => {}
        }
    }
}

/// Did `e` end the session (I/O, TLS or protocol failure; SQLSTATE class 08, or 57P01–57P03:
/// the server terminated the backend)?
fn is_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P0")),
        _ => false,
    }
}

impl Deref for PooledConnection {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        self.conn
            .as_ref()
            .expect("connection present until dropped")
    }
}

impl DerefMut for PooledConnection {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.conn
            .as_mut()
            .expect("connection present until dropped")
    }
}

impl AsMut<PgConnection> for PooledConnection {
    fn as_mut(&mut self) -> &mut PgConnection {
        self
    }
}

impl AsRef<PgConnection> for PooledConnection {
    fn as_ref(&self) -> &PgConnection {
        self
    }
}

impl Drop for PooledConnection {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        let pool = &self.pool;
        let fit = self.settled
            && !conn.is_in_transaction()
            && !conn.should_flush()
            && self.taken_at.elapsed() < pool.out_for_at_most
            && !pool.predates_switch(self.taken_at)
            && !pool.sqlx.is_closed();
        if fit {
            pool.release(Parked {
                conn,
                taken_at: self.taken_at,
                parked_at: Instant::now(),
            });
        }
        // else: dropped here, back to sqlx (ping, lifetime and failover checks, or close)
    }
}

/// Runs one statement on a connection of the pool, as sqlx's `&Pool` does, but the connection
/// comes from and goes back to the stack.
impl<'p> Executor<'p> for &'_ Pool {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, sqlx::Error>>
    where
        E: 'q + Execute<'q, Postgres>,
    {
        let pool = self.clone();
        // The rows flow through a one-slot channel from a future that owns the connection (the
        // stream of a connection borrows it); that future is driven by polling the stream.
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let producer = async move {
            let mut conn = pool.acquire().await?;
            conn.unsettle();
            let outcome = async {
                let mut rows = conn.fetch_many(query);
                while let Some(item) = rows.try_next().await? {
                    if tx.send(Ok(item)).await.is_err() {
                        return Ok(false); // the consumer went away mid-stream
                    }
                }
                Ok(true)
            }
            .await;
            match outcome {
                Ok(true) => conn.settle(None),
                Ok(false) => {}
                Err(ref e) => conn.settle(Some(e)),
            }
            outcome.map(|_| ())
        };
        Box::pin(Fetch {
            producer: Some(Box::pin(producer)),
            rx,
        })
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        E: 'q + Execute<'q, Postgres>,
    {
        let pool = self.clone();
        Box::pin(async move {
            let mut conn = pool.acquire().await?;
            conn.unsettle();
            let result = conn.fetch_optional(query).await;
            conn.settle(result.as_ref().err());
            result
        })
    }

    fn execute<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<PgQueryResult, sqlx::Error>>
    where
        E: 'q + Execute<'q, Postgres>,
    {
        let pool = self.clone();
        Box::pin(async move {
            let mut conn = pool.acquire().await?;
            conn.unsettle();
            let result = conn.execute(query).await;
            conn.settle(result.as_ref().err());
            result
        })
    }

    fn fetch_all<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Vec<PgRow>, sqlx::Error>>
    where
        E: 'q + Execute<'q, Postgres>,
    {
        let pool = self.clone();
        Box::pin(async move {
            let mut conn = pool.acquire().await?;
            conn.unsettle();
            let result = conn.fetch_all(query).await;
            conn.settle(result.as_ref().err());
            result
        })
    }

    fn prepare_with<'e>(
        self,
        sql: sqlx::SqlStr,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement, sqlx::Error>>
    where
        'p: 'e,
    {
        let pool = self.clone();
        Box::pin(async move {
            let mut conn = pool.acquire().await?;
            conn.unsettle();
            let result = conn.prepare_with(sql, parameters).await;
            conn.settle(result.as_ref().err());
            result
        })
    }

    #[doc(hidden)]
    fn describe<'e>(
        self,
        sql: sqlx::SqlStr,
    ) -> BoxFuture<'e, Result<sqlx::Describe<Postgres>, sqlx::Error>> {
        let pool = self.clone();
        Box::pin(async move {
            let mut conn = pool.acquire().await?;
            conn.unsettle();
            let result = conn.describe(sql).await;
            conn.settle(result.as_ref().err());
            result
        })
    }
}

/// The stream of [`Pool`]'s `fetch_many`: items from the channel, the producer driven
/// alongside.
struct Fetch<'e> {
    producer: Option<BoxFuture<'e, Result<(), sqlx::Error>>>,
    rx: tokio::sync::mpsc::Receiver<Result<Either<PgQueryResult, PgRow>, sqlx::Error>>,
}

impl Stream for Fetch<'_> {
    type Item = Result<Either<PgQueryResult, PgRow>, sqlx::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Poll::Ready(Some(item)) = self.rx.poll_recv(cx) {
            return Poll::Ready(Some(item));
        }
        if let Some(producer) = self.producer.as_mut() {
            match producer.as_mut().poll(cx) {
                Poll::Pending => {}
                Poll::Ready(done) => {
                    self.producer = None;
                    if let Err(e) = done {
                        return Poll::Ready(Some(Err(e)));
                    }
                }
            }
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(item)) => Poll::Ready(Some(item)),
            // the producer dropped its sender: done
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending if self.producer.is_none() => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
