//! The plain-engine anchor: the same *unmodified* executor embedded as a
//! team without this project would embed it, on each engine, so the cost
//! of everything this project adds is always visible — not only against
//! its own `fresh`.
//!
//! Three references per engine ([`Reference`]):
//!
//! - **plain warm**: one instance, no fuel — the engine's own speed for
//!   that code, the limit. It is bounded so a looping executor never hangs
//!   a comparison, by a deterministic argument instead of a clock: it runs
//!   only after **plain warm+fuel** ran the same workload on the same
//!   module without running out of fuel or stack — the same code on the
//!   same inputs from the same state, so the unmetered run takes the same
//!   path and finishes too — and it stops, reporting no figure (`—`), at
//!   its own first stack exhaustion (its frames differ, so that one point
//!   could diverge). Free, unlike a wall-clock bound such as wasmtime's
//!   epoch interruption, which checks at every loop and call: measured
//!   8–15 % on the benchmark executors, it would understate the limit.
//! - **plain warm+fuel**: the same with the engine's native metering —
//!   wasmtime's `consume_fuel`, wasmer's metering middleware, wasmi's fuel
//!   — the like-for-like comparison with this project's deterministic fuel.
//! - **plain fresh+fuel**: a new instance and `executor_init` per
//!   transaction through the engine's fastest instantiation (wasmtime:
//!   `InstancePre` + pooling allocator + copy-on-write; wasmer and wasmi:
//!   instantiating the compiled module), with native fuel: what Iroha and
//!   sc-executor do.
//!
//! The host imports are core's (the same code, over memory without the
//! reserved region); verdicts map traps coarsely: references are never
//! part of a digest agreement check.

use crate::backends::BackendKind;
use crate::run::{RunSettings, Validator, drive};
use crate::{Error, rss};
use executor_core::host::{HostEnv, Phase};
use executor_core::instrument::Layout;
use executor_core::{Export, Limits, Rejection, SharedState, TrapCode, Verdict};
use serde::Serialize;

#[cfg(feature = "wasmer")]
mod wasmer;
#[cfg(feature = "wasmi")]
mod wasmi;
#[cfg(feature = "wasmtime")]
mod wasmtime;

/// A plain-engine reference (see the module docs), declared in the order
/// they run: [`Reference::WarmNoFuel`] is bounded by
/// [`Reference::WarmFuel`]'s run just before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, strum::Display, strum::EnumIter)]
#[non_exhaustive]
pub enum Reference {
    /// One warm instance with the engine's native fuel.
    #[strum(serialize = "plain warm+fuel")]
    WarmFuel,
    /// One warm instance, no fuel: the engine's limit.
    #[strum(serialize = "plain warm")]
    WarmNoFuel,
    /// A new instance and `executor_init` per transaction, native fuel.
    #[strum(serialize = "plain fresh+fuel")]
    FreshFuel,
}

impl Reference {
    /// Whether the engine meters fuel natively in this reference.
    pub fn fuel(self) -> bool {
        self != Reference::WarmNoFuel
    }
}

/// Native fuel per transaction and per `start` + `executor_init`: the
/// engines' units differ from this project's (both count about one per
/// instruction; this project's cost table never charges less), so ten
/// times the configured budgets — what metering costs does not depend on
/// the amount, and a looping executor still ends soon.
#[derive(Debug, Clone, Copy)]
pub struct NativeFuel {
    /// Before `start` and `executor_init`.
    pub init: u64,
    /// Before each transaction.
    pub tx: u64,
}

/// See [`NativeFuel`].
pub fn native_fuel(limits: &Limits) -> NativeFuel {
    NativeFuel { init: limits.init_fuel.saturating_mul(10), tx: limits.fuel.saturating_mul(10) }
}

/// How a plain call ended without returning.
#[derive(Debug)]
pub(crate) enum Stop {
    /// The guest trapped, or a host import ended the call: the same on the
    /// same path with or without fuel.
    Trap,
    /// Native fuel or the stack ran out: where this happens depends on the
    /// embedding, not only on the code.
    Exhausted,
    /// The engine failed.
    Failed(String),
}

/// One plain instance of one engine.
pub(crate) trait PlainInstance {
    /// Calls an ABI export of the unmodified module.
    fn call(&mut self, export: Export, args: &[i32]) -> Result<Option<i32>, Stop>;
    /// The whole linear memory and the host state.
    fn memory_and_env(&mut self) -> (&mut [u8], &mut HostEnv);
    /// Before each transaction: the fuel budget again.
    fn refuel(&mut self);
}

/// One engine's plain embedding of one executor.
pub(crate) trait PlainEngine {
    /// A new instance, `start` and `executor_init` run.
    fn instance(&self) -> Result<Box<dyn PlainInstance>, Stop>;
}

