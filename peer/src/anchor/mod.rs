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
//! The host imports are core's (the same code, over the memory alone, without
//! the books); verdicts map traps coarsely: references are never
//! part of a digest agreement check.

use crate::backends::BackendKind;
use crate::run::{self, RunSettings, Validator, drive};
use crate::workload::{Ledger, Rng, decode};
use crate::{Error, rss};
use executor_core::host::{HostEnv, Phase};
use executor_core::instrument::Layout;
use executor_core::{Driver, Export, Limits, PersistencePolicy, Rejection, SharedState, TrapCode, Verdict};
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
/// memory alone, without books.
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
    reference: Reference,
}

impl Plain {
    /// `reference` of `settings.backend` on `wasm` (binary), its warm
    /// instance built.
    fn new(settings: &RunSettings, reference: Reference, wasm: &[u8]) -> Result<Self, Error> {
        let name = format!("{} {reference}", settings.backend);
        let engine = plain_engine(settings.backend, reference, wasm, &settings.limits)
            .map_err(|e| Error::Reference(format!("{name}: {e}")))?;
        let stop_when_exhausted = reference == Reference::WarmNoFuel;
        let mut plain = Plain { engine, warm: None, name, exhausted: false, stop_when_exhausted, reference };
        if reference != Reference::FreshFuel {
            plain.warm = Some(plain.engine.instance().map_err(|e| plain.stop(e))?);
        }
        Ok(plain)
    }

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
    let mut plain = Plain::new(settings, reference, &wasm)?;
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

/// A row of the anchor: a plain reference, or the driver under a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Row {
    /// A plain-engine reference.
    Plain(Reference),
    /// This project's driver.
    Driver(PersistencePolicy),
}

impl std::fmt::Display for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Row::Plain(r) => write!(f, "{r}"),
            Row::Driver(p) => write!(f, "driver {p}"),
        }
    }
}

/// One row's validator in a [`lockstep`] run.
enum Contender {
    Plain(Plain),
    Driver(Box<Driver>),
}

/// Every row judging one workload, block by block.
struct Lockstep<'a> {
    rows: &'a [Row],
    /// `None` once a row stopped (the unmetered reference at its bound).
    contenders: Vec<Option<Contender>>,
    spent: Vec<Duration>,
    /// The block's transactions so far.
    pending: Vec<Vec<u8>>,
    /// Each row's own ledger (the leading row's is the workload's): a row
    /// applies what it approved, as in a run of its own — rows may differ
    /// where an executor's verdicts depend on the policy.
    ledgers: Vec<Arc<Ledger>>,
    executor: String,
}

impl Lockstep<'_> {
    /// Row `i`'s verdict on `tx`, timed; `Ok(None)` if the row stopped.
    fn judge(&mut self, i: usize, tx: &[u8], state: SharedState) -> Result<Option<Verdict>, Error> {
        let Some(contender) = self.contenders[i].as_mut() else { return Ok(None) };
        let t = Instant::now();
        let verdict = match contender {
            Contender::Plain(plain) => plain.validate(tx, state),
            Contender::Driver(driver) => {
                driver.validate(tx, state).map_err(|source| Error::Executor { executor: self.executor.clone(), source })
            }
        };
        self.spent[i] += t.elapsed();
        match (verdict, &*contender) {
            (Err(_), Contender::Plain(plain)) if plain.stop_when_exhausted && plain.exhausted => {
                self.contenders[i] = None;
                Ok(None)
            }
            (verdict, _) => verdict.map(Some),
        }
    }

    /// Whether the unmetered reference may still run: the metered one ran
    /// every transaction so far without exhausting fuel or stack.
    fn bounded(&self) -> bool {
        self.contenders
            .iter()
            .flatten()
            .any(|c| matches!(c, Contender::Plain(p) if p.reference == Reference::WarmFuel && !p.exhausted))
    }
}

impl Validator for Lockstep<'_> {
    fn validate(&mut self, tx: &[u8], state: SharedState) -> Result<Verdict, Error> {
        let verdict = self.judge(0, tx, state)?.ok_or_else(|| Error::Reference("the leading row stopped".into()))?;
        self.pending.push(tx.to_vec());
        Ok(verdict)
    }

    fn end_block(&mut self, _: &[Vec<u8>], _: Option<&SharedState>) -> Result<(), Error> {
        let pending = std::mem::take(&mut self.pending);
        for i in 0..self.rows.len() {
            if i > 0 {
                if self.rows[i] == Row::Plain(Reference::WarmNoFuel) && !self.bounded() {
                    self.contenders[i] = None;
                }
                let mut ledger = self.ledgers[i].clone();
                for tx in &pending {
                    let Some(verdict) = self.judge(i, tx, ledger.clone())? else { break };
                    if verdict == Verdict::Approved {
                        let decoded = decode(tx).expect("the generator's own encoding decodes");
                        Arc::make_mut(&mut ledger).apply(&decoded.instruction);
                    }
                }
                self.ledgers[i] = ledger;
            }
            if let Some(Contender::Driver(driver)) = &mut self.contenders[i] {
                driver.end_block();
            }
        }
        Ok(())
    }
}

