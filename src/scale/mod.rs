//! Scale-out: several relay instances share one relay's source partitions.
//!
//! The partitions are split into `scale.units` units ([`Unit`]): a
//! partition's unit is a pure function of its name. Kafka's consumer-group
//! protocol decides which instance owns which unit ([`membership`]); no
//! other coordinator is involved. For each unit it owns, an instance runs
//! one pipeline (`pipeline::run_unit`): a source consumer of the unit's
//! partitions, a WAL of its own under `wal.dir/unit-<n>`, and a shipper
//! whose transactional.id is the unit's.
//!
//! Invariants:
//! - A unit's pipeline starts only once the group gave the unit to this
//!   instance, and its shipper's `init_transactions` fences any earlier
//!   owner before it reads the checkpoints it resumes from. So whatever an
//!   earlier owner still holds in its WAL is never committed after the
//!   hand-over, and nothing it committed is shipped again.
//! - A revoked unit's pipeline is stopped before the revocation is
//!   answered (within `membership::REVOKE_WAIT`): its open transaction
//!   finishes, so the next owner seldom has to fence it.
//! - A fenced unit is not rebuilt (`ShipperError::Fenced`): it stops, and
//!   runs again only if the group still gives it to this instance after a
//!   session timeout, which is when a lost membership has been noticed.
//! - Any other failure of a unit stops the whole instance, as it would
//!   stop a relay that is not scaled out; its units go to the others.
//! - The WAL of a unit that moved away stays on disk. If the unit comes
//!   back, its pipeline starts at max(checkpoint, WAL progress) and skips
//!   what the checkpoints cover, as after any restart.
//!
//! Called by the CLI's `run` when the configuration has `[scale]`.

pub mod membership;
mod unit;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::config::{Config, ScaleConfig};
use crate::kafka::{self, Admin};
use crate::ops::admin::{self, AdminError};
use crate::ops::control::Phase;
use crate::ops::{Shared, Wals};
use crate::pipeline::{self, PipelineError, RunSummary, UnitHandles};
use crate::shipper::ShipperError;
use crate::topics::{Topics, TopicsError};
use membership::{Event, Membership, MembershipError};
pub use unit::{unit_of, Unit};

