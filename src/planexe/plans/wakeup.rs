//! Wake-ups for idle workers: `LISTEN planexe_plan_pending` ([`PENDING_CHANNEL`]).
//!
//! Migration 0079 puts a trigger on `plans` that sends `NOTIFY planexe_plan_pending` when a row
//! enters `pending` (a new plan from any writer: shared-db's [`enqueue`](super::enqueue), a
//! Python service, plain SQL; or a plan re-queued by retry, resume or the reaper). [`Wakeups`]
//! listens on its own connection and turns each notification into a permit that
//! [`Wakeups::wait`] hands to an idle worker, so the worker claims within milliseconds instead of
//! at its next poll.
//!
//! **Notifications are a hint; the poll stays.** PostgreSQL keeps no notification for a session
//! that is not listening when it is sent, so some are lost, and [`Wakeups::wait`] always returns
//! after the poll interval too:
//!
//! * **The listening connection is lost** (a failover, a server restart, a network cut,
//!   `pg_terminate_backend`): what was sent until the listener is back is lost. The listener
//!   reconnects (with the pool's *current* connect options, so after a
//!   [failover](crate::failover) switch it follows the new primary; a standby refuses `LISTEN`,
//!   so it keeps trying with back-off until a primary answers), and once it listens again it
//!   wakes the worker at once ([`Wake::Reconnected`]): a plan queued while nobody listened is
//!   claimed right after the reconnect, not at the next poll. While no connection can be made,
//!   the worker polls.
//! * **Through a pooler in transaction mode** (PgBouncer `pool_mode = transaction`,
//!   [`pooler`](crate::pooler)): `LISTEN` is session state. The pooler hands the server session
//!   to other clients after each transaction, so the notifications go to whoever holds it (or
//!   nobody) and never reach this client; nothing fails, the worker just never wakes early and
//!   finds plans by its poll. Point the listener straight at the server (or at a session-mode
//!   pool) with its own connect options to get wake-ups back.
//! * **A notification for a plan another worker claimed first**: the worker finds nothing and
//!   waits again. Every idle listener is woken (PostgreSQL delivers to all); `SKIP LOCKED` hands
//!   the plan to one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// The channel the `plans` trigger of migration 0079 notifies when a plan becomes claimable.
pub const PENDING_CHANNEL: &str = "planexe_plan_pending";

/// Where the listener connects.
#[derive(Debug, Clone)]
pub enum ListenOn {
    /// The pool's connect options as they are at each (re)connect (they change on a failover
    /// switch).
    Pool(PgPool),
    /// Fixed options, e.g. the server itself when the pool goes through a transaction-mode
    /// pooler.
    Options(Box<PgConnectOptions>),
}

impl ListenOn {
    fn options(&self) -> PgConnectOptions {
        match self {
            ListenOn::Pool(pool) => (*pool.connect_options()).clone(),
            ListenOn::Options(options) => (**options).clone(),
        }
    }
}

/// Why [`Wakeups::wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// A plan became claimable (a notification arrived).
    Notified,
    /// The listener (re)connected: notifications may have been lost meanwhile.
    Reconnected,
    /// The poll interval passed without either.
    Poll,
}

/// The longest wait between two connection attempts of the listener.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A `LISTEN` on [`PENDING_CHANNEL`] on a connection of its own (not one of the pool's, which
/// it would hold for ever), run by a background task until this value is dropped.
#[derive(Debug)]
pub struct Wakeups {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Shared {
    notify: Notify,
    /// Set by the task when the permit it stores comes from a (re)connect.
    reconnected: AtomicBool,
}

impl Wakeups {
    /// Starts listening (in the background: this returns at once; until the first `LISTEN` is
    /// in place, [`Wakeups::wait`] returns at the poll interval only, and then once with
    /// [`Wake::Reconnected`]). Needs a tokio runtime.
    pub fn spawn(on: ListenOn) -> Self {
        let shared = Arc::new(Shared::default());
        let task = tokio::spawn(listen(on, Arc::clone(&shared)));
        Wakeups { shared, task }
    }

    /// Waits for a notification, a reconnect of the listener, or `poll`, whichever comes first.
    /// A notification that arrived while nobody waited is kept (one), so a wake-up between the
    /// worker's last empty claim and this call is not missed.
    pub async fn wait(&self, poll: Duration) -> Wake {
        match tokio::time::timeout(poll, self.shared.notify.notified()).await {
            Err(_) => Wake::Poll,
            Ok(()) if self.shared.reconnected.swap(false, Ordering::AcqRel) => Wake::Reconnected,
            Ok(()) => Wake::Notified,
        }
    }
}

impl Drop for Wakeups {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The listener task: (re)connect, `LISTEN`, wake the worker once, then one wake-up per
/// notification until the connection is lost; then again, with back-off while connecting fails.
async fn listen(on: ListenOn, shared: Arc<Shared>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(10))
            .connect_lazy_with(on.options());
        let listening = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            // A lost connection ends this listener (Ok(None) below) instead of reconnecting with
            // the options it started with: the next one reads the pool's current options.
            listener.eager_reconnect(false);
            listener.listen(PENDING_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        }
        .await;
        match listening {
            Ok(mut listener) => {
                backoff = Duration::from_millis(50);
                // whatever was sent while nobody listened is lost: look at the queue now
                shared.reconnected.store(true, Ordering::Release);
                shared.notify.notify_one();
                loop {
                    match listener.try_recv().await {
                        Ok(Some(_)) => shared.notify.notify_one(),
                        Ok(None) => {
                            tracing::warn!(
                                "plan wake-up listener lost its connection; reconnecting"
                            );
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "plan wake-up listener failed; reconnecting");
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, ?backoff, "plan wake-up listener cannot listen; workers poll meanwhile");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        pool.close().await;
    }
}
