//! The spoke's MSA loop: for the desired MSAs the hub sends (see `desired`), make each real, report its token as a token-sync event, refresh it when
//! 80 % of its actual lifetime has passed, and remove what the hub no longer wants.

use std::collections::HashMap;
use std::time::Duration;

use fleetbus_nats::request_id;
use fleetbus_nats::rpc::{self, RpcError};
use fleetbus_schema::HubTopic;
use fleetbus_schema::v1::{DesiredState, ManagedServiceAccount, TokenReport, TokenReportAck};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::Config;
use crate::desired::Desired;
use crate::kube::Kube;
use crate::msa::{Reconciler, now_ms};

/// Look again at least this often.
const RESYNC: Duration = Duration::from_secs(30);
/// Retry period after a failure.
const RETRY: Duration = Duration::from_secs(10);
/// Never refresh more often than this, whatever the apiserver says.
const MIN_REFRESH: Duration = Duration::from_secs(10);

/// When to refresh a token issued at `issued_ms` that expires at `expiration_ms`: after
/// `fraction` of its *actual* lifetime (the apiserver may shorten what was asked).
/// The times come from the apiserver or, after a restart, from the hub, so the arithmetic
/// saturates instead of overflowing.
pub fn refresh_delay(now_ms: i64, issued_ms: i64, expiration_ms: i64, fraction: f64) -> Duration {
    let lifetime = expiration_ms.saturating_sub(issued_ms).max(0) as f64;
    let at = issued_ms.saturating_add((lifetime * fraction) as i64);
    Duration::from_millis(at.saturating_sub(now_ms).max(0) as u64)
        .max(MIN_REFRESH.min(Duration::from_millis(lifetime as u64 / 2)))
}

/// `at_ms` plus `delay`, saturating.
fn after(at_ms: i64, delay: Duration) -> i64 {
    at_ms.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX))
}

struct Tracked {
    generation: i64,
    due_ms: i64,
}

