//! The compiled-executor cache on a serialising backend: a cached executor
//! gives exactly the verdicts of a freshly compiled one, and nothing wrong
//! on disk is ever loaded. Run by [`crate::cache_suite!`] from the tests of
//! each backend that can serialise (wasmtime, wasmer).

use crate::fixtures::{HOSTILE, HOSTILE_CASES};
use crate::{HostFactory, state};
use executor_core::backend::{CompiledExecutor, ExecutorHost};
use executor_core::cache::{self, ArtifactCache, CacheConfig, CacheKey, CacheOutcome};
use executor_core::{Driver, DriverConfig, Limits, PersistencePolicy, PreparedModule, Result, Verdict};
use std::path::PathBuf;
use std::sync::Arc;

/// A fresh, private cache directory for one case, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// `<tmp>/executor-cache-<case>-<pid>`, empty.
    pub fn new(case: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("executor-cache-{case}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }

    /// A cache configuration for this directory.
    pub fn config(&self) -> CacheConfig {
        CacheConfig { dir: self.0.clone(), max_bytes: cache::DEFAULT_MAX_BYTES }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The hostile executor over every case of [`HOSTILE_CASES`] (each followed
/// by a plain transaction), loaded through `cache`; with the outcome.
fn hostile_run(factory: HostFactory, cache: Option<Arc<ArtifactCache>>) -> (Vec<Verdict>, CacheOutcome) {
    let config = DriverConfig { policy: PersistencePolicy::default(), cache, ..Default::default() };
    let mut d = Driver::new(factory(Limits::default()), HOSTILE.as_bytes(), config).expect("loads");
    (hostile_verdicts(&mut d), d.stats().cache)
}

/// Every case of [`HOSTILE_CASES`], each followed by a plain transaction,
/// on a driver of the hostile executor.
pub(crate) fn hostile_verdicts(d: &mut Driver) -> Vec<Verdict> {
    let empty = state(&[]);
    HOSTILE_CASES
        .iter()
        .flat_map(|(case, _, _)| [vec![*case], vec![0]])
        .map(|p| d.validate(&p, empty.clone()).expect("no host failure"))
        .collect()
}

pub(crate) fn open(dir: &TempDir) -> Arc<ArtifactCache> {
    Arc::new(ArtifactCache::open(&dir.config()).expect("cache opens"))
}

pub(crate) fn entry(dir: &TempDir, key: &CacheKey) -> PathBuf {
    dir.0.join(format!("{}.bin", key.hex()))
}

fn load(host: &dyn ExecutorHost, executor: &[u8], cache: &ArtifactCache) -> Result<CacheOutcome> {
    cache::load(host, executor, Some(cache)).map(|loaded| loaded.outcome)
}

const EXECUTOR: &[u8] = HOSTILE.as_bytes();

/// Cold (miss, stored), warm (hit) and uncached loads give identical
/// verdicts on every hostile case; the directory is owner-only.
pub fn cold_and_warm_loads_agree(factory: HostFactory) {
    let dir = TempDir::new("cold-warm");
    let (uncached, outcome) = hostile_run(factory, None);
    assert_eq!(outcome, CacheOutcome::Off);
    let (cold, outcome) = hostile_run(factory, Some(open(&dir)));
    assert_eq!(outcome, CacheOutcome::Miss, "an empty cache misses");
    let (warm, outcome) = hostile_run(factory, Some(open(&dir)));
    assert_eq!(outcome, CacheOutcome::Hit, "the stored executor is found");
    assert_eq!(cold, uncached, "a cold load judges as an uncached one");
    assert_eq!(warm, uncached, "a cached executor judges as a freshly compiled one");
    for ((_, what, expected), got) in HOSTILE_CASES.iter().zip(warm.iter().step_by(2)) {
        assert_eq!(got, expected, "{what} from the cache");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dir.0).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "the cache directory is owner-only");
    }
}

/// Truncated, corrupted and renamed entries are never loaded: each is a
/// miss, deleted and replaced by a good entry, and the next load hits; a
/// file the cache cannot prove its own is never loaded nor touched.
pub fn bad_entries_are_recompiled(factory: HostFactory) {
    let dir = TempDir::new("bad-entries");
    let cache = open(&dir);
    let host = factory(Limits::default());
    let key = CacheKey::of(&*host, EXECUTOR).expect("a serialising backend has a fingerprint");
    assert_eq!(load(&*host, EXECUTOR, &cache).unwrap(), CacheOutcome::Miss);
    let good = std::fs::read(entry(&dir, &key)).unwrap();
    // Another executor's entry, renamed to this key's file name.
    let other = crate::fixtures::STATEFUL.as_bytes();
    let other_key = CacheKey::of(&*host, other).unwrap();
    assert_ne!(other_key, key);
    assert_eq!(load(&*host, other, &cache).unwrap(), CacheOutcome::Miss);
    let foreign = std::fs::read(entry(&dir, &other_key)).unwrap();
    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x40;
    let mut in_header = good.clone();
    in_header[20] ^= 1;
    let bad: [(&str, Vec<u8>); 5] = [
        ("truncated payload", good[..good.len() / 2].to_vec()),
        ("truncated header", good[..10].to_vec()),
        ("one bit flipped in the code", flipped),
        ("one bit flipped in the key", in_header),
        ("another executor's entry", foreign),
    ];
    for (what, bytes) in bad {
        std::fs::write(entry(&dir, &key), &bytes).unwrap();
        assert_eq!(load(&*host, EXECUTOR, &cache).unwrap(), CacheOutcome::Miss, "{what}: must not load");
        assert_eq!(std::fs::read(entry(&dir, &key)).unwrap(), good, "{what}: replaced by a good entry");
        assert_eq!(load(&*host, EXECUTOR, &cache).unwrap(), CacheOutcome::Hit, "{what}: then hits");
    }
    // A file under the entry's name that the cache cannot prove its own
    // (no magic): never loaded, never replaced or deleted.
    for foreign in [Vec::new(), b"a user's file".to_vec()] {
        std::fs::write(entry(&dir, &key), &foreign).unwrap();
        for _ in 0..2 {
            assert_eq!(load(&*host, EXECUTOR, &cache).unwrap(), CacheOutcome::Miss, "a foreign file never loads");
            assert_eq!(std::fs::read(entry(&dir, &key)).unwrap(), foreign, "a foreign file is left alone");
        }
    }
    std::fs::remove_file(entry(&dir, &key)).unwrap();
    assert_eq!(load(&*host, EXECUTOR, &cache).unwrap(), CacheOutcome::Miss);
    // Well-formed entries (right key and checksum) whose payload is wrong:
    // one that does not decode, one whose code the engine refuses.
    let module = executor_core::module::prepare(EXECUTOR, host.limits()).unwrap();
    let module = postcard::to_allocvec(&module).unwrap();
    let mut refused = (module.len() as u64).to_le_bytes().to_vec();
    refused.extend_from_slice(&module);
    refused.extend_from_slice(b"not the engine's code");
    for (what, payload) in [("undecodable payload", b"garbage".to_vec()), ("code the engine refuses", refused)] {
        cache.put(&key, &payload).unwrap();
        assert_eq!(load(&*host, EXECUTOR, &cache).unwrap(), CacheOutcome::Miss, "{what}: must not load");
        assert_eq!(std::fs::read(entry(&dir, &key)).unwrap(), good, "{what}: replaced by a good entry");
    }
}

/// A host that differs from another only in its engine fingerprint (a new
/// engine version or configuration).
struct OtherEngine(Arc<dyn ExecutorHost>);

impl ExecutorHost for OtherEngine {
    fn info(&self) -> &executor_core::HostInfo {
        self.0.info()
    }
    fn compile(&self, module: &PreparedModule) -> Result<Arc<dyn CompiledExecutor>> {
        self.0.compile(module)
    }
    fn artifact_fingerprint(&self) -> Option<String> {
        self.0.artifact_fingerprint().map(|f| f + " (another version)")
    }
    unsafe fn load_artifact(&self, module: &PreparedModule, artifact: &[u8]) -> Result<Arc<dyn CompiledExecutor>> {
        // SAFETY: forwarded under the caller's guarantee.
        unsafe { self.0.load_artifact(module, artifact) }
    }
}

/// A change of engine version or configuration, of a limit, or of the
/// executor misses; the old entries stay for the old settings.
pub fn changes_miss(factory: HostFactory) {
    let dir = TempDir::new("changes");
    let cache = open(&dir);
    let host = factory(Limits::default());
    assert_eq!(load(&*host, EXECUTOR, &cache).unwrap(), CacheOutcome::Miss);
    assert_eq!(load(&*host, EXECUTOR, &cache).unwrap(), CacheOutcome::Hit);
    let other_engine = OtherEngine(host.clone());
    assert_eq!(load(&other_engine, EXECUTOR, &cache).unwrap(), CacheOutcome::Miss, "another engine version misses");
    for (what, limits) in [
        ("memory limit", Limits { memory_bytes: 32 << 20, ..Limits::default() }),
        ("fuel", Limits { fuel: 1_000, ..Limits::default() }),
        ("stack budget", Limits { max_stack: 64 << 10, ..Limits::default() }),
    ] {
        let host = factory(limits);
        assert_eq!(load(&*host, EXECUTOR, &cache).unwrap(), CacheOutcome::Miss, "another {what} misses");
    }
    assert_eq!(load(&*host, EXECUTOR, &cache).unwrap(), CacheOutcome::Hit, "the original settings still hit");
}

/// A temporary file left by a writer killed mid-write is never read as an
/// entry; a stale one is swept when the cache is opened.
pub fn partial_writes_are_ignored(factory: HostFactory) {
    let dir = TempDir::new("partial");
    let cache = open(&dir);
    let host = factory(Limits::default());
    let key = CacheKey::of(&*host, EXECUTOR).unwrap();
    let temp = dir.0.join(format!(".{}.99999.0.tmp", key.hex()));
    std::fs::write(&temp, b"PEXCACHE half an entry").unwrap();
    assert_eq!(load(&*host, EXECUTOR, &cache).unwrap(), CacheOutcome::Miss, "a temporary file is not an entry");
    assert_eq!(load(&*host, EXECUTOR, &cache).unwrap(), CacheOutcome::Hit);
    assert!(temp.exists(), "a recent temporary file may be another writer's: kept");
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options().write(true).open(&temp).unwrap().set_modified(old).unwrap();
    drop(open(&dir));
    assert!(!temp.exists(), "a stale temporary file is swept on open");
}

/// Many threads sharing one directory (as processes would: each write is
/// a private temporary file renamed over the entry) all load correctly.
pub fn concurrent_writers_share_a_directory(factory: HostFactory) {
    let dir = TempDir::new("concurrent");
    let outcomes: Vec<(Vec<Verdict>, CacheOutcome)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(|| hostile_run(factory, Some(open(&dir))))).collect();
        handles.into_iter().map(|h| h.join().expect("no panic")).collect()
    });
    let (uncached, _) = hostile_run(factory, None);
    for (verdicts, outcome) in &outcomes {
        assert_eq!(verdicts, &uncached);
        assert_ne!(*outcome, CacheOutcome::Off);
    }
    assert_eq!(hostile_run(factory, Some(open(&dir))).1, CacheOutcome::Hit);
    let leftovers: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "tmp"))
        .collect();
    assert!(leftovers.is_empty(), "no temporary file is left behind: {leftovers:?}");
}