#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    #[error("cannot reach the source cluster to set up the units topic {topic}: {source}")]
    UnitsTopic {
        topic: String,
        #[source]
        source: Box<kafka::AdminRequestError>,
    },
    #[error("the units topic {topic} has {found} partitions, but scale.units = {units}: every instance of a relay must name the same number of units, and it cannot change while any instance runs. Stop every instance first; then start them all with scale.units = {found}, or delete {topic} and every unit-* WAL directory and start them all with the new count (docs/operations.md, Scaling out)")]
    UnitsMismatch {
        topic: String,
        found: i32,
        units: u32,
    },
    #[error("this relay has been scaled out (its units topic {topic} exists on the source), but this configuration has no [scale]: instances running with [scale] would not be fenced by this process and both would copy the same records. Run it with the fleet's [scale] section, or stop every instance, delete {topic} and every unit-* WAL directory, and start again without it")]
    ScaledOut { topic: String },
    #[error("cannot start the consumer group offset sync thread: {0}")]
    GroupSync(#[source] std::io::Error),
    #[error("no instance name: pass --instance or set KAFKA_RELAY_INSTANCE (or HOSTNAME)")]
    NoInstance,
    #[error(transparent)]
    Membership(#[from] MembershipError),
    #[error("the units group ended: {0}")]
    Group(String),
    #[error("{unit} failed: {source}")]
    Unit {
        unit: Unit,
        #[source]
        source: Box<PipelineError>,
    },
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error(transparent)]
    Topics(#[from] TopicsError),
    #[error("a relay task panicked: {0}")]
    Panicked(String),
}

/// The instance name: `--instance`, else `KAFKA_RELAY_INSTANCE`, else the
/// host name, as Kubernetes sets it to the pod's name.
pub fn instance_name(flag: Option<String>) -> Result<String, ScaleError> {
    flag.or_else(|| std::env::var("KAFKA_RELAY_INSTANCE").ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .filter(|n| !n.trim().is_empty())
        .ok_or(ScaleError::NoInstance)
}

/// A unit's pipeline, running.
struct Running {
    stop: oneshot::Sender<()>,
}

/// Runs this instance's share of the relay until `shutdown` or a failure.
pub async fn run(
    config: Config,
    scale: ScaleConfig,
    instance: String,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ScaleError> {
    let shared = Shared::new(!config.enabled);
    let control = shared.control.clone();
    let result = supervise(config, scale, instance, shared, shutdown).await;
    if let Err(e) = &result {
        control.set_phase(Phase::Halted(e.to_string()));
    }
    result
}

async fn supervise(
    config: Config,
    scale: ScaleConfig,
    instance: String,
    shared: Shared,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ScaleError> {
    {
        let (config, scale) = (config.clone(), scale.clone());
        blocking(move || ensure_units_topic(&config, &scale)).await??;
    }
    let wals = Wals::new(&config.wal.dir);
    let _admin = match config.admin.listen {
        Some(addr) => Some(
            admin::start(
                addr,
                config.admin.tls.as_ref(),
                admin::Handles {
                    relay: format!("{} ({instance})", config.relay_id()),
                    access: admin::Access::of(&config.admin),
                    wals: wals.clone(),
                    control: shared.control.clone(),
                    metrics: shared.metrics.clone(),
                },
            )
            .await?,
        ),
        None => None,
    };
    let topics = {
        let config = config.clone();
        Arc::new(blocking(move || Topics::new(&config)).await??)
    };
    // Kept until the run returns: dropping it stops the periodic sync.
    let _topic_sync = topics
        .clone()
        .sync_every(config.target.sync_topics_interval_secs)?;
    // Every instance translates the groups: the commits never move a
    // target offset backwards, so instances racing agree.
    let _group_sync = crate::offsets::groups::sync_every(&config).map_err(ScaleError::GroupSync)?;
    let handles = UnitHandles { wals, topics };

    let (events_tx, mut events) = mpsc::unbounded_channel();
    let membership = {
        let (config, scale, instance) = (config.clone(), scale.clone(), instance.clone());
        blocking(move || Membership::join(&config, &scale, &instance, events_tx)).await??
    };
    shared.control.set_phase(Phase::Running);
    tracing::info!(
        relay = %config.relay_id(),
        %instance,
        units = scale.units,
        group = %membership::group_id(&config),
        "joined the units group; waiting for units"
    );

    let mut supervisor = Supervisor {
        config,
        shared,
        handles,
        owned: BTreeSet::new(),
        running: BTreeMap::new(),
        tasks: JoinSet::new(),
        fenced: BTreeMap::new(),
        session_timeout: Duration::from_millis(scale.session_timeout_ms),
        count: scale.units,
        units_topic: scale.units_topic.clone(),
        scale: scale.clone(),
    };
    let result = supervisor.run(&mut events, shutdown).await;
    supervisor.stop_all().await;
    // Answers the revocation the close runs: every unit is stopped already.
    let drain = tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let Event::Revoked { done, .. } = event {
                let _ = done.send(());
            }
        }
    });
    blocking(move || membership.leave()).await?;
    drain.abort();
    result
}

struct Supervisor {
    config: Config,
    shared: Shared,
    handles: UnitHandles,
    /// What the group gave this instance.
    owned: BTreeSet<u32>,
    running: BTreeMap<u32, Running>,
    tasks: JoinSet<(u32, Result<RunSummary, PipelineError>)>,
    /// Units fenced by another instance, and when to look again.
    fenced: BTreeMap<u32, Instant>,
    session_timeout: Duration,
    count: u32,
    scale: ScaleConfig,
    units_topic: String,
}

impl Supervisor {
    async fn run(
        &mut self,
        events: &mut mpsc::UnboundedReceiver<Event>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), ScaleError> {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                () = &mut shutdown => {
                    tracing::info!("shutdown requested: stopping the units (each finishes its open transaction)");
                    return Ok(());
                }
                event = events.recv() => match event {
                    Some(Event::Assigned(units)) => {
                        tracing::info!(?units, "units assigned to this instance");
                        // A units topic grown under a running fleet: its
                        // instances would split the partitions two ways.
                        if let Some(u) = units.iter().find(|u| **u >= self.count) {
                            return Err(ScaleError::UnitsMismatch {
                                topic: self.units_topic.clone(),
                                found: i32::try_from(*u + 1).unwrap_or(i32::MAX),
                                units: self.count,
                            });
                        }
                        self.check_units_topic().await?;
                        for u in units {
                            self.owned.insert(u);
                            self.fenced.remove(&u);
                            self.start(u);
                        }
                    }
                    Some(Event::Revoked { units, lost, done }) => {
                        tracing::info!(?units, lost, "units revoked from this instance; stopping them");
                        if let Err(e) = self.check_units_topic().await {
                            let _ = done.send(());
                            return Err(e);
                        }
                        for u in &units {
                            self.owned.remove(u);
                            self.fenced.remove(u);
                        }
                        self.stop(&units).await?;
                        let _ = done.send(());
                    }
                    Some(Event::Failed(why)) => return Err(ScaleError::Group(why)),
                    None => return Err(ScaleError::Group("the membership thread ended".to_string())),
                },
                Some(joined) = self.tasks.join_next() => self.finished(joined)?,
                _ = tick.tick() => self.restart_fenced(),
            }
        }
    }

    /// Halts when the units topic's partition count is no longer
    /// `scale.units`: every rebalance looks, so an instance of another
    /// count joining the group stops this one before it ships more.
    async fn check_units_topic(&self) -> Result<(), ScaleError> {
        let (config, scale) = (self.config.clone(), self.scale.clone());
        match blocking(move || units_topic_partitions(&config, &scale)).await? {
            Ok(Some(found)) if found != i32::try_from(self.count).unwrap_or(i32::MAX) => {
                Err(ScaleError::UnitsMismatch {
                    topic: self.units_topic.clone(),
                    found,
                    units: self.count,
                })
            }
            Ok(_) => Ok(()),
            // Unreachable for now: the group goes on, and so do the units.
            Err(e) => {
                tracing::warn!(error = %e, "cannot check the units topic's partition count");
                Ok(())
            }
        }
    }

    fn start(&mut self, index: u32) {
        if self.running.contains_key(&index) {
            return;
        }
        let unit = Unit {
            index,
            count: self.count,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let run = pipeline::run_unit(
            unit.config(&self.config),
            self.shared.clone(),
            self.handles.clone(),
            async move {
                let _ = stopped.await;
            },
        );
        // Spawned on its own, so that a panic comes back as this unit's error.
        let task = tokio::spawn(run);
        self.tasks.spawn(async move {
            let result = task
                .await
                .unwrap_or_else(|e| Err(PipelineError::Panicked(e.to_string())));
            (index, result)
        });
        self.running.insert(index, Running { stop });
        self.shared
            .metrics
            .units_owned
            .set(self.running.len() as i64);
        tracing::info!(%unit, "unit pipeline started");
    }

    /// Stops the pipelines of `units` and waits for them.
    async fn stop(&mut self, units: &[u32]) -> Result<(), ScaleError> {
        let mut waiting: BTreeSet<u32> = BTreeSet::new();
        for u in units {
            if let Some(r) = self.running.remove(u) {
                let _ = r.stop.send(());
                waiting.insert(*u);
            }
        }
        self.shared
            .metrics
            .units_owned
            .set(self.running.len() as i64);
        let mut failure = None;
        while !waiting.is_empty() {
            let Some(joined) = self.tasks.join_next().await else {
                break;
            };
            if let Ok((u, _)) = &joined {
                waiting.remove(u);
            }
            if let Err(e) = self.finished(joined) {
                failure.get_or_insert(e);
            }
        }
        failure.map_or(Ok(()), Err)
    }

    async fn stop_all(&mut self) {
        let units: Vec<u32> = self.running.keys().copied().collect();
        if let Err(e) = self.stop(&units).await {
            tracing::error!(error = %e, "a unit failed while stopping");
        }
        self.tasks.shutdown().await;
    }

    /// A unit's pipeline ended: asked to, fenced, or failed.
    fn finished(
        &mut self,
        joined: Result<(u32, Result<RunSummary, PipelineError>), tokio::task::JoinError>,
    ) -> Result<(), ScaleError> {
        let (index, result) = joined.map_err(|e| ScaleError::Panicked(e.to_string()))?;
        let unit = Unit {
            index,
            count: self.count,
        };
        // Asked to stop: no longer in `running`.
        let asked = self.running.remove(&index).is_none();
        self.shared
            .metrics
            .units_owned
            .set(self.running.len() as i64);
        match result {
            Ok(summary) => {
                tracing::info!(
                    %unit,
                    shipped = summary.shipper.records,
                    transactions = summary.shipper.transactions,
                    "unit pipeline stopped"
                );
                if !asked && self.owned.contains(&index) {
                    return Err(ScaleError::Unit {
                        unit,
                        source: Box::new(PipelineError::Panicked(
                            "the pipeline ended by itself".to_string(),
                        )),
                    });
                }
                Ok(())
            }
            Err(PipelineError::Shipper(ShipperError::Fenced { .. })) => {
                tracing::warn!(%unit, "unit fenced by another instance: it owns the unit now; stopped here, and looked at again after a session timeout");
                self.shared.metrics.units_fenced.inc();
                self.fenced
                    .insert(index, Instant::now() + self.session_timeout);
                Ok(())
            }
            Err(source) => Err(ScaleError::Unit {
                unit,
                source: Box::new(source),
            }),
        }
    }

    /// Fenced units the group still gives this instance after a session
    /// timeout run again: the group, not the fence, has the last word.
    fn restart_fenced(&mut self) {
        let now = Instant::now();
        let due: Vec<u32> = self
            .fenced
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(u, _)| *u)
            .collect();
        for u in due {
            self.fenced.remove(&u);
            if self.owned.contains(&u) {
                tracing::warn!(unit = u, "the group still gives this instance a unit it was fenced from; starting it again");
                self.start(u);
            }
        }
    }
}

