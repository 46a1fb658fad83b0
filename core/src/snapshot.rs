//! The blank state: its memory image, restored in place from the
//! instrumentation's dirty map ([`MemoryImage`]), and its portable form,
//! which carries it to a new instance without re-running `executor_init`
//! ([`BlankSnapshot`]).

use crate::PreparedModule;
use crate::backend::{CallError, ExecutorInstance, GlobalValue};
use crate::host::Memories;
use crate::instrument::{DIRTY_PAGE, Layout, SPILL, SUMMARY_SPAN};
use serde::{Deserialize, Serialize};

/// The index of the first nonzero byte of `marks` at or after `from`.
///
/// Most of the map and summary is clear, so 32 bytes are tested at once (a
/// vector compare), then eight at a time as one word, and only the last
/// few one by one: a byte-wise loop cost a blank about a thousand
/// instructions (callgrind) over two 64-byte spans. A plain loop, not a
/// visitor closure per level: with the closures, a blank of the default
/// executor on wasmer (two pages, five host writes) took 580 instructions
/// in `restore` and its word loops; with this, 470.
#[inline]
fn next_mark(marks: &[u8], from: usize) -> Option<usize> {
    // Arrays, not slices: a slice compared with `[0; 32]` is compared byte
    // by byte.
    let chunk = |i: usize| marks.get(i..).unwrap_or_default();
    let mut i = from;
    while let Some(block) = chunk(i).first_chunk::<32>() {
        if *block != [0; 32] {
            break;
        }
        i += 32;
    }
    // Fewer than 32 left: if the last 32 bytes are clear, so are they (the
    // summary of a 5 MiB memory is 80 bytes: two blocks and this test).
    let len = marks.len();
    if let Some(last) = marks.last_chunk::<32>()
        && i + 32 > len
        && *last == [0; 32]
    {
        return None;
    }
    while let Some(word) = chunk(i).first_chunk::<8>() {
        let bits = u64::from_le_bytes(*word);
        if bits != 0 {
            return Some(i + bits.trailing_zeros() as usize / 8);
        }
        i += 8;
    }
    // Fewer than eight left: the last word, without the bytes before `i`.
    let rest = len.saturating_sub(i);
    if rest == 0 || len < 8 {
        return (i..len).find(|&j| marks[j] != 0);
    }
    let bits = u64::from_le_bytes(marks[len - 8..].try_into().expect("8 bytes")) >> ((8 - rest) * 8);
    (bits != 0).then(|| i + bits.trailing_zeros() as usize / 8)
}

/// The blank state's linear memory (the books' dirty map is all clear
/// then).
///
/// [`MemoryImage::restore`] scans the map's summary up to the memory's
/// current size — a byte per 64 KiB, so 16 MiB is 256 bytes, 32 words —
/// then the map bytes of each marked span only (and of the
/// first page after it, see [`crate::instrument::dirty`]), and copies back
/// the marked 1 KiB pages (plus the few bytes a store can spill into the
/// next page). Its cost grows with what the transaction dirtied; the
/// scan's with the memory's size is a load and a branch per 512 KiB.
#[derive(Debug, Clone)]
pub struct MemoryImage {
    layout: Layout,
    bytes: Vec<u8>,
}

impl MemoryImage {
    /// Clears the books (map, cells, flags) and copies the guest's memory.
    pub fn capture(layout: Layout, memories: Memories<'_>) -> Self {
        memories.books.fill(0);
        MemoryImage { layout, bytes: memories.guest.to_vec() }
    }

