//! In-order parallel validation ([`BlockValidator`]): the verdicts and
//! final state of every worker count equal a one-thread [`Driver`]'s, on
//! blocks whose transactions read what earlier ones wrote, with upgrades
//! mid-block, whatever the embedder reports about its writes.

use super::{A, OK_BODY, denied, every_block, every_tx};
use executor_core::{
    BlockValidator, Driver, DriverConfig, ExecutorPool, HostFactory, Limits, Rejection, SharedState, StateView,
    Verdict, WorldState,
};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Worker counts every case runs with.
pub const THREADS: [usize; 4] = [1, 2, 3, 8];

/// A transaction `[expected, key…]` reads only the *length* of the value
/// under `key` (`out_cap` 0: a length-only answer; absent counts as 0) and
/// is approved if it equals `expected`, else denied with the length's last
/// digit. Longer payloads (upgrades) are approved. The world appends a byte
/// to `key`'s value for each approved one, so each reads what the previous
/// approved one on its key wrote.
pub const COUNTER: &str = r#"(module
  (import "host" "state_get" (func $get (param i32 i32 i32 i32) (result i32)))
  (import "host" "deny_reason" (func $deny (param i32 i32)))
  (import "host" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 8)
  (data (i32.const 3000) "gate")
  (func (export "executor_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "executor_validate") (param $p i32) (param $len i32) (result i32)
    (local $n i32)
    (if (i32.gt_u (local.get $len) (i32.const 32)) (then (return (i32.const 0))))
    (call $log (i32.const 2) (local.get $p) (local.get $len))
    (local.set $n (call $get (i32.add (local.get $p) (i32.const 1)) (i32.sub (local.get $len) (i32.const 1))
      (i32.const 0) (i32.const 0)))
    (if (i32.lt_s (local.get $n) (i32.const 0)) (then (local.set $n (i32.const 0))))
    (if (i32.eq (i32.add (local.get $n) (i32.const OFFSET)) (i32.load8_u (local.get $p)))
      (then (return (i32.const 0))))
    (i32.store8 (i32.const 2000) (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))
    (call $deny (i32.const 2000) (i32.const 1))
    (i32.const 1))
  MIGRATE)"#;

/// [`COUNTER`] as loaded: approves when the length equals `expected`.
pub fn counter_v1() -> Vec<u8> {
    COUNTER.replace("OFFSET", "0").replace("MIGRATE", "").into_bytes()
}

/// The upgrade of [`counter_v1`]: approves when the length plus one equals
/// `expected`, and its `executor_migrate` succeeds only if key `gate` holds
/// something — so whether it installs depends on the state at its position.
pub fn counter_v2() -> Vec<u8> {
    let migrate = r#"(func (export "executor_migrate") (result i32)
    (if (result i32) (i32.gt_s (call $get (i32.const 3000) (i32.const 4) (i32.const 0) (i32.const 0)) (i32.const 0))
      (then (i32.const 0)) (else (i32.const 1))))"#;
    COUNTER.replace("OFFSET", "1").replace("MIGRATE", migrate).into_bytes()
}

/// An upgrade transaction to `executor`, as `abi` encodes it.
pub fn upgrade_tx(executor: &[u8]) -> Vec<u8> {
    let instruction = abi::Instruction::Upgrade { executor };
    postcard::to_allocvec(&abi::Transaction { authority: 0, nonce: 1, instruction }).expect("encodes")
}

/// What [`World::apply`] reports of its writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// The keys written.
    Keys,
    /// `None`: unknown.
    Unknown,
    /// Nothing, wrongly: correctness must not depend on the report.
    Lies,
}

/// The world of [`COUNTER`] transactions.
#[derive(Debug, Clone)]
pub struct World {
    /// The entries.
    pub map: Arc<BTreeMap<Vec<u8>, Vec<u8>>>,
    /// What `apply` reports.
    pub report: Report,
}

impl World {
    /// An empty world reporting as `report` says.
    pub fn new(report: Report) -> Self {
        World { map: Arc::default(), report }
    }
}

impl StateView for World {
    fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.map.get(key).map(Vec::as_slice)
    }
}

