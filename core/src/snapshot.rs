//! The blank state's memory image, restored from the instrumentation's
//! dirty map — what backends without copy-on-write instantiation use to
//! blank an instance (see [`crate::instrument`]).

use crate::instrument::{DIRTY_PAGE, Layout, SPILL};

/// The blank state's linear memory (guest part and an all-clear dirty map).
///
/// [`MemoryImage::restore`] reads the dirty map — one byte per 4 KiB of
/// guest memory, scanned eight at a time — and copies back only the marked
/// pages (plus the few bytes a store can spill into the next page). Its cost
/// grows with what the transaction dirtied, not with the memory's size.
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

    /// Restores every page the dirty map marks and clears the map. `memory`
    /// must have the image's size (a grown memory cannot shrink: rebuild
    /// instead). Returns the number of pages copied back.
    pub fn restore(&self, memory: &mut [u8]) -> usize {
        assert_eq!(memory.len(), self.bytes.len(), "restore needs a memory of the image's size");
        let reserved = self.layout.reserved;
        let (dirty, guest) = self.layout.split(memory);
        let image = &self.bytes[reserved..];
        let pages = guest.len().div_ceil(DIRTY_PAGE).min(dirty.len());
        let mut copied = 0;
        let mut restore = |page: usize, guest: &mut [u8]| {
            let start = page * DIRTY_PAGE;
            let end = (start + DIRTY_PAGE + SPILL).min(guest.len());
            guest[start..end].copy_from_slice(&image[start..end]);
            copied += 1;
        };
        let mut page = 0;
        while page < pages {
            // Skip clean runs eight map bytes (one word) at a time.
            if page % 8 == 0 && page + 8 <= pages && dirty[page..page + 8] == [0; 8] {
                page += 8;
                continue;
            }
            if dirty[page] != 0 {
                restore(page, guest);
                dirty[page] = 0;
            }
            page += 1;
        }
        copied
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instrument::mark;

    #[test]
    fn restores_marked_pages_with_their_spill_and_clears_the_map() {
        let layout = Layout { reserved: 65536 };
        let mut mem: Vec<u8> = (0..65536 + 40 * DIRTY_PAGE + 10).map(|i| (i % 251) as u8).collect();
        let image = MemoryImage::capture(layout, &mut mem);
        assert_eq!(image.restore(&mut mem), 0);
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
            mark(dirty, at, marked);
        }
        let copied = image.restore(&mut mem);
        assert_eq!(copied, 1 + 1 + 2 + 1);
        assert_eq!(mem, image.bytes, "restored exactly");
        assert!(layout.split(&mut mem).0.iter().all(|b| *b == 0), "map cleared");
    }
}
