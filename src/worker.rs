//! A PlanExe plan worker (feature `worker`): the queue loop a service runs to process plans.
//!
//! The service supplies the work as a [`Pipeline`] (its steps and what each costs); [`Worker`]
//! does the bookkeeping the Python workers do, through the [`crate::planexe`] functions:
//!
//! 1. a heartbeat, then [`plans::claim_next`] (`SKIP LOCKED`: one plan, one worker);
//! 2. per step: run it while heartbeating for the run on a timer ([`Worker::heartbeat_every`]),
//!    so a step longer than the reaper's threshold is not reaped; then a heartbeat,
//!    [`plans::update_progress`] and incremental usage billing
//!    ([`credit_history::bill_usage_progress`]) when the plan has a paying user;
//! 3. final billing ([`credit_history::bill_usage_final`], the steps' costs plus
//!    [`Pipeline::completion_fee`]) and [`plans::finish_completed`].
//!
//! A stop request seen in a progress answer ends the plan with [`plans::finish_stopped`]; a plan
//! that is no longer this worker's (re-queued by the reaper, finished elsewhere) is left alone;
//! a pipeline error fails the plan as recoverable ([`plans::finish_failed`]). A stopped or failed
//! run is billed for the usage it incurred (the steps done, the last one included), once: a final
//! row of the attempt without the completion fee. With
//! [`Worker::reaper`], the worker also re-queues plans of dead workers before each claim. An idle
//! worker waits for a `NOTIFY` that a plan was queued ([`plans::wakeup`]) and polls every
//! [`Worker::idle_poll`] in case notifications are lost. A
//! `true` on the stop channel ends the loop once the plan in hand is done.
//!
//! A database error ends [`Worker::run`] with that error: the caller decides whether to restart
//! the loop (a plan in hand is re-queued by the reaper if nobody finishes it).
//!
//! ```no_run
//! use std::time::Duration;
//! use rust_decimal::Decimal;
//! use shared_db::planexe::plans::Plan;
//! use shared_db::worker::{Pipeline, Step, Worker};
//!
//! struct Sleepy;
//!
//! impl Pipeline for Sleepy {
//!     type Error = std::convert::Infallible;
//!     fn steps(&self) -> &[&'static str] {
//!         &["Outline", "Drafting"]
//!     }
//!     async fn run_step(&self, _plan: &Plan, _step: usize) -> Result<Step, Self::Error> {
//!         tokio::time::sleep(Duration::from_millis(500)).await;
//!         Ok(Step::Done { cost: Decimal::new(10, 2) })
//!     }
//! }
//!
//! # async fn example(db: shared_db::Database) -> shared_db::Result<()> {
//! let (_stop_tx, stop) = tokio::sync::watch::channel(false);
//! Worker::new(db, "worker-1", Sleepy)
//!     .reaper(Duration::from_secs(120))
//!     .run(stop)
//!     .await
//! # }
//! ```

use std::future::Future;
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::json;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use crate::planexe::credit_history::{self, FinalBilling, PlanUsage};
use crate::planexe::plans::{
    self, Attempt, Failure, ListenOn, Plan, Progress, ProgressAck, Wakeups,
};
use crate::planexe::{PlanState, user_account, workers};
use crate::{Database, Error, Result};

/// How often the reaper of [`Worker::reaper`] re-queues one plan before it fails it instead
/// (`failure_reason = 'worker_lost'`, see [`plans::requeue_stale`]).
pub const REAPER_MAX_REQUEUES: u32 = 3;

/// The work a [`Worker`] does for each plan.
pub trait Pipeline: Send + Sync {
    /// Why a step failed; shown in the plan's error message.
    type Error: std::fmt::Display + Send;

