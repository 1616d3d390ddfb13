//! The dispatcher loop: takes recorded deliveries from the store, oldest
//! first, turns each into runs ([`crate::dispatch`]) and hands those to the
//! scheduler. Also prunes deliveries past their retention.
//!
//! Crash safety: a delivery's runs are created in the same transaction that
//! marks it dispatched, so after a crash it is either still queued (and
//! dispatched again) or its runs exist (and are resumed from the store).

use std::sync::Arc;
use std::time::Duration;

use kiln_store::{Delivery, DeliveryState, RunState, now_ms};
use tokio_util::sync::CancellationToken;

use crate::dispatch::Dispatcher;
use crate::execute::error_chain;
use crate::scheduler::Scheduler;
use crate::state::Shared;

/// How often old deliveries are pruned (and the queue re-read, as a
/// safety net for a missed wake-up).
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Runs until `stop` is cancelled; the delivery being dispatched then is
/// finished first.
pub async fn run_dispatcher(
    shared: Arc<Shared>,
    scheduler: Arc<Scheduler>,
    stop: CancellationToken,
) {
    let dispatcher = Dispatcher::new(shared.cache.clone(), shared.config.clone());
    prune(&shared).await;
    let mut last_prune = tokio::time::Instant::now();
    loop {
        while !stop.is_cancelled() {
            match shared.db.call(|s| s.next_queued_delivery()).await {
                Ok(Some(delivery)) => {
                    dispatch_one(&shared, &scheduler, &dispatcher, delivery).await
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read queued deliveries");
                    break;
                }
            }
        }
        if last_prune.elapsed() >= PRUNE_EVERY {
            prune(&shared).await;
            last_prune = tokio::time::Instant::now();
        }
        tokio::select! {
            _ = shared.wake_dispatcher.notified() => {}
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
            _ = stop.cancelled() => return,
        }
    }
}

async fn dispatch_one(
    shared: &Arc<Shared>,
    scheduler: &Arc<Scheduler>,
    dispatcher: &Dispatcher,
    delivery: Delivery,
) {
    let id = delivery.id.clone();
    let (state, note, runs) = match dispatcher.plan(&delivery).await {
        Ok(plan) => (plan.state, plan.note, plan.runs),
        Err(e) => (DeliveryState::Failed, Some(error_chain(&e)), Vec::new()),
    };
    let n = runs.len();
    let record_note = note.clone();
    let (delivery_id, record_state) = (id.clone(), state);
    let created = shared
        .db
        .call(move |s| s.finish_delivery(&delivery_id, record_state, record_note.as_deref(), &runs))
        .await;
    let ids = match created {
        Ok(ids) => ids,
        Err(e) => {
            // Left queued; the next wake-up tries again.
            tracing::error!(delivery = %id, error = %e, "cannot record the dispatched delivery");
            tokio::time::sleep(Duration::from_secs(1)).await;
            return;
        }
    };
    match state {
        DeliveryState::Failed => tracing::warn!(delivery = %id, event = %delivery.event,
            repository = delivery.repository.as_deref().unwrap_or(""),
            error = note.as_deref().unwrap_or(""), "delivery failed"),
        _ => tracing::info!(delivery = %id, event = %delivery.event,
            repository = delivery.repository.as_deref().unwrap_or(""), runs = n,
            runs_ids = ?ids, note = note.as_deref().unwrap_or(""), "delivery dispatched"),
    }
    for run_id in ids {
        match shared.db.call(move |s| s.run(run_id)).await {
            Ok(Some(run)) if run.state == RunState::Queued => scheduler.submit(run).await,
            Ok(Some(run)) => {
                // Created completed (e.g. an invalid workflow file).
                let conclusion = run.conclusion.unwrap_or_default();
                shared.metrics.run_finished(&conclusion, 0.0);
                tracing::info!(run = run_id, %conclusion, reason = run.reason.as_deref().unwrap_or(""), "run finished");
            }
            Ok(None) => {}
            Err(e) => tracing::error!(run = run_id, error = %e, "cannot read the new run"),
        }
    }
}

async fn prune(shared: &Arc<Shared>) {
    let retention = i64::try_from(shared.config.delivery_retention.as_millis()).unwrap_or(i64::MAX);
    let cutoff = now_ms().saturating_sub(retention);
    match shared.db.call(move |s| s.prune_deliveries(cutoff)).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(pruned = n, "old deliveries pruned"),
        Err(e) => tracing::warn!(error = %e, "cannot prune old deliveries"),
    }
}
