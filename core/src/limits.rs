//! Resource limits, the same on every backend, with documented defaults.

use serde::{Deserialize, Serialize};

/// One WebAssembly page.
pub const PAGE_SIZE: u64 = 65_536;

/// What one executor may use. Every field is enforced identically on every
/// backend: module-size limits by [`crate::module`] before any engine sees
/// the bytes; memory and table growth through [`crate::HostEnv`]'s growth
/// checks; fuel and stack per transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Fuel per transaction (the `executor_alloc` and `executor_validate`
    /// calls together). Default 10,000,000.
    pub fuel: u64,
    /// Fuel for the wasm `start` function and `executor_init` together, paid
    /// once per instance build. Default 100,000,000.
    pub init_fuel: u64,
    /// The most linear memory one instance may have, in bytes (rounded down
    /// to whole 64 KiB pages). Default 64 MiB.
    pub memory_bytes: u64,
    /// The most elements one table may have. Default 10,000.
    pub table_elements: u64,
    /// The stack budget of one call from the host, in the bytes of the
    /// engine-independent frame model ([`crate::instrument::cost::frame`]):
    /// deeper is `stack_overflow`, on every engine at the same call.
    /// Default 128 KiB (about 1,800 frames of a small function); at most
    /// [`crate::instrument::MAX_STACK_BUDGET`]. Engines get
    /// [`crate::instrument::engine_stack_bytes`] of native stack, so the
    /// thread calling into wasmtime needs that much stack free.
    pub max_stack: u64,
    /// The most memory one executor may tie up, checked when it is loaded
    /// (or installed by an upgrade) — never a cause of recycles. Estimated
    /// as [`LIVE_INSTANCES`] instances at the memory limit (the warm one,
    /// an audit instance, and during an upgrade the new one and its
    /// migration instance), [`BLANK_COPIES`] more memories' worth for the
    /// blank state (the restore image and the blank snapshot; where the
    /// host bakes snapshots, the restore image, the baked executor's memory
    /// image and its own restore image, the snapshot itself then being
    /// dropped; while the blank method switches, the untracked variant's
    /// baked image too), and for each of the [`COMPILED_VARIANTS`] that may
    /// exist at once (the executor with and without the write barrier, each
    /// baked) a copy of the module and [`COMPILED_BYTES`] of machine code
    /// and metadata per byte of its code section, plus what compiling it
    /// may take at its peak ([`LOAD_BUDGET_BYTES`]). Default 2 GiB: an
    /// executor and three more workers at the default memory limit.
    pub memory_cap: u64,
    /// Size limits of the module itself.
    pub module: ModuleLimits,
}

/// Instances of one executor that may be alive at once (see
/// [`Limits::memory_cap`]).
pub const LIVE_INSTANCES: u64 = 4;

/// Copies of the blank state one executor may keep, each at most one
/// memory (see [`Limits::memory_cap`]).
pub const BLANK_COPIES: u64 = 4;

/// Compiled variants of one executor that may exist at once (see
/// [`Limits::memory_cap`]).
pub const COMPILED_VARIANTS: u64 = 4;

/// Bytes of machine code and metadata counted per byte of code section in
/// each compiled variant (see [`Limits::memory_cap`]).
pub const COMPILED_BYTES: u64 = 16;

/// The most memory loading one executor within the default module limits
/// takes above the process's before it — checks, instrumentation, the
/// engine's compilation and the first instance — on any backend: 256 MiB,
/// the load budget the limits that drive compilation cost (`functions`,
/// `types`, `nesting_depth`, `instructions_per_function`, `instructions`,
/// `locals`) were sized to, measured with each limit's worst case by
/// `bench-load` (README, *Load budget*). Counted once in
/// [`Limits::memory_estimate`]: further workers load after the first, from
/// the cache where there is one (see [`Limits::worker_estimate`]).
pub const LOAD_BUDGET_BYTES: u64 = 256 << 20;

/// Instances one more worker of the same executor may have alive at once
/// — its warm instance, an audit instance and, while it installs an
/// upgrade, the new one (see [`Limits::worker_estimate`]).
pub const WORKER_INSTANCES: u64 = 3;

/// Copies of the blank state one more worker may keep — its restore image
/// and its snapshot (see [`Limits::worker_estimate`]).
pub const WORKER_BLANK_COPIES: u64 = 2;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 10_000_000,
            init_fuel: 100_000_000,
            memory_bytes: 64 << 20,
            table_elements: 10_000,
            max_stack: 128 << 10,
            memory_cap: 2 << 30,
            module: ModuleLimits::default(),
        }
    }
}

impl Limits {
    /// The memory limit in whole pages.
    pub fn memory_pages(&self) -> u64 {
        self.memory_bytes / PAGE_SIZE
    }