/// The directory's size stays under its bound: the least recently used
/// entries are evicted.
pub fn size_is_bounded(factory: HostFactory) {
    let dir = TempDir::new("bounded");
    // The same executor under different fuel budgets: entries of (nearly)
    // one size under different keys.
    let hosts: Vec<Arc<dyn ExecutorHost>> =
        (0..4).map(|i| factory(Limits { fuel: 1_000_000 + i, ..Limits::default() })).collect();
    let unbounded = open(&dir);
    load(&*hosts[0], EXECUTOR, &unbounded).unwrap();
    let one = unbounded.size();
    assert!(one > 0);
    // Room for two and a half entries.
    let bound = one * 5 / 2;
    let bounded = ArtifactCache::open(&CacheConfig { dir: dir.0.clone(), max_bytes: bound }).unwrap();
    for host in hosts.iter().skip(1) {
        assert_eq!(load(&**host, EXECUTOR, &bounded).unwrap(), CacheOutcome::Miss);
        assert!(bounded.size() <= bound, "evicted down to the bound: {} > {bound}", bounded.size());
        assert_eq!(load(&**host, EXECUTOR, &bounded).unwrap(), CacheOutcome::Hit, "the newest entry is kept");
    }
    assert_eq!(load(&*hosts[0], EXECUTOR, &bounded).unwrap(), CacheOutcome::Miss, "the oldest entry was evicted");
}