    /// The image's size in bytes.
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
    pub fn restore(&self, memories: Memories<'_>, host_writes: &[(u32, u32)]) -> Restore {
        let Memories { guest, books } = memories;
        if guest.len() != self.bytes.len() || books[self.layout.rebuild_flag()] != 0 {
            return Restore::NeedsRebuild;
        }
        let tables_dirty = std::mem::take(&mut books[self.layout.tables_flag()]) != 0;
        let image = &self.bytes[..];
        let (map, summary) = self.layout.map_and_summary(books);
        for &(start, len) in host_writes {
            let (start, end) = (start as usize, (start as usize + len as usize).min(guest.len()));
            // A write inside a marked page and its spill is restored by
            // that page's copy below (the usual case: the host writes into
            // a buffer on the guest's stack or heap that the guest itself
            // wrote); a lookup is cheaper than a copy call.
            if !self.layout.covers(map, start, end - start) {
                guest[start..end].copy_from_slice(&image[start..end]);
            }
        }
        let pages = guest.len().div_ceil(DIRTY_PAGE).min(map.len());
        let spans = guest.len().div_ceil(SUMMARY_SPAN).min(summary.len());
        let per_span = SUMMARY_SPAN / DIRTY_PAGE;
        let (summary, mut copied, mut next_span) = (&mut summary[..spans], 0, 0);
        while let Some(span) = next_mark(summary, next_span) {
            summary[span] = 0;
            next_span = span + 1;
            // The span's pages and the first page of the next: a group of
            // stores marks the summary of its lowest page only, and its
            // highest page is less than a page above.
            let first = span * per_span;
            let marks = &mut map[first..(first + per_span + 1).min(pages).max(first)];
            for_each_mark(marks, |page| {
                let start = (first + page) * DIRTY_PAGE;
                let end = (start + DIRTY_PAGE + SPILL).min(guest.len());
                guest[start..end].copy_from_slice(&image[start..end]);
                copied += 1;
            });
        }
        Restore::Done { pages: copied, tables_dirty }
    }
}

/// Calls `f` with the index of every nonzero byte of `marks`, in order,
/// and clears them: a word at a time, each marked byte found by its bits,
/// instead of a search ([`next_mark`]) restarted after each mark (callgrind,
/// the default executor's restore of two pages on wasmer: 776 → 759
/// instructions).
#[inline]
fn for_each_mark(marks: &mut [u8], mut f: impl FnMut(usize)) {
    let (words, rest) = marks.as_chunks_mut::<8>();
    for (w, word) in words.iter_mut().enumerate() {
        let mut bits = u64::from_le_bytes(*word);
        if bits == 0 {
            continue;
        }
        *word = [0; 8];
        while bits != 0 {
            // The lowest marked byte, in memory order.
            let byte = bits.trailing_zeros() / 8;
            f(w * 8 + byte as usize);
            bits &= !(0xff << (byte * 8));
        }
    }
    let base = words.len() * 8;
    for (i, mark) in rest.iter_mut().enumerate() {
        if std::mem::take(mark) != 0 {
            f(base + i);
        }
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
    /// one if it has the same size — after clearing the books, as
    /// [`MemoryImage::capture`] would — else a new capture (cached if none
    /// was).
    pub fn adopt(&self, layout: Layout, memories: Memories<'_>) -> std::sync::Arc<MemoryImage> {
        if let Some(image) = self.0.get().filter(|i| i.len() == memories.guest.len()) {
            memories.books.fill(0);
            debug_assert!(image.bytes == memories.guest, "executor_init is deterministic");
            return image.clone();
        }
        let image = std::sync::Arc::new(MemoryImage::capture(layout, memories));
        let _ = self.0.set(image.clone());
        image
    }
}

/// What [`MemoryImage::restore`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Restore {
    /// Memory is back in its blank state.
    Done {
        /// Pages ([`DIRTY_PAGE`]) copied back.
        pages: usize,
        /// Whether a table instruction ran since the last blank: the backend
        /// must restore its tables too.
        tables_dirty: bool,
    },
    /// The instance cannot be restored in place; rebuild it.
    NeedsRebuild,
}