/// For a relay without `[scale]`: refuses to run while the relay's units
/// topic exists, since instances of it may be running under other
/// transactional.ids, which would not fence this process (nor it them).
/// A source that cannot be asked is left to the run to report.
pub fn refuse_if_scaled_out(config: &Config) -> Result<(), ScaleError> {
    let topic = format!("__kafka_relay_units.{}", config.relay_id());
    // The whole topic list: a metadata request naming the topic could
    // have a broker create it.
    let Ok(admin) = Admin::with_timeout(&kafka::source_client(config), Duration::from_secs(10))
    else {
        return Ok(());
    };
    match admin.topic_partitions() {
        Ok(topics) if topics.contains_key(&topic) => Err(ScaleError::ScaledOut { topic }),
        _ => Ok(()),
    }
}

/// The units topic's partition count on the source; `None` if it is not there.
fn units_topic_partitions(config: &Config, scale: &ScaleConfig) -> Result<Option<i32>, ScaleError> {
    let failed = |source| ScaleError::UnitsTopic {
        topic: scale.units_topic.clone(),
        source: Box::new(source),
    };
    let admin = Admin::new(&kafka::source_client(config)).map_err(failed)?;
    Ok(admin
        .topic_partitions()
        .map_err(failed)?
        .get(&scale.units_topic)
        .copied())
}

