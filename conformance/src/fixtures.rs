//! The executors the suite runs, from `executors/` at the repository root.

use executor_core::{Rejection, TrapCode, Verdict};

/// The default executor (Rust guest, committed build).
pub const DEFAULT_EXECUTOR: &[u8] = include_bytes!("../executors/default.wasm");
/// The default executor's variant: the same rules, other bytes.
pub const DEFAULT_VARIANT: &[u8] = include_bytes!("../executors/default-variant.wasm");
/// Every way to fail, selected by the payload's first byte.
pub const HOSTILE: &str = include_str!("../executors/fixtures/hostile.wat");
/// Remembers in a global, a memory byte, a grown page and a table slot.
pub const STATEFUL: &str = include_str!("../executors/fixtures/stateful.wat");
/// Calls `host.state_get` in `executor_init`.
pub const INIT_READS_STATE: &str = include_str!("../executors/fixtures/init_reads_state.wat");
/// Memory semantics the instrumentation must preserve.
pub const MEMORY_OPS: &str = include_str!("../executors/fixtures/memory_ops.wat");
/// Write patterns dirty tracking must cover, one per payload byte; payload
/// 0 checks that guest memory is blank.
pub const DIRTY: &str = include_str!("../executors/fixtures/dirty.wat");
/// Reads world state under the payload as key.
pub const READS_STATE: &str = include_str!("../executors/fixtures/reads_state.wat");

/// A `rejected(kind)` verdict.
pub const fn rejected(r: Rejection) -> Verdict {
    Verdict::Rejected { rejection: r }
}

const fn trap(code: TrapCode) -> Verdict {
    rejected(Rejection::Trap(code))
}

/// The payload byte of [`HOSTILE`] and the verdict abi.md requires for it
/// (with the default limits), with a name for messages. Deny reasons are
/// checked separately in [`crate::cases::deny_reasons`].
pub const HOSTILE_CASES: &[(u8, &str, Verdict)] = &[
    (1, "infinite loop", rejected(Rejection::OutOfFuel)),
    (2, "deep recursion", rejected(Rejection::StackOverflow)),
    (3, "one huge memory.grow", rejected(Rejection::OutOfMemory)),
    (4, "many small memory.grow", rejected(Rejection::OutOfMemory)),
    (5, "table bomb", rejected(Rejection::OutOfMemory)),
    (6, "unreachable", trap(TrapCode::Unreachable)),
    (7, "division by zero", trap(TrapCode::IntegerDivisionByZero)),
    (8, "integer overflow", trap(TrapCode::IntegerOverflow)),
    (9, "bad conversion", trap(TrapCode::BadConversionToInteger)),
    (10, "out-of-bounds load", trap(TrapCode::MemoryOutOfBounds)),
    (11, "null indirect call", trap(TrapCode::IndirectCallToNull)),
    (12, "bad signature", trap(TrapCode::BadSignature)),
    (13, "bad verdict value", rejected(Rejection::BadVerdict)),
    (14, "state_get key outside memory", rejected(Rejection::HostFault)),
    (15, "state_get key length 0x7fffffff", rejected(Rejection::HostFault)),
    (16, "state_get out_cap 0xffffffff on an absent key", rejected(Rejection::HostFault)),
    (17, "state_get key longer than 1024", rejected(Rejection::HostFault)),
    (18, "deny_reason outside memory", rejected(Rejection::HostFault)),
    (19, "log outside memory", rejected(Rejection::HostFault)),
    (23, "table access out of bounds", trap(TrapCode::TableOutOfBounds)),
];

/// Work that grows with the payload, for fuel sweeps.
pub const FUEL_SWEEP: &str = include_str!("../executors/fixtures/fuel_sweep.wat");
/// Recursion as deep as the payload says, for stack sweeps.
pub const RECURSION: &str = include_str!("../executors/fixtures/recursion.wat");
/// Small leaves called at the bottom of a recursion (inlined), with
/// `;; (pad)` where a case makes them too large to inline.
pub const INLINE: &str = include_str!("../executors/fixtures/inline.wat");
/// Recursion with heavy frames, against the engines' own stacks.
pub const HEAVY_FRAMES: &str = include_str!("../executors/fixtures/heavy_frames.wat");
/// NaN results of every NaN-producing instruction.
pub const NAN: &str = include_str!("../executors/fixtures/nan.wat");
/// Grows memory by a resident page on every transaction.
pub const GROWS: &str = include_str!("../executors/fixtures/grows.wat");
/// Every kind of post-init state a blank snapshot must carry (see the file);
/// `;; (variant)` and `;; (globals)` mark where cases splice more.
pub const SNAPSHOT: &str = include_str!("../executors/fixtures/snapshot.wat");
