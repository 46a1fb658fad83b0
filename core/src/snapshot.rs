//! An engine-independent memory snapshot that backends without copy-on-write
//! instantiation use to blank an instance.

/// The unit of comparison and copy when restoring.
pub const CHUNK: usize = 4096;

/// The blank state's linear memory, kept to restore an instance in place.
///
/// [`MemorySnapshot::restore`] compares chunk by chunk and copies back only
/// the chunks that differ: reading is a `memcmp` at memory bandwidth, and
/// writes — the expensive part, which also dirties pages — are proportional
/// to what the transaction changed.
#[derive(Debug, Clone)]
pub struct MemorySnapshot {
    bytes: Vec<u8>,
}

impl MemorySnapshot {
    /// Copies `memory`.
    pub fn capture(memory: &[u8]) -> Self {
        MemorySnapshot {
            bytes: memory.to_vec(),
        }
    }

    /// The snapshot's size in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the snapshot is of an empty memory.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Restores `memory`, which must have the snapshot's size (a grown
    /// memory cannot shrink: rebuild instead). Returns the number of
    /// [`CHUNK`]s copied back.
    pub fn restore(&self, memory: &mut [u8]) -> usize {
        assert_eq!(
            memory.len(),
            self.bytes.len(),
            "restore needs a memory of the snapshot's size"
        );
        let mut copied = 0;
        for (now, then) in memory.chunks_mut(CHUNK).zip(self.bytes.chunks(CHUNK)) {
            if now != then {
                now.copy_from_slice(then);
                copied += 1;
            }
        }
        copied
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restores_exactly_and_counts_dirty_chunks() {
        let mut mem: Vec<u8> = (0..4 * CHUNK + 10).map(|i| i as u8).collect();
        let snap = MemorySnapshot::capture(&mem);
        assert_eq!(snap.restore(&mut mem), 0);
        mem[5] ^= 1;
        mem[3 * CHUNK] ^= 1;
        mem[4 * CHUNK + 9] ^= 1; // the short last chunk
        assert_eq!(snap.restore(&mut mem), 3);
        assert_eq!(MemorySnapshot::capture(&mem).bytes, snap.bytes);
    }
}