/// Creates the units topic if it is missing, and checks that it has
/// `scale.units` partitions.
fn ensure_units_topic(config: &Config, scale: &ScaleConfig) -> Result<(), ScaleError> {
    let topic = &scale.units_topic;
    let units = i32::try_from(scale.units).unwrap_or(i32::MAX);
    let mut found = units_topic_partitions(config, scale)?;
    if found.is_none() {
        let admin =
            Admin::new(&kafka::source_client(config)).map_err(|source| ScaleError::UnitsTopic {
                topic: topic.clone(),
                source: Box::new(source),
            })?;
        match admin.create_topic(topic, units, &BTreeMap::new()) {
            Ok(()) => tracing::info!(topic, units, "created the units topic on the source"),
            // Another instance created it first, maybe with another count.
            Err(e) if e.code() == Some(rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists) => {}
            Err(e) => {
                return Err(ScaleError::UnitsTopic {
                    topic: topic.clone(),
                    source: Box::new(e),
                })
            }
        }
        // Made, but maybe not in the metadata yet: the count it has, not the one asked for.
        for _ in 0..20 {
            found = units_topic_partitions(config, scale)?;
            if found.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    match found {
        Some(n) if n == units => Ok(()),
        Some(n) => Err(ScaleError::UnitsMismatch {
            topic: topic.clone(),
            found: n,
            units: scale.units,
        }),
        None => Err(ScaleError::Group(format!(
            "the units topic {topic} does not show in the source's metadata after it was created"
        ))),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ScaleError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ScaleError::Panicked(e.to_string()))
}
