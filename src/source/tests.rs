//! Unit tests of the source consumer's settings.

use super::*;

fn config_with(source_properties: &str) -> Config {
    let toml = format!(
        "[source]\nbootstrap_servers = \"s:9092\"\ntopics = [\"t\"]\n\
         [source.properties]\n{source_properties}\n\
         [target]\nbootstrap_servers = \"t:9092\"\ntransactional_id = \"x\"\n\
         [wal]\ndir = \"/tmp/w\"\n"
    );
    Config::from_toml_str(&toml, Vec::new()).expect("valid config")
}

fn setting(config: &Config, key: &str) -> Option<String> {
    client_config(config, "0").get(key).map(str::to_string)
}

#[test]
fn read_ahead_is_bounded_by_default() {
    let config = config_with("");
    assert_eq!(
        setting(&config, "queued.max.messages.kbytes").as_deref(),
        Some("32768")
    );
    assert_eq!(
        setting(&config, "fetch.max.bytes").as_deref(),
        Some("16777216")
    );
}

#[test]
fn source_properties_override_the_read_ahead_defaults() {
    let config =
        config_with("\"queued.max.messages.kbytes\" = 65536\n\"fetch.max.bytes\" = 52428800");
    assert_eq!(
        setting(&config, "queued.max.messages.kbytes").as_deref(),
        Some("65536")
    );
    assert_eq!(
        setting(&config, "fetch.max.bytes").as_deref(),
        Some("52428800")
    );
}

#[test]
fn fetches_grow_to_a_larger_message_max_bytes() {
    let config = config_with("\"message.max.bytes\" = 33554432");
    assert_eq!(
        setting(&config, "fetch.max.bytes").as_deref(),
        Some("33554432")
    );
}
