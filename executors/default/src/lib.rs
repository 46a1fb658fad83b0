//! The default executor: a `no_std` guest that decodes each [`Transaction`]
//! (postcard, see the `abi` crate) and checks it against world state through
//! `host.state_get`.
//!
//! `executor_init` builds the rule table from an embedded schema, so the
//! blank state (post-init memory) differs from the module's data segments —
//! a realistic executor, and a real test of blanking.
#![no_std]

use abi::{
    AccountId, AssetId, Instruction, InstructionKind, Permission, Transaction, reasons,
};
use core::cell::UnsafeCell;

#[link(wasm_import_module = "host")]
unsafe extern "C" {
    #[link_name = "state_get"]
    fn host_state_get(key_ptr: *const u8, key_len: usize, out_ptr: *mut u8, out_cap: usize) -> i32;
    #[link_name = "deny_reason"]
    fn host_deny_reason(ptr: *const u8, len: usize);
    #[link_name = "log"]
    fn host_log(level: i32, ptr: *const u8, len: usize);
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}

/// Single-threaded interior mutability for statics (wasm has one thread).
struct Cell<T>(UnsafeCell<T>);
// SAFETY: a wasm32v1-none instance is single-threaded.
unsafe impl<T> Sync for Cell<T> {}
impl<T: Copy> Cell<T> {
    const fn new(v: T) -> Self {
        Cell(UnsafeCell::new(v))
    }
    fn get(&self) -> T {
        // SAFETY: single-threaded, no reference escapes.
        unsafe { *self.0.get() }
    }
    fn set(&self, v: T) {
        // SAFETY: as above.
        unsafe { *self.0.get() = v }
    }
}

/// What an instruction kind requires of its authority.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// No rule loaded: `executor_init` did not run.
    Unset,
    /// The authority must own the source account.
    Owner,
    /// The authority must hold the instruction's permission.
    Permission,
    /// The authority must be the admin.
    Admin,
}

#[cfg(not(feature = "variant"))]
const SCHEMA: &str = "# default executor rules v1\n\
transfer = owner\n\
mint = permission\n\
burn = permission\n\
grant = permission\n\
upgrade = admin\n";

#[cfg(feature = "variant")]
const SCHEMA: &str = "# default executor rules v1 (upgrade variant)\n\
transfer = owner\n\
mint = permission\n\
burn = permission\n\
grant = permission\n\
upgrade = admin\n";

static RULES: Cell<[Rule; 5]> = Cell::new([Rule::Unset; 5]);

/// Bump region for the transaction payload, from `__heap_base` up.
static HEAP_END: Cell<usize> = Cell::new(0);

unsafe extern "C" {
    static __heap_base: u8;
}

fn log(level: i32, msg: &str) {
    // SAFETY: the host reads `msg` within our memory.
    unsafe { host_log(level, msg.as_ptr(), msg.len()) }
}

/// Parses [`SCHEMA`] into the rule table; traps (a load error) on a bad schema.
#[unsafe(no_mangle)]
pub extern "C" fn executor_init() {
    let mut rules = [Rule::Unset; 5];
    for line in SCHEMA.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, rule)) = line.split_once('=') else { panic!() };
        let kind = InstructionKind::ALL
            .into_iter()
            .find(|k| k.name() == name.trim())
            .unwrap_or_else(|| panic!());
        rules[kind as usize] = match rule.trim() {
            "owner" => Rule::Owner,
            "permission" => Rule::Permission,
            "admin" => Rule::Admin,
            _ => panic!(),
        };
    }
    if rules.contains(&Rule::Unset) {
        panic!();
    }
    RULES.set(rules);
    #[cfg(feature = "sigcheck")]
    sigcheck::init();
    #[cfg(feature = "ecdsa")]
    ecdsa::init();
    log(3, "default executor initialised");
}

/// Returns the payload buffer at the heap base, growing memory if needed.
#[unsafe(no_mangle)]
pub extern "C" fn executor_alloc(len: usize) -> *mut u8 {
    let base = &raw const __heap_base as usize;
    if HEAP_END.get() == 0 {
        HEAP_END.set(core::arch::wasm32::memory_size(0) * 65536);
    }
    let Some(end) = base.checked_add(len) else { return core::ptr::null_mut() };
    if end > HEAP_END.get() {
        let pages = (end - HEAP_END.get()).div_ceil(65536);
        if core::arch::wasm32::memory_grow(0, pages) == usize::MAX {
            return core::ptr::null_mut();
        }
        HEAP_END.set(HEAP_END.get() + pages * 65536);
    }
    base as *mut u8
}

