//! The cache's disk store: owner-only directory, entries verified by key
//! and checksum before anyone reads them, atomic writes, a size bound.

use crate::backend::ExecutorHost;
use crate::instrument::Tracking;
use crate::{Error, PreparedModule, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// The entry format; part of every key, so a format change only misses.
/// 2: a label (what the entry holds, for `peer cache ls`) after the
/// header, covered by the checksum.
const FORMAT: u32 = 2;
const MAGIC: &[u8; 8] = b"PEXCACHE";
/// Magic, format, key, payload length, SHA-256 of label and payload.
const HEADER: usize = 8 + 4 + 32 + 8 + 32;
/// The label: executor hash, kind, backend name's length, the name
/// (zero-padded).
const LABEL: usize = 32 + 1 + 1 + 32;

/// What an entry holds — shown by `peer cache ls`, never used to find or
/// trust an entry (the key and checksum do that).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryLabel {
    /// SHA-256 of the executor (binary, after WAT parsing), as `peer run`
    /// reports `executor_hash`.
    pub executor: [u8; 32],
    /// The backend that wrote it.
    pub backend: String,
    /// What it is.
    pub kind: EntryKind,
}

/// The kinds of entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::Display, strum::FromRepr)]
#[strum(serialize_all = "snake_case")]
#[repr(u8)]
#[non_exhaustive]
pub enum EntryKind {
    /// Written without a label (by a test or a tool).
    Unlabelled = 0,
    /// The prepared module and its compiled code, with the write barrier.
    Compiled = 1,
    /// The same without the barrier (blanks rebuild).
    CompiledUntracked = 2,
    /// A blank snapshot baked into the executor, compiled.
    Baked = 3,
    /// The executor's blank snapshot.
    Snapshot = 4,
}

impl EntryLabel {
    fn encode(&self) -> [u8; LABEL] {
        let mut out = [0; LABEL];
        out[..32].copy_from_slice(&self.executor);
        out[32] = self.kind as u8;
        let name = &self.backend.as_bytes()[..self.backend.len().min(32)];
        out[33] = name.len() as u8;
        out[34..34 + name.len()].copy_from_slice(name);
        out
    }

    fn decode(bytes: &[u8]) -> Option<EntryLabel> {
        let bytes: &[u8; LABEL] = bytes.get(..LABEL)?.try_into().ok()?;
        let len = usize::from(bytes[33]).min(32);
        Some(EntryLabel {
            executor: bytes[..32].try_into().ok()?,
            kind: EntryKind::from_repr(bytes[32])?,
            backend: String::from_utf8_lossy(&bytes[34..34 + len]).into_owned(),
        })
    }
}

/// An entry found in the directory (`peer cache ls`).
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its file.
    pub path: PathBuf,
    /// Its key, hex (the file name).
    pub key: String,
    /// What it holds, if its header reads.
    pub label: Option<EntryLabel>,
    /// Its size, bytes.
    pub bytes: u64,
    /// Its last use (hit or write).
    pub used: SystemTime,
}
/// Temporary files older than this are left over from a killed writer.
const STALE_TEMP: Duration = Duration::from_secs(600);
/// Default bound on the directory's total size.
pub const DEFAULT_MAX_BYTES: u64 = 512 << 20;

/// Where and how much to cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// The directory (created owner-only if missing).
    pub dir: PathBuf,
    /// The most bytes of entries kept; older ones are evicted.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
}

fn default_max_bytes() -> u64 {
    DEFAULT_MAX_BYTES
}