    /// The steps, in order; their names go into the progress reports.
    fn steps(&self) -> &[&'static str];

    /// Runs step `step` (an index into [`Pipeline::steps`]) of `plan`.
    fn run_step(
        &self,
        plan: &Plan,
        step: usize,
    ) -> impl Future<Output = std::result::Result<Step, Self::Error>> + Send;

    /// Credits charged when the plan completes, on top of the steps' costs. Zero by default.
    fn completion_fee(&self, plan: &Plan) -> Decimal {
        let _ = plan;
        Decimal::ZERO
    }
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Done; `cost` credits are added to the plan's usage.
    Done {
        /// Credits this step cost (≥ 0; rounded to 9 places when billed).
        cost: Decimal,
    },
    /// Leave the plan and stop the worker at once, without finishing the plan or sending
    /// another heartbeat (a process that must exit now); the reaper re-queues the plan.
    Abandon,
}

/// What a [`Worker`] did, for a supervisor that wants to follow along ([`Worker::events`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The reaper (see [`Worker::reaper`]) re-queued a plan whose worker went silent.
    Requeued {
        /// The plan.
        plan: Uuid,
    },
    /// The worker claimed a plan.
    Claimed {
        /// The worker.
        worker: String,
        /// The plan.
        plan: Uuid,
    },
    /// A step was done, reported and billed.
    Progress {
        /// The worker.
        worker: String,
        /// The plan.
        plan: Uuid,
        /// Steps done so far (1-based).
        done: usize,
        /// Steps in all.
        of: usize,
        /// Credits of the steps done so far.
        cost: Decimal,
    },
    /// The plan completed; `billed` credits in all (steps plus completion fee).
    Completed {
        /// The worker.
        worker: String,
        /// The plan.
        plan: Uuid,
        /// Total credits of the run.
        billed: Decimal,
    },
    /// A stop was requested; the plan ended as stopped.
    Stopped {
        /// The worker.
        worker: String,
        /// The plan.
        plan: Uuid,
    },
    /// The plan is no longer this worker's (re-queued, or finished elsewhere); left alone.
    Lost {
        /// The worker.
        worker: String,
        /// The plan.
        plan: Uuid,
    },
    /// A step failed; the plan ended as failed (recoverable).
    Failed {
        /// The worker.
        worker: String,
        /// The plan.
        plan: Uuid,
        /// The pipeline's error text.
        error: String,
    },
    /// The pipeline abandoned the plan at step `step` (1-based); the worker stopped.
    Abandoned {
        /// The worker.
        worker: String,
        /// The plan.
        plan: Uuid,
        /// The step that abandoned it.
        step: usize,
    },
}

/// A plan worker: one queue loop with one identity (`workers.worker_id`).
pub struct Worker<P> {
    db: Database,
    id: String,
    pipeline: P,
    idle_poll: Duration,
    listen: Option<ListenOn>,
    heartbeat_every: Duration,
    reaper: Option<Duration>,
    events: Option<mpsc::UnboundedSender<Event>>,
}

/// How often a [`Worker`] heartbeats while a step runs, unless [`Worker::heartbeat_every`] says
/// otherwise.
pub const DEFAULT_HEARTBEAT_EVERY: Duration = Duration::from_secs(10);

/// How a plan in hand ended, for the loop.
enum Outcome {
    Next,
    Abandoned,
}

impl<P: Pipeline> Worker<P> {
    /// A worker named `id` (1..=255 characters; unique among running workers) running
    /// `pipeline`. While the queue is empty it waits for a wake-up ([`plans::Wakeups`], on a
    /// connection of its own, where [`Database::wakeups`] says) and polls every 2 s as a
    /// fallback (only, behind a transaction pooler without `SHARED_DB_LISTEN_URL`); no reaper,
    /// no events.
    pub fn new(db: Database, id: impl Into<String>, pipeline: P) -> Self {
        let listen = db.wakeups();
        Worker {
            db,
            id: id.into(),
            pipeline,
            idle_poll: Duration::from_secs(2),
            listen,
            heartbeat_every: DEFAULT_HEARTBEAT_EVERY,
            reaper: None,
            events: None,
        }
    }

    /// How long to wait before looking at an empty queue again when no wake-up comes: the
    /// fallback for lost notifications (see [`plans::wakeup`]), and the only way to find work
    /// with [`Worker::poll_only`].
    pub fn idle_poll(mut self, every: Duration) -> Self {
        self.idle_poll = every;
        self
    }

    /// Listen for wake-ups on a connection made with `options` instead of where
    /// [`Database::wakeups`] says: when the pool goes through a transaction-mode pooler, point
    /// this at the server or at a session-mode pool (or set `SHARED_DB_LISTEN_URL`).
    pub fn listen_on(mut self, options: sqlx::postgres::PgConnectOptions) -> Self {
        self.listen = Some(ListenOn::Options(Box::new(options)));
        self
    }

    /// No wake-ups: find work by polling every [`Worker::idle_poll`] only (and hold no listening
    /// connection).
    pub fn poll_only(mut self) -> Self {
        self.listen = None;
        self
    }

    /// How often to heartbeat while a step runs ([`DEFAULT_HEARTBEAT_EVERY`] by default). The
    /// heartbeat names the run, so a step of any length keeps its plan from every reaper whose
    /// threshold is longer than this period (keep it at most half the shortest threshold in the
    /// fleet).
    pub fn heartbeat_every(mut self, every: Duration) -> Self {
        self.heartbeat_every = every.max(Duration::from_millis(10));
        self
    }