/// Runs until `stop`.
pub async fn run(
    client: async_nats::Client,
    config: Config,
    kube: Kube,
    mut desired: Desired,
    stop: CancellationToken,
) {
    let reconciler = Reconciler::new(kube.client.clone(), config.msa_namespace.clone());
    let mut tracked: HashMap<String, Tracked> = HashMap::new();
    loop {
        let current = desired.borrow_and_update().clone();
        let wait = match current {
            Some(current) => {
                let tracked = &mut tracked;
                reconcile(
                    &client,
                    &config,
                    &kube,
                    &reconciler,
                    current,
                    tracked,
                    &stop,
                )
                .await
            }
            None => RESYNC,
        };
        tokio::select! {
            () = stop.cancelled() => return,
            changed = desired.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Brings the cluster to `desired`; returns how long until something is due. Stops between
/// service accounts once `stop` fires.
async fn reconcile(
    client: &async_nats::Client,
    config: &Config,
    kube: &Kube,
    reconciler: &Reconciler,
    desired: DesiredState,
    tracked: &mut HashMap<String, Tracked>,
    stop: &CancellationToken,
) -> Duration {
    let now = now_ms();
    let mut next = now + RESYNC.as_millis() as i64;
    for msa in &desired.service_accounts {
        if stop.is_cancelled() {
            return RESYNC;
        }
        let due = due_ms(msa, tracked.get(&msa.name), config.token_refresh_fraction);
        let due = if due > now {
            due
        } else {
            let id = request_id::fresh();
            let span = tracing::info_span!(
                "msa",
                cluster = %config.cluster,
                msa = %msa.name,
                generation = msa.generation,
                request_id = %id,
            );
            let one = reconcile_one(client, config, kube, reconciler, msa);
            request_id::scope(id, one).instrument(span).await
        };
        tracked.insert(
            msa.name.clone(),
            Tracked {
                generation: msa.generation,
                due_ms: due,
            },
        );
        next = next.min(due);
    }
    remove_undesired(reconciler, &desired, tracked).await;
    Duration::from_millis((next - now_ms()).max(0) as u64)
}

/// Makes one MSA real and reports its token (or why not); returns when it is due again.
async fn reconcile_one(
    client: &async_nats::Client,
    config: &Config,
    kube: &Kube,
    reconciler: &Reconciler,
    msa: &ManagedServiceAccount,
) -> i64 {
    let (report, due) = match reconciler.ensure(msa).await {
        Ok(issued) => {
            let delay = refresh_delay(
                now_ms(),
                issued.issued_ms,
                issued.expiration_ms,
                config.token_refresh_fraction,
            );
            let report = TokenReport {
                name: msa.name.clone(),
                generation: msa.generation,
                token: issued.token,
                ca_pem: kube.ca_pem.clone(),
                server: kube.server.clone(),
                expiration_ms: issued.expiration_ms,
                ..Default::default()
            };
            (report, after(now_ms(), delay))
        }
        Err(failure) => {
            tracing::warn!(reason = failure.reason, message = %failure.message, "managed service account failed");
            let report = TokenReport {
                name: msa.name.clone(),
                generation: msa.generation,
                error_reason: failure.reason.into(),
                error_message: failure.message,
                ..Default::default()
            };
            (report, after(now_ms(), RETRY))
        }
    };
    match send_report(client, config, &report).await {
        Ok(()) => due,
        Err(e) => {
            tracing::warn!(error = %e, "token report not delivered; retrying");
            after(now_ms(), RETRY)
        }
    }
}

/// When `msa` needs work: now if it is new or changed; else at its refresh point, taken from
/// what this process issued or, after a restart, from the status the hub keeps.
fn due_ms(msa: &ManagedServiceAccount, tracked: Option<&Tracked>, fraction: f64) -> i64 {
    if let Some(t) = tracked.filter(|t| t.generation == msa.generation) {
        return t.due_ms;
    }
    let status = msa.status.clone().unwrap_or_default();
    let reported = status.observed_generation == msa.generation && status.last_refresh_ms > 0;
    if tracked.is_none() && reported && status.expiration_ms > now_ms() {
        let delay = refresh_delay(
            status.last_refresh_ms,
            status.last_refresh_ms,
            status.expiration_ms,
            fraction,
        );
        return after(status.last_refresh_ms, delay);
    }
    0
}

async fn remove_undesired(
    reconciler: &Reconciler,
    desired: &DesiredState,
    tracked: &mut HashMap<String, Tracked>,
) {
    let wanted: Vec<&str> = desired
        .service_accounts
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    let existing = match reconciler.existing().await {
        Ok(names) => names,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list managed service accounts");
            return;
        }
    };
    for name in existing.iter().filter(|n| !wanted.contains(&n.as_str())) {
        match reconciler.remove(name).await {
            Ok(()) => tracing::info!(msa = %name, "managed service account removed"),
            Err(e) => {
                tracing::warn!(msa = %name, error = %e, "cannot remove managed service account")
            }
        }
    }
    tracked.retain(|name, _| wanted.contains(&name.as_str()));
}

async fn send_report(
    client: &async_nats::Client,
    config: &Config,
    report: &TokenReport,
) -> Result<(), RpcError> {
    let subject = config.subjects.hub(&config.cluster, HubTopic::Token);
    let _: TokenReportAck = rpc::call(client, subject, report).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    #[test]
    fn refresh_at_eighty_percent_of_the_actual_lifetime() {
        // Asked for 24 h, the apiserver gave 1 h: refresh after 48 min, not after 19 h.
        assert_eq!(refresh_delay(0, 0, HOUR, 0.8), Duration::from_secs(48 * 60));
        assert_eq!(
            refresh_delay(30 * 60_000, 0, HOUR, 0.8),
            Duration::from_secs(18 * 60)
        );
        // Past the point: refresh soon, but never in a tight loop.
        assert_eq!(refresh_delay(59 * 60_000, 0, HOUR, 0.8), MIN_REFRESH);
    }

    #[test]
    fn extreme_times_saturate_instead_of_overflowing() {
        assert!(refresh_delay(0, i64::MIN + 1, i64::MAX, 0.8) >= MIN_REFRESH);
        assert_eq!(
            refresh_delay(i64::MIN, 0, HOUR, 0.8),
            Duration::from_millis(i64::MAX as u64)
        );
        assert_eq!(after(i64::MAX - 1, Duration::from_secs(10)), i64::MAX);
    }

    #[tokio::test(start_paused = true)]
    async fn a_timer_on_the_refresh_point_fires_at_eighty_percent() {
        let start = tokio::time::Instant::now();
        let delay = refresh_delay(0, 0, 10 * HOUR, 0.8);
        tokio::time::sleep(delay).await;
        assert_eq!(start.elapsed(), Duration::from_secs(8 * 3600));
    }

    #[test]
    fn new_changed_and_restarted_msas_are_due_correctly() {
        let mut msa = ManagedServiceAccount {
            name: "dep".into(),
            generation: 1,
            ..Default::default()
        };
        assert_eq!(due_ms(&msa, None, 0.8), 0, "never reported: now");
        let tracked = Tracked {
            generation: 1,
            due_ms: 42,
        };
        assert_eq!(due_ms(&msa, Some(&tracked), 0.8), 42);
        msa.generation = 2;
        assert_eq!(due_ms(&msa, Some(&tracked), 0.8), 0, "changed: now");
        let now = now_ms();
        msa.status = Some(fleetbus_schema::v1::MsaStatus {
            observed_generation: 2,
            last_refresh_ms: now,
            expiration_ms: now + 10 * HOUR,
            ..Default::default()
        });
        assert_eq!(
            due_ms(&msa, None, 0.8),
            now + 8 * HOUR,
            "after a restart: from the hub's status"
        );
    }
}