/// A cache key: SHA-256 over everything the compiled code depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    /// The key of the executor `executor` (its bytes as given, binary or
    /// WAT) loaded by `host` with the write barrier, or `None` if the host
    /// cannot serialise (see [`CacheKey::tracked`]).
    pub fn of(host: &dyn ExecutorHost, executor: &[u8]) -> Option<CacheKey> {
        Self::tracked(host, executor, Tracking::Barrier)
    }

    /// The key of `executor` loaded by `host` and instrumented with
    /// `tracking`, or `None` if the host cannot serialise. The instrumented
    /// module is a function of these bytes, the instrumentation version,
    /// the tracking mode and the limits, all in the key.
    pub fn tracked(host: &dyn ExecutorHost, executor: &[u8], tracking: Tracking) -> Option<CacheKey> {
        let fingerprint = host.artifact_fingerprint()?;
        let domain = format!("compiled, tracking {tracking}");
        Some(Self::digest(host, domain.as_bytes(), &fingerprint, &Sha256::digest(executor)))
    }

    /// The key of the [`crate::snapshot::BlankSnapshot`] of `module` on
    /// `host` — on every backend, serialising or not. The blank state is a
    /// function of the instrumented module (the executor, the
    /// instrumentation version, the limits) and, were an engine to break
    /// the cross-engine guarantee, of the engine: all in the key.
    pub fn snapshot_of(host: &dyn ExecutorHost, module: &PreparedModule) -> CacheKey {
        let fingerprint = host.artifact_fingerprint().unwrap_or_default();
        Self::digest(host, b"blank-snapshot", &fingerprint, &module.hash)
    }

    /// The key of a module prepared by `core` itself (a blank snapshot
    /// baked into the executor): its instrumented bytes, on a host that can
    /// serialise.
    pub fn prepared_of(host: &dyn ExecutorHost, module: &PreparedModule) -> Option<CacheKey> {
        let fingerprint = host.artifact_fingerprint()?;
        Some(Self::digest(host, b"prepared", &fingerprint, &Sha256::digest(&module.wasm)))
    }

    fn digest(host: &dyn ExecutorHost, domain: &[u8], fingerprint: &str, executor_hash: &[u8]) -> CacheKey {
        let mut h = Sha256::new();
        for part in [
            domain,
            &FORMAT.to_le_bytes()[..],
            &crate::instrument::VERSION.to_le_bytes(),
            host.name().as_bytes(),
            fingerprint.as_bytes(),
            format!("{:?}", host.limits()).as_bytes(),
            format!("{:?}", crate::module::abi_features()).as_bytes(),
            executor_hash,
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        CacheKey(h.finalize().into())
    }

    /// The key's hex spelling (the entry's file name).
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// The cache directory.
#[derive(Debug)]
pub struct ArtifactCache {
    dir: PathBuf,
    max_bytes: u64,
}

/// A unique suffix for this process's temporary files.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl ArtifactCache {
    /// Opens (creating owner-only if missing) the cache directory; refuses
    /// one that others can write or another user owns. Sweeps temporary
    /// files left by killed writers.
    pub fn open(config: &CacheConfig) -> Result<ArtifactCache> {
        let dir = &config.dir;
        let err = |message: String| Error::Cache { dir: dir.display().to_string(), message };
        create_private_dir(dir).map_err(|e| err(format!("cannot create it: {e}")))?;
        check_private(dir).map_err(err)?;
        let cache = ArtifactCache { dir: dir.clone(), max_bytes: config.max_bytes };
        cache.sweep_temporaries();
        Ok(cache)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn entry(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!("{}.bin", key.hex()))
    }

    /// The verified payload stored under `key`, or `None`. A bad entry of
    /// ours is logged and deleted; anything else under that name (not a
    /// regular file, a link, larger than the cache's bound, another
    /// program's file) is logged and left alone.
    pub fn get(&self, key: &CacheKey) -> Option<Vec<u8>> {
        let path = self.entry(key);
        let mut bytes = match read_regular(&path, self.max_bytes) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "unusable cache entry left alone; recompiling");
                return None;
            }
        };
        match verify(key, &bytes) {
            Ok(()) => {
                // Least recently used is evicted first: a hit counts as use.
                let _ = File::options().write(true).open(&path).and_then(|f| f.set_modified(SystemTime::now()));
                bytes.drain(..HEADER + LABEL);
                Some(bytes)
            }
            Err(problem) if bytes.starts_with(MAGIC) => {
                tracing::warn!(path = %path.display(), problem, "bad cache entry deleted; recompiling");
                self.remove(key);
                None
            }
            Err(problem) => {
                tracing::warn!(path = %path.display(), problem, "a foreign file under a cache entry's name, left alone");
                None
            }
        }
    }

    /// Deletes the entry under `key` (e.g. one its engine refused to load)
    /// — only if it is provably ours (see [`ours`]).
    pub fn remove(&self, key: &CacheKey) {
        let path = self.entry(key);
        if ours(&path) {
            let _ = fs::remove_file(path);
        }
    }

    /// Stores `payload` under `key` without a label ([`EntryKind::Unlabelled`]).
    pub fn put(&self, key: &CacheKey, payload: &[u8]) -> std::io::Result<()> {
        let label = EntryLabel { executor: [0; 32], backend: String::new(), kind: EntryKind::Unlabelled };
        self.put_labelled(key, &label, payload)
    }

    /// Stores `payload` under `key` with `label` atomically (temporary
    /// file, fsync, rename, fsync of the directory), then evicts down to
    /// the size bound.
    pub fn put_labelled(&self, key: &CacheKey, label: &EntryLabel, payload: &[u8]) -> std::io::Result<()> {
        let target = self.entry(key);
        if fs::symlink_metadata(&target).is_ok() && !ours(&target) {
            let in_the_way = format!("{} is not the cache's own file: left alone", target.display());
            return Err(std::io::Error::new(std::io::ErrorKind::AlreadyExists, in_the_way));
        }
        let temp = self.dir.join(format!(
            ".{}.{}.{}.tmp",
            key.hex(),
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let written = (|| {
            let mut f = OpenOptions::new().write(true).create_new(true).mode_private().open(&temp)?;
            f.write_all(MAGIC)?;
            f.write_all(&FORMAT.to_le_bytes())?;
            f.write_all(&key.0)?;
            let label = label.encode();
            f.write_all(&((LABEL + payload.len()) as u64).to_le_bytes())?;
            f.write_all(&Sha256::new().chain_update(label).chain_update(payload).finalize())?;
            f.write_all(&label)?;
            f.write_all(payload)?;
            f.sync_all()?;
            fs::rename(&temp, &target)?;
            File::open(&self.dir)?.sync_all()
        })();
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written?;
        self.evict();
        Ok(())
    }

    /// Entries (`*.bin`) with their size and last use, oldest first.
    fn entries(&self) -> Vec<(PathBuf, u64, SystemTime)> {
        let mut entries: Vec<_> = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| ours(&e.path()))
            .filter_map(|e| {
                let m = e.metadata().ok()?;
                Some((e.path(), m.len(), m.modified().ok()?))
            })
            .collect();
        entries.sort_by_key(|(_, _, used)| *used);
        entries
    }

    /// Every entry of this cache, least recently used first, with its
    /// label if its header reads (files that are not provably ours are
    /// never listed).
    pub fn list(&self) -> Vec<Entry> {
        self.entries()
            .into_iter()
            .map(|(path, bytes, used)| {
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                let key = name.trim_end_matches(".bin").to_string();
                let label = head(&path, HEADER + LABEL).and_then(|h| EntryLabel::decode(&h[HEADER..]));
                Entry { path, key, label, bytes, used }
            })
            .collect()
    }

    /// Reads `entry` whole and checks its header and checksum against the
    /// key its name says; `Err` says what is wrong.
    pub fn verify(&self, entry: &Entry) -> std::result::Result<(), String> {
        let key: [u8; 32] = hex::decode(&entry.key)
            .ok()
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| "not named by a key".to_string())?;
        let bytes = read_regular(&entry.path, self.max_bytes.max(entry.bytes)).map_err(|e| e.to_string())?;
        verify(&CacheKey(key), &bytes).map_err(str::to_string)
    }

    /// Deletes every entry of this cache and every temporary file its
    /// writers left — only files provably its own; anything else in the
    /// directory stays. Returns the files and bytes removed.
    pub fn clear(&self) -> (usize, u64) {
        let (mut files, mut bytes) = (0, 0);
        for e in fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let path = e.path();
            if (ours(&path) || our_temporary(&path))
                && let Ok(meta) = fs::symlink_metadata(&path)
                && fs::remove_file(&path).is_ok()
            {
                files += 1;
                bytes += meta.len();
            }
        }
        (files, bytes)
    }

    /// Total bytes of the entries.
    pub fn size(&self) -> u64 {
        self.entries().iter().map(|(_, len, _)| len).sum()
    }

    fn evict(&self) {
        let entries = self.entries();
        let mut total: u64 = entries.iter().map(|(_, len, _)| len).sum();
        for (path, len, _) in entries {
            if total <= self.max_bytes {
                break;
            }
            if fs::remove_file(&path).is_ok() {
                tracing::info!(path = %path.display(), "cache entry evicted");
                total -= len;
            }
        }
    }

    fn sweep_temporaries(&self) {
        let now = SystemTime::now();
        for e in fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let path = e.path();
            let stale = e
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > STALE_TEMP);
            if stale && our_temporary(&path) {
                tracing::info!(path = %path.display(), "removing a temporary cache file left by a killed writer");
                let _ = fs::remove_file(&path);
            }
        }
    }
}

