//! The host imports of abi.md (`host.state_get`, `host.deny_reason`,
//! `host.log`), implemented once over the memory a backend lends, plus the
//! growth checks that turn growth past the limits into `out_of_memory`.
//!
//! A backend registers each import with its engine as a thin closure that
//! hands the guest's memory and the instance's [`HostEnv`] to the function
//! here, and turns an `Err(`[`Aborted`]`)` into a trap. What the abort means
//! is recorded in the [`HostEnv`]; the driver reads it from there, so the
//! engine never decides a verdict.

use crate::guest_log;
use crate::instrument::{Layout, cost};
use std::sync::Arc;

/// The import module name.
pub const MODULE: &str = "host";
/// Longest key `state_get` accepts.
pub const MAX_KEY_LEN: u32 = 1024;
/// Bytes of a deny reason kept (before lossy UTF-8 decoding).
pub const MAX_REASON_LEN: usize = 256;
/// Bytes of a log line kept.
pub const MAX_LOG_LEN: usize = 1024;
/// Host writes at most this long are remembered exactly for the next blank.
pub const MAX_EXACT_WRITE: usize = 1024;
/// How many exact host writes are remembered; past that the dirty map.
pub const MAX_HOST_WRITES: usize = 32;

/// A value type of the ABI's imports and exports (all are `i32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ValType {
    /// `i32`
    I32,
}

/// One host import: its name and signature.
#[derive(Debug, Clone, Copy)]
pub struct ImportSpec {
    /// The field name in module [`MODULE`].
    pub name: &'static str,
    /// Parameter types.
    pub params: &'static [ValType],
    /// Result types.
    pub results: &'static [ValType],
}

/// The one list of host imports, nearcore-style: invokes
/// `$callback!($($extra)* name(param, ...) -> result; ...)` with every
/// import, each implemented by the function of this module of the same
/// name (`fn name(&mut HostEnv, &mut [u8], param: i32, ...) ->
/// Result<result, Aborted>`). [`IMPORTS`] and every backend's import
/// registration are generated from it, so no engine spells a name.
#[macro_export]
macro_rules! for_each_import {
    ($callback:ident!($($extra:tt)*)) => {
        $callback! {$($extra)*
            state_get(key_ptr, key_len, out_ptr, out_cap) -> i32;
            deny_reason(ptr, len) -> ();
            log(level, ptr, len) -> ();
        }
    };
}

/// The ABI types of an import's result type.
trait Results {
    const TYPES: &'static [ValType];
}

impl Results for i32 {
    const TYPES: &'static [ValType] = &[ValType::I32];
}

impl Results for () {
    const TYPES: &'static [ValType] = &[];
}

macro_rules! import_specs {
    ($($name:ident($($param:ident),*) -> $result:ty;)*) => {
        /// Every import the host provides; nothing else exists.
        pub const IMPORTS: &[ImportSpec] = &[$(ImportSpec {
            name: stringify!($name),
            params: &[$({ let _ = stringify!($param); ValType::I32 }),*],
            results: <$result as Results>::TYPES,
        }),*];
    };
}

for_each_import!(import_specs!());

/// Read-only world state as the executor sees it through `host.state_get`.
pub trait StateView: Send + Sync {
    /// The value under `key`, if any.
    fn get(&self, key: &[u8]) -> Option<&[u8]>;
}

impl StateView for std::collections::BTreeMap<Vec<u8>, Vec<u8>> {
    fn get(&self, key: &[u8]) -> Option<&[u8]> {
        std::collections::BTreeMap::get(self, key).map(Vec::as_slice)
    }
}

impl StateView for std::collections::HashMap<Vec<u8>, Vec<u8>> {
    fn get(&self, key: &[u8]) -> Option<&[u8]> {
        std::collections::HashMap::get(self, key).map(Vec::as_slice)
    }
}

/// World state shared with an instance for the length of one call.
pub type SharedState = Arc<dyn StateView>;

/// What the instance is running, which decides what imports may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Phase {
    /// Wasm `start` and `executor_init`: no world state exists.
    Init,
    /// `executor_alloc` / `executor_validate` of a transaction.
    Validate,
    /// `executor_migrate` of an upgrade: may read world state.
    Migrate,
}

