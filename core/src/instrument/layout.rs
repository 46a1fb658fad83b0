//! The bookkeeping memory's layout: a second linear memory, beside the
//! guest's, where the host keeps its books — the dirty map, the counters'
//! cells and the flags — and the host's side of each.
//!
//! The books live in a memory of their own (multi-memory, memory index
//! [`BOOKS`]) rather than below the guest's memory, so the guest's memory
//! stays exactly as compiled: every load and store keeps its own static
//! offset (engines emit cheaper accesses for small or zero offsets:
//! singlepass for zero, wasmi for offsets below 2^16), bulk operations need
//! no shifted addresses, and a wild mark traps in the books' bounds instead
//! of landing in guest memory.

use super::{DIRTY_PAGE, MAX_STACK_BUDGET, SUMMARY_SPAN};

/// The index of the books memory in an instrumented module (the guest's
/// own memory stays memory 0).
pub const BOOKS: u32 = 1;

/// An access of the books memory at the address on the stack (`align`
/// as a power of two).
pub(super) fn books_arg(align: u32) -> wasm_encoder::MemArg {
    wasm_encoder::MemArg { offset: 0, align, memory_index: BOOKS }
}

/// The books memory: the dirty map at 0, its summary right after it (a
/// byte per [`SUMMARY_SPAN`] of guest memory, set with every mark, so a
/// blank scans only the map blocks of spans that were written), the cells
/// and the flag bytes at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Layout {
    /// Bytes of the books memory (whole wasm pages; it never grows).
    pub books: usize,
    /// Bytes of the dirty map (one per [`DIRTY_PAGE`] of the largest
    /// guest memory).
    pub map: usize,
    /// Bytes of the summary, which starts at offset `map` (one per
    /// [`SUMMARY_SPAN`] of the largest guest memory).
    pub summary: usize,
}

/// Bytes at the end of the books for cells and flags.
const CELLS: usize = 32;

/// How many `memory.grow` and `table.grow` one call of the guest may
/// execute (successful, failed or by zero); one more ends the transaction
/// as `out_of_memory`, on every engine. Why: wasmi 2's interpreter keeps a
/// native stack frame (≈ 176 bytes) for every growth it executes until the
/// call returns (its handlers for these two operations call the next
/// handler instead of jumping to it), so a loop of growths by zero
/// overflowed the host's stack and aborted the process. 4,096 frames fit
/// in a 2 MiB thread stack with room to spare; a call that grows memory a
/// page at a time up to the default limit (64 MiB) executes 1,024.
pub const MAX_GROWTHS_PER_CALL: u32 = 4096;

impl Layout {
    /// No books (for host functions over a plain memory).
    pub const NONE: Layout = Layout { books: 0, map: 0, summary: 0 };

    /// The layout for guests of at most `max_guest_bytes` of memory: the
    /// map, its summary, then the cells and flags, rounded up to whole wasm
    /// pages.
    pub fn for_limit(max_guest_bytes: u64) -> Self {
        let map = (max_guest_bytes as usize).div_ceil(DIRTY_PAGE);
        let summary = (max_guest_bytes as usize).div_ceil(SUMMARY_SPAN);
        Layout { books: (map + summary + CELLS).div_ceil(65536) * 65536, map, summary }
    }

    /// Marks guest bytes `start..start+len` dirty in the map of `books`
    /// and its summary, as the barrier does.
    pub fn mark(&self, books: &mut [u8], start: usize, len: usize) {
        if len == 0 || books.is_empty() {
            return;
        }
        let last = start + len - 1;
        books[start / DIRTY_PAGE..=last / DIRTY_PAGE].fill(1);
        books[self.map + start / SUMMARY_SPAN..=self.map + last / SUMMARY_SPAN].fill(1);
    }

    /// Whether a blank copies guest bytes `start..start+len` back anyway:
    /// the page `start` lies in is marked, and its copy (the page and the
    /// [`SPILL`](super::SPILL) after it) covers them. Marks are cleared only
    /// by a blank, so what is covered now stays covered until then.
    #[inline]
    pub fn covers(&self, books: &[u8], start: usize, len: usize) -> bool {
        let page = start / DIRTY_PAGE;
        page < self.map
            && books.get(page).is_some_and(|m| *m != 0)
            && start + len <= (page + 1) * DIRTY_PAGE + super::SPILL
    }

