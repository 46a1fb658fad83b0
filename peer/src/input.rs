//! The files an operator names: read (`--executor`, `--config`) only from
//! regular files and never more than a bound — a device, a FIFO or an
//! endless file is an error naming the path, not a hang or an
//! out-of-memory; written (`--metrics`, `--chart`) only where a check
//! before the run found it possible.

use std::io::Read;
use std::path::{Path, PathBuf};

/// Most bytes of a config file.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// What kind of file `meta` describes, for an error.
fn kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    match () {
        _ if t.is_dir() => "a directory",
        _ if t.is_fifo() => "a FIFO",
        _ if t.is_char_device() || t.is_block_device() => "a device",
        _ if t.is_socket() => "a socket",
        _ => "not a regular file",
    }
}

/// The regular file at `path` (links followed), opened for reading if it
/// holds at most `max` bytes; `Err` is a message for the operator. The
/// kind is checked before opening (opening a FIFO would wait for a writer)
/// and again on what was opened (the path may have changed in between).
pub fn open_regular(path: &Path, max: u64) -> Result<std::fs::File, String> {
    let regular = |meta: &std::fs::Metadata| {
        if !meta.is_file() {
            return Err(format!("{}: only a regular file can be read", kind(meta)));
        }
        if meta.len() > max {
            return Err(format!("{} bytes, more than the {max} a file here may have", meta.len()));
        }
        Ok(())
    };
    regular(&std::fs::metadata(path).map_err(|e| e.to_string())?)?;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    regular(&file.metadata().map_err(|e| e.to_string())?)?;
    Ok(file)
}

/// The bytes of the regular file at `path` (links followed), if it holds
/// at most `max`; `Err` is a message for the operator.
pub fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    open_regular(path, max)?.take(max + 1).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if bytes.len() as u64 > max {
        return Err(format!("more than the {max} bytes a file here may have"));
    }
    Ok(bytes)
}

/// Checks, before a run, that `path` can be written: an existing regular
/// file (or a character device such as `/dev/null`) opened for writing
/// without truncating it, or a new file created in an existing directory
/// and removed again. `Err` is a message for the operator; the run would
/// otherwise find out only after all its work.
pub fn check_output(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() || meta.file_type().is_char_device() => {
            std::fs::OpenOptions::new().write(true).open(path).map(drop).map_err(|e| e.to_string())
        }
        Ok(meta) => Err(format!("{}: only a regular file can be written", kind(&meta))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::OpenOptions::new().write(true).create_new(true).open(path).map_err(|e| e.to_string())?;
            std::fs::remove_file(path).map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// A file's next version, written beside it and renamed over it only
/// when complete: a reader (a metrics collector, a replay) never sees half
/// of it, and work that fails leaves the old file, not a fragment — the
/// temporary is removed if this is dropped uncommitted.
#[derive(Debug)]
pub struct Replacement {
    temp: PathBuf,
    path: PathBuf,
    committed: bool,
}

impl Replacement {
    /// Creates the temporary beside `path`, and the file to write it by.
    pub fn create(path: &Path) -> std::io::Result<(Replacement, std::fs::File)> {
        let temp = path.with_extension(format!("tmp.{}", std::process::id()));
        let file = std::fs::File::create(&temp)?;
        Ok((Replacement { temp, path: path.to_path_buf(), committed: false }, file))
    }

    /// Renames what was written over the file (write and flush it first).
    pub fn commit(mut self) -> std::io::Result<()> {
        std::fs::rename(&self.temp, &self.path)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Replacement {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replacement_appears_whole_on_commit_and_never_otherwise() {
        let dir = std::env::temp_dir().join(format!("peer-replace-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.txt");
        std::fs::write(&path, "old").unwrap();
        let (r, mut f) = Replacement::create(&path).unwrap();
        std::io::Write::write_all(&mut f, b"half").unwrap();
        drop((r, f));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old", "dropped uncommitted: the old file stays");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "and no temporary is left");
        let (r, mut f) = Replacement::create(&path).unwrap();
        std::io::Write::write_all(&mut f, b"new").unwrap();
        drop(f);
        r.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_regular_files_within_the_bound_are_read() {
        let dir = std::env::temp_dir().join(format!("peer-input-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("f");
        std::fs::write(&file, b"0123456789").unwrap();
        assert_eq!(read_bounded(&file, 10).unwrap(), b"0123456789");
        let too_big = read_bounded(&file, 9).unwrap_err();
        assert!(too_big.contains("10 bytes, more than the 9"), "{too_big}");
        assert!(read_bounded(&dir, 10).unwrap_err().contains("a directory"));
        assert!(read_bounded(Path::new("/dev/zero"), 10).unwrap_err().contains("a device"));
        let fifo = dir.join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            // Refused without opening it (which would block).
            assert!(read_bounded(&fifo, 10).unwrap_err().contains("a FIFO"));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn outputs_are_checked_without_leaving_anything_behind() {
        let dir = std::env::temp_dir().join(format!("peer-output-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let new = dir.join("new.prom");
        check_output(&new).unwrap();
        assert!(!new.exists(), "the probe is removed");
        std::fs::write(&new, b"kept").unwrap();
        check_output(&new).unwrap();
        assert_eq!(std::fs::read(&new).unwrap(), b"kept", "an existing file is not truncated by the check");
        check_output(Path::new("/dev/null")).unwrap();
        assert!(check_output(&dir.join("missing-dir/x.svg")).is_err());
        assert!(check_output(&dir).unwrap_err().contains("a directory"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
