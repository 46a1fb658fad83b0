//! The progress bar of long runs (on a terminal only, never with
//! `--json`), and the log writer that keeps it and the logs apart: every
//! log line is written with the bar cleared and redrawn after it
//! ([`ProgressBar::suspend`]), so neither garbles the other.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::sync::Mutex;

/// The bar on the terminal now, if any: log lines suspend it.
static SHOWN: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// A bar counting `total` transactions on stderr, hidden when `quiet` or
/// when stderr is not a terminal.
pub fn progress_bar(total: u64, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    shown(ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr()))
}

/// Styles `bar` and makes it the one log lines suspend.
fn shown(bar: ProgressBar) -> ProgressBar {
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} tx ({per_sec}, eta {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    *SHOWN.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar.clone());
    bar
}

/// `tracing_subscriber`'s writer for stderr: each formatted event (one
/// `write` of a whole line) goes out with the bar cleared.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogWriter;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = Suspending<std::io::Stderr>;

    fn make_writer(&'a self) -> Self::Writer {
        Suspending(std::io::stderr())
    }
}

/// A writer that writes with the shown bar (if any) suspended.
#[derive(Debug)]
pub struct Suspending<W>(pub W);

impl<W: Write> Write for Suspending<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = SHOWN.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match bar.filter(|b| !b.is_finished() && !b.is_hidden()) {
            Some(bar) => bar.suspend(|| self.0.write_all(buf))?,
            None => self.0.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A terminal that records what is done to it, in one log shared with
    /// the log sink.
    #[derive(Debug, Clone, Default)]
    struct Screen(Arc<Mutex<Vec<String>>>);

    impl Screen {
        fn push(&self, op: String) -> std::io::Result<()> {
            self.0.lock().unwrap().push(op);
            Ok(())
        }
    }

    impl indicatif::TermLike for Screen {
        fn width(&self) -> u16 {
            100
        }
        fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
            self.push(format!("up {n}"))
        }
        fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
            self.push(format!("down {n}"))
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.push(format!("bar {s}"))
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            self.push(format!("bar {s}"))
        }
        fn clear_line(&self) -> std::io::Result<()> {
            self.push("clear".into())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Write for Screen {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.push(format!("log {}", String::from_utf8_lossy(buf).trim_end()))?;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_log_line_clears_the_bar_and_the_bar_comes_back_after_it() {
        let screen = Screen::default();
        let bar =
            shown(ProgressBar::with_draw_target(Some(10), ProgressDrawTarget::term_like(Box::new(screen.clone()))));
        bar.set_position(3);
        bar.tick();
        let mut writer = Suspending(screen.clone());
        writer.write_all(b"WARN something happened\n").unwrap();
        bar.set_position(4);
        bar.tick();
        let ops = screen.0.lock().unwrap().clone();
        let log = ops.iter().position(|o| o == "log WARN something happened").expect("the line is written");
        let drawn_before = ops[..log].iter().rposition(|o| o.starts_with("bar ") && o.contains("3/10"));
        let cleared = ops[..log].iter().rposition(|o| o == "clear");
        assert!(drawn_before.is_some() && cleared > drawn_before, "cleared after its last draw: {ops:?}");
        assert!(ops[log + 1..].iter().any(|o| o.starts_with("bar ") && o.contains("/10")), "redrawn: {ops:?}");
        bar.finish_and_clear();
        let before = screen.0.lock().unwrap().len();
        writer.write_all(b"after\n").unwrap();
        assert_eq!(screen.0.lock().unwrap()[before..], ["log after".to_string()], "a finished bar is left alone");
    }
}
