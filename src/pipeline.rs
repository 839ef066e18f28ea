//! The running relay: start-up recovery, then the source and shipper threads
//! until shutdown.
//!
//! Start-up order, and why:
//! 1. Open the WAL (a scan validates every entry). Then, for a side that
//!    uses TLS or SASL, connect once (`kafka::probe_security`): a failed
//!    handshake or authentication stops the run, naming the side and the
//!    cause, where every later step would retry it as an outage.
//! 2. Connect the shipper: `init_transactions` fences any earlier incarnation
//!    and aborts its open transaction; only then are the target's committed
//!    checkpoints read, so they are final.
//! 3. Prepare the target topics (`topics`): create, grow and configure them
//!    like their source topics, or stop if one cannot take the records;
//!    before the source starts, so nothing is shipped to a topic that is
//!    not ready. Then they are synced on a thread of their own until the
//!    run ends.
//! 4. If the WAL holds a corrupted entry, quarantine it and drop the WAL's
//!    other entries: the source is re-read from the checkpoints instead, so
//!    nothing the corrupted entry carried is lost, and nothing is doubled
//!    because the shipper skips what the checkpoints cover.
//! 5. Position the source at max(checkpoint, WAL progress), falling back to
//!    `source.start` only where neither knows the partition. A partition
//!    known from either but gone from the source is a gap (`source.on_gap`);
//!    one whose position the source deleted is found once the consumer
//!    reports it (`source::gaps`).
//!
//! The admin endpoint (if `[admin] listen` is set) starts right after step
//! 1, so a relay waiting for its target can already be watched. With
//! `enabled = false` every step runs, then the relay holds paused until an
//! operator resumes it (`control`).
//!
//! Called by the CLI's `run` and `demo`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::config::Config;
use crate::gap::Gaps;
use crate::kafka::{self, SecurityError, Side};
use crate::ops::admin::{self, AdminError};
use crate::ops::control::Phase;
use crate::ops::{Shared, Wals};
use crate::shipper::{Shipper, ShipperError, ShipperStats, Wakeup};
use crate::source::gaps::GapPolicy;
use crate::source::{self, Source, SourceError, SourceStats};
use crate::topics::{Topics, TopicsError};
use crate::wal::{Wal, WalEntry, WalError};

/// How long the start-up TLS/SASL check waits for each side to answer; a
/// side still out of reach after it is left to the usual outage handling.
const SECURITY_PROBE: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Security(#[from] SecurityError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Shipper(#[from] ShipperError),
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error(transparent)]
    Topics(#[from] TopicsError),
    #[error("a relay thread panicked: {0}")]
    Panicked(String),
    #[error("cannot start the consumer group offset sync thread: {0}")]
    GroupSync(#[source] std::io::Error),
}

/// What a run did, reported when it ends.
#[derive(Debug, Default, Clone, Copy)]
pub struct RunSummary {
    pub source: SourceStats,
    pub shipper: ShipperStats,
    pub quarantined: usize,
}

/// Runs the relay until `shutdown` resolves or a thread fails.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<RunSummary, PipelineError> {
    let shared = Shared::new(!config.enabled);
    run_with(config, shared, shutdown).await
}

