//! The cases, a file per topic. Each takes a [`HostFactory`] and panics,
//! naming the case, the transaction and both verdicts, on the first
//! deviation from abi.md.

use crate::fixtures::{self, HOSTILE, HOSTILE_CASES, READS_STATE, STATEFUL, rejected};
use crate::{HostFactory, load, run, state};
use executor_core::{
    DriverConfig, Error, Limits, ModuleLimits, PersistencePolicy, RecycleCause, Rejection, RejectionKind, Verdict,
};
use std::num::NonZeroU32;

mod host_calls;
mod lifecycle;
mod loading;
mod memory;
mod parallel;
mod policies;
mod rejections;
mod resources;
mod tracking;

pub use host_calls::*;
pub use lifecycle::*;
pub use loading::*;
pub use memory::*;
pub use parallel::*;
pub use policies::*;
pub use rejections::*;
pub use resources::*;
pub use tracking::*;

pub(crate) const A: Verdict = Verdict::Approved;

pub(crate) fn denied(reason: &str) -> Verdict {
    Verdict::Denied { reason: reason.into() }
}

pub(crate) fn every_tx(n: u32) -> PersistencePolicy {
    PersistencePolicy::EveryTransactions(NonZeroU32::new(n).unwrap())
}

pub(crate) fn every_block(n: u32) -> PersistencePolicy {
    PersistencePolicy::EveryBlocks(NonZeroU32::new(n).unwrap())
}

pub(crate) fn payloads(bytes: &[u8]) -> Vec<[u8; 1]> {
    bytes.iter().map(|b| [*b]).collect()
}

pub(crate) fn run_bytes(driver: &mut executor_core::Driver, bytes: &[u8]) -> Vec<Verdict> {
    let p = payloads(bytes);
    run(driver, &p.iter().map(|p| &p[..]).collect::<Vec<_>>())
}

pub(crate) const OK_BODY: &str = r#"
  (memory (export "memory") 1)
  (func (export "executor_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "executor_validate") (param i32 i32) (result i32) (i32.const 0))"#;

/// [`OK_BODY`] without its memory.
pub(crate) const OK_BODY_FUNCS: &str = r#"
  (func (export "executor_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "executor_validate") (param i32 i32) (result i32) (i32.const 0))"#;

pub(crate) fn module(extra: &str) -> String {
    format!("(module {OK_BODY}\n{extra})")
}

pub(crate) fn load_error(factory: HostFactory, executor: &[u8], limits: Limits) -> Error {
    match executor_core::Driver::new(factory(limits), executor, DriverConfig::default()) {
        Ok(_) => panic!("loaded, but must not: {}", String::from_utf8_lossy(executor)),
        Err(e) => e,
    }
}

/// A `/proc/self/status` figure in bytes (`VmRSS`, `VmHWM`).
pub(crate) fn status_bytes(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field))?.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

pub(crate) fn rss_bytes() -> u64 {
    status_bytes("VmRSS:")
}
