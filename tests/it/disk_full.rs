//! A full disk under the WAL pauses intake with a clear log line and loses
//! nothing; when space returns the relay carries on, exactly once.
//!
//! The WAL lives on a 16 MiB tmpfs this test mounts (the test machines run
//! as root); a filler file takes the last byte of it, which puts it below
//! `wal.min_free_bytes`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::relay::{produce_sequence, RelayProcess, RelaySetup};
use crate::harness::{checker, clusters};

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "cannot mount a tmpfs for the disk-full test (it needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes until the filesystem has no byte left.
fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).expect("filler");
    let chunk = vec![0u8; 64 * 1024];
    while file.write_all(&chunk).is_ok() {}
    let one = [0u8; 1];
    while file.write_all(&one).is_ok() {}
    let _ = file.sync_all();
}

fn wait_for_log(log: &Path, needle: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the relay log within {limit:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn disk_full_pauses_intake_and_resumes_without_loss() {
    let c = clusters();
    let setup = RelaySetup::new(c, "disk-full", 1);
    let mount = setup.dir.path().join("disk");
    let _tmpfs = Tmpfs::mount(&mount, "16m");
    let wal_dir = mount.join("wal");
    let toml = setup.toml().replace(
        &format!("dir = \"{}\"", setup.wal_dir().display()),
        &format!("dir = \"{}\"\nmin_free_bytes = \"2MiB\"", wal_dir.display()),
    );
    let config = setup.dir.path().join("relay.toml");
    std::fs::write(&config, toml).expect("config");
    let log = setup.dir.path().join("relay.log");

    let relay = RelayProcess::start(&config, &log);
    produce_sequence(&c.source.bootstrap, &setup.source_topic, 1, 0, 200);
    setup.wait_for_target(c, 200, Duration::from_secs(60));

    let filler = mount.join("filler");
    fill(&filler);
    produce_sequence(&c.source.bootstrap, &setup.source_topic, 1, 200, 2000);
    wait_for_log(
        &log,
        "disk almost full under the WAL: intake paused",
        Duration::from_secs(60),
    );

    std::fs::remove_file(&filler).expect("free the space");
    wait_for_log(
        &log,
        "disk space is back: intake resumed",
        Duration::from_secs(60),
    );
    setup.wait_for_target(c, 2200, Duration::from_secs(120));
    relay.stop();
    checker::assert_exactly_once(&c.target.bootstrap, &setup.target_topic, 1, 2200);
}