/// `0` approves, `1` denies with a reason.
#[unsafe(no_mangle)]
pub extern "C" fn executor_validate(ptr: *const u8, len: usize) -> i32 {
    // SAFETY: the host wrote `len` bytes at `ptr`, inside our memory.
    let bytes = unsafe { core::slice::from_raw_parts(ptr, len) };
    #[cfg(feature = "sigcheck")]
    let verdict = sigcheck::check(bytes).and_then(|()| check(bytes));
    #[cfg(feature = "ecdsa")]
    let verdict = ecdsa::check(bytes).and_then(|()| check(bytes));
    #[cfg(feature = "sortmap")]
    let verdict = sortmap::check(bytes).and_then(|()| check(bytes));
    #[cfg(not(any(feature = "sigcheck", feature = "ecdsa", feature = "sortmap")))]
    let verdict = check(bytes);
    match verdict {
        Ok(()) => 0,
        Err(reason) => {
            // SAFETY: the host reads `reason` within our memory.
            unsafe { host_deny_reason(reason.as_ptr(), reason.len()) };
            1
        }
    }
}

type Check = Result<(), &'static str>;

/// The realistic heavy benchmark: an ed25519 signature check per
/// transaction, the work that dominates a real executor (hundreds of µs).
/// The synthetic ledger's transactions carry no signatures, so the executor
/// signs the transaction bytes with a key fixed at build time and verifies
/// that signature: the cost of a check (a little more), with a result that
/// is always valid, so verdicts stay the default executor's.
#[cfg(feature = "sigcheck")]
mod sigcheck {
    use ed25519_compact::{KeyPair, SecretKey, Seed};

    /// The expanded key, derived once by `executor_init` (part of the
    /// blank state); all zeroes until then.
    static KEY: super::Cell<[u8; 64]> = super::Cell::new([0; 64]);

    pub fn init() {
        KEY.set(*KeyPair::from_seed(Seed::new([7; 32])).sk);
    }

    pub fn check(bytes: &[u8]) -> super::Check {
        let key = KEY.get();
        if key == [0; 64] {
            return Err(abi::reasons::NOT_INITIALISED);
        }
        let sk = SecretKey::new(key);
        let signature = sk.sign(bytes, None);
        sk.public_key().verify(bytes, &signature).map_err(|_| "bad signature")
    }
}

/// The second compute-heavy benchmark (executors/bench/ecdsa.wasm): what a
/// signature-checking executor does per transaction — an ECDSA secp256k1
/// verification (`k256`, Ethereum's curve) and a SHA-256 of the payload
/// (`sha2`). The ledger's transactions carry no signatures, so `executor_init`
/// signs a fixed message once (its key, signature and message are blank
/// state) and every transaction verifies that signature: the cost of a
/// real check, a result that is always valid, the default verdicts.
#[cfg(feature = "ecdsa")]
mod ecdsa {
    use k256::ecdsa::signature::{Signer, Verifier};
    use k256::ecdsa::{Signature, SigningKey, VerifyingKey};
    use sha2::{Digest, Sha256};

    const MESSAGE: &[u8] = b"a transaction an executor must check";

    /// The verifying key (uncompressed SEC1) and the signature, set by
    /// `executor_init`; all zeroes until then.
    static KEY: super::Cell<[u8; 65]> = super::Cell::new([0; 65]);
    static SIGNATURE: super::Cell<[u8; 64]> = super::Cell::new([0; 64]);

    pub fn init() {
        let key = SigningKey::from_bytes(&[7; 32].into()).expect("a valid scalar");
        let signature: Signature = key.sign(MESSAGE);
        let point = key.verifying_key().to_encoded_point(false);
        KEY.set(point.as_bytes().try_into().expect("65 bytes"));
        SIGNATURE.set(signature.to_bytes().into());
    }

    pub fn check(bytes: &[u8]) -> super::Check {
        let key = VerifyingKey::from_sec1_bytes(&KEY.get()).map_err(|_| abi::reasons::NOT_INITIALISED)?;
        let signature = Signature::from_bytes(&SIGNATURE.get().into()).map_err(|_| "bad signature")?;
        let digest = Sha256::digest(bytes);
        key.verify(MESSAGE, &signature).map_err(|_| "bad signature")?;
        if digest.len() == 32 { Ok(()) } else { Err("bad digest") }
    }
}

/// The store-heavy benchmark (executors/bench/sortmap.wasm): per
/// transaction, 2,000 pseudo-random words drawn from its bytes are sorted
/// and counted in a `BTreeMap`, on the heap of `dlmalloc` (the allocator
/// Rust's `std` uses on wasm), which grows linear memory on demand — so
/// the heap a transaction builds is beyond the blank state's memory.
#[cfg(feature = "sortmap")]
mod sortmap {
    extern crate alloc;
    use alloc::collections::BTreeMap;
    use alloc::string::String;
    use alloc::vec::Vec;

