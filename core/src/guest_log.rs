//! What a guest writes with `host.log`, as an operator's logs show it.
//!
//! A guest is untrusted, so its lines are (1) **mapped one rank down** at
//! the top: its `error` and `warn` are both `WARN` (with the guest's own
//! level in a `guest_level` field), so no executor can raise `ERROR`s, the
//! host's own alarm; (2) **attributed**: each line carries the executor's
//! hash prefix and the transaction's position in the run (`executor`,
//! `tx`), set by the driver around every call ([`in_context`]); and (3)
//! **rate-limited** process-wide, a token bucket of
//! [`DEFAULT_RATE`] lines per second (burst as many; `PEER_GUEST_LOG_RATE`
//! overrides, `0` drops every line), the dropped lines counted in the next
//! line admitted and in [`dropped_total`]. None of it affects a verdict.
//!
//! In-order parallel validation runs a transaction possibly more than once
//! and emits only the committed execution's lines: [`capture_logs`] holds
//! them back, at most [`MAX_CAPTURED_LINES`] per execution.

use std::cell::{Cell, RefCell};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Guest lines admitted per second, and the burst, unless
/// `PEER_GUEST_LOG_RATE` says otherwise.
pub const DEFAULT_RATE: u32 = 100;

/// The environment variable overriding [`DEFAULT_RATE`].
pub const RATE_ENV: &str = "PEER_GUEST_LOG_RATE";

/// Lines of `host.log` kept per captured execution ([`capture_logs`]);
/// later ones are dropped.
pub const MAX_CAPTURED_LINES: usize = 256;

/// Which executor and transaction a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogContext {
    /// The first bytes of the executor's SHA-256 (shown as 12 hex digits,
    /// as `peer` shows digests).
    pub executor: [u8; 6],
    /// The transaction's 0-based position in the run.
    pub tx: u64,
}

impl LogContext {
    /// The context of transaction `tx` of the executor whose hash is
    /// `hash`.
    pub fn new(hash: &[u8; 32], tx: u64) -> Self {
        let mut executor = [0; 6];
        executor.copy_from_slice(&hash[..6]);
        LogContext { executor, tx }
    }
}

/// One line a guest logged with `host.log`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The guest's level: 0 error … 4 trace (higher counts as trace).
    pub level: i32,
    /// The text, at most [`crate::host::MAX_LOG_LEN`] bytes of it, lossily
    /// decoded.
    pub text: String,
    /// Where it came from (`None`: logged outside a transaction, e.g. by
    /// `executor_init`).
    pub context: Option<LogContext>,
}

impl LogLine {
    /// Emits the line as a `tracing` event of target `executor`, if the
    /// rate limit admits it (see the module docs).
    pub fn emit(&self) {
        let line = &self.text;
        let guest_level = match self.level {
            0 => "error",
            1 => "warn",
            2 => "info",
            3 => "debug",
            _ => "trace",
        };
        // Lines the filter hides take no share of the rate.
        macro_rules! at {
            ($level:ident, $macro:ident) => {{
                if !tracing::enabled!(target: "executor", tracing::Level::$level) || !admit() {
                    return;
                }
                let executor = self.context.map_or_else(|| "-".to_string(), |c| hex::encode(c.executor));
                let tx = self.context.map(|c| c.tx);
                tracing::$macro!(target: "executor", %executor, tx, %guest_level, "{line}")
            }};
        }
        match self.level {
            0 | 1 => at!(WARN, warn),
            2 => at!(INFO, info),
            3 => at!(DEBUG, debug),
            _ => at!(TRACE, trace),
        }
    }
}

/// Whether the rate limit admits a line now; logs the count dropped
/// before it, if any.
fn admit() -> bool {
    let Some(dropped) = LIMITER.lock().unwrap_or_else(|e| e.into_inner()).admit(Instant::now()) else {
        return false;
    };
    if dropped > 0 {
        tracing::warn!(target: "executor", dropped, "guest log lines dropped by the rate limit ({RATE_ENV})");
    }
    true
}

/// Logs how many guest lines the rate limit dropped since the last line it
/// admitted, if any: for the end of a run, when no later line would say so.
pub fn report_dropped() {
    let dropped = std::mem::take(&mut LIMITER.lock().unwrap_or_else(|e| e.into_inner()).pending);
    if dropped > 0 {
        tracing::warn!(target: "executor", dropped, "guest log lines dropped by the rate limit ({RATE_ENV})");
    }
}

/// Guest lines the rate limit dropped in this process so far.
pub fn dropped_total() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

static DROPPED: AtomicU64 = AtomicU64::new(0);

static LIMITER: Mutex<Bucket> = Mutex::new(Bucket { rate: None, tokens: 0.0, last: None, pending: 0 });

/// A token bucket: `rate` tokens a second, at most `rate` held.
struct Bucket {
    /// Lines per second (`None`: not read from the environment yet).
    rate: Option<f64>,
    tokens: f64,
    last: Option<Instant>,
    /// Dropped since the last admitted line.
    pending: u64,
}

