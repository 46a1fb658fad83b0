//! Blank snapshots: an instance built from one is, byte for byte and global
//! for global, the instance `executor_init` makes; what cannot be carried
//! falls back to init; a restart restores the snapshot from the cache and
//! judges exactly as a cold start. Run by [`crate::suite!`] on every backend.

use crate::cache::{TempDir, entry, hostile_verdicts, open};
use crate::fixtures::{DEFAULT_EXECUTOR, HOSTILE, SNAPSHOT, STATEFUL};
use crate::{HostFactory, state};
use executor_core::cache::{self, ArtifactCache, CacheKey};
use executor_core::{Driver, DriverConfig, GlobalValue, Limits, PreparedModule, SnapshotOutcome, Verdict};
use std::sync::Arc;

fn driver(factory: HostFactory, executor: &[u8], snapshots: bool, cache: Option<Arc<ArtifactCache>>) -> Driver {
    let config = DriverConfig { snapshots, cache, ..Default::default() };
    Driver::new(factory(Limits::default()), executor, config).unwrap_or_else(|e| panic!("load failed: {e}"))
}

/// Validates `n` transactions `[i]` (under the default `every-tx:1`).
fn judge(d: &mut Driver, n: u8) -> Vec<Verdict> {
    let empty = state(&[]);
    (0..n).map(|i| d.validate(&[i], empty.clone()).expect("no host failure")).collect()
}

/// A new blank instance's memory and globals, and whether it came from
/// the snapshot.
fn blank(d: &mut Driver) -> (Vec<u8>, Option<Vec<GlobalValue>>, bool) {
    let restored = d.stats().restored_builds;
    let (memory, globals) = d.inspect_blank().expect("builds");
    (memory, globals, d.stats().restored_builds > restored)
}

/// Panics naming the first byte where two memories differ.
fn assert_same_memory(a: &[u8], b: &[u8], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: memory sizes differ");
    if let Some(at) = a.iter().zip(b).position(|(x, y)| x != y) {
        panic!("{what}: memories differ first at byte {at}: {} (init) vs {} (snapshot)", a[at], b[at]);
    }
}

/// The snapshot fixture with `extra` spliced in at `marker`.
fn snapshot_variant(marker: &str, extra: &str) -> String {
    assert!(SNAPSHOT.contains(marker));
    SNAPSHOT.replace(marker, extra)
}

/// On every executor whose blank state can move, an instance built from
/// the snapshot equals one that ran `start` and `executor_init`: the whole
/// memory (size, data segments, every byte init wrote — across page ends,
/// by bulk operations, in pages it grew) and every mutable global, floats
/// to the NaN payload bit. Transactions judge alike with and without
/// snapshots, and under `every-tx:1` every rebuild of the snapshot fixture
/// (whose transactions grow memory) adopts it instead of running init.
pub fn snapshots_restore_exactly_what_init_makes(factory: HostFactory) {
    let executors: [(&str, &[u8]); 4] = [
        ("snapshot fixture", SNAPSHOT.as_bytes()),
        ("stateful", STATEFUL.as_bytes()),
        ("hostile", HOSTILE.as_bytes()),
        ("default executor", DEFAULT_EXECUTOR),
    ];
    for (what, executor) in executors {
        let mut by_init = driver(factory, executor, false, None);
        let mut by_snapshot = driver(factory, executor, true, None);
        assert_eq!(by_init.stats().snapshot, SnapshotOutcome::Off, "{what}");
        assert_eq!(by_snapshot.stats().snapshot, SnapshotOutcome::Captured, "{what}");
        let (init_memory, init_globals, restored) = blank(&mut by_init);
        assert!(!restored, "{what}: snapshots off, init ran");
        // Both ways of building from the snapshot: adopting it by copying
        // (while the host bakes it in the background) and, where the host
        // bakes, instantiating the baked executor.
        let (copied_memory, copied_globals, restored) = blank(&mut by_snapshot);
        assert!(restored, "{what}: built from the snapshot");
        assert_same_memory(&init_memory, &copied_memory, what);
        assert_eq!(init_globals, copied_globals, "{what}: globals");
        by_snapshot.settle();
        let (memory, globals, restored) = blank(&mut by_snapshot);
        assert!(restored, "{what}: built from the snapshot");
        let bakes = factory(Limits::default()).bakes_snapshots();
        assert_eq!(by_snapshot.stats().baked_executors, u64::from(bakes), "{what}: baked where the host bakes");
        assert_same_memory(&init_memory, &memory, what);
        assert_eq!(init_globals, globals, "{what}: globals");
    }
    // The fixture's state really is there: the NaN payload and the grown
    // pages survived the trip.
    let mut d = driver(factory, SNAPSHOT.as_bytes(), true, None);
    let (memory, globals, _) = blank(&mut d);
    assert!(globals.expect("numbers only").contains(&GlobalValue::F32(0x7fa0_0001)), "f32 NaN payload kept");
    assert_eq!(memory.len(), 3 * 65536, "init grew two pages");
    // Every transaction grows memory, so every blank is a rebuild: from
    // the snapshot, never init again, and judged as with init.
    d.settle();
    let with = judge(&mut d, 6);
    let mut without = driver(factory, SNAPSHOT.as_bytes(), false, None);
    assert_eq!(with, vec![Verdict::Approved; 6], "the fixture checks init's state in every transaction");
    assert_eq!(with, judge(&mut without, 6));
    let s = d.stats();
    assert_eq!((s.blanks, s.instances_built, s.restored_builds), (5, 7, 6), "one init, six adoptions: {s:?}");
    assert_eq!(without.stats().restored_builds, 0);
}

