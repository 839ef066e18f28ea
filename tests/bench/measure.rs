//! What a contender process costs, read from `/proc/<pid>` while it runs:
//! peak resident memory, CPU seconds, and bytes it caused to be written to
//! storage. Also a resident-memory time series for the backlog run.
//!
//! The sampler reads every 200 ms and keeps the last good reading, so it
//! must be finished *before* the process is stopped: once the pid is gone
//! `/proc` has nothing left to read. Peak RSS is the kernel's own high-water
//! mark (`VmHWM`), not the maximum of our samples, so short spikes between
//! samples still count.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One process's totals at the moment sampling finished.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcStats {
    pub peak_rss_bytes: u64,
    /// User + system CPU time of all its threads.
    pub cpu_secs: f64,
    /// `write_bytes` of `/proc/<pid>/io`: what reached the block layer on
    /// its behalf (page cache write-back included), not what it asked to write.
    pub write_bytes: u64,
}

/// (seconds since sampling began, resident bytes, extra value from the probe).
pub type Sample = (f64, u64, u64);

pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<(ProcStats, Vec<Sample>)>,
}

impl Sampler {
    pub fn start(pid: u32) -> Sampler {
        Sampler::with_probe(pid, || 0)
    }

    /// Also records `probe()` (e.g. the WAL's size on disk) in every sample.
    pub fn with_probe(pid: u32, probe: impl Fn() -> u64 + Send + 'static) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let started = Instant::now();
            let mut last = ProcStats::default();
            let mut series = Vec::new();
            loop {
                if let Some(now) = read(pid) {
                    last = now;
                }
                if let Some(rss) = status_field(pid, "VmRSS:") {
                    series.push((started.elapsed().as_secs_f64(), rss, probe()));
                }
                if flag.load(Ordering::Relaxed) {
                    return (last, series);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Sampler { stop, handle }
    }

    pub fn finish(self) -> (ProcStats, Vec<Sample>) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("sampler thread")
    }
}

fn read(pid: u32) -> Option<ProcStats> {
    Some(ProcStats {
        peak_rss_bytes: status_field(pid, "VmHWM:")?,
        cpu_secs: cpu_secs(pid)?,
        write_bytes: write_bytes(pid)?,
    })
}

/// A `kB` field of `/proc/<pid>/status`, in bytes.
fn status_field(pid: u32, name: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(name))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// `write_bytes` of `/proc/<pid>/io`.
pub fn write_bytes(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines()
        .find(|l| l.starts_with("write_bytes:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

pub fn cpu_secs(pid: u32) -> Option<f64> {
    let fields = stat_fields(pid)?;
    // utime and stime are fields 14 and 15 of stat(5), 12 and 13 after the name.
    Some(ticks_to_secs(sum_fields(&fields, &[11, 12])?))
}

/// The fields of `/proc/<pid>/stat` after the command name (which may
/// itself contain spaces): field n of stat(5) is at index n - 3.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

fn sum_fields(fields: &[String], at: &[usize]) -> Option<u64> {
    at.iter().map(|i| fields.get(*i)?.parse::<u64>().ok()).sum()
}

fn ticks_to_secs(ticks: u64) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    ticks as f64 / per_sec.max(1) as f64
}

/// How much of the machine's CPU went to processes that are not this
/// benchmark's over a window: another engineer's tests or builds on the
/// same two cores. The benchmark's own are this process and its
/// descendants (brokers, contenders), children it reaped included (a
/// killed relay's CPU moves to this process's `cutime`). Kernel threads
/// (the page cache's write-back of everyone's files among them) and
/// interrupts count for nobody.
pub struct CpuWindow {
    busy: f64,
    split: CpuSplit,
}

impl CpuWindow {
    pub fn start() -> CpuWindow {
        CpuWindow {
            busy: machine_busy_secs(),
            split: CpuSplit::now(),
        }
    }

    /// CPU seconds spent since [`CpuWindow::start`] by processes not ours.
    pub fn others(&self) -> f64 {
        let busy = machine_busy_secs() - self.busy;
        let split = CpuSplit::now();
        let ours = split.ours - self.split.ours;
        let kernel = split.kernel - self.split.kernel;
        (busy - ours - kernel).max(0.0)
    }
}

/// Busy CPU seconds of all cores since boot in process context (user,
/// nice and system of `/proc/stat`; not idle, iowait, interrupts or the
/// host's steal).
fn machine_busy_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    let fields: Vec<String> = cpu.split_whitespace().skip(1).map(str::to_string).collect();
    ticks_to_secs(sum_fields(&fields, &[0, 1, 2]).unwrap_or(0))
}

/// CPU seconds (user + system, with reaped children's) of this process
/// and its descendants, and of the kernel's threads.
struct CpuSplit {
    ours: f64,
    kernel: f64,
}

impl CpuSplit {
    fn now() -> CpuSplit {
        let mut parent_of = BTreeMap::new();
        let mut ticks = BTreeMap::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Some(fields) = stat_fields(pid) else {
                continue;
            };
            // ppid is field 4; utime, stime, cutime, cstime fields 14 to 17.
            if let (Some(ppid), Some(t)) = (
                fields.get(1).and_then(|p| p.parse::<u32>().ok()),
                sum_fields(&fields, &[11, 12, 13, 14]),
            ) {
                parent_of.insert(pid, ppid);
                ticks.insert(pid, t);
            }
        }
        let me = std::process::id();
        let ours = |mut pid: u32| loop {
            if pid == me {
                return true;
            }
            match parent_of.get(&pid) {
                Some(&parent) if parent != pid && parent != 0 => pid = parent,
                _ => return false,
            }
        };
        // kthreadd (pid 2) and its children.
        let kernel = |pid: u32| pid == 2 || parent_of.get(&pid) == Some(&2);
        let sum = |keep: &dyn Fn(u32) -> bool| {
            ticks_to_secs(
                ticks
                    .iter()
                    .filter(|(p, _)| keep(**p))
                    .map(|(_, t)| t)
                    .sum(),
            )
        };
        CpuSplit {
            ours: sum(&ours),
            kernel: sum(&kernel),
        }
    }
}

/// Total size of the files under `dir` (for the WAL's footprint).
pub fn dir_bytes(dir: &std::path::Path) -> u64 {
    sum_over_files(dir, &|m| m.len())
}

/// How many files are under `dir`, at any depth.
pub fn dir_files(dir: &std::path::Path) -> u64 {
    sum_over_files(dir, &|_| 1)
}

fn sum_over_files(dir: &std::path::Path, of: &dyn Fn(&std::fs::Metadata) -> u64) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => sum_over_files(&e.path(), of),
            Ok(m) => of(&m),
            Err(_) => 0,
        })
        .sum()
}

/// The `q`-quantile (0..=1) of `sorted`, nearest rank.
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}
