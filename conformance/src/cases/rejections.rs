//! Every rejection kind and trap code, executor_alloc misbehaving, and fuel charged exactly as documented.

use super::*;

/// Every rejection kind and trap code of abi.md from [`fixtures::HOSTILE`],
/// each followed by a normal transaction that a recycled instance must
/// approve; the recycle is counted under the rejection's cause.
pub fn every_rejection_kind(factory: HostFactory) {
    let mut d = load(factory, HOSTILE.as_bytes(), PersistencePolicy::UntilCrash, Limits::default());
    for (byte, name, expected) in HOSTILE_CASES {
        let got = run_bytes(&mut d, &[*byte, 0]);
        assert_eq!(got, vec![expected.clone(), A], "case {byte} ({name})");
    }
    let stats = d.stats();
    assert_eq!(stats.recycles, HOSTILE_CASES.len() as u64);
    assert_eq!(stats.approved, HOSTILE_CASES.len() as u64);
    assert_eq!(stats.blanks, 0);
    for (byte, name, expected) in HOSTILE_CASES {
        let kind = expected.rejection().unwrap().kind();
        let n = HOSTILE_CASES.iter().filter(|(_, _, v)| v.rejection().unwrap().kind() == kind).count() as u64;
        assert_eq!(stats.rejected.get(&kind), Some(&n), "rejected[{kind}] ({byte}: {name})");
        assert_eq!(stats.recycles_by_cause.get(&RecycleCause::from(kind)), Some(&n), "recycles[{kind}]");
    }
}

/// `executor_alloc` returning 0, a pointer outside memory, or a range that
/// runs past the end is `host_fault`; the next transaction is served.
pub fn alloc_misbehaviour(factory: HostFactory) {
    let mut d = load(factory, HOSTILE.as_bytes(), every_tx(1), Limits::default());
    let empty = state(&[]);
    for len in [1000, 1001, 1002] {
        let tx = vec![0u8; len];
        assert_eq!(d.validate(&tx, empty.clone()).unwrap(), rejected(Rejection::HostFault), "alloc for len {len}");
        assert_eq!(d.validate(&[0], empty.clone()).unwrap(), A, "after alloc for len {len}");
    }
    assert_eq!(d.stats().recycles_by_cause.get(&RecycleCause::HostFault), Some(&3));
}

/// Fuel follows abi.md's documented costs exactly (`instrument::cost`):
/// for each executor, the least budget that approves is the count of its
/// instructions plus the documented extras, and one unit less is
/// `out_of_fuel`.
pub fn fuel_follows_the_documented_costs(factory: HostFactory) {
    use executor_core::instrument::cost;
    // `executor_alloc` is `i32.const 1024; end`: 2 units.
    let cases: [(&str, &str, u64); 5] = [
        ("returns at once", "(i32.const 0)", 2 + 2),
        (
            "a host call with 5 bytes",
            "(call $log (i32.const 2) (i32.const 0) (i32.const 5)) (i32.const 0)",
            2 + 6 + cost::HOST_CALL + 5 * cost::HOST_BYTE,
        ),
        (
            "memory.fill of 10 bytes",
            "(memory.fill (i32.const 0) (i32.const 0) (i32.const 10)) (i32.const 0)",
            2 + 6 + 10,
        ),
        (
            // loop (1), 10 iterations of 7, then end, i32.const, end (3)
            "a loop of 10 iterations",
            "(loop $l (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (i32.const 10)))) (i32.const 0)",
            2 + 1 + 70 + 3,
        ),
        (
            // A skipped `then` (2: its `nop` and `end` are not run); a
            // block left by its `br_if` (3: its `nop` and `end` are not
            // run); then i32.const, end (2).
            "a skipped if and a block left by br_if",
            "(if (i32.const 0) (then (nop))) (block (br_if 0 (i32.const 1)) (nop)) (i32.const 0)",
            2 + 2 + 3 + 2,
        ),
    ];
    for (name, body, expected) in cases {
        let wat = format!(
            r#"(module
              (import "host" "log" (func $log (param i32 i32 i32)))
              (memory (export "memory") 1)
              (func (export "executor_alloc") (param i32) (result i32) (i32.const 1024))
              (func (export "executor_validate") (param i32 i32) (result i32) (local $i i32) {body}))"#
        );
        for (fuel, verdict) in [(expected, A), (expected - 1, rejected(Rejection::OutOfFuel))] {
            let mut d = load(factory, wat.as_bytes(), every_tx(1), Limits { fuel, ..Limits::default() });
            assert_eq!(run_bytes(&mut d, &[0]), vec![verdict], "{name} with {fuel} fuel");
        }
    }
}