impl Bucket {
    /// `Some(lines dropped since the last admitted one)` if a line may be
    /// emitted at `now`.
    fn admit(&mut self, now: Instant) -> Option<u64> {
        let rate = *self.rate.get_or_insert_with(|| {
            std::env::var(RATE_ENV).ok().and_then(|v| v.trim().parse::<u32>().ok()).unwrap_or(DEFAULT_RATE).into()
        });
        let last = self.last.replace(now);
        self.tokens = match last {
            None => rate,
            Some(last) => (self.tokens + now.saturating_duration_since(last).as_secs_f64() * rate).min(rate),
        };
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Some(std::mem::take(&mut self.pending))
        } else {
            self.pending += 1;
            DROPPED.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

thread_local! {
    /// The lines of the execution being captured on this thread, if one is.
    static CAPTURED: RefCell<Option<Vec<LogLine>>> = const { RefCell::new(None) };
    /// The transaction being validated on this thread, if one is.
    static CONTEXT: Cell<Option<LogContext>> = const { Cell::new(None) };
}

/// Runs `f` with `context` as the source of the lines logged on this
/// thread meanwhile (every engine calls imports on the thread that called
/// into the guest). Restores the outer context after, even on unwinding.
pub fn in_context<R>(context: LogContext, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<LogContext>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CONTEXT.set(self.0);
        }
    }
    let _restore = Restore(CONTEXT.replace(Some(context)));
    f()
}

/// `host.log`'s line: emitted now, or held by [`capture_logs`].
pub(crate) fn logged(level: i32, text: String) {
    let line = LogLine { level, text, context: CONTEXT.get() };
    let emit = CAPTURED.with_borrow_mut(|captured| match captured {
        Some(lines) if lines.len() < MAX_CAPTURED_LINES => {
            lines.push(line.clone());
            false
        }
        // Over the cap the rest of the execution's lines are dropped:
        // bounded memory whatever the guest logs.
        Some(_) => false,
        None => true,
    });
    if emit {
        line.emit();
    }
}

/// Runs `f` and returns, instead of emitting them, the lines `host.log`
/// was given on this thread meanwhile (at most [`MAX_CAPTURED_LINES`]):
/// in-order parallel validation emits only the lines of the execution it
/// commits, in commit order.
pub fn capture_logs<R>(f: impl FnOnce() -> R) -> (R, Vec<LogLine>) {
    /// Restores the outer capture even if `f` unwinds.
    struct Restore(Option<Option<Vec<LogLine>>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(outer) = self.0.take() {
                CAPTURED.set(outer);
            }
        }
    }
    let mut restore = Restore(Some(CAPTURED.replace(Some(Vec::new()))));
    let result = f();
    let outer = restore.0.take().expect("taken only here or on drop");
    let lines = CAPTURED.replace(outer).unwrap_or_default();
    (result, lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_bucket_admits_its_rate_and_counts_what_it_drops() {
        let t0 = Instant::now();
        let mut b = Bucket { rate: Some(3.0), tokens: 0.0, last: None, pending: 0 };
        let admitted: Vec<Option<u64>> = (0..5).map(|_| b.admit(t0)).collect();
        assert_eq!(admitted, [Some(0), Some(0), Some(0), None, None], "a burst of the rate");
        assert_eq!(b.admit(t0 + Duration::from_millis(100)), None, "0.3 of a token");
        assert_eq!(b.admit(t0 + Duration::from_millis(400)), Some(3), "one token back, three dropped before it");
        assert_eq!(b.admit(t0 + Duration::from_secs(100)), Some(0));
        let mut off = Bucket { rate: Some(0.0), tokens: 0.0, last: None, pending: 0 };
        assert_eq!(off.admit(t0 + Duration::from_secs(9)), None, "rate 0 drops every line");
    }

    #[test]
    fn lines_carry_the_context_they_were_logged_in() {
        let hash = [0xab; 32];
        let ((), lines) = capture_logs(|| {
            logged(0, "outside".into());
            in_context(LogContext::new(&hash, 7), || {
                logged(1, "inside".into());
                in_context(LogContext::new(&hash, 8), || logged(2, "nested".into()));
                logged(3, "back".into());
            });
        });
        let seen: Vec<(&str, Option<u64>)> = lines.iter().map(|l| (l.text.as_str(), l.context.map(|c| c.tx))).collect();
        assert_eq!(seen, [("outside", None), ("inside", Some(7)), ("nested", Some(8)), ("back", Some(7))]);
        assert_eq!(lines[1].context.unwrap().executor, [0xab; 6]);
        assert!(CONTEXT.get().is_none() && CAPTURED.with_borrow(Option::is_none), "both restored");
        let unwound = std::panic::catch_unwind(|| in_context(LogContext::new(&hash, 1), || panic!("host bug")));
        assert!(unwound.is_err() && CONTEXT.get().is_none(), "restored when it unwinds");
    }
}