    /// Before each claim, re-queue plans whose worker has been silent (no heartbeat, no
    /// progress) for `threshold` ([`plans::requeue_stale`]); a plan re-queued
    /// [`REAPER_MAX_REQUEUES`] times fails instead.
    pub fn reaper(mut self, threshold: Duration) -> Self {
        self.reaper = Some(threshold);
        self
    }

    /// Send an [`Event`] for everything the worker does to `events`.
    pub fn events(mut self, events: mpsc::UnboundedSender<Event>) -> Self {
        self.events = Some(events);
        self
    }

    /// Runs the queue loop until `stop` turns `true` (the plan in hand is finished first) or a
    /// step answers [`Step::Abandon`]. A database error ends the loop with that error.
    pub async fn run(self, mut stop: watch::Receiver<bool>) -> Result<()> {
        let pool = self.db.pool();
        let wakeups = self.listen.clone().map(Wakeups::spawn);
        while !*stop.borrow() {
            if let Some(threshold) = self.reaper {
                let reaped = plans::requeue_stale(pool, threshold, REAPER_MAX_REQUEUES).await?;
                for plan in reaped.requeued {
                    tracing::warn!(%plan, "re-queued a plan whose worker went silent");
                    self.emit(Event::Requeued { plan });
                }
                for plan in reaped.failed {
                    tracing::error!(%plan, "failed a plan that lost its worker too often");
                }
            }
            // Claiming also records the heartbeat and the plan as this worker's task.
            let Some(claimed) = plans::claim_next(pool, &self.id).await? else {
                workers::heartbeat(pool, &self.id, None).await?;
                // a wake-up (a plan queued, the listener back after a loss) or the poll
                let idle = async {
                    match &wakeups {
                        Some(w) => {
                            let wake = w.wait(self.idle_poll).await;
                            tracing::trace!(worker = %self.id, ?wake, "looking at the queue");
                        }
                        None => tokio::time::sleep(self.idle_poll).await,
                    }
                };
                tokio::select! {
                    _ = idle => {}
                    _ = stop.changed() => {}
                }
                continue;
            };
            let plan = &claimed.plan;
            tracing::info!(worker = %self.id, plan = %plan.id, "claimed");
            self.emit(Event::Claimed {
                worker: self.id.clone(),
                plan: plan.id,
            });
            match self.process(plan, claimed.attempt).await {
                Ok(Outcome::Next) => {}
                Ok(Outcome::Abandoned) => return Ok(()),
                // Stopped and retried, or re-queued by the reaper: another run owns the plan, and
                // nothing this one sent was written.
                Err(Error::Superseded { plan_id }) => {
                    tracing::warn!(worker = %self.id, plan = %plan_id, "run taken away");
                    self.emit(Event::Lost {
                        worker: self.id.clone(),
                        plan: plan_id,
                    });
                }
                Err(e) => return Err(e),
            }
        }
        workers::heartbeat(pool, &self.id, None).await?;
        Ok(())
    }