/// [`run`] with the run's handles given, so a caller can watch them.
/// A run that ends in an error leaves the phase `Halted` with the reason;
/// a stage that fails sets it at once, while the other stage winds down
/// (the shipper may finish a transaction first), so `/healthz`, `/readyz`
/// and `/status` say so meanwhile. (A start-up step that fails ends the
/// run, and the endpoint with it, at once.)
pub async fn run_with(
    config: Config,
    shared: Shared,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<RunSummary, PipelineError> {
    let control = shared.control.clone();
    let result = run_stages(config, shared, None, shutdown).await;
    if let Err(e) = &result {
        control.set_phase(Phase::Halted(e.to_string()));
    }
    result
}

/// What the pipelines of one instance's units share (`scale`): the admin
/// endpoint's view of their WALs, and the target topics, prepared and
/// synced once for all of them.
#[derive(Clone)]
pub struct UnitHandles {
    pub wals: Wals,
    pub topics: Arc<Topics>,
}

/// The pipeline of one unit of a scaled-out relay: [`run_with`] on the
/// unit's configuration (`scale::Unit::config`), without an admin endpoint
/// or topic sync of its own. Its failures are the caller's to report.
pub async fn run_unit(
    config: Config,
    shared: Shared,
    handles: UnitHandles,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<RunSummary, PipelineError> {
    run_stages(config, shared, Some(handles), shutdown).await
}

async fn run_stages(
    config: Config,
    shared: Shared,
    unit: Option<UnitHandles>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<RunSummary, PipelineError> {
    let stop = Arc::new(AtomicBool::new(false));
    let options = config.wal_options();
    let key = config.wal_key();
    let wal_dir = config.wal.dir.clone();
    let wal = blocking(move || Wal::open_with_key(&wal_dir, options, key)).await??;
    tracing::info!(
        dir = %config.wal.dir.display(),
        batches = wal.len(),
        bytes = wal.bytes(),
        "WAL opened"
    );
    // Kept until the run returns: dropping either stops the endpoint or
    // takes this WAL out of the instance's.
    let (_admin, _registered) = match &unit {
        Some(handles) => (None, Some(handles.wals.register(wal.clone()))),
        None => {
            let wals = Wals::new(&config.wal.dir);
            let registered = wals.register(wal.clone());
            let admin = match config.admin.listen {
                Some(addr) => Some(
                    admin::start(
                        addr,
                        config.admin.tls.as_ref(),
                        admin::Handles {
                            relay: config.relay_id(),
                            access: admin::Access::of(&config.admin),
                            wals,
                            control: shared.control.clone(),
                            metrics: shared.metrics.clone(),
                        },
                    )
                    .await?,
                ),
                None => None,
            };
            (admin, Some(registered))
        }
    };
    let control = shared.control.clone();

    let config = Arc::new(config);
    tokio::pin!(shutdown);
    // A wrong TLS or SASL setting would look like an outage to every step
    // below (librdkafka retries the connection): found first, it stops the run.
    control.set_phase(Phase::Starting("checking the TLS and SASL settings"));
    {
        let config = config.clone();
        blocking(move || -> Result<(), SecurityError> {
            kafka::probe_security(&kafka::source_client(&config), Side::Source, SECURITY_PROBE)?;
            kafka::probe_security(&kafka::target_client(&config), Side::Target, SECURITY_PROBE)
        })
        .await??;
    }
    control.set_phase(Phase::Starting(
        "connecting to the target and reading its checkpoints",
    ));
    let shipper = {
        let (config, flag, wal, shared) =
            (config.clone(), stop.clone(), wal.clone(), shared.clone());
        let connect = blocking(move || Shipper::connect(&config, wal, shared, &flag));
        tokio::pin!(connect);
        tokio::select! {
            s = &mut connect => s??,
            () = &mut shutdown => {
                stop.store(true, Ordering::Relaxed);
                // Wait for connect to notice the stop; a Stopped error is the clean outcome.
                return match connect.await? {
                    Ok(_) | Err(ShipperError::Stopped(_)) => Ok(RunSummary::default()),
                    Err(e) => Err(e.into()),
                };
            }
        }
    };
    // Connected: whatever failed before is not an outage any more.
    control.target_ok();
    control.set_phase(Phase::Starting("preparing the target topics"));
    // The periodic syncs run while these are held (an instance of a
    // scaled-out relay runs its own, once for all its units).
    let (topics, _syncs) = match &unit {
        Some(handles) => {
            let topics = handles.topics.clone();
            blocking(move || topics.prepare()).await??;
            (handles.topics.clone(), (None, None))
        }
        None => {
            let for_topics = config.clone();
            let topics = blocking(move || -> Result<Topics, TopicsError> {
                let topics = Topics::new(&for_topics)?;
                topics.prepare()?;
                Ok(topics)
            })
            .await??;
            let topics = Arc::new(topics);
            // Kept until the run returns: dropping it stops the periodic sync.
            let sync = topics
                .clone()
                .sync_every(config.target.sync_topics_interval_secs)?;
            let groups =
                crate::offsets::groups::sync_every(&config).map_err(PipelineError::GroupSync)?;
            (topics, (sync, groups))
        }
    };
    control.set_phase(Phase::Starting("checking the WAL"));
    let quarantined = {
        let wal = wal.clone();
        blocking(move || quarantine_if_corrupted(&wal)).await??
    };

    control.set_phase(Phase::Starting("positioning the source"));
    let checkpoints = shipper.delivered().clone();
    let copied = shipper.copied().clone();
    let source = {
        let (config, wal, shared) = (config.clone(), wal.clone(), shared.clone());
        blocking(move || -> Result<Source, SourceError> {
            // Gaps of earlier runs (the shipper merged the target's in) count from the start.
            let gap_store = Gaps::open(&wal)?;
            for (gap, _) in gap_store.all()? {
                shared.metrics.source_gap(&gap);
            }
            let consumer = source::relay_consumer(&config, shared.metrics.clone())?;
            let wal_progress = wal.partition_progress();
            let mut known = source::known_progress(&checkpoints, &wal_progress);
            // The checkpoint topic has every unit's partitions.
            known.retain(|tp, _| config.owns(tp));
            // A topic is copied if any unit copied it: one deleted since is
            // a gap for the units that had its partitions, no mistake of
            // configuration for the others.
            let mut copied_by_any = known.clone();
            for tp in copied {
                copied_by_any.entry(tp).or_insert(0);
            }
            let partitions = source::partitions_known(&consumer, &config, &copied_by_any)?;
            let gap_policy = GapPolicy {
                on_gap: config.source.on_gap,
                store: gap_store,
                metrics: shared.metrics.clone(),
            };
            for gap in source::gaps::gone_partitions(&known, &partitions, |tp| {
                config.source.topics.selects(&tp.topic)
            }) {
                gap_policy.apply(gap)?;
            }
            let positions = source::start_positions(
                &consumer,
                &partitions,
                &checkpoints,
                &wal_progress,
                &config.source.start,
            )?;
            // Partitions found later are read once their target topic is ready.
            let prepare_target: source::PrepareTarget =
                Box::new(move || topics.prepare().map_err(|e| e.to_string()));
            Source::new(
                consumer,
                source::Start {
                    positions: &positions,
                    known: &known,
                },
                wal,
                &config,
                gap_policy,
                prepare_target,
                shared,
            )
        })
        .await??
    };

    let wakeup = Arc::new(Wakeup::default());
    let source_task = {
        let (stop, wakeup) = (stop.clone(), wakeup.clone());
        tokio::task::spawn_blocking(move || source.run(&stop, &|| wakeup.notify()))
    };
    let shipper_task = {
        let (stop, wakeup) = (stop.clone(), wakeup.clone());
        tokio::task::spawn_blocking(move || shipper.run(&stop, &wakeup))
    };
    control.set_phase(Phase::Running);
    tracing::info!(relay = %config.relay_id(), "relay running");
    if !config.enabled {
        tracing::warn!(
            admin = ?config.admin.listen,
            "enabled = false: connected and recovered, holding paused; nothing moves until `kafka-relay resume` (needs [admin] listen) or a restart with enabled = true"
        );
    }

    tokio::pin!(source_task, shipper_task);
    let mut source_result = None;
    let mut shipper_result = None;
    tokio::select! {
        () = &mut shutdown => tracing::info!("shutdown requested: finishing the open transaction"),
        r = &mut source_task => source_result = Some(r),
        r = &mut shipper_task => shipper_result = Some(r),
    }
    let failed = match (&source_result, &shipper_result) {
        (Some(Ok(Err(e))), _) => Some(e.to_string()),
        // A fenced unit (`scale`) is not a failure of the instance.
        (_, Some(Ok(Err(e))))
            if !matches!(e, ShipperError::Stopped(_) | ShipperError::Fenced { .. }) =>
        {
            Some(e.to_string())
        }
        (Some(Err(e)), _) | (_, Some(Err(e))) => Some(format!("a relay thread panicked: {e}")),
        _ => None,
    };
    if let Some(why) = failed {
        tracing::error!(error = %why, "halting: a relay stage failed; the other one finishes its work first");
        control.set_phase(Phase::Halted(why));
    }
    stop.store(true, Ordering::Relaxed);
    wakeup.notify();
    let source_result = match source_result {
        Some(r) => r,
        None => source_task.await,
    };
    let shipper_result = match shipper_result {
        Some(r) => r,
        None => shipper_task.await,
    };
    let source = source_result.map_err(|e| PipelineError::Panicked(e.to_string()))??;
    let shipper = match shipper_result.map_err(|e| PipelineError::Panicked(e.to_string()))? {
        Ok(stats) => stats,
        // Stopping mid-transaction is a clean end: the batch stays in the WAL.
        Err(ShipperError::Stopped(what)) => {
            tracing::info!("stopped while {what}");
            ShipperStats::default()
        }
        Err(e) => return Err(e.into()),
    };
    let summary = RunSummary {
        source,
        shipper,
        quarantined,
    };
    tracing::info!(
        consumed = summary.source.records,
        shipped = summary.shipper.records,
        transactions = summary.shipper.transactions,
        aborted = summary.shipper.aborted,
        skipped_delivered = summary.shipper.skipped_delivered,
        dead_lettered = summary.shipper.dead_lettered,
        wal_batches_left = wal.len(),
        "relay stopped"
    );
    Ok(summary)
}

/// Step 4 of start-up: returns how many entries were quarantined.
fn quarantine_if_corrupted(wal: &Wal) -> Result<usize, WalError> {
    let mut corrupted = Vec::new();
    let mut valid = Vec::new();
    let mut from = 0;
    loop {
        let entries = wal.read_from(from, 1024)?;
        let Some(last) = entries.last() else { break };
        from = last.position() + 1;
        for entry in entries {
            match entry {
                WalEntry::Valid { position, .. } => valid.push(position),
                WalEntry::Corrupted {
                    position, reason, ..
                } => {
                    tracing::error!(position, %reason, "corrupted WAL entry: quarantined, never shipped");
                    corrupted.push(position);
                }
            }
        }
    }
    if corrupted.is_empty() {
        return Ok(0);
    }
    for position in &corrupted {
        wal.quarantine(*position)?;
    }
    // Their partitions are unknown, so every partition is re-read from the
    // target's checkpoints; the valid entries would only be read again.
    wal.ack(&valid)?;
    tracing::warn!(
        quarantined = corrupted.len(),
        dropped = valid.len(),
        "WAL rebuilt from the source, starting at the target's committed checkpoints"
    );
    Ok(corrupted.len())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, PipelineError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PipelineError::Panicked(e.to_string()))
}
