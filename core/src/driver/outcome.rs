//! Mapping how a call ended to a verdict (or a load error, or a host
//! failure): backends report, the driver decides.

use super::Stats;
use crate::backend::{CallError, ExecutorInstance, Export, Trap};
use crate::host::{Abort, HostEnv, Memories, Phase, SharedState};
use crate::verdict::{Rejection, RejectionKind, Verdict};
use crate::{Error, Limits};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// A host failure inside one step, before the retry.
pub(super) struct HostFailed(pub(super) String);

impl From<CallError> for HostFailed {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Host(m) => HostFailed(m),
            CallError::Trap(t) => HostFailed(format!("unexpected trap {t:?} outside a guest call")),
        }
    }
}

/// Runs `f`, turning a panic into a host failure.
#[inline]
pub(super) fn guarded<T>(f: impl FnOnce() -> Result<T, HostFailed>) -> Result<T, HostFailed> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|panic| Err(HostFailed(format!("panic: {}", crate::error::panic_message(&*panic)))))
}

/// Maps how a guest call ended to a rejection: what the instrumentation
/// flagged in the instance's memory first (`ended`: growth past the limits,
/// fuel, stack — decided at the same instruction on every engine), then
/// what core's host functions recorded, and only then the engine's trap.
///
/// An engine reporting fuel or stack exhaustion that the instrumentation
/// did not flag is a *backstop* firing: the verdict is the same kind, but
/// the point where it fired is the engine's, so it is logged as an error
/// and counted ([`Stats::backstops`]); tests require it never to happen.
pub(super) fn rejection(env: &mut HostEnv, ended: Option<RejectionKind>, trap: Trap) -> Result<Rejection, HostFailed> {
    let abort = env.take_abort();
    match ended {
        Some(RejectionKind::OutOfMemory) => return Ok(Rejection::OutOfMemory),
        Some(RejectionKind::OutOfFuel) => return Ok(Rejection::OutOfFuel),
        Some(RejectionKind::StackOverflow) => return Ok(Rejection::StackOverflow),
        _ => {}
    }
    if let Some(abort) = abort {
        return Ok(match abort {
            Abort::HostFault(what) => {
                tracing::debug!(%what, "host fault");
                Rejection::HostFault
            }
            Abort::OutOfMemory { .. } => Rejection::OutOfMemory,
            Abort::StateDuringInit => Rejection::HostFault,
            Abort::OutOfFuel => Rejection::OutOfFuel,
            Abort::Panicked(message) => return Err(HostFailed(format!("an import panicked: {message}"))),
        });
    }
    match trap {
        Trap::Wasm(code) => Ok(Rejection::Trap(code)),
        Trap::OutOfFuel | Trap::StackOverflow => {
            tracing::error!(?trap, "an engine limit fired before the deterministic one: verdicts may differ by engine");
            env.note_backstop();
            Ok(if trap == Trap::OutOfFuel { Rejection::OutOfFuel } else { Rejection::StackOverflow })
        }
        Trap::Aborted => Err(HostFailed("a host function aborted without recording why".into())),
    }
}

/// The load error for an executor whose instantiation, `start`,
/// `executor_init` or migration ended without returning.
pub(super) fn init_failed(
    backend: &'static str,
    phase: &'static str,
    env: &mut HostEnv,
    ended: Option<RejectionKind>,
    e: CallError,
) -> Error {
    match e {
        CallError::Host(message) => Error::HostFailure { backend, message },
        CallError::Trap(t) => {
            let reason = match env.abort() {
                Some(Abort::StateDuringInit) => "it called host.state_get, but init has no world state".into(),
                Some(Abort::HostFault(what)) => format!("host_fault: {what}"),
                _ => match rejection(env, ended, t) {
                    Ok(r) => r.to_string(),
                    Err(HostFailed(message)) => return Error::HostFailure { backend, message },
                },
            };
            Error::InitFailed { phase, reason }
        }
    }
}

/// One attempt at a transaction on `instance`, panics caught; hands
/// `state` back (moved through the instance's [`HostEnv`], not cloned: a
/// clone of the `Arc` is two atomic operations per transaction), or `None`
/// if the instance lost it.
pub(super) fn attempt(
    instance: &mut dyn ExecutorInstance,
    limits: &Limits,
    tx: &[u8],
    state: SharedState,
    stats: &mut Stats,
) -> (Result<Verdict, HostFailed>, Option<SharedState>) {
    let Ok(len) = i32::try_from(tx.len()) else {
        return (Err(HostFailed("transaction longer than 2 GiB".into())), Some(state));
    };
    instance.env().begin(Phase::Validate, Some(state));
    let result = guarded(|| {
        let (memories, env) = instance.memories_and_env();
        env.layout().arm(memories.books, limits.fuel, limits.max_stack);
        call_validate(instance, tx, len, limits.max_stack)
    });
    // Ended here, after a panic too.
    let env = instance.env();
    let state = env.end();
    stats.backstops += env.take_backstops();
    (result, state)
}

/// `executor_alloc`, the payload copy and `executor_validate`, each call's
/// end mapped to a verdict; a misbehaving alloc is `host_fault`.
fn call_validate(instance: &mut dyn ExecutorInstance, tx: &[u8], len: i32, stack: u64) -> Result<Verdict, HostFailed> {
    let ended = |instance: &mut dyn ExecutorInstance, e: CallError| match e {
        CallError::Host(m) => Err(HostFailed(m)),
        CallError::Trap(t) => {
            let layout = instance.env().layout();
            let ended = layout.ended(instance.books());
            rejection(instance.env(), ended, t).map(Verdict::rejected)
        }
    };
    let ptr = match instance.call(Export::Alloc, &[len]) {
        Ok(Some(ptr)) => ptr as u32 as usize,
        Ok(None) => return Err(HostFailed("executor_alloc returned no value".into())),
        Err(e) => return ended(instance, e),
    };
    let (Memories { guest, books }, env) = instance.memories_and_env();
    if ptr == 0 || ptr + tx.len() > guest.len() {
        tracing::debug!(ptr, len, memory = guest.len(), "executor_alloc returned a bad range");
        return Ok(Verdict::rejected(Rejection::HostFault));
    }
    guest[ptr..ptr + tx.len()].copy_from_slice(tx);
    env.record_write(books, ptr, tx.len());
    // Fuel is shared by both calls; the stack starts afresh.
    let layout = env.layout();
    layout.arm(books, layout.fuel_left(books), stack);
    match instance.call(Export::Validate, &[ptr as i32, len]) {
        Ok(Some(0)) => Ok(Verdict::Approved),
        Ok(Some(1)) => Ok(Verdict::Denied { reason: instance.env().take_deny_reason().unwrap_or_default() }),
        Ok(Some(_)) => Ok(Verdict::rejected(Rejection::BadVerdict)),
        Ok(None) => Err(HostFailed("executor_validate returned no value".into())),
        Err(e) => ended(instance, e),
    }
}