    #[global_allocator]
    static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

    /// Words per transaction.
    const WORDS: usize = 2_000;

    pub fn check(bytes: &[u8]) -> super::Check {
        // FNV-1a of the payload seeds a xorshift generator.
        let mut x = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut words: Vec<String> = (0..WORDS)
            .map(|_| {
                let r = next();
                (0..4 + r % 7).map(|i| char::from(b'a' + ((r >> (8 + 5 * i)) % 26) as u8)).collect()
            })
            .collect();
        words.sort_unstable();
        let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
        for w in &words {
            *counts.entry(w.as_str()).or_default() += 1;
        }
        // Every word was counted once: anything else is a broken heap.
        if counts.values().map(|n| *n as usize).sum::<usize>() == WORDS { Ok(()) } else { Err("heap corrupted") }
    }
}

fn check(bytes: &[u8]) -> Check {
    let tx: Transaction<'_> = postcard::from_bytes(bytes).map_err(|_| reasons::MALFORMED)?;
    let rule = RULES.get()[tx.instruction.kind() as usize];
    let who = tx.authority;
    match (rule, tx.instruction) {
        (Rule::Unset, _) => Err(reasons::NOT_INITIALISED),
        (Rule::Owner, Instruction::Transfer { from, to, asset, amount }) => {
            let owner = read_u32(&abi::account_key(from)).ok_or(reasons::NO_ACCOUNT)?;
            if owner != who {
                return Err(reasons::NOT_OWNER);
            }
            account_exists(to)?;
            asset_supply(asset)?;
            positive(amount)?;
            if balance(from, asset) < amount {
                return Err(reasons::INSUFFICIENT);
            }
            if from != to {
                balance(to, asset).checked_add(amount).ok_or(reasons::OVERFLOW)?;
            }
            Ok(())
        }
        (Rule::Permission, Instruction::Mint { account, asset, amount }) => {
            holds(who, Permission::MintAsset(asset))?;
            account_exists(account)?;
            let supply = asset_supply(asset)?;
            positive(amount)?;
            supply.checked_add(amount).ok_or(reasons::OVERFLOW)?;
            balance(account, asset).checked_add(amount).ok_or(reasons::OVERFLOW)?;
            Ok(())
        }
        (Rule::Permission, Instruction::Burn { account, asset, amount }) => {
            holds(who, Permission::BurnAsset(asset))?;
            account_exists(account)?;
            asset_supply(asset)?;
            positive(amount)?;
            if balance(account, asset) < amount {
                return Err(reasons::INSUFFICIENT);
            }
            Ok(())
        }
        (Rule::Permission, Instruction::Grant { account, .. }) => {
            holds(who, Permission::Grant)?;
            account_exists(account)
        }
        (Rule::Admin, Instruction::Upgrade { .. }) => {
            let admin = read_u32(abi::ADMIN_KEY);
            if admin == Some(who) { Ok(()) } else { Err(reasons::NOT_ADMIN) }
        }
        // The schema pairs every kind with the rule that fits it; anything
        // else means a corrupted rule table.
        _ => panic!(),
    }
}

fn positive(amount: u64) -> Check {
    if amount == 0 { Err(reasons::ZERO_AMOUNT) } else { Ok(()) }
}

fn account_exists(account: AccountId) -> Check {
    read_u32(&abi::account_key(account)).map(drop).ok_or(reasons::NO_ACCOUNT)
}

fn asset_supply(asset: AssetId) -> Result<u64, &'static str> {
    read_u64(&abi::asset_key(asset)).ok_or(reasons::NO_ASSET)
}

fn balance(account: AccountId, asset: AssetId) -> u64 {
    read_u64(&abi::balance_key(account, asset)).unwrap_or(0)
}

fn holds(account: AccountId, permission: Permission) -> Check {
    let mut out = [0u8; 1];
    if read(&abi::permission_key(account, permission), &mut out) == Some(1) && out[0] == 1 {
        Ok(())
    } else {
        Err(reasons::MISSING_PERMISSION)
    }
}

/// Reads a value into `out`; `Some(len)` of the whole value, `None` if absent.
fn read(key: &[u8], out: &mut [u8]) -> Option<usize> {
    // SAFETY: both ranges lie in our memory.
    let n = unsafe { host_state_get(key.as_ptr(), key.len(), out.as_mut_ptr(), out.len()) };
    usize::try_from(n).ok()
}

fn read_u32(key: &[u8]) -> Option<u32> {
    let mut out = [0u8; 4];
    (read(key, &mut out)? == 4).then(|| u32::from_le_bytes(out))
}

fn read_u64(key: &[u8]) -> Option<u64> {
    let mut out = [0u8; 8];
    (read(key, &mut out)? == 8).then(|| u64::from_le_bytes(out))
}
