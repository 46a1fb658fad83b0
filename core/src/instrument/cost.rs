//! The documented costs of abi.md's engine-independent units: what one
//! instruction, byte, page, element, host call and frame cost in fuel and
//! stack bytes. Part of [`super::VERSION`]: a change here is a new pass.

/// Fuel per executed instruction of the original module.
pub const INSTRUCTION: u64 = 1;
/// Fuel per byte written by `memory.fill`/`memory.copy`/`memory.init`,
/// and per element of `table.fill`/`table.copy`/`table.init`.
pub const BULK_UNIT: u64 = 1;
/// Fuel per 64 KiB page `memory.grow` asks for (the host zeroes it).
pub const GROW_PAGE: u64 = 1024;
/// Fuel per element `table.grow` asks for.
pub const GROW_ELEMENT: u64 = 1;
/// Fuel per host call (`state_get`, `deny_reason`, `log`).
pub const HOST_CALL: u64 = 100;
/// Fuel per byte a host call reads (key, reason, log line as kept) or
/// writes (a `state_get` value).
pub const HOST_BYTE: u64 = 1;
/// Stack bytes of every frame, whatever its shape.
pub const FRAME_BASE: u64 = 64;
/// Stack bytes per parameter, declared local and operand-stack slot.
pub const SLOT: u64 = 8;

/// The stack bytes a frame of a function with `params` parameters,
/// `locals` declared locals and an operand stack at most `max_stack`
/// deep costs (capped at 1 GiB, above any budget).
pub fn frame(params: u32, locals: u32, max_stack: u32) -> u64 {
    let slots = u64::from(params) + u64::from(locals) + u64::from(max_stack);
    (FRAME_BASE + SLOT * slots).min(1 << 30)
}
