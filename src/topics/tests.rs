//! Unit tests of the topic plan: what the relay does to target topics,
//! from the topics as they are.

use std::collections::BTreeMap;

use super::plan::*;
use crate::config::{Partitioning, DEFAULT_TOPIC_CONFIGS_EXCLUDE};

fn configs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn topic(partitions: i32, pairs: &[(&str, &str)]) -> TopicState {
    TopicState {
        partitions,
        configs: configs(pairs),
    }
}

fn topics(list: &[(&str, TopicState)]) -> BTreeMap<String, TopicState> {
    list.iter()
        .map(|(name, state)| (name.to_string(), state.clone()))
        .collect()
}

fn default_filter() -> ConfigFilter {
    let exclude: Vec<String> = DEFAULT_TOPIC_CONFIGS_EXCLUDE
        .iter()
        .map(ToString::to_string)
        .collect();
    ConfigFilter::new(None, &exclude).expect("default filter")
}

fn rules(create: bool, partitioning: Partitioning) -> Rules {
    Rules {
        create,
        partitioning,
        filter: default_filter(),
    }
}

/// Each source topic into the target topic of the same name.
fn same_name(
    sources: &BTreeMap<String, TopicState>,
    targets: &BTreeMap<String, TopicState>,
    rules: &Rules,
) -> Result<Plan, Mismatch> {
    plan(sources, str::to_string, targets, rules)
}

#[test]
fn a_missing_target_topic_is_created_with_the_source_partitions_and_own_configs_minus_excluded_ones(
) {
    let sources = topics(&[(
        "orders",
        topic(
            3,
            &[
                ("retention.ms", "-1"),
                ("cleanup.policy", "compact,delete"),
                ("min.insync.replicas", "2"),
                ("message.timestamp.type", "LogAppendTime"),
            ],
        ),
    )]);
    let plan =
        same_name(&sources, &BTreeMap::new(), &rules(true, Partitioning::Same)).expect("plan");
    assert_eq!(
        plan.actions,
        [Action::Create {
            topic: "orders".into(),
            partitions: 3,
            configs: configs(&[("cleanup.policy", "compact,delete"), ("retention.ms", "-1")]),
        }]
    );
    assert!(plan.notes.is_empty());
    assert_eq!(plan.in_line, 0);
}

#[test]
fn with_creation_off_a_missing_topic_is_only_noted() {
    let sources = topics(&[("orders", topic(3, &[]))]);
    for partitioning in [Partitioning::Same, Partitioning::KeyHash] {
        let plan =
            same_name(&sources, &BTreeMap::new(), &rules(false, partitioning)).expect("plan");
        assert!(plan.actions.is_empty());
        assert_eq!(
            plan.notes,
            [Note::Missing {
                topic: "orders".into()
            }]
        );
    }
}

#[test]
fn too_few_target_partitions_are_added_under_same_only() {
    let sources = topics(&[("orders", topic(6, &[]))]);
    let targets = topics(&[("orders", topic(4, &[]))]);
    let plan = same_name(&sources, &targets, &rules(true, Partitioning::Same)).expect("plan");
    assert_eq!(
        plan.actions,
        [Action::AddPartitions {
            topic: "orders".into(),
            from: 4,
            to: 6
        }]
    );
    // key_hash only needs the topic: new partitions would move keys.
    let plan = same_name(&sources, &targets, &rules(true, Partitioning::KeyHash)).expect("plan");
    assert!(plan.actions.is_empty(), "{plan:?}");
    assert_eq!(plan.in_line, 1);
}

#[test]
fn more_target_partitions_than_source_ones_are_fine() {
    let sources = topics(&[("orders", topic(2, &[]))]);
    let targets = topics(&[("orders", topic(5, &[]))]);
    for create in [true, false] {
        let plan = same_name(&sources, &targets, &rules(create, Partitioning::Same)).expect("plan");
        assert!(plan.actions.is_empty(), "{plan:?}");
        assert_eq!(plan.in_line, 1);
    }
}