/// Why the host ended a call. Recorded in [`HostEnv`]; the driver maps it to
/// a verdict or a load error.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Abort {
    /// An import was called with bad arguments (or `executor_alloc`
    /// misbehaved); the text says which check failed.
    HostFault(String),
    /// Memory or a table tried to grow past the limit.
    OutOfMemory {
        /// `"memory"` or `"table"`.
        what: &'static str,
        /// The size asked for (bytes for memory, elements for tables).
        desired: u64,
        /// The limit.
        limit: u64,
    },
    /// `host.state_get` during `start`/`executor_init`.
    StateDuringInit,
    /// A host call's fuel charge ran past the budget (the fuel flag is set).
    OutOfFuel,
    /// An import panicked — core's code or the embedder's [`StateView`]:
    /// a host failure, never a verdict. Caught at the import, because a
    /// panic unwinding through an engine's frames aborts the process on
    /// some engines (wasmi).
    Panicked(String),
}

/// The error a host function returns to make the engine trap. Its meaning
/// lives in [`HostEnv::abort`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the executor host ended the call")]
pub struct Aborted;

/// An instance's two memories, lent to a host function together: the
/// guest's and the books the instrumentation added ([`Layout`]).
#[derive(Debug)]
pub struct Memories<'a> {
    /// The guest's linear memory (memory 0), exactly as the guest sees it.
    pub guest: &'a mut [u8],
    /// The books (the dirty map, cells and flags); empty for a plain,
    /// uninstrumented module (with [`Layout::NONE`]).
    pub books: &'a mut [u8],
}

impl<'a> Memories<'a> {
    /// A plain memory without books (for [`Layout::NONE`]).
    pub fn plain(guest: &'a mut [u8]) -> Self {
        Memories { guest, books: &mut [] }
    }
}

/// Per-instance host state: what the imports need and what they produce.
/// A backend keeps exactly one in its store and lends it to the functions
/// of this module.
pub struct HostEnv {
    phase: Phase,
    state: Option<SharedState>,
    deny_reason: Option<String>,
    abort: Option<Abort>,
    memory_limit: u64,
    table_limit: u64,
    layout: Layout,
    host_writes: Vec<(u32, u32)>,
    backstops: u64,
}

impl std::fmt::Debug for HostEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostEnv")
            .field("phase", &self.phase)
            .field("has_state", &self.state.is_some())
            .field("deny_reason", &self.deny_reason)
            .field("abort", &self.abort)
            .finish()
    }
}

impl HostEnv {
    /// A fresh environment in the [`Phase::Init`] phase, for an instance of
    /// a module instrumented with `layout`.
    pub fn new(limits: &crate::Limits, layout: Layout) -> Self {
        HostEnv {
            phase: Phase::Init,
            state: None,
            deny_reason: None,
            abort: None,
            // Engine limiters see both memories without telling which: the
            // books (a fixed size) must fit too. The guest's memory is
            // capped at its own limit by its declared maximum and by the
            // instrumentation's growth guard, which fires first.
            memory_limit: (limits.memory_pages() * crate::limits::PAGE_SIZE).max(layout.books as u64),
            table_limit: limits.table_elements,
            layout,
            host_writes: Vec::with_capacity(MAX_HOST_WRITES),
            backstops: 0,
        }
    }

    /// Records that the host wrote guest bytes `start..start+len`, so a
    /// blank restores them. Small writes (transaction payloads, state
    /// values) are kept as exact ranges — restoring them costs their length,
    /// not a page; larger ones, or too many, mark the dirty map.
    /// Nothing is recorded for bytes in a page the guest already marked:
    /// the blank copies that page back anyway.
    pub fn record_write(&mut self, books: &mut [u8], start: usize, len: usize) {
        if !self.layout.covers(books, start, len) && !self.remember_write(start, len) {
            self.layout.mark(books, start, len);
        }
    }

    /// Remembers a host write exactly if it is small and there is room;
    /// `false` means the caller must mark the dirty map instead.
    fn remember_write(&mut self, start: usize, len: usize) -> bool {
        let fits = len <= MAX_EXACT_WRITE && self.host_writes.len() < MAX_HOST_WRITES;
        if fits {
            self.host_writes.push((start as u32, len as u32));
        }
        fits
    }

