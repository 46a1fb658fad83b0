//! A `std` executor (executor ABI v1, see docs/abi.md): transfers are
//! checked against the source balance and a per-asset limit table, the
//! rest approved. It shows the two things a `std` author must do for the
//! default policy (`every-tx:1`, a blank instance per transaction): build
//! lazy caches in `executor_init`, and grow the heap to its working size
//! there. Build: `cargo build --release`, then
//! `peer check target/wasm32-unknown-unknown/release/my_executor.wasm`.

use abi::{Instruction, Transaction, reasons};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::OnceLock;

#[link(wasm_import_module = "host")]
unsafe extern "C" {
    #[link_name = "state_get"]
    fn host_state_get(key: *const u8, key_len: usize, out: *mut u8, cap: usize) -> i32;
    #[link_name = "deny_reason"]
    fn host_deny_reason(ptr: *const u8, len: usize);
    #[link_name = "log"]
    fn host_log(level: i32, ptr: *const u8, len: usize);
}

/// The heap a transaction needs at most (the payload buffer, decoding,
/// the limit table's lookups), reserved in `executor_init`.
const WORKING_HEAP: usize = 256 * 1024;

/// A lazily built table. Under `every-tx:1` every transaction starts from
/// the blank state, so a table first built *during* a transaction is built
/// again by every transaction; built in `executor_init`, it is part of the
/// blank state and costs nothing per transaction.
static LIMITS: OnceLock<BTreeMap<u32, u64>> = OnceLock::new();

fn limits() -> &'static BTreeMap<u32, u64> {
    LIMITS.get_or_init(|| (0..64).map(|asset| (asset, 1_000 + 100 * u64::from(asset))).collect())
}

thread_local! {
    /// The payload buffer the host copies each transaction into.
    static PAYLOAD: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Once per instance, with no world state: warm what transactions use.
#[unsafe(no_mangle)]
pub extern "C" fn executor_init() {
    limits();
    // Grow linear memory to the working size once: memory cannot shrink in
    // place, so a heap that grows *during* a transaction makes every blank
    // a rebuild of the instance. Allocated and freed here, the pages stay
    // with the allocator, in the blank state.
    drop(Vec::<u8>::with_capacity(WORKING_HEAP));
    PAYLOAD.with_borrow_mut(|p| p.reserve(64 * 1024));
    log(3, "std executor initialised");
}

/// Where the host copies the next transaction (null: host_fault).
#[unsafe(no_mangle)]
pub extern "C" fn executor_alloc(len: usize) -> *mut u8 {
    PAYLOAD.with_borrow_mut(|p| {
        p.clear();
        if p.try_reserve(len).is_err() {
            return std::ptr::null_mut();
        }
        p.resize(len, 0);
        p.as_mut_ptr()
    })
}

/// The verdict: 0 approve, 1 deny.
#[unsafe(no_mangle)]
pub extern "C" fn executor_validate(ptr: *const u8, len: usize) -> i32 {
    // SAFETY: the host copied `len` bytes to `ptr`, the payload buffer.
    let bytes = unsafe { std::slice::from_raw_parts(ptr, len) };
    let Ok(tx) = postcard::from_bytes::<Transaction<'_>>(bytes) else { return deny(reasons::MALFORMED) };
    match tx.instruction {
        Instruction::Transfer { from, asset, amount, .. } => {
            if amount == 0 {
                return deny(reasons::ZERO_AMOUNT);
            }
            if limits().get(&asset).is_some_and(|limit| amount > *limit) {
                return deny(&format!("amount {amount} above the per-transfer limit of asset {asset}"));
            }
            if balance(from, asset) < amount {
                return deny(reasons::INSUFFICIENT);
            }
            0
        }
        _ => 0,
    }
}

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

fn log(level: i32, line: &str) {
    // SAFETY: the host reads `line` within our memory.
    unsafe { host_log(level, line.as_ptr(), line.len()) }
}