#[test]
fn too_few_partitions_with_creation_off_is_an_error_naming_every_topic_and_count() {
    let sources = topics(&[
        ("a", topic(3, &[])),
        ("b", topic(8, &[])),
        ("c", topic(1, &[])),
    ]);
    let targets = topics(&[
        ("a", topic(2, &[])),
        ("b", topic(4, &[])),
        ("c", topic(1, &[])),
    ]);
    let err =
        same_name(&sources, &targets, &rules(false, Partitioning::Same)).expect_err("mismatch");
    assert_eq!(
        err.0,
        [
            TooFewPartitions {
                topic: "a".into(),
                has: 2,
                needs: 3,
                sources: vec!["a".into()]
            },
            TooFewPartitions {
                topic: "b".into(),
                has: 4,
                needs: 8,
                sources: vec!["b".into()]
            },
        ]
    );
    let text = err.to_string();
    assert!(
        text.starts_with("target topic a has 2 partition(s) but source topic(s) a have 3: target.partitioning = \"same\""),
        "{text}"
    );
    assert!(text.contains("set target.create_topics = true"), "{text}");
    assert_eq!(text.lines().count(), 2, "one line per topic: {text}");
    // key_hash needs only the topic.
    let plan = same_name(&sources, &targets, &rules(false, Partitioning::KeyHash)).expect("plan");
    assert!(plan.actions.is_empty());
}

#[test]
fn configs_take_the_source_values_of_managed_keys_and_keep_the_target_own_others() {
    let sources = topics(&[(
        "orders",
        topic(
            2,
            &[("retention.ms", "-1"), ("max.message.bytes", "2000000")],
        ),
    )]);
    let targets = topics(&[(
        "orders",
        topic(
            2,
            &[
                ("retention.ms", "604800000"),                    // managed, stale
                ("segment.ms", "3600000"),                        // managed, not on the source
                ("min.insync.replicas", "2"),                     // excluded: the target's
                ("leader.replication.throttled.replicas", "0:1"), // excluded: the target's
            ],
        ),
    )]);
    let plan = same_name(&sources, &targets, &rules(true, Partitioning::Same)).expect("plan");
    let change = |key: &str, from: Option<&str>, to: Option<&str>| Change {
        key: key.into(),
        from: from.map(Into::into),
        to: to.map(Into::into),
    };
    assert_eq!(
        plan.actions,
        [Action::AlterConfigs {
            topic: "orders".into(),
            configs: configs(&[
                ("leader.replication.throttled.replicas", "0:1"),
                ("max.message.bytes", "2000000"),
                ("min.insync.replicas", "2"),
                ("retention.ms", "-1"),
            ]),
            changes: vec![
                change("max.message.bytes", None, Some("2000000")),
                change("retention.ms", Some("604800000"), Some("-1")),
                change("segment.ms", Some("3600000"), None),
            ],
        }]
    );
    let Action::AlterConfigs { changes, .. } = &plan.actions[0] else {
        unreachable!()
    };
    assert_eq!(
        changes.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [
            "max.message.bytes: (default) -> \"2000000\"",
            "retention.ms: \"604800000\" -> \"-1\"",
            "segment.ms: \"3600000\" -> (default)",
        ]
    );
}

#[test]
fn nothing_is_altered_when_the_target_already_has_the_configs() {
    let sources = topics(&[("orders", topic(2, &[("retention.ms", "-1")]))]);
    let targets = topics(&[(
        "orders",
        topic(2, &[("retention.ms", "-1"), ("min.insync.replicas", "2")]),
    )]);
    let plan = same_name(&sources, &targets, &rules(true, Partitioning::Same)).expect("plan");
    assert_eq!(
        plan,
        Plan {
            actions: vec![],
            notes: vec![],
            in_line: 1
        }
    );
}

#[test]
fn with_creation_off_configs_are_never_changed() {
    let sources = topics(&[("orders", topic(2, &[("retention.ms", "-1")]))]);
    let targets = topics(&[("orders", topic(2, &[("retention.ms", "1000")]))]);
    let plan = same_name(&sources, &targets, &rules(false, Partitioning::Same)).expect("plan");
    assert!(plan.actions.is_empty(), "{plan:?}");
}

#[test]
fn partitions_are_added_before_configs_change() {
    let sources = topics(&[("orders", topic(4, &[("retention.ms", "-1")]))]);
    let targets = topics(&[("orders", topic(1, &[]))]);
    let plan = same_name(&sources, &targets, &rules(true, Partitioning::Same)).expect("plan");
    assert!(
        matches!(
            plan.actions.as_slice(),
            [
                Action::AddPartitions { to: 4, .. },
                Action::AlterConfigs { .. }
            ]
        ),
        "{plan:?}"
    );
}