    /// The exact host writes since the last call, cleared (as the
    /// returned iterator drops).
    #[inline]
    pub fn take_host_writes(&mut self) -> std::vec::Drain<'_, (u32, u32)> {
        self.host_writes.drain(..)
    }

    /// Records that an engine's own limit fired before core's (see
    /// [`crate::Stats::backstops`]).
    pub fn note_backstop(&mut self) {
        self.backstops += 1;
    }

    /// Backstops noted since the last call, cleared.
    pub fn take_backstops(&mut self) -> u64 {
        std::mem::take(&mut self.backstops)
    }

    /// The memory layout of the instance.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Starts a call phase: sets the state (if any), clears the reason and
    /// any abort.
    pub fn begin(&mut self, phase: Phase, state: Option<SharedState>) {
        self.phase = phase;
        self.state = state;
        self.deny_reason = None;
        self.abort = None;
    }

    /// Ends a call phase and releases the world state, so the embedder can
    /// mutate it again; hands back the state [`HostEnv::begin`] was given
    /// (moved, not cloned: the caller may need it again).
    pub fn end(&mut self) -> Option<SharedState> {
        self.state.take()
    }

    /// The phase being run.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Why the host ended the last call, if it did.
    pub fn abort(&self) -> Option<&Abort> {
        self.abort.as_ref()
    }

    /// Takes the recorded abort.
    pub fn take_abort(&mut self) -> Option<Abort> {
        self.abort.take()
    }

    /// Takes the deny reason of the transaction.
    pub fn take_deny_reason(&mut self) -> Option<String> {
        self.deny_reason.take()
    }

    fn fail(&mut self, abort: Abort) -> Aborted {
        // The first abort wins: it is what ended the call.
        self.abort.get_or_insert(abort);
        Aborted
    }

    /// Charges `units` of fuel for the host's own work.
    fn charge(&mut self, books: &mut [u8], units: u64) -> Result<(), Aborted> {
        if self.layout.charge(books, units) { Ok(()) } else { Err(self.fail(Abort::OutOfFuel)) }
    }

    fn fault(&mut self, what: String) -> Aborted {
        self.fail(Abort::HostFault(what))
    }

    /// Called by a backend before linear memory grows from `current` to
    /// `desired` bytes. `Ok(())` allows it; `Err` means the engine must trap
    /// (never return -1 to the guest): the transaction ends as
    /// `out_of_memory`.
    pub fn memory_growing(&mut self, desired: u64) -> Result<(), Aborted> {
        if desired > self.memory_limit {
            return Err(self.fail(Abort::OutOfMemory { what: "memory", desired, limit: self.memory_limit }));
        }
        Ok(())
    }

    /// A resource limiter's answer to memory growing to `desired` bytes
    /// where the engine's own maximum is `maximum`: `Err` (trap as
    /// `out_of_memory`) past the limits, else whether that maximum allows it.
    pub fn allows_memory(&mut self, desired: u64, maximum: Option<u64>) -> Result<bool, Aborted> {
        self.memory_growing(desired)?;
        Ok(maximum.is_none_or(|max| desired <= max))
    }

    /// [`HostEnv::allows_memory`] for a table growing to `desired` elements.
    pub fn allows_table(&mut self, desired: u64, maximum: Option<u64>) -> Result<bool, Aborted> {
        self.table_growing(desired)?;
        Ok(maximum.is_none_or(|max| desired <= max))
    }

    /// Like [`HostEnv::memory_growing`] for a table growing to `desired`
    /// elements.
    pub fn table_growing(&mut self, desired: u64) -> Result<(), Aborted> {
        if desired > self.table_limit {
            return Err(self.fail(Abort::OutOfMemory { what: "table", desired, limit: self.table_limit }));
        }
        Ok(())
    }

    /// Called by a backend when the engine itself failed a growth the limits
    /// allowed (e.g. the allocation failed): the same `out_of_memory`.
    pub fn grow_failed(&mut self, what: &'static str, desired: u64) -> Aborted {
        let limit = if what == "table" { self.table_limit } else { self.memory_limit };
        self.fail(Abort::OutOfMemory { what, desired, limit })
    }
}

