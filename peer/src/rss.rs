//! Peak resident memory of this process, from `/proc/self/status`.

/// `VmHWM` in bytes (0 where `/proc` is unavailable).
pub fn peak_rss_bytes() -> u64 {
    status_kib("VmHWM:") * 1024
}

/// `VmRSS` in bytes (0 where `/proc` is unavailable).
pub fn current_rss_bytes() -> u64 {
    status_kib("VmRSS:") * 1024
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Resets the peak (`VmHWM`) to the current RSS, so one process can report
/// the peak of each configuration it runs. Returns whether it worked.
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}
