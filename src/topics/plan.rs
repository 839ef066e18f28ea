//! The pure half of target topic management: from the source topics and
//! the target topics as they are, what to do ([`Action`]s), or why the
//! relay cannot run ([`Mismatch`]). No I/O; `topics` gathers the inputs and
//! applies the result.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use regex::Regex;

use crate::config::Partitioning;

/// A topic as its cluster has it: partition count, and the configs set on
/// the topic itself (not what it inherits from the brokers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicState {
    pub partitions: i32,
    pub configs: BTreeMap<String, String>,
}

/// A topic config key pattern as the filter uses it: the whole key must
/// match (as MirrorMaker 2's filter, with Java's `matches`). The pattern
/// must compile on its own too, so that the anchoring cannot turn a broken
/// pattern such as `a)|(b` into a valid one.
pub fn key_pattern(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(pattern)?;
    Regex::new(&format!("^(?:{pattern})$"))
}

/// Which topic config keys the relay keeps as the source has them (it
/// *manages* them): those `include` takes (all, without it) and `exclude`
/// does not. The target's own values of the other keys are kept.
#[derive(Debug, Clone)]
pub struct ConfigFilter {
    include: Option<Vec<Regex>>,
    exclude: Vec<Regex>,
}

impl ConfigFilter {
    pub fn new(include: Option<&[String]>, exclude: &[String]) -> Result<Self, regex::Error> {
        let compile = |patterns: &[String]| -> Result<Vec<Regex>, regex::Error> {
            patterns.iter().map(|p| key_pattern(p)).collect()
        };
        Ok(ConfigFilter {
            include: include.map(compile).transpose()?,
            exclude: compile(exclude)?,
        })
    }

    pub fn manages(&self, key: &str) -> bool {
        self.include
            .as_ref()
            .is_none_or(|include| include.iter().any(|r| r.is_match(key)))
            && !self.exclude.iter().any(|r| r.is_match(key))
    }
}

/// What the relay may do to target topics and what it needs of them.
#[derive(Debug, Clone)]
pub struct Rules {
    /// `target.create_topics`: create, add partitions and set configs; if
    /// false, nothing is changed and only the partition count is checked.
    pub create: bool,
    pub partitioning: Partitioning,
    pub filter: ConfigFilter,
}

/// One change to one target topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Create {
        topic: String,
        partitions: i32,
        configs: BTreeMap<String, String>,
    },
    /// Grow the topic from `from` to `to` partitions.
    AddPartitions { topic: String, from: i32, to: i32 },
    /// Set the topic's dynamic configs to exactly `configs`; `changes` is
    /// how that differs from what it has.
    AlterConfigs {
        topic: String,
        configs: BTreeMap<String, String>,
        changes: Vec<Change>,
    },
}

/// One config key whose value an [`Action::AlterConfigs`] changes; `None`
/// is "not set on the topic" (the broker's default applies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub key: String,
    pub from: Option<String>,
    pub to: Option<String>,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: &Option<String>| {
            v.as_ref()
                .map_or("(default)".to_string(), |v| format!("{v:?}"))
        };
        write!(
            f,
            "{}: {} -> {}",
            self.key,
            show(&self.from),
            show(&self.to)
        )
    }
}

/// Something an operator should know that changes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// `create_topics = false` and the topic is not there: the target
    /// refuses records for it until someone creates it.
    Missing { topic: String },
    /// Source topics written into one target topic set a managed key
    /// differently (or not all of them set it): the target keeps its own
    /// value of it. Per source topic: its value, `None` if it does not set it.
    Disagree {
        topic: String,
        key: String,
        values: Vec<(String, Option<String>)>,
    },
}

/// A target topic with fewer partitions than `partitioning = "same"`
/// needs, while the relay may not add them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("target topic {topic} has {has} partition(s) but source topic(s) {} have {needs}: target.partitioning = \"same\" writes each record to the partition of its source partition's number, so the target topic needs at least {needs}; add partitions to it, or set target.create_topics = true to let the relay add them", .sources.join(", "))]
pub struct TooFewPartitions {
    pub topic: String,
    pub has: i32,
    pub needs: i32,
    /// The source topics written into it.
    pub sources: Vec<String>,
}

/// Every target topic that breaks the partition mapping.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct Mismatch(pub Vec<TooFewPartitions>);

/// What to do, in order, and what to tell.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub notes: Vec<Note>,
    /// Target topics that need nothing.
    pub in_line: usize,
}