    /// The dirty map and its summary of `books`.
    #[inline]
    pub fn map_and_summary<'a>(&self, books: &'a mut [u8]) -> (&'a mut [u8], &'a mut [u8]) {
        let (map, rest) = books.split_at_mut(self.map);
        (map, &mut rest[..self.summary])
    }

    /// Address of the byte set when the instance cannot be restored in
    /// place (a data or element segment was dropped).
    pub fn rebuild_flag(&self) -> usize {
        self.books - 1
    }

    /// Address of the byte set when a table was mutated.
    pub fn tables_flag(&self) -> usize {
        self.books - 2
    }

    /// Address of the byte set, just before the guest traps, when
    /// `memory.grow` or `table.grow` asked for more than the limits allow.
    pub fn oom_flag(&self) -> usize {
        self.books - 3
    }

    /// Address of the byte set, just before the guest traps, when fuel ran
    /// out (by the instrumentation or a host call's charge).
    pub fn fuel_flag(&self) -> usize {
        self.books - 4
    }

    /// Address of the byte set, just before the guest traps, when the stack
    /// budget ran out.
    pub fn stack_flag(&self) -> usize {
        self.books - 5
    }

    /// Address of the byte the host sets when it arms a call: the next
    /// exported function entered loads the counters from the cells.
    pub fn entry_flag(&self) -> usize {
        self.books - 6
    }

    /// Address of the remaining stack budget (`i32`, little-endian).
    pub fn stack_cell(&self) -> usize {
        self.books - 12
    }

    /// Address of how many `memory.grow` and `table.grow` the current call
    /// may still execute (`i32`, little-endian; see
    /// [`MAX_GROWTHS_PER_CALL`]).
    pub fn growth_cell(&self) -> usize {
        self.books - 16
    }

    /// Address of the remaining fuel (`i64`, little-endian, 8-aligned).
    pub fn fuel_cell(&self) -> usize {
        self.books - 24
    }

    /// Whether the instrumentation's growth guard ended the last call
    /// (`books` is the books memory).
    pub fn out_of_memory(&self, books: &[u8]) -> bool {
        self.flag(books, self.oom_flag())
    }

    /// What the books say ended the last call, if anything
    /// (`books` is the books memory).
    pub fn ended(&self, books: &[u8]) -> Option<crate::RejectionKind> {
        use crate::RejectionKind as K;
        [(self.oom_flag(), K::OutOfMemory), (self.fuel_flag(), K::OutOfFuel), (self.stack_flag(), K::StackOverflow)]
            .into_iter()
            .find(|(at, _)| self.flag(books, *at))
            .map(|(_, kind)| kind)
    }

    fn flag(&self, books: &[u8], at: usize) -> bool {
        self.books > 0 && books.get(at).is_some_and(|f| *f != 0)
    }

    /// Arms the next calls: `fuel` units and `stack` bytes of budget, the
    /// end flags cleared (`books` is the books memory).
    pub fn arm(&self, books: &mut [u8], fuel: u64, stack: u64) {
        if self.books == 0 {
            return;
        }
        let fuel = fuel.min(i64::MAX as u64 / 2);
        let stack = stack.min(MAX_STACK_BUDGET) as u32;
        books[self.fuel_cell()..self.fuel_cell() + 8].copy_from_slice(&fuel.to_le_bytes());
        books[self.stack_cell()..self.stack_cell() + 4].copy_from_slice(&stack.to_le_bytes());
        books[self.growth_cell()..self.growth_cell() + 4].copy_from_slice(&MAX_GROWTHS_PER_CALL.to_le_bytes());
        for at in [self.oom_flag(), self.fuel_flag(), self.stack_flag()] {
            books[at] = 0;
        }
        books[self.entry_flag()] = 1;
    }

    /// Fuel left (`books` is the books memory).
    pub fn fuel_left(&self, books: &[u8]) -> u64 {
        if self.books == 0 {
            return u64::MAX;
        }
        let at = self.fuel_cell();
        i64::from_le_bytes(books[at..at + 8].try_into().expect("8 bytes")).max(0) as u64
    }

    /// Subtracts `units` of fuel for work the host does; `false` (with the
    /// fuel flag set and no fuel left) if there was not enough.
    pub fn charge(&self, books: &mut [u8], units: u64) -> bool {
        if self.books == 0 {
            return true;
        }
        let left = self.fuel_left(books);
        let at = self.fuel_cell();
        let enough = left >= units;
        let after = if enough { left - units } else { 0 };
        books[at..at + 8].copy_from_slice(&after.to_le_bytes());
        if !enough {
            books[self.fuel_flag()] = 1;
        }
        enough
    }

    /// Wasm pages of the books memory.
    pub fn books_pages(&self) -> u64 {
        (self.books / 65536) as u64
    }
}
