//! Frame buffers handed back by the appender once their batch is in the
//! WAL, for the source to build later batches in.
//!
//! Why: a batch's frame is a large allocation (about `batch.max_bytes`).
//! Freed, the allocator returns such memory to the kernel, and the next
//! batch's frame is fresh pages again, which the kernel must zero and, on
//! a VM, the host back; profiles put that in the copy of every record.
//! A buffer that is reused was written before.
//!
//! Invariant: the buffers kept hold at most [`KEPT_BYTES`] of capacity, so
//! this is a bounded cache, not a second backlog; beyond it they are freed.
//! Owned by the source's poll thread ([`super::Source`]); the appender
//! only sends buffers back with the offsets it made durable.

/// Capacity kept for reuse, at most: a group of batches' worth with the
/// default limits (8 partitions of 1 MiB), with room to spare.
pub const KEPT_BYTES: usize = 32 << 20;

#[derive(Default)]
pub struct FreeBuffers {
    buffers: Vec<Vec<u8>>,
    bytes: usize,
}

impl FreeBuffers {
    /// Keeps `buffer` for reuse if it fits under [`KEPT_BYTES`].
    pub fn put(&mut self, buffer: Vec<u8>) {
        if self.bytes + buffer.capacity() <= KEPT_BYTES {
            self.bytes += buffer.capacity();
            self.buffers.push(buffer);
        }
    }

    /// A buffer to reuse, or an empty one if none is kept.
    pub fn take(&mut self) -> Vec<u8> {
        match self.buffers.pop() {
            Some(buffer) => {
                self.bytes -= buffer.capacity();
                buffer
            }
            None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_buffers_stay_under_the_byte_bound_and_come_back() {
        let mut free = FreeBuffers::default();
        for _ in 0..40 {
            free.put(Vec::with_capacity(1 << 20));
        }
        assert!(free.bytes <= KEPT_BYTES);
        assert_eq!(free.buffers.len(), KEPT_BYTES / (1 << 20));
        assert!(free.take().capacity() >= 1 << 20);
        assert_eq!(free.bytes, KEPT_BYTES - (1 << 20));
        while !free.buffers.is_empty() {
            free.take();
        }
        assert_eq!(free.bytes, 0);
        assert_eq!(free.take().capacity(), 0);
    }
}