impl WorldState for World {
    fn snapshot(&self) -> SharedState {
        self.map.clone()
    }

    fn apply(&mut self, tx: &[u8]) -> Option<Vec<Vec<u8>>> {
        if abi::upgrade_executor(tx).is_some() {
            return Some(Vec::new());
        }
        let key = tx[1..].to_vec();
        Arc::make_mut(&mut self.map).entry(key.clone()).or_default().push(1);
        match self.report {
            Report::Keys => Some(vec![key]),
            Report::Unknown => None,
            Report::Lies => Some(Vec::new()),
        }
    }
}

/// A tiny deterministic generator (no dependency for a test).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// Blocks of [`COUNTER`] transactions: a random mix over three keys; a
/// chain where every transaction reads what the previous one wrote; one
/// with an upgrade that fails at its position (key `gate` is written only
/// later in the block) and one to a module that does not load; and one
/// whose upgrade migrates (the gate is there by then) and changes the
/// verdicts of the transactions after it.
pub fn blocks() -> Vec<Vec<Vec<u8>>> {
    let mut rng = Lcg(7);
    let keys: [&[u8]; 3] = [b"a", b"b", b"c"];
    let tx = |expected: u8, key: &[u8]| [&[expected][..], key].concat();
    let mixed: Vec<Vec<u8>> = (0..60).map(|_| tx(rng.below(8) as u8, keys[rng.below(3) as usize])).collect();
    let chain: Vec<Vec<u8>> = (0..40).map(|i| tx(i, b"d")).collect();
    let mut failing: Vec<Vec<u8>> = (0..6).map(|i| tx(i, b"b")).collect();
    failing.insert(3, upgrade_tx(&counter_v2()));
    failing.push(tx(0, b"gate"));
    failing.insert(5, upgrade_tx(b"not a module"));
    let mut upgrading: Vec<Vec<u8>> = (0..12).map(|i| tx(i, b"c")).collect();
    upgrading.insert(6, upgrade_tx(&counter_v2()));
    upgrading.extend((0..8).map(|i| tx(i + 20, b"c")));
    vec![mixed, chain, failing, upgrading]
}

/// The reference: one driver, in order, applying what it approves.
/// Limits under which eight workers fit in the default `memory_cap`.
fn small() -> Limits {
    Limits { memory_bytes: 8 << 20, ..Limits::default() }
}

fn one_thread(factory: HostFactory, blocks: &[Vec<Vec<u8>>], world: &mut World) -> Vec<Verdict> {
    let mut driver = Driver::new(factory(small()), &counter_v1(), DriverConfig::default())
        .unwrap_or_else(|e| panic!("load failed: {e}"));
    let mut verdicts = Vec::new();
    for block in blocks {
        for tx in block {
            let verdict = driver.validate(tx, world.snapshot()).unwrap_or_else(|e| panic!("host failure: {e}"));
            if verdict == Verdict::Approved {
                world.apply(tx);
            }
            verdicts.push(verdict);
        }
        driver.end_block();
    }
    verdicts
}

/// Validates `blocks` on `threads` workers of `factory`'s backend.
fn on_workers(
    factory: HostFactory,
    threads: usize,
    config: DriverConfig,
    blocks: &[Vec<Vec<u8>>],
    world: &mut World,
) -> (Vec<Verdict>, BlockValidator) {
    let hosts = (0..threads).map(|_| factory(small())).collect();
    let mut validator =
        BlockValidator::new(hosts, &counter_v1(), config).unwrap_or_else(|e| panic!("load failed: {e}"));
    let mut verdicts = Vec::new();
    for block in blocks {
        verdicts.extend(validator.validate_block(block, world).unwrap_or_else(|e| panic!("host failure: {e}")));
    }
    (verdicts, validator)
}