/// A directory others can write is refused with an error that says why.
pub fn shared_directories_are_refused(_factory: HostFactory) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new("shared");
        std::fs::create_dir_all(&dir.0).unwrap();
        std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = ArtifactCache::open(&dir.config()).expect_err("a world-writable directory is refused");
        assert!(e.to_string().contains("others can write it"), "{e}");
        std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
        ArtifactCache::open(&dir.config()).expect("owner-writable only is accepted");
    }
}

/// An entry that is a link (to an endless device), a FIFO or a huge sparse
/// file is never read, never loaded and never touched: the load misses at
/// once — no hang, no memory — and runs exactly as without the cache.
pub fn hostile_entries_never_hang_or_load(factory: HostFactory) {
    let dir = TempDir::new("hostile-entries");
    let cache = open(&dir);
    let host = factory(Limits::default());
    let key = CacheKey::of(&*host, EXECUTOR).expect("a serialising backend has a fingerprint");
    let path = entry(&dir, &key);
    let huge = dir.0.join("huge");
    std::fs::File::create(&huge).unwrap().set_len(8 << 30).unwrap();
    type Make<'a> = Box<dyn Fn() + 'a>;
    let mut hostile: Vec<(&str, Make<'_>)> = vec![
        ("a link to /dev/zero", Box::new(|| std::os::unix::fs::symlink("/dev/zero", &path).unwrap())),
        ("a link to an 8 GiB sparse file", Box::new(|| std::os::unix::fs::symlink(&huge, &path).unwrap())),
    ];
    if std::process::Command::new("mkfifo").arg(dir.0.join("probe")).status().is_ok_and(|s| s.success()) {
        hostile.push((
            "a FIFO",
            Box::new(|| {
                std::process::Command::new("mkfifo").arg(&path).status().unwrap();
            }),
        ));
    }
    for (what, make) in hostile {
        make();
        assert_eq!(load(&*host, EXECUTOR, &cache).unwrap(), CacheOutcome::Miss, "{what}: must not load");
        assert!(std::fs::symlink_metadata(&path).is_ok_and(|m| !m.is_file()), "{what}: left alone");
        std::fs::remove_file(&path).unwrap();
    }
    assert_eq!(std::fs::metadata(&huge).unwrap().len(), 8 << 30, "the link's target is untouched");
}

/// Runs every case of this module as a `#[test]` on a serialising backend.
#[macro_export]
macro_rules! cache_suite {
    ($factory:path) => {
        $crate::case_tests!(cache, $factory;
            cold_and_warm_loads_agree,
            bad_entries_are_recompiled,
            changes_miss,
            partial_writes_are_ignored,
            concurrent_writers_share_a_directory,
            size_is_bounded,
            shared_directories_are_refused,
            hostile_entries_never_hang_or_load,
        );
    };
}