/// The bytes of the regular file at `path`, if it holds at most `max`:
/// opened without following a link and without blocking (a FIFO would
/// wait for a writer), checked as a regular file, read no further than
/// `max`.
fn read_regular(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let refuse = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string());
    let file = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(refuse("not a regular file"));
    }
    if meta.len() > max {
        return Err(refuse("larger than the cache's size bound"));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(refuse("grew past the cache's size bound while read"));
    }
    Ok(bytes)
}

/// The first `n` bytes of the regular file at `path` (not a link), if it
/// has them.
fn head(path: &Path, n: usize) -> Option<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut bytes = Vec::with_capacity(n);
    file.take(n as u64).read_to_end(&mut bytes).ok()?;
    (bytes.len() == n).then_some(bytes)
}

/// Whether `path` is provably an entry this cache wrote: named
/// `<64 hex digits>.bin`, a regular file (not a link), starting with the
/// cache's magic. Only such files are counted against the size bound,
/// evicted, deleted or replaced.
fn ours(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else { return false };
    let named = name.strip_suffix(".bin").is_some_and(|k| k.len() == 64 && hex::decode(k).is_ok());
    named && head(path, 8).is_some_and(|h| &h[..] == MAGIC)
}

/// Whether `path` is provably a temporary file of this cache's writers:
/// named `.<64 hex>.<pid>.<n>.tmp`, a regular file starting with the magic
/// (the first bytes written).
fn our_temporary(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else { return false };
    let parts: Vec<&str> = name.split('.').collect();
    let named = matches!(parts.as_slice(), ["", key, pid, n, "tmp"]
        if key.len() == 64 && hex::decode(key).is_ok()
            && pid.parse::<u32>().is_ok() && n.parse::<u64>().is_ok());
    named && head(path, 8).is_some_and(|h| &h[..] == MAGIC)
}