/// Checks that `ptr..ptr+len` (both read as unsigned) lies in `memory`.
fn range(
    env: &mut HostEnv,
    memory_len: usize,
    what: &str,
    ptr: i32,
    len: i32,
) -> Result<std::ops::Range<usize>, Aborted> {
    let (ptr, len) = (ptr as u32 as u64, len as u32 as u64);
    let end = ptr + len; // cannot overflow: both < 2^32
    if end > memory_len as u64 {
        return Err(env.fault(format!("{what} range {ptr:#x}..+{len:#x} is outside memory ({memory_len:#x} bytes)")));
    }
    Ok(ptr as usize..end as usize)
}

/// `host.state_get(key_ptr, key_len, out_ptr, out_cap) -> i32`: the value's
/// length (written only if it fits in `out_cap`), or -1 if the key is
/// absent.
pub fn state_get(
    env: &mut HostEnv,
    memories: Memories<'_>,
    key_ptr: i32,
    key_len: i32,
    out_ptr: i32,
    out_cap: i32,
) -> Result<i32, Aborted> {
    import(env, |env| {
        let Memories { guest: memory, books } = memories;
        if key_len as u32 > MAX_KEY_LEN {
            return Err(env.fault(format!("state_get key length {} exceeds {MAX_KEY_LEN}", key_len as u32)));
        }
        let key = range(env, memory.len(), "state_get key", key_ptr, key_len)?;
        let out = range(env, memory.len(), "state_get out", out_ptr, out_cap)?;
        if env.phase == Phase::Init {
            return Err(env.fail(Abort::StateDuringInit));
        }
        env.charge(books, cost::HOST_CALL + cost::HOST_BYTE * key.len() as u64)?;
        // Taken out and put back rather than cloned: the value borrows the
        // state while `env` is charged, and an `Arc` clone is two atomic
        // operations per call.
        let Some(state) = env.state.take() else {
            return Err(env.fault("state_get without world state".into()));
        };
        // Put back after a panic in the embedder's `get` too: the driver
        // retries the transaction with it.
        let found = import(env, |env| copy_value(env, &*state, Memories { guest: memory, books }, key, out));
        env.state = Some(state);
        found
    })
}

/// Runs an import's body, a panic in it recorded as [`Abort::Panicked`].
fn import<R>(env: &mut HostEnv, body: impl FnOnce(&mut HostEnv) -> Result<R, Aborted>) -> Result<R, Aborted> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(env))) {
        Ok(result) => result,
        Err(panic) => Err(env.fail(Abort::Panicked(crate::error::panic_message(&*panic)))),
    }
}

/// The rest of [`state_get`]: looks `key` up in `state` and copies the
/// value to `out` if it fits.
fn copy_value(
    env: &mut HostEnv,
    state: &dyn StateView,
    memories: Memories<'_>,
    key: std::ops::Range<usize>,
    out: std::ops::Range<usize>,
) -> Result<i32, Aborted> {
    let Memories { guest: memory, books } = memories;
    let Some(value) = state.get(&memory[key]) else {
        return Ok(-1);
    };
    let Ok(len) = i32::try_from(value.len()) else {
        return Err(env.fault("state_get value longer than i32::MAX".into()));
    };
    if value.len() <= out.len() {
        env.charge(books, cost::HOST_BYTE * value.len() as u64)?;
        memory[out.start..out.start + value.len()].copy_from_slice(value);
        env.record_write(books, out.start, value.len());
    }
    Ok(len)
}

/// `host.deny_reason(ptr, len)`: the last call of a transaction wins; the
/// first 256 bytes are kept, then lossily decoded as UTF-8.
pub fn deny_reason(env: &mut HostEnv, memories: Memories<'_>, ptr: i32, len: i32) -> Result<(), Aborted> {
    import(env, |env| {
        let Memories { guest: memory, books } = memories;
        let r = range(env, memory.len(), "deny_reason", ptr, len)?;
        let kept = &memory[r.start..r.end.min(r.start + MAX_REASON_LEN)];
        env.charge(books, cost::HOST_CALL + cost::HOST_BYTE * kept.len() as u64)?;
        env.deny_reason = Some(String::from_utf8_lossy(kept).into_owned());
        Ok(())
    })
}

