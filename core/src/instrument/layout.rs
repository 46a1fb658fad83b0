//! The reserved memory layout: the bytes below the guest's memory where
//! the host keeps its bookkeeping — the dirty map, the counters' cells and
//! the flags — and the host's side of each.

use super::{DIRTY_PAGE, MAX_STACK_BUDGET};

/// Where the guest's memory starts and where the host's bookkeeping lies
/// below it: the dirty map at 0, the cells and the flag bytes at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Layout {
    /// Bytes reserved below the guest's memory (`R`, whole wasm pages).
    pub reserved: usize,
    /// Bytes of the dirty map (one per 4 KiB page of the largest guest
    /// memory).
    pub map: usize,
}

/// Bytes at the end of the reserved region for cells and flags.
const CELLS: usize = 32;

impl Layout {
    /// No reserved region (for host functions over a plain memory).
    pub const NONE: Layout = Layout { reserved: 0, map: 0 };

    /// The layout for guests of at most `max_guest_bytes` of memory: the
    /// map, then the cells and flags, rounded up to whole wasm pages.
    pub fn for_limit(max_guest_bytes: u64) -> Self {
        let map = (max_guest_bytes as usize).div_ceil(DIRTY_PAGE);
        Layout { reserved: (map + CELLS).div_ceil(65536) * 65536, map }
    }

    /// Marks guest bytes `start..start+len` dirty in the map (`region` is
    /// the reserved region, see [`Layout::split`]).
    pub fn mark(&self, region: &mut [u8], start: usize, len: usize) {
        if len == 0 || region.is_empty() {
            return;
        }
        let last = start + len - 1;
        region[start / DIRTY_PAGE..=last / DIRTY_PAGE].fill(1);
    }

    /// Address of the byte set when the instance cannot be restored in
    /// place (a data or element segment was dropped).
    pub fn rebuild_flag(&self) -> usize {
        self.reserved - 1
    }

    /// Address of the byte set when a table was mutated.
    pub fn tables_flag(&self) -> usize {
        self.reserved - 2
    }

    /// Address of the byte set, just before the guest traps, when
    /// `memory.grow` or `table.grow` asked for more than the limits allow.
    pub fn oom_flag(&self) -> usize {
        self.reserved - 3
    }

    /// Address of the byte set, just before the guest traps, when fuel ran
    /// out (by the instrumentation or a host call's charge).
    pub fn fuel_flag(&self) -> usize {
        self.reserved - 4
    }

    /// Address of the byte set, just before the guest traps, when the stack
    /// budget ran out.
    pub fn stack_flag(&self) -> usize {
        self.reserved - 5
    }

    /// Address of the byte the host sets when it arms a call: the next
    /// exported function entered loads the counters from the cells.
    pub fn entry_flag(&self) -> usize {
        self.reserved - 6
    }

    /// Address of the remaining stack budget (`i32`, little-endian).
    pub fn stack_cell(&self) -> usize {
        self.reserved - 12
    }

    /// Address of the remaining fuel (`i64`, little-endian, 8-aligned).
    pub fn fuel_cell(&self) -> usize {
        self.reserved - 24
    }

    /// Whether the instrumentation's growth guard ended the last call
    /// (`memory` is the whole linear memory).
    pub fn out_of_memory(&self, memory: &[u8]) -> bool {
        self.flag(memory, self.oom_flag())
    }

    /// What the reserved region says ended the last call, if anything
    /// (`memory` is the whole linear memory).
    pub fn ended(&self, memory: &[u8]) -> Option<crate::RejectionKind> {
        use crate::RejectionKind as K;
        [(self.oom_flag(), K::OutOfMemory), (self.fuel_flag(), K::OutOfFuel), (self.stack_flag(), K::StackOverflow)]
            .into_iter()
            .find(|(at, _)| self.flag(memory, *at))
            .map(|(_, kind)| kind)
    }

    fn flag(&self, memory: &[u8], at: usize) -> bool {
        self.reserved > 0 && memory.get(at).is_some_and(|f| *f != 0)
    }

    /// Arms the next calls: `fuel` units and `stack` bytes of budget, the
    /// end flags cleared (`memory` is the whole linear memory).
    pub fn arm(&self, memory: &mut [u8], fuel: u64, stack: u64) {
        if self.reserved == 0 {
            return;
        }
        let fuel = fuel.min(i64::MAX as u64 / 2);
        let stack = stack.min(MAX_STACK_BUDGET) as u32;
        memory[self.fuel_cell()..self.fuel_cell() + 8].copy_from_slice(&fuel.to_le_bytes());
        memory[self.stack_cell()..self.stack_cell() + 4].copy_from_slice(&stack.to_le_bytes());
        for at in [self.oom_flag(), self.fuel_flag(), self.stack_flag()] {
            memory[at] = 0;
        }
        memory[self.entry_flag()] = 1;
    }

    /// Fuel left (`memory` is the whole linear memory).
    pub fn fuel_left(&self, memory: &[u8]) -> u64 {
        if self.reserved == 0 {
            return u64::MAX;
        }
        let at = self.fuel_cell();
        i64::from_le_bytes(memory[at..at + 8].try_into().expect("8 bytes")).max(0) as u64
    }

    /// Subtracts `units` of fuel for work the host does; `false` (with the
    /// fuel flag set and no fuel left) if there was not enough.
    pub fn charge(&self, memory: &mut [u8], units: u64) -> bool {
        if self.reserved == 0 {
            return true;
        }
        let left = self.fuel_left(memory);
        let at = self.fuel_cell();
        let enough = left >= units;
        let after = if enough { left - units } else { 0 };
        memory[at..at + 8].copy_from_slice(&after.to_le_bytes());
        if !enough {
            memory[self.fuel_flag()] = 1;
        }
        enough
    }

    /// Reserved wasm pages.
    pub fn reserved_pages(&self) -> u64 {
        (self.reserved / 65536) as u64
    }

    /// Splits a whole linear memory into the reserved region and the
    /// guest's view.
    pub fn split<'a>(&self, memory: &'a mut [u8]) -> (&'a mut [u8], &'a mut [u8]) {
        memory.split_at_mut(self.reserved.min(memory.len()))
    }

    /// The guest's view of a whole linear memory.
    pub fn guest<'a>(&self, memory: &'a [u8]) -> &'a [u8] {
        &memory[self.reserved.min(memory.len())..]
    }
}