/// What to do so that every target topic of `sources` is as `rules` want.
///
/// `sources`: the copied source topics by name; `target_of` names the
/// target topic of a source topic; `targets`: the target cluster's topics
/// that exist (with their configs when `rules.create`; they are not looked
/// at otherwise). Under `partitioning = "same"` a target topic needs the
/// largest partition count of its source topics; it is created with that
/// many under `key_hash` too, where an existing one is never grown: more
/// partitions would move keys to other partitions, breaking their order.
pub fn plan(
    sources: &BTreeMap<String, TopicState>,
    target_of: impl Fn(&str) -> String,
    targets: &BTreeMap<String, TopicState>,
    rules: &Rules,
) -> Result<Plan, Mismatch> {
    let mut groups: BTreeMap<String, Vec<(&str, &TopicState)>> = BTreeMap::new();
    for (name, state) in sources {
        groups
            .entry(target_of(name))
            .or_default()
            .push((name.as_str(), state));
    }
    let mut out = Plan::default();
    let mut too_small = Vec::new();
    for (topic, group) in groups {
        let needs = group.iter().map(|(_, s)| s.partitions).max().unwrap_or(0);
        let (wanted, disputed) = wanted_configs(&group, &rules.filter);
        for (key, values) in &disputed {
            out.notes.push(Note::Disagree {
                topic: topic.clone(),
                key: key.clone(),
                values: values.clone(),
            });
        }
        let Some(target) = targets.get(&topic) else {
            if rules.create {
                out.actions.push(Action::Create {
                    topic,
                    partitions: needs,
                    configs: wanted,
                });
            } else {
                out.notes.push(Note::Missing { topic });
            }
            continue;
        };
        let before = out.actions.len();
        if rules.partitioning == Partitioning::Same && target.partitions < needs {
            if rules.create {
                out.actions.push(Action::AddPartitions {
                    topic: topic.clone(),
                    from: target.partitions,
                    to: needs,
                });
            } else {
                too_small.push(TooFewPartitions {
                    topic: topic.clone(),
                    has: target.partitions,
                    needs,
                    sources: group.iter().map(|(n, _)| n.to_string()).collect(),
                });
            }
        }
        if rules.create {
            // The target's own values of keys the relay does not manage
            // (or cannot decide) stay; managed keys take the source's.
            let mut configs: BTreeMap<String, String> = target
                .configs
                .iter()
                .filter(|(k, _)| !rules.filter.manages(k) || disputed.contains_key(*k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            configs.extend(wanted);
            if configs != target.configs {
                out.actions.push(Action::AlterConfigs {
                    changes: changes(&target.configs, &configs),
                    topic,
                    configs,
                });
            }
        }
        if out.actions.len() == before {
            out.in_line += 1;
        }
    }
    if too_small.is_empty() {
        Ok(out)
    } else {
        Err(Mismatch(too_small))
    }
}

/// Per-source values of one config key.
type Values = Vec<(String, Option<String>)>;

/// The managed configs the source topics of one target topic agree on, and
/// the managed keys they disagree on (with each one's value).
fn wanted_configs(
    group: &[(&str, &TopicState)],
    filter: &ConfigFilter,
) -> (BTreeMap<String, String>, BTreeMap<String, Values>) {
    let keys: BTreeSet<&String> = group
        .iter()
        .flat_map(|(_, s)| s.configs.keys())
        .filter(|k| filter.manages(k))
        .collect();
    let mut wanted = BTreeMap::new();
    let mut disputed = BTreeMap::new();
    for key in keys {
        let values: Values = group
            .iter()
            .map(|(name, s)| (name.to_string(), s.configs.get(key).cloned()))
            .collect();
        if values.windows(2).all(|w| w[0].1 == w[1].1) {
            if let Some((_, Some(value))) = values.first() {
                wanted.insert(key.clone(), value.clone());
            }
        } else {
            disputed.insert(key.clone(), values);
        }
    }
    (wanted, disputed)
}

fn changes(from: &BTreeMap<String, String>, to: &BTreeMap<String, String>) -> Vec<Change> {
    let keys: BTreeSet<&String> = from.keys().chain(to.keys()).collect();
    keys.into_iter()
        .filter(|k| from.get(*k) != to.get(*k))
        .map(|k| Change {
            key: k.clone(),
            from: from.get(k).cloned(),
            to: to.get(k).cloned(),
        })
        .collect()
}