/// Runs every row of `rows` over one workload of `settings` in lockstep —
/// each block validated by every row in turn (the first row as the
/// workload goes, the others over the same transactions, each against a
/// ledger of its own that it advances by its own verdicts, as in a run of
/// its own), each row timed on its own — and returns each row's transactions per second (`None` for the
/// unmetered reference when it was not bounded: it runs only while
/// [`Reference::WarmFuel`], listed before it, has not run out of fuel or
/// stack, and stops at its own first exhaustion).
///
/// Interleaving per block makes the ratios immune to the machine's drift,
/// which on shared virtual machines moves whole runs by ±25 %, while each
/// row still runs a block's worth of transactions with its own caches
/// warm.
pub fn lockstep(settings: &RunSettings, rows: &[Row]) -> Result<Vec<Option<f64>>, Error> {
    match rows.first() {
        None => return Ok(Vec::new()),
        Some(Row::Plain(Reference::WarmNoFuel)) => {
            return Err(Error::Reference("lockstep: the unmetered reference needs the metered one before it".into()));
        }
        Some(_) => {}
    }
    let settings = RunSettings { upgrade_every: None, ..settings.clone() };
    let wasm = wat::parse_bytes(&settings.executor.bytes).map_err(|e| Error::Reference(e.to_string()))?;
    let contenders = rows
        .iter()
        .map(|row| {
            Ok(Some(match *row {
                Row::Driver(policy) => {
                    Contender::Driver(Box::new(run::driver(&RunSettings { policy, ..settings.clone() })?))
                }
                Row::Plain(reference) => Contender::Plain(Plain::new(&settings, reference, &wasm)?),
            }))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let mut lockstep = Lockstep {
        rows,
        spent: vec![Duration::ZERO; rows.len()],
        contenders,
        pending: Vec::new(),
        // Shared until a row applies a transaction (copy-on-write).
        ledgers: std::iter::repeat_n(Arc::new(Ledger::genesis(&mut Rng::new(settings.seed))), rows.len()).collect(),
        executor: settings.executor.name.clone(),
    };
    drive(&settings, None, &mut lockstep, &mut |_| {}, &mut |_| {})?;
    let rates = lockstep.spent.iter().zip(&lockstep.contenders);
    let rates =
        rates.map(|(spent, c)| c.as_ref().map(|_| settings.transactions as f64 / spent.as_secs_f64().max(1e-9)));
    Ok(rates.collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends;
    use crate::run::Executor;

    fn rows() -> Vec<Row> {
        [Row::Plain(Reference::WarmFuel), Row::Plain(Reference::WarmNoFuel), Row::Plain(Reference::FreshFuel)]
            .into_iter()
            .chain([Row::Driver(PersistencePolicy::UntilCrash), Row::Driver(PersistencePolicy::default())])
            .collect()
    }

    fn settings(backend: BackendKind, executor: Executor) -> RunSettings {
        let mut settings = RunSettings::new(backend, PersistencePolicy::default(), executor);
        settings.transactions = 250;
        settings.block_size = 50;
        settings
    }

    /// Every row judges every transaction and is measured.
    #[test]
    fn lockstep_measures_every_row_on_every_backend() {
        for backend in backends::compiled_in() {
            let rates = lockstep(&settings(backend, Executor::default_executor()), &rows()).expect("lockstep");
            assert_eq!(rates.len(), 5);
            for (row, rate) in rows().iter().zip(&rates) {
                assert!(rate.is_some_and(|r| r > 0.0), "{backend} {row}: {rate:?}");
            }
        }
    }

    /// An executor that loops on some transactions: the metered references
    /// and the driver run out of fuel there, and the unmetered reference,
    /// never bounded, is not measured — the run ends.
    #[test]
    fn lockstep_never_runs_an_unbounded_reference() {
        let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../executors/fixtures/loops_sometimes.wat"))
            .expect("fixture");
        for backend in backends::compiled_in() {
            let mut settings = settings(backend, Executor { name: "loops_sometimes".into(), bytes: bytes.clone() });
            settings.limits.fuel = 100_000;
            let rates = lockstep(&settings, &rows()).expect("lockstep");
            for (row, rate) in rows().iter().zip(&rates) {
                match row {
                    Row::Plain(Reference::WarmNoFuel) => assert_eq!(*rate, None, "{backend}"),
                    _ => assert!(rate.is_some_and(|r| r > 0.0), "{backend} {row}: {rate:?}"),
                }
            }
        }
    }
}