/// On 1, 2, 3 and 8 workers, with the embedder reporting its writes,
/// reporting nothing, or lying: the verdicts (rejections, upgrades and
/// failed upgrades included) and the final state equal one thread's, and
/// the counters count committed verdicts and installed upgrades.
pub fn parallel_validation_commits_one_thread_verdicts(factory: HostFactory) {
    let blocks = blocks();
    let mut reference_world = World::new(Report::Keys);
    let reference = one_thread(factory, &blocks, &mut reference_world);
    let approved = reference.iter().filter(|v| **v == A).count();
    assert!(reference[..60].contains(&A) && reference[..60].contains(&denied("1")), "a mix: {reference:?}");
    assert_eq!(reference[60..100], vec![A; 40], "the chain is approved link by link");
    let failed = Verdict::rejected(Rejection::UpgradeFailed);
    assert_eq!([&reference[103], &reference[105]], [&failed, &failed], "no gate yet; not a module");
    assert_eq!(reference.iter().filter(|v| v.rejection().is_some()).count(), 2);
    assert_eq!(reference[109 + 6], A, "the gate is there: the upgrade installs");
    for report in [Report::Keys, Report::Unknown, Report::Lies] {
        for threads in THREADS {
            let mut world = World::new(report);
            let (verdicts, validator) = on_workers(factory, threads, DriverConfig::default(), &blocks, &mut world);
            let first_difference = verdicts.iter().zip(&reference).position(|(a, b)| a != b);
            assert_eq!(
                first_difference, None,
                "{threads} workers, report {report:?}: inconsistent output at transaction {first_difference:?}"
            );
            assert_eq!(verdicts.len(), reference.len());
            assert_eq!(world.map, reference_world.map, "{threads} workers, report {report:?}: final state");
            let stats = validator.stats();
            assert_eq!(stats.transactions, reference.len() as u64);
            assert_eq!((stats.approved as usize, stats.blocks), (approved, blocks.len() as u64));
            assert_eq!(stats.upgrades, 1, "one upgrade installed");
            assert_eq!(validator.threads(), threads);
            let p = validator.parallel_stats();
            assert_eq!(p.executions, stats.transactions + p.reexecutions + p.taken_over, "every run counted once");
        }
    }
}

/// Without state reads nothing is ever run again; a policy that carries
/// state between transactions runs on one thread, with one thread's
/// verdicts.
pub fn parallel_validation_reruns_only_what_read_changed(factory: HostFactory) {
    let txs: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i, b'k']).collect();
    let executor = format!("(module {OK_BODY})");
    let hosts = (0..2).map(|_| factory(Limits::default())).collect();
    let mut validator = BlockValidator::new(hosts, executor.as_bytes(), DriverConfig::default()).unwrap();
    let mut world = World::new(Report::Unknown);
    for _ in 0..3 {
        assert_eq!(validator.validate_block(&txs, &mut world).unwrap(), vec![A; 50]);
    }
    let p = validator.parallel_stats();
    assert_eq!((p.executions - p.taken_over, p.reexecutions, p.conflicts), (150, 0, 0), "no reads, no re-executions");
    assert!(validator.is_parallel());
    let config = DriverConfig { policy: every_block(1), ..Default::default() };
    let blocks = blocks();
    let (verdicts, validator) = on_workers(factory, 3, config.clone(), &blocks, &mut World::new(Report::Keys));
    assert!(!validator.is_parallel() && validator.threads() == 1, "every-block:1 runs on one thread");
    assert_eq!(validator.parallel_stats().executions, 0);
    let mut driver = Driver::new(factory(Limits::default()), &counter_v1(), config).unwrap();
    let mut world = World::new(Report::Keys);
    let mut expected = Vec::new();
    for block in &blocks {
        for tx in block {
            let v = driver.validate(tx, world.snapshot()).unwrap();
            if v == A {
                world.apply(tx);
            }
            expected.push(v);
        }
        driver.end_block();
    }
    assert_eq!(verdicts, expected);
    assert!(BlockValidator::runs_in_parallel(every_tx(1)) && !BlockValidator::runs_in_parallel(every_tx(2)));
}

