//! Cross-engine agreement: cases that need every backend at once, in the
//! style of nearcore's `with_vm_variants`. Each takes the list of backends
//! and panics with "inconsistent output", the first differing transaction
//! and both verdicts, when two disagree.
//!
//! The fuel and stack cases do more than compare digests: they search, on
//! each backend, for the exact budget at which a transaction stops being
//! `out_of_fuel` / `stack_overflow`, and require those budgets to be equal
//! to the unit — the "same instruction" of abi.md.

use crate::fixtures::{FUEL_SWEEP, HEAVY_FRAMES, INLINE, NAN, RECURSION};
use crate::{HostFactory, state};
use executor_core::instrument::{MAX_STACK_BUDGET, cost};
use executor_core::{Driver, DriverConfig, Limits, PersistencePolicy, Rejection, RejectionKind, Verdict};
use std::num::NonZeroU32;

/// Named backends to compare, e.g. `[("wasmi", backend_wasmi::host), …]`.
pub type Backends<'a> = &'a [(&'static str, HostFactory)];

fn driver(factory: HostFactory, executor: &[u8], policy: PersistencePolicy, limits: &Limits) -> Driver {
    Driver::new(factory(limits.clone()), executor, DriverConfig { policy, ..Default::default() })
        .unwrap_or_else(|e| panic!("load failed: {e}"))
}

/// Verdicts of `payloads` on one backend, and the driver (for its stats).
pub fn verdicts(
    factory: HostFactory,
    executor: &[u8],
    policy: PersistencePolicy,
    limits: &Limits,
    payloads: &[Vec<u8>],
) -> (Vec<Verdict>, Driver) {
    let mut d = driver(factory, executor, policy, limits);
    let empty = state(&[(b"\0\0\0\0", b"four")]);
    let v =
        payloads.iter().map(|p| d.validate(p, empty.clone()).unwrap_or_else(|e| panic!("host failure: {e}"))).collect();
    (v, d)
}

/// Runs `payloads` on every backend and returns their common verdicts, or
/// panics with "inconsistent output" at the first transaction where two
/// backends differ. Also requires that no engine-native limit fired before
/// core's (`Stats::backstops == 0`).
pub fn agree(
    backends: Backends<'_>,
    executor: &[u8],
    policy: PersistencePolicy,
    limits: &Limits,
    payloads: &[Vec<u8>],
) -> Vec<Verdict> {
    let mut first: Option<(&str, Vec<Verdict>)> = None;
    for (name, factory) in backends {
        let (got, d) = verdicts(*factory, executor, policy, limits, payloads);
        assert_eq!(d.stats().backstops, 0, "{name}: an engine limit fired before core's");
        match &first {
            None => first = Some((name, got)),
            Some((base, expected)) => {
                if let Some(i) = (0..payloads.len()).find(|i| expected[*i] != got[*i]) {
                    panic!(
                        "inconsistent output at transaction {i} (payload {:?}) under {policy}: {base} gives {:?}, {name} gives {:?}",
                        payloads[i], expected[i], got[i]
                    );
                }
            }
        }
    }
    first.map(|(_, v)| v).unwrap_or_default()
}

fn every_tx() -> PersistencePolicy {
    PersistencePolicy::EveryTransactions(NonZeroU32::MIN)
}

/// The smallest budget in `0..=max` (per `with`) under which `payload` is
/// approved on `factory`; verdicts are monotonic in the budget.
fn threshold(factory: HostFactory, executor: &[u8], payload: &[u8], max: u64, with: fn(u64) -> Limits) -> u64 {
    let approved = |budget: u64| {
        let (v, _) = verdicts(factory, executor, every_tx(), &with(budget), &[payload.to_vec()]);
        v[0] == Verdict::Approved
    };
    assert!(approved(max), "not approved even with a budget of {max}");
    let (mut lo, mut hi) = (0, max); // !approved(lo) unless lo == 0; approved(hi)
    if approved(0) {
        return 0;
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if approved(mid) { hi = mid } else { lo = mid }
    }
    hi
}

/// The same exact threshold on every backend, or "inconsistent output".
fn thresholds_agree(
    backends: Backends<'_>,
    executor: &[u8],
    payload: &[u8],
    max: u64,
    with: fn(u64) -> Limits,
    what: &str,
) -> u64 {
    let found: Vec<(&str, u64)> =
        backends.iter().map(|(name, f)| (*name, threshold(*f, executor, payload, max, with))).collect();
    for (name, t) in &found[1..] {
        assert_eq!(
            *t, found[0].1,
            "inconsistent output: {what} for payload {payload:?} is {} on {} but {t} on {name}",
            found[0].1, found[0].0
        );
    }
    found[0].1
}

fn with_fuel(fuel: u64) -> Limits {
    Limits { fuel, ..Limits::default() }
}

fn with_stack(max_stack: u64) -> Limits {
    Limits { max_stack, ..Limits::default() }
}

/// An executor whose work (instructions, stores, `memory.fill` bytes, host
/// calls) grows with its payload runs out of fuel at exactly the same
/// budget on every backend, for several payloads; and a sweep over many
/// budgets gives identical verdicts, a mix of approvals and `out_of_fuel`.
pub fn fuel_exhaustion_points_agree(backends: Backends<'_>) {
    let exec = FUEL_SWEEP.as_bytes();
    let mut last = 0;
    for n in [0u8, 1, 5, 17, 60, 200] {
        let t = thresholds_agree(backends, exec, &[n], 1_000_000, with_fuel, "the least fuel that approves");
        assert!(t > last, "more work costs more fuel ({n}: {t} after {last})");
        last = t;
    }
    let payloads: Vec<Vec<u8>> = [0u8, 3, 9, 30, 90, 255].iter().map(|n| vec![*n]).collect();
    let (mut approved, mut out_of_fuel) = (0, 0);
    let mut budget = 20u64;
    while budget < 400_000 {
        for v in agree(backends, exec, every_tx(), &with_fuel(budget), &payloads) {
            match v {
                Verdict::Approved => approved += 1,
                Verdict::Rejected { rejection: Rejection::OutOfFuel } => out_of_fuel += 1,
                other => panic!("unexpected verdict {other:?} at fuel {budget}"),
            }
        }
        budget = budget * 3 / 2;
    }
    assert!(approved > 10 && out_of_fuel > 10, "a mix: {approved} approved, {out_of_fuel} out of fuel");
}

/// Recursion depth against the stack budget: the least budget that lets a
/// recursion of depth `d` through is the same on every backend and grows
/// by exactly the model's frame cost per level (`cost::frame(1, 0, 2)` =
/// 88 bytes); a sweep over budgets × depths agrees, with both outcomes.
pub fn stack_overflow_points_agree(backends: Backends<'_>) {
    let exec = RECURSION.as_bytes();
    let depth = |d: u16| d.to_le_bytes().to_vec();
    let base = thresholds_agree(backends, exec, &depth(0), MAX_STACK_BUDGET, with_stack, "the least stack");
    let frame = cost::frame(1, 0, 2);
    for d in [1u16, 2, 10, 100, 1000, 5000] {
        let t = thresholds_agree(backends, exec, &depth(d), MAX_STACK_BUDGET, with_stack, "the least stack");
        assert_eq!(t, base + u64::from(d) * frame, "depth {d} costs {frame} bytes per level");
    }
    let payloads: Vec<Vec<u8>> = [0u16, 7, 70, 700, 3000].iter().map(|d| depth(*d)).collect();
    let (mut approved, mut overflow) = (0, 0);
    let mut budget = 100u64;
    while budget <= MAX_STACK_BUDGET {
        for v in agree(backends, exec, every_tx(), &with_stack(budget), &payloads) {
            match v.rejection().map(Rejection::kind) {
                None => approved += 1,
                Some(RejectionKind::StackOverflow) => overflow += 1,
                other => panic!("unexpected {other:?} at stack budget {budget}"),
            }
        }
        budget = budget * 2 + 13;
    }
    assert!(approved > 5 && overflow > 5, "a mix: {approved} approved, {overflow} overflowed");
}

/// The `call`s in the code of `wat` as prepared, to `only` if given.
fn direct_calls(wat: &str, only: Option<u32>) -> usize {
    let m = executor_core::module::prepare(wat.as_bytes(), &Limits::default()).expect("the fixture loads");
    let mut calls = 0;
    for p in wasmparser::Parser::new(0).parse_all(&m.wasm) {
        if let Ok(wasmparser::Payload::CodeSectionEntry(body)) = p {
            let ops = body.get_operators_reader().expect("a prepared body");
            calls += ops
                .into_iter()
                .filter(|op| matches!(op, Ok(wasmparser::Operator::Call { function_index }) if only.is_none_or(|f| f == *function_index)))
                .count();
        }
    }
    calls
}

/// Calls of small leaves, which the instrumentation inlines, are metered
/// exactly as calls: against the same executor with its leaves padded past
/// the inlining size (the same instructions run in the same frames, but
/// called), the least fuel and the least stack that approve are the same,
/// to the unit, on every backend, and so is every verdict of a sweep. A
/// bug shared by every engine would show here, not in a comparison of
/// engines.
pub fn inlined_calls_meter_as_calls(backends: Backends<'_>) {
    let inlined = INLINE.to_string();
    let called = INLINE.replace(";; (pad)", &format!("(return) {}", "(nop) ".repeat(80)));
    let calls = |wat: &str| direct_calls(wat, None);
    // Two `$sum`s, `$half`, `$pick`, two `$maybe`s and `$put` (whose
    // stores the caller marks) at the bottom.
    assert_eq!(calls(&inlined) + 7, calls(&called), "the small leaves are inlined, the padded ones called");
    let payload = |n: u8, depth: u16| {
        let data: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
        let sum: u32 = data.iter().map(|b| u32::from(*b)).sum();
        let pick = [10, 20, 30, 30][usize::from(n % 4)];
        let expected = 2 * (1 + sum) + pick + u32::from(n) / 2 + 5 + u32::from(n) + 1;
        let mut p = vec![n];
        p.extend(depth.to_le_bytes());
        p.extend(expected.to_le_bytes());
        p.extend(data);
        p
    };
    for (n, depth) in [(0u8, 0u16), (1, 3), (6, 40), (77, 1), (255, 300)] {
        let p = payload(n, depth);
        let fuel = |wat: &str| thresholds_agree(backends, wat.as_bytes(), &p, 1_000_000, with_fuel, "the least fuel");
        assert_eq!(fuel(&inlined), fuel(&called), "fuel for {n} bytes at depth {depth}");
        let stack =
            |wat: &str| thresholds_agree(backends, wat.as_bytes(), &p, MAX_STACK_BUDGET, with_stack, "the least stack");
        assert_eq!(stack(&inlined), stack(&called), "stack for {n} bytes at depth {depth}");
    }
    // A wrong expectation denies, on both.
    let mut wrong = payload(9, 2);
    wrong[3] ^= 1;
    let payloads = vec![payload(3, 5), payload(200, 60), wrong, payload(0, 0)];
    for limits in [with_fuel(2_000), with_fuel(9_000), with_stack(2_000), with_stack(7_000), Limits::default()] {
        let a = agree(backends, inlined.as_bytes(), every_tx(), &limits, &payloads);
        let b = agree(backends, called.as_bytes(), every_tx(), &limits, &payloads);
        assert_eq!(a, b, "inconsistent output between inlined and called leaves under {limits:?}");
    }
    let all = agree(backends, inlined.as_bytes(), every_tx(), &Limits::default(), &payloads);
    assert_eq!(all.iter().filter(|v| **v == Verdict::Approved).count(), 3, "{all:?}");
}

/// At the largest stack budget, recursion with the heaviest frames (many
/// locals, a deep operand stack, tiny frames, tiny frames grown by an
/// inlined leaf) ends as `stack_overflow` by
/// core's model on every backend — never by an engine's own limit and
/// never by crashing the thread. Runs on a thread with a 64 MiB stack,
/// as a peer calling wasmtime at that budget must
/// ([`executor_core::instrument::engine_stack_bytes`]).
pub fn engine_stacks_never_fire_first(backends: Backends<'_>) {
    let backends = backends.to_vec();
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || {
            assert_eq!(direct_calls(HEAVY_FRAMES, Some(2)), 0, "`$wide` (function 2) is inlined");
            let limits = with_stack(MAX_STACK_BUDGET);
            let payloads: Vec<Vec<u8>> =
                (0u8..4).map(|sel| [sel, 0].into_iter().chain(60_000u16.to_le_bytes()).collect()).collect();
            let got = agree(&backends, HEAVY_FRAMES.as_bytes(), every_tx(), &limits, &payloads);
            assert!(got.iter().all(|v| *v == crate::fixtures::rejected(Rejection::StackOverflow)), "{got:?}");
            // Shallow enough to fit: approved everywhere.
            let fits: Vec<Vec<u8>> =
                (0u8..4).map(|sel| [sel, 0].into_iter().chain(40u16.to_le_bytes()).collect()).collect();
            assert!(
                agree(&backends, HEAVY_FRAMES.as_bytes(), every_tx(), &limits, &fits)
                    .iter()
                    .all(|v| *v == Verdict::Approved)
            );
        })
        .expect("spawn")
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
}

/// Every NaN-producing float instruction yields the canonical NaN on every
/// backend (the executor approves only then).
pub fn nan_results_are_canonical(backends: Backends<'_>) {
    assert_eq!(agree(backends, NAN.as_bytes(), every_tx(), &Limits::default(), &[vec![0]]), vec![Verdict::Approved]);
}
