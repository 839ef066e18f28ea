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

/// The consumer's (`queued.max.messages.kbytes`, `fetch.max.bytes`).
fn read_ahead(config: &Config) -> (String, String) {
    let client = client_config(config, "0");
    let get = |key| client.get(key).unwrap_or("<unset>").to_string();
    (get("queued.max.messages.kbytes"), get("fetch.max.bytes"))
}

#[test]
fn read_ahead_is_bounded_by_default() {
    assert_eq!(
        read_ahead(&config_with("")),
        ("32768".into(), "16777216".into())
    );
}

#[test]
fn source_properties_override_the_read_ahead_defaults() {
    let config =
        config_with("\"queued.max.messages.kbytes\" = 65536\n\"fetch.max.bytes\" = 52428800");
    assert_eq!(read_ahead(&config), ("65536".into(), "52428800".into()));
}

#[test]
fn fetches_grow_to_a_larger_message_max_bytes() {
    let config = config_with("\"message.max.bytes\" = 33554432");
    assert_eq!(read_ahead(&config).1, "33554432");
}
