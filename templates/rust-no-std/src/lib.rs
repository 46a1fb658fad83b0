//! A `no_std` executor (executor ABI v1, see docs/abi.md): approves
//! transfers whose source balance suffices, denies the rest with a reason;
//! approves every other instruction. Build: `cargo build --release`, then
//! `peer check target/wasm32v1-none/release/my_executor.wasm`.
#![no_std]

use abi::{Instruction, Transaction, reasons};
use core::cell::UnsafeCell;

// The host's imports (module `host`); declare only what you use.
#[link(wasm_import_module = "host")]
unsafe extern "C" {
    /// Reads the value under a key: its length (written to `out` if it
    /// fits in `cap`), or -1 if absent.
    #[link_name = "state_get"]
    fn host_state_get(key: *const u8, key_len: usize, out: *mut u8, cap: usize) -> i32;
    /// The reason of a deny verdict (the last call wins).
    #[link_name = "deny_reason"]
    fn host_deny_reason(ptr: *const u8, len: usize);
    /// A log line: level 0 error … 4 trace.
    #[link_name = "log"]
    fn host_log(level: i32, ptr: *const u8, len: usize);
}

// A panic traps: the verdict is rejected(trap: unreachable) and the
// instance is rebuilt. Deny instead wherever the transaction is at fault.
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}

/// One-thread interior mutability for statics (an instance has one thread).
struct Static<T>(UnsafeCell<T>);
// SAFETY: a wasm32v1-none instance is single-threaded.
unsafe impl<T> Sync for Static<T> {}

/// The end of the payload buffer (0: not measured yet).
static HEAP_END: Static<usize> = Static(UnsafeCell::new(0));

unsafe extern "C" {
    static __heap_base: u8;
}

/// Runs once per instance, before the first transaction, with no world
/// state. What it builds is part of the blank state every transaction
/// starts from: build tables, caches and the heap here, not lazily.
#[unsafe(no_mangle)]
pub extern "C" fn executor_init() {
    let line = "my executor initialised";
    // SAFETY: the host reads `line` within our memory.
    unsafe { host_log(3, line.as_ptr(), line.len()) }
}

/// Where the host copies the next transaction: the heap base, growing
/// memory as needed (null ends the transaction as host_fault).
#[unsafe(no_mangle)]
pub extern "C" fn executor_alloc(len: usize) -> *mut u8 {
    // SAFETY: single-threaded; no reference to the static escapes.
    let end = unsafe { &mut *HEAP_END.0.get() };
    let base = &raw const __heap_base as usize;
    if *end == 0 {
        *end = core::arch::wasm32::memory_size(0) * 65536;
    }
    let Some(need) = base.checked_add(len) else { return core::ptr::null_mut() };
    if need > *end {
        let pages = (need - *end).div_ceil(65536);
        if core::arch::wasm32::memory_grow(0, pages) == usize::MAX {
            return core::ptr::null_mut();
        }
        *end += pages * 65536;
    }
    base as *mut u8
}

/// The verdict: 0 approve, 1 deny.
#[unsafe(no_mangle)]
pub extern "C" fn executor_validate(ptr: *const u8, len: usize) -> i32 {
    // SAFETY: the host copied `len` bytes to `ptr`, which executor_alloc gave.
    let bytes = unsafe { core::slice::from_raw_parts(ptr, len) };
    let Ok(tx) = postcard::from_bytes::<Transaction<'_>>(bytes) else { return deny(reasons::MALFORMED) };
    match tx.instruction {
        Instruction::Transfer { from, asset, amount, .. } => {
            if amount == 0 {
                return deny(reasons::ZERO_AMOUNT);
            }
            if balance(from, asset) < amount {
                return deny(reasons::INSUFFICIENT);
            }
            0
        }
        _ => 0,
    }
}

/// A balance from world state (absent: 0).
fn balance(account: u32, asset: u32) -> u64 {
    let key = abi::balance_key(account, asset);
    let mut value = [0u8; 8];
    // SAFETY: both ranges lie in our memory.
    let n = unsafe { host_state_get(key.as_ptr(), key.len(), value.as_mut_ptr(), value.len()) };
    if n == 8 { u64::from_le_bytes(value) } else { 0 }
}

fn deny(reason: &str) -> i32 {
    // SAFETY: the host reads `reason` within our memory.
    unsafe { host_deny_reason(reason.as_ptr(), reason.len()) }
    1
}