/// Workers (of in-order validation and of pre-validation) run on threads
/// with the native stack the largest stack budget may need
/// ([`executor_core::instrument::thread_stack_bytes`]): recursion with the
/// heaviest frames past the budget's edge ends as `stack_overflow` by
/// core's model, never in a crash of the worker.
pub fn workers_have_the_stack_the_budget_needs(factory: HostFactory) {
    let limits = Limits { max_stack: executor_core::instrument::MAX_STACK_BUDGET, ..Limits::default() };
    let heavy = crate::fixtures::HEAVY_FRAMES.as_bytes();
    let depth = |sel: u8, d: u16| [sel, 0].into_iter().chain(d.to_le_bytes()).collect::<Vec<u8>>();
    let payloads: Vec<Vec<u8>> = (0..3).flat_map(|sel| [depth(sel, 40), depth(sel, 60_000)]).collect();
    let expected: Vec<Verdict> = [A, Verdict::rejected(Rejection::StackOverflow)].into_iter().cycle().take(6).collect();
    let block: Vec<Vec<u8>> = payloads.iter().cycle().take(18).cloned().collect();
    let expected: Vec<Verdict> = expected.into_iter().cycle().take(18).collect();
    let hosts = (0..2).map(|_| factory(limits.clone())).collect();
    let mut validator = BlockValidator::new(hosts, heavy, DriverConfig::default()).unwrap();
    assert_eq!(validator.validate_block(&block, &mut World::new(Report::Keys)).unwrap(), expected);
    let hosts = (0..2).map(|_| factory(limits.clone())).collect();
    let mut pool = ExecutorPool::new(hosts, heavy, &DriverConfig::default()).unwrap();
    assert_eq!(pool.prevalidate(&block, &crate::state(&[])).unwrap(), expected);
}

/// The cap is checked at each upgrade too: installing an executor of which
/// fewer drivers fit in `memory_cap` stops the workers beyond them, says
/// so, and changes no verdict.
pub fn parallel_upgrades_keep_only_the_workers_that_fit(factory: HostFactory) {
    // v2 is v1 with large functions it never calls: more compiled code
    // to count per driver.
    let mut big = String::new();
    for _ in 0..4 {
        big.push_str("(func (param i32)");
        for _ in 0..10_000 {
            big.push_str(" (i32.store (i32.const 0) (i32.const 0))");
        }
        big.push_str(")\n");
    }
    let v2 = wat::parse_str(COUNTER.replace("OFFSET", "1").replace("MIGRATE", &big)).expect("parses");
    let mut limits = Limits { memory_bytes: 1 << 20, ..Limits::default() };
    let prepared = |wasm: &[u8], limits: &Limits| executor_core::module::prepare(wasm, limits).unwrap();
    let (v2_first, _) = prepared(&v2, &limits).estimates(&limits);
    limits.memory_cap = v2_first + (1 << 20);
    assert_eq!(prepared(&counter_v1(), &limits).drivers_that_fit(&limits, 4), 4, "all of v1's fit");
    assert_eq!(prepared(&v2, &limits).drivers_that_fit(&limits, 4), 1, "one of v2's");
    let block: Vec<Vec<u8>> = [vec![upgrade_tx(&v2)], (0..30u8).map(|i| vec![i, b'k']).collect()].concat();
    let hosts = (0..4).map(|_| factory(limits.clone())).collect();
    let mut validator = BlockValidator::new(hosts, &counter_v1(), DriverConfig::default()).unwrap();
    assert_eq!(validator.threads(), 4);
    let verdicts = validator.validate_block(&block, &mut World::new(Report::Keys)).unwrap();
    assert_eq!(verdicts[0], A, "the upgrade installs");
    assert_eq!(validator.threads(), 1, "{:?}", validator.notes());
    assert!(validator.notes()[0].contains("memory_cap fits 1 driver(s)"), "{:?}", validator.notes());
    let mut driver = Driver::new(factory(limits.clone()), &counter_v1(), DriverConfig::default()).unwrap();
    let mut world = World::new(Report::Keys);
    let expected: Vec<Verdict> = block
        .iter()
        .map(|tx| {
            let v = driver.validate(tx, world.snapshot()).unwrap();
            if v == A {
                world.apply(tx);
            }
            v
        })
        .collect();
    assert_eq!(verdicts, expected);
    assert_eq!(validator.stats().upgrades, 1);
}
