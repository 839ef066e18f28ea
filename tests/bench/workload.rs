//! The data every contender copies: fixed-size records spread round-robin
//! over the source topic's partitions, each value starting with the time it
//! was handed to the producer (µs since the epoch, little-endian) so the
//! target side can measure end-to-end latency. The rest of the value is
//! pseudo-random bytes from a fixed seed: incompressible, and identical in
//! every run.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::harness::clients;

/// Bytes at the start of every value that carry its send time.
pub const STAMP_LEN: usize = 8;

pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros() as u64
}

/// The send time stamped into `value`, if it is long enough to carry one.
pub fn stamp_of(value: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(value.get(..STAMP_LEN)?.try_into().ok()?))
}

pub struct Writer {
    producer: BaseProducer,
    topic: String,
    partitions: i32,
    filler: Vec<u8>,
    size: usize,
    sent: u64,
}

impl Writer {
    /// `linger_ms`: long for bulk loads, short where the stamp must be
    /// close to when the record reaches the source broker.
    pub fn new(
        bootstrap: &str,
        topic: &str,
        partitions: i32,
        size: usize,
        linger_ms: u32,
    ) -> Writer {
        assert!(
            size >= STAMP_LEN,
            "records must hold a {STAMP_LEN}-byte stamp"
        );
        let producer = clients::client_config(bootstrap)
            .set("linger.ms", linger_ms.to_string())
            .set("batch.size", "1000000")
            .set("queue.buffering.max.kbytes", "262144")
            .create()
            .expect("workload producer");
        let mut filler = vec![0u8; size];
        StdRng::seed_from_u64(0x6b61_666b_6172_656c).fill_bytes(&mut filler);
        Writer {
            producer,
            topic: topic.to_string(),
            partitions,
            filler,
            size,
            sent: 0,
        }
    }

    /// Hands one record to the producer, waiting for queue space.
    pub fn send(&mut self) {
        let mut value = self.filler.clone();
        value[..STAMP_LEN].copy_from_slice(&now_micros().to_le_bytes());
        let key = self.sent.to_be_bytes();
        let partition = (self.sent % self.partitions as u64) as i32;
        let mut record = BaseRecord::to(&self.topic)
            .partition(partition)
            .key(&key)
            .payload(&value[..self.size]);
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    self.producer.poll(Duration::from_millis(5));
                }
            }
        }
        self.sent += 1;
        if self.sent.is_multiple_of(1024) {
            self.producer.poll(Duration::ZERO);
        }
    }

    /// Waits until everything sent is acknowledged by the broker.
    pub fn flush(&self) {
        self.producer
            .flush(Duration::from_secs(300))
            .expect("flush workload producer");
    }
}

/// Writes `records` records of `size` bytes as fast as the broker takes them.
pub fn preload(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    records: u64,
    size: usize,
) -> Duration {
    let started = Instant::now();
    let mut writer = Writer::new(bootstrap, topic, partitions, size, 20);
    for _ in 0..records {
        writer.send();
    }
    writer.flush();
    started.elapsed()
}

/// Writes `per_sec` records a second for `duration`, evenly paced in 10 ms
/// steps so the stream has no bursts of its own.
pub fn steady(writer: &mut Writer, per_sec: u64, duration: Duration) -> u64 {
    let started = Instant::now();
    let mut written = 0u64;
    while started.elapsed() < duration {
        let due = (started.elapsed().as_secs_f64() * per_sec as f64) as u64;
        while written < due {
            writer.send();
            written += 1;
        }
        writer.producer.poll(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(10));
    }
    writer.flush();
    written
}