/// `host.log(level, ptr, len)`: a log line (level 0 error … 4 trace; higher
/// levels count as trace), first 1024 bytes. Never affects a verdict.
pub fn log(env: &mut HostEnv, memories: Memories<'_>, level: i32, ptr: i32, len: i32) -> Result<(), Aborted> {
    import(env, |env| {
        let Memories { guest: memory, books } = memories;
        let r = range(env, memory.len(), "log", ptr, len)?;
        let kept = &memory[r.start..r.end.min(r.start + MAX_LOG_LEN)];
        env.charge(books, cost::HOST_CALL + cost::HOST_BYTE * kept.len() as u64)?;
        guest_log::logged(level, String::from_utf8_lossy(kept).into_owned());
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest_log::{MAX_CAPTURED_LINES, capture_logs};
    use std::collections::BTreeMap;

    fn env_with(state: &[(&[u8], &[u8])]) -> HostEnv {
        let map: BTreeMap<Vec<u8>, Vec<u8>> = state.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
        let mut env = HostEnv::new(&crate::Limits::default(), Layout::NONE);
        env.begin(Phase::Validate, Some(Arc::new(map)));
        env
    }

    fn faulted(env: &HostEnv) -> bool {
        matches!(env.abort(), Some(Abort::HostFault(_)))
    }

    #[test]
    fn state_get_writes_when_it_fits_and_reports_length_otherwise() {
        let mut env = env_with(&[(b"k", b"value")]);
        let mut mem = vec![0u8; 64];
        mem[0] = b'k';
        assert_eq!(state_get(&mut env, Memories::plain(&mut mem), 0, 1, 10, 5), Ok(5));
        assert_eq!(&mem[10..15], b"value");
        mem[10..15].fill(0);
        assert_eq!(state_get(&mut env, Memories::plain(&mut mem), 0, 1, 10, 4), Ok(5));
        assert_eq!(&mem[10..15], &[0; 5], "nothing written when it does not fit");
        mem[0] = b'x';
        assert_eq!(state_get(&mut env, Memories::plain(&mut mem), 0, 1, 10, 5), Ok(-1));
        assert!(env.abort().is_none());
    }

    #[test]
    fn every_bad_range_is_a_host_fault() {
        let cases: &[(i32, i32, i32, i32)] = &[
            (60, 5, 0, 0),              // key past the end
            (0, 1, 60, 5),              // out past the end, nothing would be written
            (0, 1, 0, 0x7fff_ffff),     // huge out_cap
            (0, 1, 0, -1),              // 0xffffffff out_cap
            (-1, 1, 0, 0),              // pointer 0xffffffff
            (0, 1025, 0, 0),            // key too long (also outside memory)
            (i32::MAX, i32::MAX, 0, 0), // sum past 2^32 must not wrap
        ];
        for &(kp, kl, op, oc) in cases {
            let mut env = env_with(&[(b"k", b"v")]);
            let mut mem = vec![0u8; 64];
            assert_eq!(
                state_get(&mut env, Memories::plain(&mut mem), kp, kl, op, oc),
                Err(Aborted),
                "{kp} {kl} {op} {oc}"
            );
            assert!(faulted(&env));
        }
        let mut env = env_with(&[]);
        let mut mem = vec![0u8; 4096];
        assert_eq!(
            state_get(&mut env, Memories::plain(&mut mem), 0, 1025, 0, 0),
            Err(Aborted),
            "key > 1024 even inside memory"
        );
        let mut env = env_with(&[]);
        assert_eq!(
            state_get(&mut env, Memories::plain(&mut mem), 0, 1024, 0, 0),
            Ok(-1),
            "key of exactly 1024 is fine"
        );
        for (p, l) in [(0, 65), (64, 1), (-1, 1), (0, -1), (1, 0x7fff_ffff)] {
            let mut env = env_with(&[]);
            assert_eq!(deny_reason(&mut env, Memories::plain(&mut mem[..64]), p, l), Err(Aborted));
            let mut env = env_with(&[]);
            assert_eq!(log(&mut env, Memories::plain(&mut mem[..64]), 2, p, l), Err(Aborted));
            assert!(faulted(&env));
        }
        let mut env = env_with(&[]);
        assert_eq!(
            deny_reason(&mut env, Memories::plain(&mut mem[..64]), 64, 0),
            Ok(()),
            "empty range at the end is inside"
        );
    }

    #[test]
    fn reason_is_cut_at_256_bytes_then_lossily_decoded() {
        let mut env = env_with(&[]);
        let mut mem = vec![b'a'; 1000];
        deny_reason(&mut env, Memories::plain(&mut mem), 0, 1000).unwrap();
        assert_eq!(env.take_deny_reason().unwrap(), "a".repeat(256));
        // A 2-byte character cut at byte 256 becomes U+FFFD.
        mem[255] = 0xc3;
        mem[256] = 0xa9;
        deny_reason(&mut env, Memories::plain(&mut mem), 0, 300).unwrap();
        let r = env.take_deny_reason().unwrap();
        assert_eq!(r, format!("{}\u{fffd}", "a".repeat(255)));
        mem[0] = 0xff;
        deny_reason(&mut env, Memories::plain(&mut mem), 0, 2).unwrap();
        assert_eq!(env.take_deny_reason().unwrap(), "\u{fffd}a");
        deny_reason(&mut env, Memories::plain(&mut mem), 1, 1).unwrap();
        deny_reason(&mut env, Memories::plain(&mut mem), 1, 2).unwrap();
        assert_eq!(env.take_deny_reason().unwrap(), "aa", "the last call wins");
    }

    #[test]
    fn state_get_during_init_is_refused() {
        let mut env = HostEnv::new(&crate::Limits::default(), Layout::NONE);
        let mut mem = vec![0u8; 16];
        assert_eq!(state_get(&mut env, Memories::plain(&mut mem), 0, 1, 0, 1), Err(Aborted));
        assert_eq!(env.abort(), Some(&Abort::StateDuringInit));
    }

    #[test]
    fn growth_past_the_limits_is_out_of_memory() {
        let limits = crate::Limits { memory_bytes: 2 * 65536 + 100, table_elements: 10, ..Default::default() };
        let mut env = HostEnv::new(&limits, Layout::NONE);
        assert!(env.memory_growing(2 * 65536).is_ok(), "limit rounds down to whole pages");
        assert!(env.memory_growing(3 * 65536).is_err());
        assert!(matches!(env.abort(), Some(Abort::OutOfMemory { what: "memory", .. })));
        let mut env = HostEnv::new(&limits, Layout::NONE);
        assert!(env.table_growing(10).is_ok());
        assert!(env.table_growing(11).is_err());
        assert!(matches!(env.abort(), Some(Abort::OutOfMemory { what: "table", .. })));
    }

    #[test]
    fn captured_lines_are_returned_not_emitted_and_capped() {
        let mut mem = b"hello".to_vec();
        let ((), lines) = capture_logs(|| {
            let mut env = env_with(&[]);
            for level in [0, 7] {
                log(&mut env, Memories::plain(&mut mem), level, 0, 5).unwrap();
            }
        });
        let texts: Vec<(i32, &str)> = lines.iter().map(|l| (l.level, l.text.as_str())).collect();
        assert_eq!(texts, [(0, "hello"), (7, "hello")]);
        let ((), lines) = capture_logs(|| {
            let mut env = env_with(&[]);
            for _ in 0..MAX_CAPTURED_LINES + 10 {
                log(&mut env, Memories::plain(&mut mem), 2, 0, 5).unwrap();
            }
        });
        assert_eq!(lines.len(), MAX_CAPTURED_LINES);
        let unwound = std::panic::catch_unwind(|| capture_logs(|| panic!("guest host bug")));
        assert!(unwound.is_err());
    }

    #[test]
    fn end_releases_the_state() {
        let state: SharedState = Arc::new(BTreeMap::<Vec<u8>, Vec<u8>>::new());
        let mut env = HostEnv::new(&crate::Limits::default(), Layout::NONE);
        env.begin(Phase::Validate, Some(state.clone()));
        assert_eq!(Arc::strong_count(&state), 2);
        env.end();
        assert_eq!(Arc::strong_count(&state), 1);
    }
}