/// The host state a plain instance starts with: core's imports over a
/// memory without the reserved region.
pub(crate) fn env(limits: &Limits) -> HostEnv {
    HostEnv::new(limits, Layout::NONE)
}

fn plain_engine(
    backend: BackendKind,
    reference: Reference,
    wasm: &[u8],
    limits: &Limits,
) -> Result<Box<dyn PlainEngine>, String> {
    match backend {
        #[cfg(feature = "wasmtime")]
        BackendKind::Wasmtime => wasmtime::engine(reference, wasm, limits),
        #[cfg(feature = "wasmer")]
        BackendKind::Wasmer => wasmer::engine(reference, wasm, limits),
        #[cfg(feature = "wasmi")]
        BackendKind::Wasmi => wasmi::engine(reference, wasm, limits),
        #[allow(unreachable_patterns)]
        _ => {
            let _ = (reference, wasm, limits);
            Err(format!("backend {backend} is not compiled in"))
        }
    }
}

/// `executor_alloc`, the payload copy and `executor_validate` on a plain
/// instance, as an embedder writes it; `Err(Stop::Exhausted)` when fuel or
/// stack ran out (see [`exhausted`]).
fn transaction(instance: &mut dyn PlainInstance, tx: &[u8], state: SharedState) -> Result<Verdict, Stop> {
    instance.refuel();
    instance.memory_and_env().1.begin(Phase::Validate, Some(state));
    let verdict = (|| {
        let trapped = |stop: Stop| match stop {
            Stop::Trap => Ok(Verdict::rejected(Rejection::Trap(TrapCode::Unreachable))),
            other => Err(other),
        };
        let len = tx.len() as i32;
        let ptr = match instance.call(Export::Alloc, &[len]) {
            Ok(ptr) => ptr.unwrap_or(0) as u32 as usize,
            Err(stop) => return trapped(stop),
        };
        let (memory, _) = instance.memory_and_env();
        match memory.get_mut(ptr..ptr + tx.len()).filter(|_| ptr != 0) {
            Some(target) => target.copy_from_slice(tx),
            None => return Ok(Verdict::rejected(Rejection::HostFault)),
        }
        match instance.call(Export::Validate, &[ptr as i32, len]) {
            Ok(Some(0)) => Ok(Verdict::Approved),
            Ok(Some(1)) => {
                Ok(Verdict::Denied { reason: instance.memory_and_env().1.take_deny_reason().unwrap_or_default() })
            }
            Ok(_) => Ok(Verdict::rejected(Rejection::BadVerdict)),
            Err(stop) => trapped(stop),
        }
    })();
    instance.memory_and_env().1.end();
    verdict
}

/// The verdict a reference gives when fuel or stack ran out (coarse, like
/// every reference's trap).
fn exhausted() -> Verdict {
    Verdict::rejected(Rejection::OutOfFuel)
}

/// A reference as the workload loop's [`Validator`].
struct Plain {
    engine: Box<dyn PlainEngine>,
    /// The warm instance (`None` under [`Reference::FreshFuel`]).
    warm: Option<Box<dyn PlainInstance>>,
    name: String,
    /// Whether fuel or stack ran out in some transaction.
    exhausted: bool,
    /// Stop at the first exhaustion (the unmetered reference: see the
    /// module docs).
    stop_when_exhausted: bool,
}

impl Plain {
    fn stop(&self, stop: Stop) -> Error {
        match stop {
            Stop::Trap => Error::Reference(format!("{}: executor_init trapped", self.name)),
            Stop::Exhausted => Error::Reference(format!("{}: fuel or stack ran out", self.name)),
            Stop::Failed(message) => Error::Reference(format!("{}: {message}", self.name)),
        }
    }
}

impl Validator for Plain {
    fn validate(&mut self, tx: &[u8], state: SharedState) -> Result<Verdict, Error> {
        let verdict = match self.warm.as_mut() {
            Some(warm) => transaction(&mut **warm, tx, state),
            None => {
                let mut fresh = self.engine.instance().map_err(|e| self.stop(e))?;
                transaction(&mut *fresh, tx, state)
            }
        };
        match verdict {
            Err(Stop::Exhausted) => {
                self.exhausted = true;
                if self.stop_when_exhausted { Err(self.stop(Stop::Exhausted)) } else { Ok(exhausted()) }
            }
            verdict => verdict.map_err(|e| self.stop(e)),
        }
    }

    fn end_block(&mut self, _: &[Vec<u8>], _: Option<&SharedState>) -> Result<(), Error> {
        Ok(())
    }
}