/// A blank state that cannot move — init wrote a table, dropped a segment,
/// or a global holds a reference — is reported `unportable`, and every
/// build runs init, with the same verdicts.
pub fn unportable_blank_states_run_init(factory: HostFactory) {
    for (what, executor) in [
        ("table write", snapshot_variant(";; (variant)", "(table.set $t (i32.const 0) (ref.func $f))")),
        ("dropped segment", snapshot_variant(";; (variant)", "(data.drop $passive)")),
        ("reference global", snapshot_variant(";; (globals)", "(global $r (mut funcref) (ref.null func))")),
    ] {
        let mut d = driver(factory, executor.as_bytes(), true, None);
        assert_eq!(d.stats().snapshot, SnapshotOutcome::Unportable, "{what}");
        assert_eq!(judge(&mut d, 4), vec![Verdict::Approved; 4], "{what}");
        assert_eq!((d.stats().instances_built, d.stats().restored_builds), (4, 0), "{what}: init every time");
    }
}

fn prepared(executor: &[u8]) -> PreparedModule {
    executor_core::module::prepare(executor, &Limits::default()).unwrap_or_else(|e| panic!("{e}"))
}

/// A restart finds the snapshot in the cache: no `executor_init` runs in
/// the second process-worth of driver (`restored`, every build adopted)
/// and the verdicts equal a cold start's and an uncached one's. A
/// corrupted entry, or one that does not fit the executor, is deleted and
/// init runs (`captured`, the right snapshot stored again); other limits
/// have another key; with snapshots off nothing is stored.
pub fn restart_restores_the_blank_snapshot(factory: HostFactory) {
    let dir = TempDir::new("snapshot-restart");
    let host = factory(Limits::default());
    let module = prepared(SNAPSHOT.as_bytes());
    let stored = || cache::load_snapshot(&open(&dir), &*host, &module);

    let mut uncached = driver(factory, SNAPSHOT.as_bytes(), false, None);
    let reference = judge(&mut uncached, 6);
    let (reference_memory, reference_globals, _) = blank(&mut uncached);

    let mut off = driver(factory, SNAPSHOT.as_bytes(), false, Some(open(&dir)));
    assert_eq!(judge(&mut off, 2), reference[..2]);
    assert!(stored().is_none(), "snapshots off: nothing stored");

    let mut cold = driver(factory, SNAPSHOT.as_bytes(), true, Some(open(&dir)));
    assert_eq!(cold.stats().snapshot, SnapshotOutcome::Captured);
    assert_eq!(judge(&mut cold, 6), reference, "cold start");
    let snapshot = stored().expect("stored at the first build");

    let mut warm = driver(factory, SNAPSHOT.as_bytes(), true, Some(open(&dir)));
    assert_eq!(warm.stats().snapshot, SnapshotOutcome::Restored);
    assert_eq!(judge(&mut warm, 6), reference, "restored snapshot");
    let s = warm.stats();
    assert_eq!(s.instances_built, s.restored_builds, "no executor_init ran: {s:?}");
    let (memory, globals, _) = blank(&mut warm);
    assert_same_memory(&reference_memory, &memory, "restored from disk");
    assert_eq!(reference_globals, globals);

    // A corrupted entry: deleted, init runs, the snapshot is stored again.
    let key = CacheKey::snapshot_of(&*host, &module);
    let path = entry(&dir, &key);
    let mut bytes = std::fs::read(&path).expect("entry exists");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let mut d = driver(factory, SNAPSHOT.as_bytes(), true, Some(open(&dir)));
    assert_eq!(d.stats().snapshot, SnapshotOutcome::Captured, "corrupted entry not used");
    assert_eq!(judge(&mut d, 6), reference);
    assert_eq!(stored().as_ref(), Some(&snapshot), "stored again");

    // A well-formed entry that does not fit (another executor's snapshot
    // under this key: other globals): not adopted, deleted, init runs.
    let mut other = driver(factory, STATEFUL.as_bytes(), true, Some(open(&dir)));
    judge(&mut other, 1);
    let misfit = cache::load_snapshot(&open(&dir), &*host, &prepared(STATEFUL.as_bytes())).expect("stored");
    cache::store_snapshot(&open(&dir), &*host, &module, &misfit);
    let mut d = driver(factory, SNAPSHOT.as_bytes(), true, Some(open(&dir)));
    assert_eq!(d.stats().snapshot, SnapshotOutcome::Captured, "a misfit is not adopted");
    assert_eq!(judge(&mut d, 6), reference);
    assert_eq!(stored().as_ref(), Some(&snapshot), "the right one stored again");

    // Other limits, another key.
    let limits = Limits { fuel: Limits::default().fuel + 1, ..Limits::default() };
    let other_limits = factory(limits.clone());
    let module = executor_core::module::prepare(SNAPSHOT.as_bytes(), &limits).unwrap();
    assert!(cache::load_snapshot(&open(&dir), &*other_limits, &module).is_none(), "limits are in the key");

    // The hostile executor's every case, restored, judges as uncached.
    let hostile = |cache| {
        let mut d = driver(factory, HOSTILE.as_bytes(), true, cache);
        (hostile_verdicts(&mut d), d.stats().snapshot)
    };
    let (uncached, _) = hostile(None);
    assert_eq!(hostile(Some(open(&dir))), (uncached.clone(), SnapshotOutcome::Captured));
    assert_eq!(hostile(Some(open(&dir))), (uncached, SnapshotOutcome::Restored));
}