    /// Runs one plan to its end.
    async fn process(&self, plan: &Plan, run: Attempt) -> Result<Outcome> {
        let pool = self.db.pool();
        let payer = user_account::billing_user_for_plan(pool, plan.user_id.as_deref()).await?;
        let usage = |cost, succeeded| {
            payer.map(|user_id| PlanUsage {
                user_id,
                attempt: run,
                api_key_id: plan.api_key_id.as_deref().and_then(|k| k.parse().ok()),
                cost,
                succeeded,
            })
        };
        let steps = self.pipeline.steps();
        let mut cost = Decimal::ZERO;
        for (i, name) in steps.iter().enumerate() {
            match self.step_with_heartbeats(plan, i, run).await? {
                Ok(Step::Done { cost: step_cost }) => cost += step_cost,
                Ok(Step::Abandon) => {
                    tracing::warn!(worker = %self.id, plan = %plan.id, "plan abandoned");
                    self.emit(Event::Abandoned {
                        worker: self.id.clone(),
                        plan: plan.id,
                        step: i + 1,
                    });
                    return Ok(Outcome::Abandoned);
                }
                Err(e) => {
                    let error = e.to_string();
                    tracing::error!(worker = %self.id, plan = %plan.id, %error, "step failed");
                    let failure = Failure {
                        reason: "worker_error",
                        failed_step: Some(name),
                        error_message: &error,
                        recoverable: true,
                    };
                    let billing = self.bill_incurred(usage(cost, false)).await?;
                    let context = json!({ "billed_credits": cost.to_string(), "billing": billing });
                    plans::finish_failed(pool, run, &failure, Some(&context)).await?;
                    self.emit(Event::Failed {
                        worker: self.id.clone(),
                        plan: plan.id,
                        error,
                    });
                    return Ok(Outcome::Next);
                }
            }
            workers::heartbeat(pool, &self.id, Some(run)).await?;
            let done = i + 1;
            let progress = Progress {
                percentage: Decimal::from(done * 100) / Decimal::from(steps.len()),
                message: name,
                steps_completed: i32::try_from(done).ok(),
                steps_total: i32::try_from(steps.len()).ok(),
                current_step: Some(name),
            };
            match plans::update_progress(pool, run, &progress).await? {
                ProgressAck::Recorded => {}
                // Moved by a newer release or another service to a state we do not know: not
                // ours to finish (finish_stopped would refuse it too).
                ProgressAck::Abort {
                    state: Some(state @ PlanState::Unknown(_)),
                    ..
                } => {
                    tracing::warn!(worker = %self.id, plan = %plan.id, %state, "plan moved to a state this release does not know");
                    self.emit(Event::Lost {
                        worker: self.id.clone(),
                        plan: plan.id,
                    });
                    return Ok(Outcome::Next);
                }
                ProgressAck::Abort {
                    stop_requested: true,
                    ..
                } => {
                    // The step ran: its usage and any not yet billed are charged once.
                    let billing = self.bill_incurred(usage(cost, false)).await?;
                    let context = json!({ "billed_credits": cost.to_string(), "billing": billing });
                    plans::finish_stopped(pool, run, Some(&context)).await?;
                    self.emit(Event::Stopped {
                        worker: self.id.clone(),
                        plan: plan.id,
                    });
                    return Ok(Outcome::Next);
                }
                ProgressAck::Abort { state, .. } => {
                    tracing::warn!(worker = %self.id, plan = %plan.id, ?state, "plan is no longer ours");
                    self.emit(Event::Lost {
                        worker: self.id.clone(),
                        plan: plan.id,
                    });
                    return Ok(Outcome::Next);
                }
            }
            if let Some(usage) = usage(cost, false) {
                let mut conn = pool.acquire().await?;
                credit_history::bill_usage_progress(&mut conn, &usage).await?;
            }
            self.emit(Event::Progress {
                worker: self.id.clone(),
                plan: plan.id,
                done,
                of: steps.len(),
                cost,
            });
        }
        let billed = cost + self.pipeline.completion_fee(plan);
        let billing = match usage(billed, true) {
            Some(usage) => {
                let mut conn = pool.acquire().await?;
                Some(credit_history::bill_usage_final(&mut conn, &usage).await?)
            }
            None => None,
        };
        let context = json!({
            "billed_credits": billed.to_string(),
            "billing": billing.map(|b: FinalBilling| json!(b)),
        });
        plans::finish_completed(pool, run, Some(&context)).await?;
        tracing::info!(worker = %self.id, plan = %plan.id, %billed, "completed");
        self.emit(Event::Completed {
            worker: self.id.clone(),
            plan: plan.id,
            billed,
        });
        Ok(Outcome::Next)
    }

    /// Runs step `step`, heartbeating for the run every [`Worker::heartbeat_every`] while it
    /// runs, so that a long step is not taken for a dead worker. A heartbeat that finds the run
    /// taken ([`Error::Superseded`]) ends the step there.
    async fn step_with_heartbeats(
        &self,
        plan: &Plan,
        step: usize,
        run: Attempt,
    ) -> Result<std::result::Result<Step, P::Error>> {
        let work = self.pipeline.run_step(plan, step);
        tokio::pin!(work);
        let mut beat = tokio::time::interval(self.heartbeat_every);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        beat.tick().await; // the first tick is immediate; the claim was the last heartbeat
        loop {
            tokio::select! {
                done = &mut work => return Ok(done),
                _ = beat.tick() => {
                    workers::heartbeat(self.db.pool(), &self.id, Some(run)).await?;
                }
            }
        }
    }

    /// Final billing of a run that failed or was stopped: the usage incurred so far, less what
    /// the steps already billed, once per attempt ([`credit_history::bill_usage_final`]).
    async fn bill_incurred(&self, usage: Option<PlanUsage>) -> Result<Option<FinalBilling>> {
        let Some(usage) = usage else {
            return Ok(None);
        };
        let mut conn = self.db.pool().acquire().await?;
        Ok(Some(
            credit_history::bill_usage_final(&mut conn, &usage).await?,
        ))
    }

    fn emit(&self, event: Event) {
        if let Some(events) = &self.events {
            // A supervisor that stopped listening does not stop the work.
            let _ = events.send(event);
        }
    }
}