/// One warm plain instance of an executor, driven one transaction at a
/// time: the uninstrumented side of the differential test (the same module
/// through the driver, rewritten, must give the same verdicts and leave the
/// same memory).
pub struct PlainExecutor {
    _engine: Box<dyn PlainEngine>,
    instance: Box<dyn PlainInstance>,
}

impl PlainExecutor {
    /// `wasm` (binary or WAT), unmodified, on `backend`'s plain engine as
    /// `reference` embeds it (warm), `start` and `executor_init` run.
    pub fn new(backend: BackendKind, reference: Reference, wasm: &[u8], limits: &Limits) -> Result<Self, Error> {
        let failed = |e: String| Error::Reference(format!("{backend} {reference}: {e}"));
        let wasm = wat::parse_bytes(wasm).map_err(|e| failed(e.to_string()))?;
        let engine = plain_engine(backend, reference, &wasm, limits).map_err(failed)?;
        let instance = engine.instance().map_err(|e| failed(format!("{e:?}")))?;
        Ok(PlainExecutor { _engine: engine, instance })
    }

    /// The verdict on `tx` against `state`; every trap is
    /// `rejected(trap: unreachable)` and running out of fuel or stack
    /// `rejected(out_of_fuel)` (references do not name trap codes); `Err`
    /// for a failure of the engine.
    pub fn validate(&mut self, tx: &[u8], state: SharedState) -> Result<Verdict, String> {
        match transaction(&mut *self.instance, tx, state) {
            Err(Stop::Exhausted) => Ok(exhausted()),
            verdict => verdict.map_err(|e| format!("{e:?}")),
        }
    }

    /// A copy of the instance's linear memory.
    pub fn memory(&mut self) -> Vec<u8> {
        self.instance.memory_and_env().0.to_vec()
    }
}

/// What a reference measured.
#[derive(Debug, Clone, Serialize)]
pub struct ReferenceReport {
    /// The engine.
    pub backend: BackendKind,
    /// Which reference.
    pub reference: Reference,
    /// Transactions per second of validation; `None` when the run was not
    /// attempted (see [`run`]).
    pub tx_per_sec: Option<f64>,
    /// The verdict digest (for information: references differ from the
    /// driver's on traps, which they map coarsely).
    pub verdict_digest: Option<String>,
    /// Peak resident memory of the process, bytes.
    pub peak_rss_bytes: u64,
    /// Whether some transaction ran out of fuel or stack (or the run was
    /// not attempted): under [`Reference::WarmFuel`], what keeps
    /// [`Reference::WarmNoFuel`] from running.
    pub exhausted: bool,
}

/// Runs `reference` of `settings.backend` over the workload of `settings`
/// (upgrades are not part of a reference). `bounded`: whether
/// [`Reference::WarmFuel`] ran the same workload without exhausting fuel
/// or stack ([`ReferenceReport::exhausted`]) — without it,
/// [`Reference::WarmNoFuel`] is not attempted (an executor that may loop)
/// and reports no figure; it also reports none when it exhausts the stack.
pub fn run(settings: &RunSettings, reference: Reference, bounded: bool) -> Result<ReferenceReport, Error> {
    let backend = settings.backend;
    let name = format!("{backend} {reference}");
    let unmeasured = ReferenceReport {
        backend,
        reference,
        tx_per_sec: None,
        verdict_digest: None,
        peak_rss_bytes: 0,
        exhausted: true,
    };
    let no_fuel = reference == Reference::WarmNoFuel;
    if no_fuel && !bounded {
        return Ok(unmeasured);
    }
    let wasm = wat::parse_bytes(&settings.executor.bytes).map_err(|e| Error::Reference(format!("{name}: {e}")))?;
    let engine = plain_engine(backend, reference, &wasm, &settings.limits)
        .map_err(|e| Error::Reference(format!("{name}: {e}")))?;
    let mut plain = Plain { engine, warm: None, name, exhausted: false, stop_when_exhausted: no_fuel };
    if reference != Reference::FreshFuel {
        plain.warm = Some(plain.engine.instance().map_err(|e| plain.stop(e))?);
    }
    let settings = RunSettings { upgrade_every: None, ..settings.clone() };
    let driven = match drive(&settings, None, &mut plain, &mut |_| {}, &mut |_| {}) {
        Err(_) if no_fuel && plain.exhausted => return Ok(unmeasured),
        driven => driven?,
    };
    let secs = driven.validation.as_secs_f64();
    Ok(ReferenceReport {
        tx_per_sec: Some(if secs > 0.0 { settings.transactions as f64 / secs } else { 0.0 }),
        verdict_digest: Some(driven.digest.hex()),
        peak_rss_bytes: rss::peak_rss_bytes(),
        exhausted: plain.exhausted,
        ..unmeasured
    })
}