/// Checks an entry's header and checksum against the key it was found by.
fn verify(key: &CacheKey, bytes: &[u8]) -> std::result::Result<(), &'static str> {
    if bytes.len() < HEADER {
        return Err("truncated header");
    }
    if &bytes[..8] != MAGIC {
        return Err("not a cache entry");
    }
    if bytes[8..12] != FORMAT.to_le_bytes() {
        return Err("another entry format");
    }
    if bytes[12..44] != key.0 {
        return Err("an entry of another key (foreign or renamed)");
    }
    let len = u64::from_le_bytes(bytes[44..52].try_into().expect("8 bytes"));
    if (bytes.len() - HEADER) as u64 != len || len < LABEL as u64 {
        return Err("truncated or padded payload");
    }
    if Sha256::digest(&bytes[HEADER..])[..] != bytes[52..84] {
        return Err("checksum mismatch (corrupted)");
    }
    Ok(())
}

trait PrivateMode {
    fn mode_private(&mut self) -> &mut Self;
}

impl PrivateMode for OpenOptions {
    fn mode_private(&mut self) -> &mut Self {
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(self, 0o600);
        self
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Refuses a directory that anyone but its owner can write, or that
/// another user owns: its entries become native code in this process.
fn check_private(dir: &Path) -> std::result::Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = fs::metadata(dir).map_err(|e| e.to_string())?;
        if !meta.is_dir() {
            return Err("not a directory".into());
        }
        if meta.mode() & 0o022 != 0 {
            return Err(format!(
                "others can write it (mode {:o}); loading compiled code from it would let them run code in the peer — \
                 `chmod go-w` it or choose another directory",
                meta.mode() & 0o777
            ));
        }
        // Our effective uid: the owner of a file we create.
        let probe = dir.join(format!(".owner-probe.{}", std::process::id()));
        let ours = File::create(&probe).and_then(|f| f.metadata()).map(|m| m.uid());
        let _ = fs::remove_file(&probe);
        let ours = ours.map_err(|e| format!("cannot write it: {e}"))?;
        if meta.uid() != ours {
            return Err(format!("it belongs to uid {}, not to this process's uid {ours}", meta.uid()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(name: &str, max_bytes: u64) -> ArtifactCache {
        let dir = std::env::temp_dir().join(format!("core-cache-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        ArtifactCache::open(&CacheConfig { dir, max_bytes }).expect("opens")
    }

    #[test]
    fn links_fifos_devices_and_huge_files_are_never_read() {
        let c = cache("hostile", 1 << 20);
        let (a, b, d, e) = (CacheKey([1; 32]), CacheKey([2; 32]), CacheKey([3; 32]), CacheKey([4; 32]));
        // A link to an endless device, one to a huge sparse file.
        std::os::unix::fs::symlink("/dev/zero", c.entry(&a)).unwrap();
        let huge = c.dir().join("huge");
        File::create(&huge).unwrap().set_len(8 << 30).unwrap();
        std::os::unix::fs::symlink(&huge, c.entry(&b)).unwrap();
        // The huge file itself under an entry's name: refused by its size.
        fs::rename(&huge, c.entry(&d)).unwrap();
        assert_eq!(c.get(&a), None);
        assert_eq!(c.get(&b), None);
        assert_eq!(c.get(&d), None);
        // A FIFO: refused without waiting for a writer.
        if std::process::Command::new("mkfifo").arg(c.entry(&e)).status().is_ok_and(|s| s.success()) {
            assert_eq!(c.get(&e), None);
        }
        // None of them is ours: left where they are.
        for key in [&a, &d] {
            assert!(fs::symlink_metadata(c.entry(key)).is_ok());
        }
        fs::remove_dir_all(c.dir()).unwrap();
    }

    #[test]
    fn only_its_own_files_are_counted_evicted_or_deleted() {
        let c = cache("foreign", 3000);
        // A user's files: a `*.bin` of another name scheme, one named like
        // an entry but not written by the cache, an old `*.tmp`.
        let user_bin = c.dir().join("backup.bin");
        fs::write(&user_bin, vec![7; 5000]).unwrap();
        let impostor = CacheKey([9; 32]);
        fs::write(c.entry(&impostor), vec![7; 5000]).unwrap();
        let user_tmp = c.dir().join("notes.tmp");
        fs::write(&user_tmp, b"keep me").unwrap();
        let old = SystemTime::now() - Duration::from_secs(3600);
        File::options().write(true).open(&user_tmp).unwrap().set_modified(old).unwrap();
        // A temporary file of a killed writer of ours.
        let ours_tmp = c.dir().join(format!(".{}.1.0.tmp", CacheKey([5; 32]).hex()));
        fs::write(&ours_tmp, MAGIC).unwrap();
        File::options().write(true).open(&ours_tmp).unwrap().set_modified(old).unwrap();
        let c = ArtifactCache::open(&CacheConfig { dir: c.dir().to_path_buf(), max_bytes: 3000 }).unwrap();
        assert!(!ours_tmp.exists(), "our stale temporary is swept");
        assert_eq!(c.size(), 0, "foreign files do not count");
        // Entries of ours past the bound evict each other, never the user's.
        for i in 0..4u8 {
            c.put(&CacheKey([20 + i; 32]), &[i; 1000]).unwrap();
        }
        assert!(c.size() <= 3000);
        assert_eq!(c.get(&CacheKey([23; 32])), Some(vec![3; 1000]));
        // The impostor fails verification but is not ours: left alone.
        assert_eq!(c.get(&impostor), None);
        for path in [&user_bin, &c.entry(&impostor), &user_tmp] {
            assert!(fs::metadata(path).is_ok_and(|m| m.len() > 0), "{path:?} must be left alone");
        }
        // An entry of ours corrupted: deleted.
        let key = CacheKey([23; 32]);
        let mut bytes = fs::read(c.entry(&key)).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        fs::write(c.entry(&key), bytes).unwrap();
        assert_eq!(c.get(&key), None);
        assert!(!c.entry(&key).exists());
        fs::remove_dir_all(c.dir()).unwrap();
    }

    #[test]
    fn entries_list_with_their_labels_verify_and_clear_only_what_is_ours() {
        let c = cache("list", 1 << 20);
        let label = EntryLabel { executor: [7; 32], backend: "wasmtime".into(), kind: EntryKind::Snapshot };
        c.put_labelled(&CacheKey([1; 32]), &label, b"payload").unwrap();
        c.put(&CacheKey([2; 32]), b"other").unwrap();
        assert_eq!(c.get(&CacheKey([1; 32])), Some(b"payload".to_vec()), "the label is not the payload");
        let foreign = c.dir().join("notes.txt");
        fs::write(&foreign, "mine").unwrap();
        let entries = c.list();
        assert_eq!(entries.len(), 2, "the user's file is not listed");
        let labelled = entries.iter().find(|e| e.key == CacheKey([1; 32]).hex()).unwrap();
        assert_eq!(labelled.label.as_ref(), Some(&label));
        let unlabelled = entries.iter().find(|e| e.key == CacheKey([2; 32]).hex()).unwrap();
        assert_eq!(unlabelled.label.as_ref().map(|l| l.kind), Some(EntryKind::Unlabelled));
        assert!(entries.iter().all(|e| c.verify(e).is_ok()));
        // A flipped byte of the label fails verification: it is checksummed.
        let mut bytes = fs::read(&labelled.path).unwrap();
        bytes[HEADER + 40] ^= 1;
        fs::write(&labelled.path, bytes).unwrap();
        assert!(c.verify(labelled).unwrap_err().contains("checksum"));
        assert_eq!(c.clear().0, 2);
        assert!(c.list().is_empty() && foreign.exists(), "only the cache's own files are removed");
        fs::remove_dir_all(c.dir()).unwrap();
    }
}