#[test]
fn several_source_topics_into_one_target_take_the_largest_count_and_the_configs_they_agree_on() {
    let sources = topics(&[
        (
            "eu",
            topic(3, &[("retention.ms", "-1"), ("cleanup.policy", "delete")]),
        ),
        (
            "us",
            topic(
                5,
                &[
                    ("retention.ms", "-1"),
                    ("cleanup.policy", "compact"),
                    ("segment.bytes", "1048576"),
                ],
            ),
        ),
    ]);
    let all = |_: &str| "all".to_string();
    let created = plan(
        &sources,
        all,
        &BTreeMap::new(),
        &rules(true, Partitioning::Same),
    )
    .expect("plan");
    assert_eq!(
        created.actions,
        [Action::Create {
            topic: "all".into(),
            partitions: 5,
            configs: configs(&[("retention.ms", "-1")]),
        }]
    );
    assert_eq!(
        created.notes,
        [
            Note::Disagree {
                topic: "all".into(),
                key: "cleanup.policy".into(),
                values: vec![
                    ("eu".into(), Some("delete".into())),
                    ("us".into(), Some("compact".into()))
                ],
            },
            Note::Disagree {
                topic: "all".into(),
                key: "segment.bytes".into(),
                values: vec![("eu".into(), None), ("us".into(), Some("1048576".into()))],
            },
        ]
    );

    // Existing: a disputed key keeps the target's value, agreed ones follow.
    let targets = topics(&[(
        "all",
        topic(
            4,
            &[("cleanup.policy", "compact,delete"), ("retention.ms", "1")],
        ),
    )]);
    let synced = plan(&sources, all, &targets, &rules(true, Partitioning::Same)).expect("plan");
    assert_eq!(
        synced.actions,
        [
            Action::AddPartitions {
                topic: "all".into(),
                from: 4,
                to: 5
            },
            Action::AlterConfigs {
                topic: "all".into(),
                configs: configs(&[("cleanup.policy", "compact,delete"), ("retention.ms", "-1")]),
                changes: vec![Change {
                    key: "retention.ms".into(),
                    from: Some("1".into()),
                    to: Some("-1".into())
                }],
            },
        ]
    );
    let err = plan(&sources, all, &targets, &rules(false, Partitioning::Same)).expect_err("4 < 5");
    assert_eq!(err.0[0].sources, ["eu", "us"]);
    assert_eq!(err.0[0].needs, 5);
}

#[test]
fn include_limits_the_managed_keys_and_exclude_wins_over_it() {
    let filter = ConfigFilter::new(
        Some(&[r"retention\..*".to_string(), "cleanup.policy".to_string()]),
        &[r"retention\.bytes".to_string()],
    )
    .expect("filter");
    assert!(filter.manages("retention.ms"));
    assert!(filter.manages("cleanup.policy"));
    assert!(!filter.manages("retention.bytes"), "excluded");
    assert!(!filter.manages("max.message.bytes"), "not included");

    let sources = topics(&[(
        "orders",
        topic(
            1,
            &[
                ("retention.ms", "-1"),
                ("retention.bytes", "1000"),
                ("max.message.bytes", "2000000"),
            ],
        ),
    )]);
    let targets = topics(&[(
        "orders",
        topic(
            1,
            &[("max.message.bytes", "500000"), ("retention.bytes", "7")],
        ),
    )]);
    let rules = Rules {
        create: true,
        partitioning: Partitioning::Same,
        filter,
    };
    let plan = same_name(&sources, &targets, &rules).expect("plan");
    assert_eq!(
        plan.actions,
        [Action::AlterConfigs {
            topic: "orders".into(),
            configs: configs(&[
                ("max.message.bytes", "500000"),
                ("retention.bytes", "7"),
                ("retention.ms", "-1"),
            ]),
            changes: vec![Change {
                key: "retention.ms".into(),
                from: None,
                to: Some("-1".into())
            }],
        }]
    );
}

#[test]
fn the_default_filter_leaves_mirror_maker_2s_exclusions_to_the_target() {
    let filter = default_filter();
    for key in [
        "follower.replication.throttled.replicas",
        "leader.replication.throttled.replicas",
        "message.timestamp.difference.max.ms",
        "message.timestamp.type",
        "unclean.leader.election.enable",
        "min.insync.replicas",
    ] {
        assert!(!filter.manages(key), "{key}");
    }
    for key in [
        "retention.ms",
        "retention.bytes",
        "cleanup.policy",
        "max.message.bytes",
        "compression.type",
        // Whole keys match: a longer key is not an excluded one.
        "min.insync.replicas.extra",
    ] {
        assert!(filter.manages(key), "{key}");
    }
}

#[test]
fn key_patterns_match_whole_keys_and_must_compile_on_their_own() {
    let p = key_pattern(r"retention\.ms").expect("compiles");
    assert!(p.is_match("retention.ms"));
    assert!(!p.is_match("x.retention.ms") && !p.is_match("retention.msx"));
    assert!(key_pattern("a|b").expect("alternation").is_match("b"));
    assert!(!key_pattern("a|b").expect("alternation").is_match("ab"));
    // Anchoring would make this one compile: it is refused as written.
    assert!(key_pattern("a)|(b").is_err());
    assert!(key_pattern("(").is_err());
}