/// An executor's blank state (after `start` and `executor_init`) in a
/// form any new instance of the same prepared module can adopt: the guest
/// bytes init wrote, the memory's size, every mutable global.
///
/// Why it is enough: a new instance already holds everything instantiation
/// puts there (data segments, tables, immutable globals), so the blank
/// state differs from it only where `start` and init wrote — and the
/// instrumentation's dirty map records exactly that, as it does for a
/// transaction. Adopting costs instantiation plus a copy of those bytes, not
/// a run of init: a recycle or a restart of an executor whose init is heavy
/// pays microseconds instead of milliseconds (the driver keeps one per
/// executor in memory and, with a cache, on disk beside its compiled code).
///
/// It cannot be taken ([`Unportable`]) when init touched a table (its
/// entries are function references, meaningless outside their store),
/// dropped a segment (a new instance would still have it), or left a
/// reference in a global; then every build runs init, as before.
///
/// The `Default` snapshot is empty: of memory size zero, it fits no module.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlankSnapshot {
    /// The guest's linear-memory size, bytes.
    memory_bytes: u64,
    /// The guest bytes `start` and init wrote: (guest offset, bytes),
    /// sorted, not overlapping.
    runs: Vec<(u64, Vec<u8>)>,
    /// Every mutable global, in [`crate::module::ModuleInfo::globals`] order.
    globals: Vec<GlobalValue>,
}

/// Why an executor's blank state cannot move to another instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::Display)]
#[strum(serialize_all = "snake_case")]
#[non_exhaustive]
pub enum Unportable {
    /// `start` or `executor_init` changed a table.
    TableTouched,
    /// `start` or `executor_init` dropped a data or element segment.
    SegmentDropped,
    /// A mutable global holds a reference (or the backend cannot read
    /// globals).
    GlobalNotPortable,
}

