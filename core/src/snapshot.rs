//! The blank state's memory image, restored from the instrumentation's
//! dirty map — what backends without copy-on-write instantiation use to
//! blank an instance (see [`crate::instrument`]).

use crate::instrument::{DIRTY_PAGE, Layout, SPILL, SUMMARY_SPAN};

/// The blank state's linear memory (guest part and an all-clear dirty map).
///
/// [`MemoryImage::restore`] reads the summary — one byte per MiB of guest
/// memory — then the dirty map of marked MiBs only, and copies back only
/// the marked 4 KiB pages (plus the few bytes a store can spill into the
/// next page). Its cost grows with what the transaction dirtied, not with
/// the memory's size.
#[derive(Debug, Clone)]
pub struct MemoryImage {
    layout: Layout,
    bytes: Vec<u8>,
}

impl MemoryImage {
    /// Clears the dirty map in `memory` and copies the whole memory.
    pub fn capture(layout: Layout, memory: &mut [u8]) -> Self {
        layout.split(memory).0.fill(0);
        MemoryImage { layout, bytes: memory.to_vec() }
    }

    /// The image's size in bytes (dirty map included).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the image is of an empty memory.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Restores every page the dirty map marks and clears the map and the
    /// tables flag. Says [`Restore::NeedsRebuild`] instead when memory grew
    /// (it cannot shrink) or the instrumentation raised the rebuild flag.
    ///
    /// `host_writes` are the exact guest ranges the host wrote (see
    /// [`crate::HostEnv::take_host_writes`]); they are restored byte for
    /// byte.
    pub fn restore(&self, memory: &mut [u8], host_writes: impl IntoIterator<Item = (u32, u32)>) -> Restore {
        if memory.len() != self.bytes.len() || memory[self.layout.rebuild_flag()] != 0 {
            return Restore::NeedsRebuild;
        }
        let tables_dirty = std::mem::take(&mut memory[self.layout.tables_flag()]) != 0;
        let reserved = self.layout.reserved;
        let (dirty, guest) = self.layout.split(memory);
        let image = &self.bytes[reserved..];
        let pages = guest.len().div_ceil(DIRTY_PAGE).min(dirty.len());
        for (start, len) in host_writes {
            let (start, end) = (start as usize, (start as usize + len as usize).min(guest.len()));
            guest[start..end].copy_from_slice(&image[start..end]);
        }
        let mut copied = 0;
        let per_summary = SUMMARY_SPAN / DIRTY_PAGE;
        let (map, rest) = dirty.split_at_mut(self.layout.summary);
        let summary = &mut rest[..pages.div_ceil(per_summary)];
        for (s, marked) in summary.iter_mut().enumerate() {
            if std::mem::take(marked) == 0 {
                continue;
            }
            let (first, last) = (s * per_summary, ((s + 1) * per_summary).min(pages));
            for (w, word) in map[first..last].chunks_mut(8).enumerate() {
                // Clean words (32 KiB of memory) cost one compare.
                if word.len() == 8 && u64::from_ne_bytes(word[..8].try_into().expect("8 bytes")) == 0 {
                    continue;
                }
                for (i, marked) in word.iter_mut().enumerate() {
                    if std::mem::take(marked) != 0 {
                        let start = (first + w * 8 + i) * DIRTY_PAGE;
                        let end = (start + DIRTY_PAGE + SPILL).min(guest.len());
                        guest[start..end].copy_from_slice(&image[start..end]);
                        copied += 1;
                    }
                }
            }
        }
        Restore::Done { pages: copied, tables_dirty }
    }
}

/// The blank-state image of one compiled executor, captured once and
/// shared by all its instances.
///
/// The blank state depends only on the module and the limits (init sees no
/// world state), so every instance of an executor reaches the same memory
/// after `executor_init`; copying it again on every rebuild would cost a
/// full memory copy per recycle.
#[derive(Debug, Default, Clone)]
pub struct ImageCache(std::sync::Arc<std::sync::OnceLock<std::sync::Arc<MemoryImage>>>);

impl ImageCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The image of this (just initialised) instance's memory: the cached
    /// one if it has the same size — after clearing the map, summary and
    /// flags in `memory`, as [`MemoryImage::capture`] would — else a new
    /// capture (cached if none was).
    pub fn adopt(&self, layout: Layout, memory: &mut [u8]) -> std::sync::Arc<MemoryImage> {
        if let Some(image) = self.0.get().filter(|i| i.len() == memory.len()) {
            layout.split(memory).0.fill(0);
            debug_assert!(image.bytes == memory, "executor_init is deterministic");
            return image.clone();
        }
        let image = std::sync::Arc::new(MemoryImage::capture(layout, memory));
        let _ = self.0.set(image.clone());
        image
    }
}

/// What [`MemoryImage::restore`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restore {
    /// Memory is back in its blank state.
    Done {
        /// 4 KiB pages copied back.
        pages: usize,
        /// Whether a table instruction ran since the last blank: the backend
        /// must restore its tables too.
        tables_dirty: bool,
    },
    /// The instance cannot be restored in place; rebuild it.
    NeedsRebuild,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restores_marked_pages_with_their_spill_and_clears_the_map() {
        let layout = Layout::for_limit(1 << 20);
        let mut mem: Vec<u8> = (0..65536 + 40 * DIRTY_PAGE + 10).map(|i| (i % 251) as u8).collect();
        let image = MemoryImage::capture(layout, &mut mem);
        assert_eq!(image.restore(&mut mem, []), Restore::Done { pages: 0, tables_dirty: false });
        let guest = |m: &mut Vec<u8>, at: usize| -> *mut u8 { &mut m[65536 + at] };
        // (where, how many bytes change, how many the mark covers): the
        // 8-byte store at a page end marks its first page only, as the
        // instrumentation's barrier does.
        for (at, len, marked) in [
            (5usize, 1usize, 1usize),
            (3 * DIRTY_PAGE - 2, 8, 1),
            (17 * DIRTY_PAGE, 2 * DIRTY_PAGE, 2 * DIRTY_PAGE),
            (40 * DIRTY_PAGE + 9, 1, 1),
        ] {
            for i in 0..len {
                // SAFETY: in bounds of `mem`.
                unsafe { *guest(&mut mem, at + i) ^= 0xff };
            }
            let (dirty, _) = layout.split(&mut mem);
            layout.mark(dirty, at, marked);
        }
        mem[layout.tables_flag()] = 1;
        // An exact host write, not in the map.
        mem[65536 + 30 * DIRTY_PAGE + 3] ^= 1;
        let host_writes = [((30 * DIRTY_PAGE + 3) as u32, 1)];
        assert_eq!(image.restore(&mut mem, host_writes), Restore::Done { pages: 1 + 1 + 2 + 1, tables_dirty: true });
        assert_eq!(mem, image.bytes, "restored exactly, map and flag cleared");
        mem[layout.rebuild_flag()] = 1;
        assert_eq!(image.restore(&mut mem, []), Restore::NeedsRebuild);
        mem[layout.rebuild_flag()] = 0;
        mem.extend_from_slice(&[0; 65536]);
        assert_eq!(image.restore(&mut mem, []), Restore::NeedsRebuild, "memory grew");
    }
}