    /// The most linear memory an instance may have as the *engine* sees
    /// it, in wasm pages: the guest's limit plus the books core's
    /// instrumentation adds as a second memory (the one place this sum is
    /// made; memory estimates are sized from it).
    pub fn engine_memory_pages(&self) -> u64 {
        self.memory_pages() + self.books_pages()
    }

    /// [`Limits::engine_memory_pages`] in bytes.
    pub fn engine_memory_bytes(&self) -> u64 {
        self.engine_memory_pages() * PAGE_SIZE
    }

    /// The largest single memory of an instance, in bytes: the guest's at
    /// its limit, or the books if a tiny limit makes them larger (what an
    /// engine's per-memory slot must hold).
    pub fn engine_memory_slot_bytes(&self) -> u64 {
        self.memory_pages().max(self.books_pages()) * PAGE_SIZE
    }

    fn books_pages(&self) -> u64 {
        crate::instrument::Layout::for_limit(self.memory_bytes).books_pages()
    }

    /// The memory an executor of `module_bytes`, `code_bytes` of them its
    /// code section, may tie up, as [`Limits::memory_cap`] estimates it.
    pub fn memory_estimate(&self, module_bytes: u64, code_bytes: u64) -> u64 {
        (LIVE_INSTANCES + BLANK_COPIES) * self.engine_memory_bytes()
            + COMPILED_VARIANTS * (module_bytes + COMPILED_BYTES * code_bytes)
            + LOAD_BUDGET_BYTES
    }
}

impl Limits {
    /// The memory each driver of an executor beyond the first may tie up
    /// (the workers of in-order parallel validation and of
    /// pre-validation): [`WORKER_INSTANCES`] instances and
    /// [`WORKER_BLANK_COPIES`] blank copies at the memory limit, and one
    /// compiled variant (a copy of the module and [`COMPILED_BYTES`] per
    /// byte of its code section). Workers never switch blank methods, and
    /// at most one of them runs a migration at a time.
    pub fn worker_estimate(&self, module_bytes: u64, code_bytes: u64) -> u64 {
        (WORKER_INSTANCES + WORKER_BLANK_COPIES) * self.engine_memory_bytes()
            + module_bytes
            + COMPILED_BYTES * code_bytes
    }
}

/// Size limits checked at load, before any engine sees the module; a module
/// over any of them is a load error on every backend alike.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct ModuleLimits {
    /// Binary module size in bytes (WAT text may be at most as long).
    /// Default 32 MiB.
    pub bytes: u64,
    /// Functions, imported and defined. Default 30,000 (see
    /// [`LOAD_BUDGET_BYTES`] for how the load-cost limits were sized).
    pub functions: u32,
    /// Locals of any one function, parameters included. Default (and
    /// most) 29,990: the strictest engine (wasmi) accepts
    /// [`crate::module::engine_limits::LOCALS`] with parameters, and the
    /// instrumentation adds [`crate::instrument::ADDED_LOCALS`].
    pub locals_per_function: u32,
    /// Globals. Default 10,000.
    pub globals: u32,
    /// Exports. Default 10,000.
    pub exports: u32,
    /// Data and element segments, each. Default 100,000.
    pub segments: u32,
    /// Tables. Default 10.
    pub tables: u32,
    /// Function types the module declares. Default 10,000.
    pub types: u32,
    /// Control nesting of any one function: `block`, `loop` and `if`
    /// inside each other, the function's own body counting as the first
    /// level. Default 2,000 (one compiler's time grows with its square).
    pub nesting_depth: u32,
    /// Instructions (operators, `end` included) of any one function.
    /// Default 50,000: compilers hold a function's whole IR, one per
    /// thread, and wasmtime's register allocator is quadratic in a
    /// function's loops (one of 9,000 small loops in 100,000 instructions
    /// took 4.5 s uninstrumented; 50,000, 1.0 s).
    pub instructions_per_function: u32,
    /// Instructions of all functions together. Default 1,000,000.
    pub instructions: u64,
    /// Locals of all functions together, parameters included. Default
    /// 1,000,000.
    pub locals: u64,
}

impl Default for ModuleLimits {
    fn default() -> Self {
        ModuleLimits {
            bytes: 32 << 20,
            functions: 30_000,
            locals_per_function: crate::module::engine_limits::LOCALS as u32 - crate::instrument::ADDED_LOCALS,
            globals: 10_000,
            exports: 10_000,
            segments: 100_000,
            tables: 10,
            types: 10_000,
            nesting_depth: 2_000,
            instructions_per_function: 50_000,
            instructions: 1_000_000,
            locals: 1_000_000,
        }
    }
}