impl BlankSnapshot {
    /// Takes the snapshot of an instance that just ran `start` and
    /// `executor_init` — before [`ExecutorInstance::mark_blank`], which
    /// clears the dirty map this reads. With the write barrier
    /// ([`crate::instrument::Tracking::Barrier`]) what init wrote is what
    /// the dirty map marks; without it, `pristine` must be a new instance
    /// of the same module on which nothing ran, and what init wrote is
    /// every page where the two memories differ.
    pub fn take(
        instance: &mut dyn ExecutorInstance,
        pristine: Option<&mut dyn ExecutorInstance>,
        layout: Layout,
    ) -> Result<Result<Self, Unportable>, CallError> {
        let Some(globals) = instance.global_values()? else {
            return Ok(Err(Unportable::GlobalNotPortable));
        };
        let writes: Vec<(u32, u32)> = instance.env().take_host_writes().collect();
        let memory_bytes = instance.memory_size();
        let Memories { guest, books } = instance.memories();
        if layout.books == 0 || books.len() < layout.books {
            return Err(CallError::Host("a prepared module always has its books".into()));
        }
        if books[layout.rebuild_flag()] != 0 {
            return Ok(Err(Unportable::SegmentDropped));
        }
        if books[layout.tables_flag()] != 0 {
            return Ok(Err(Unportable::TableTouched));
        }
        let pages = guest.len().div_ceil(DIRTY_PAGE);
        let written: Vec<usize> = match pristine {
            None => (0..pages.min(layout.map)).filter(|&page| books[page] != 0).collect(),
            Some(pristine) => {
                // A page beyond the pristine memory is one init grew: zero
                // in a new instance grown to the same size.
                let before = pristine.memory();
                let range = |p: usize| p * DIRTY_PAGE..((p + 1) * DIRTY_PAGE).min(guest.len());
                (0..pages)
                    .filter(|&p| match before.get(range(p)) {
                        Some(was) => guest[range(p)] != *was,
                        None => guest[range(p)].iter().any(|b| *b != 0),
                    })
                    .collect()
            }
        };
        let mut ranges: Vec<(usize, usize)> = written
            .into_iter()
            .map(|page| (page * DIRTY_PAGE, page * DIRTY_PAGE + DIRTY_PAGE + SPILL))
            .chain(writes.into_iter().map(|(start, len)| (start as usize, start as usize + len as usize)))
            .map(|(start, end)| (start.min(guest.len()), end.min(guest.len())))
            .filter(|(start, end)| start < end)
            .collect();
        ranges.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(ranges.len());
        for (start, end) in ranges {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        let runs = merged.into_iter().map(|(start, end)| (start as u64, guest[start..end].to_vec())).collect();
        Ok(Ok(BlankSnapshot { memory_bytes, runs, globals }))
    }

    /// Brings a new instance of the same prepared module (instantiated, no
    /// `start` or init run) to the blank state: grows its memory, writes
    /// the bytes, sets the globals. Then the caller marks it blank. An `Err`
    /// (a snapshot that does not fit this module) leaves the instance
    /// half-written: discard it.
    pub fn apply(&self, instance: &mut dyn ExecutorInstance, limits: &crate::Limits) -> Result<(), CallError> {
        let unfit = |what: String| CallError::Host(format!("the blank snapshot does not fit this executor: {what}"));
        let page = crate::limits::PAGE_SIZE;
        let current = instance.memory_size();
        let most = limits.memory_pages() * page;
        if self.memory_bytes < current || self.memory_bytes > most || !self.memory_bytes.is_multiple_of(page) {
            return Err(unfit(format!("memory of {} bytes, instance has {current}", self.memory_bytes)));
        }
        if self.memory_bytes > current {
            instance.grow_memory((self.memory_bytes - current) / page)?;
        }
        let guest = instance.memory();
        for (start, bytes) in &self.runs {
            let range = usize::try_from(*start).ok().and_then(|s| Some(s..s.checked_add(bytes.len())?));
            let target = range.and_then(|r| guest.get_mut(r)).ok_or_else(|| unfit(format!("bytes at {start}")))?;
            target.copy_from_slice(bytes);
        }
        instance.set_global_values(&self.globals)
    }

    /// `module` (prepared, instrumented) rewritten so that instantiating it
    /// *is* the blank state, Wizer-style (see [`crate::instrument::bake`]):
    /// no `start`, no `executor_init` to run. For engines that map data
    /// segments copy-on-write (wasmtime's memory images) an instance then
    /// costs a mapping, not a copy; others gain nothing over
    /// [`BlankSnapshot::apply`] (see [`crate::ExecutorHost::bakes_snapshots`]).
    pub fn bake(&self, module: &PreparedModule) -> crate::Result<PreparedModule> {
        crate::instrument::bake(module, self.memory_bytes, &self.runs, &self.globals)
    }

    /// Bytes of guest memory the snapshot writes.
    pub fn written_bytes(&self) -> usize {
        self.runs.iter().map(|(_, b)| b.len()).sum()
    }

    /// The guest's linear-memory size in the blank state, bytes.
    pub fn memory_bytes(&self) -> u64 {
        self.memory_bytes
    }

    /// The blank state's globals.
    pub fn globals(&self) -> &[GlobalValue] {
        &self.globals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restores_marked_pages_with_their_spill_and_clears_the_map() {
        let layout = Layout::for_limit(1 << 20);
        let mut mem: Vec<u8> = (0..40 * DIRTY_PAGE + 10).map(|i| (i % 251) as u8).collect();
        let mut books = vec![0u8; layout.books];
        let image = MemoryImage::capture(layout, Memories { guest: &mut mem, books: &mut books });
        assert_eq!(
            image.restore(Memories { guest: &mut mem, books: &mut books }, &[]),
            Restore::Done { pages: 0, tables_dirty: false }
        );
        // (where, how many bytes change, how many the mark covers): the
        // 8-byte store at a page end marks its first page only, as the
        // instrumentation's barrier does.
        for (at, len, marked) in [
            (5usize, 1usize, 1usize),
            (3 * DIRTY_PAGE - 2, 8, 1),
            (17 * DIRTY_PAGE, 2 * DIRTY_PAGE, 2 * DIRTY_PAGE),
            (40 * DIRTY_PAGE + 9, 1, 1),
        ] {
            mem[at..at + len].iter_mut().for_each(|b| *b ^= 0xff);
            layout.mark(&mut books, at, marked);
        }
        books[layout.tables_flag()] = 1;
        // Exact host writes: one in no marked page; one inside a marked
        // page (its copy restores it); one from a marked page past its
        // spill into a clear one (copied itself).
        let host_writes = [(30 * DIRTY_PAGE + 3, 1), (17 * DIRTY_PAGE + 100, 9), (DIRTY_PAGE - 2, 20)];
        for (at, len) in host_writes {
            mem[at..at + len].iter_mut().for_each(|b| *b ^= 1);
        }
        let host_writes = host_writes.map(|(at, len)| (at as u32, len as u32));
        let restored = image.restore(Memories { guest: &mut mem, books: &mut books }, &host_writes);
        assert_eq!(restored, Restore::Done { pages: 1 + 1 + 2 + 1, tables_dirty: true });
        assert_eq!(mem, image.bytes, "restored exactly");
        assert!(books.iter().all(|b| *b == 0), "map and flag cleared");
        books[layout.rebuild_flag()] = 1;
        assert_eq!(image.restore(Memories { guest: &mut mem, books: &mut books }, &[]), Restore::NeedsRebuild);
        books[layout.rebuild_flag()] = 0;
        mem.extend_from_slice(&[0; 65536]);
        assert_eq!(
            image.restore(Memories { guest: &mut mem, books: &mut books }, &[]),
            Restore::NeedsRebuild,
            "memory grew"
        );
    }

    /// `for_each_mark` visits every nonzero byte in order and clears it,
    /// at any length (whole words and a tail).
    #[test]
    fn for_each_mark_visits_and_clears_every_mark() {
        for len in [0usize, 1, 7, 8, 9, 16, 64, 65, 70] {
            for stride in [1usize, 2, 3, 7, 8, 9, 64] {
                for value in [1u8, 0x80, 0xff] {
                    let mut marks: Vec<u8> =
                        (0..len).map(|i| if i % stride == stride - 1 { value } else { 0 }).collect();
                    let expected: Vec<usize> = (0..len).filter(|i| marks[*i] != 0).collect();
                    let mut found = Vec::new();
                    for_each_mark(&mut marks, |i| found.push(i));
                    assert_eq!(found, expected, "len {len} stride {stride}");
                    assert!(marks.iter().all(|m| *m == 0), "cleared");
                }
            }
        }
    }

    /// Every nonzero byte is found, in order, and cleared, at any length
    /// and position (the 32-byte blocks, the words and the tail).
    #[test]
    fn next_mark_finds_every_mark_in_order() {
        for len in [0usize, 1, 7, 8, 31, 32, 33, 63, 64, 65, 80, 100] {
            // Marks every `stride` bytes, and a single mark anywhere.
            let strides = [1usize, 3, 8, 13, 32]
                .map(|stride| (0..len).map(|i| u8::from(i % stride == stride - 1)).collect::<Vec<u8>>());
            let singles = (0..len).map(|at| (0..len).map(|i| u8::from(i == at)).collect());
            for marks in strides.into_iter().chain(singles) {
                // From every starting point: the blocks and words need not
                // be aligned.
                for from in 0..=len {
                    let expected: Vec<usize> = (from..len).filter(|i| marks[*i] != 0).collect();
                    let (mut found, mut at) = (Vec::new(), from);
                    while let Some(i) = next_mark(&marks, at) {
                        found.push(i);
                        at = i + 1;
                    }
                    assert_eq!(found, expected, "{marks:?} from {from}");
                }
            }
        }
    }
}
