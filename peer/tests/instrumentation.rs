//! The differential test of the rewrite itself: each executor, rewritten by
//! core (the books memory, dirty tracking with and without the barrier and
//! its hoisted loop marks, fuel, stack, guards) and run by the driver, against the same module
//! *unmodified* on the same engine (peer::anchor's plain embedding) —
//! verdicts, deny reasons and the guest memory after every transaction.
//! Cross-engine fuzzing compares engines running the same rewritten module,
//! so a rewrite bug every engine shares is invisible to it; not to this.

use executor_core::{BlankMethod, Driver, DriverConfig, Limits, PersistencePolicy, SharedState, Verdict};
use peer::anchor::{PlainExecutor, Reference};
use peer::backends::{self, BackendKind};
use std::collections::BTreeMap;
use std::sync::Arc;

/// How far two runs of one executor agreed.
#[derive(Debug, Default)]
struct Compared {
    transactions: u64,
    executors: u64,
}

/// Runs `wasm` on `backend` both ways over `payloads`; panics at the first
/// difference. Stops comparing an executor at its first rejection (a trap
/// poisons the plain instance; fuel, stack and memory limits are the
/// driver's model, not the plain engine's).
fn compare(backend: BackendKind, name: &str, wasm: &[u8], payloads: &[Vec<u8>], blank: BlankMethod, c: &mut Compared) {
    let limits = conformance::fuzz::limits();
    let host = backends::host(backend, limits.clone()).expect("backend");
    let config = DriverConfig { policy: PersistencePolicy::UntilCrash, blank, ..DriverConfig::default() };
    let Ok(mut driver) = Driver::new(host, wasm, config) else { return };
    let Ok(mut plain) = PlainExecutor::new(backend, Reference::WarmFuel, wasm, &limits) else { return };
    let state: SharedState = Arc::new(BTreeMap::from([(b"k".to_vec(), b"value".to_vec())]));
    c.executors += 1;
    for (i, tx) in payloads.iter().enumerate() {
        let rewritten = driver.validate(tx, state.clone()).expect("no host failure");
        let plain_verdict = plain.validate(tx, state.clone()).expect("no engine failure");
        let at = format!("{name} on {backend} ({blank}), tx {i}");
        let trapped = matches!(rewritten.rejection(), Some(executor_core::Rejection::Trap(_)));
        match rewritten.rejection() {
            // Fuel, stack and memory limits are the driver's model.
            Some(_) if !trapped => return,
            // Both trap at the same instruction, having written the same.
            Some(_) => {
                assert!(plain_verdict.rejection().is_some(), "{at}: rewritten {rewritten}, plain {plain_verdict}")
            }
            None => assert_eq!(rewritten, plain_verdict, "{at}: rewritten (left) vs plain (right)"),
        }
        let memory = driver.guest_memory().expect("the instance that ran");
        assert!(memory == plain.memory(), "{at}: guest memory differs after the transaction");
        c.transactions += 1;
        if trapped {
            return;
        }
    }
}

/// Runs `f` on a thread with a stack large enough for any engine's
/// recursion limit (plain engines run with their defaults).
fn on_a_big_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(f)
        .expect("spawn")
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
}

#[test]
fn the_rewrite_changes_nothing_the_guest_can_see() {
    on_a_big_stack(the_rewrite_changes_nothing);
}

fn the_rewrite_changes_nothing() {
    // Without floats: the rewrite canonicalises NaNs, a plain engine does not.
    let config = wasm_smith::Config { allow_floats: false, ..conformance::fuzz::config() };
    let fixtures: [(&str, &[u8]); 3] = [
        ("default executor", peer::DEFAULT_EXECUTOR),
        ("dirty fixture", conformance::fixtures::DIRTY.as_bytes()),
        ("memory-ops fixture", conformance::fixtures::MEMORY_OPS.as_bytes()),
    ];
    for backend in backends::compiled_in() {
        let mut c = Compared::default();
        for blank in [BlankMethod::Restore, BlankMethod::Rebuild] {
            for (name, wasm) in fixtures {
                let payloads: Vec<Vec<u8>> = (0u8..12).map(|b| vec![b, 0]).chain([vec![], vec![0; 40]]).collect();
                compare(backend, name, wasm, &payloads, blank, &mut c);
            }
            for seed in 0..300 {
                let wasm = conformance::fuzz::executor_with(seed, config.clone());
                compare(
                    backend,
                    &format!("wasm-smith seed {seed}"),
                    &wasm,
                    &conformance::fuzz::payloads(),
                    blank,
                    &mut c,
                );
            }
        }
        eprintln!("{backend}: {c:?}");
        assert!(c.executors >= 400 && c.transactions >= 150, "{backend}: too little compared: {c:?}");
    }
}

#[test]
fn payload_verdicts_match_on_the_default_executor() {
    // Sanity of the harness itself: the plain default executor denies a
    // malformed transaction with the default rules' reason.
    for backend in backends::compiled_in() {
        let limits = Limits::default();
        let mut plain = PlainExecutor::new(backend, Reference::WarmFuel, peer::DEFAULT_EXECUTOR, &limits).unwrap();
        let state: SharedState = Arc::new(BTreeMap::<Vec<u8>, Vec<u8>>::new());
        let v = plain.validate(&[0xff, 0xff], state).unwrap();
        assert!(matches!(v, Verdict::Denied { .. }), "{backend}: {v}");
    }
}
