//! Where plugins' standard output and error go: into the host's log, line by
//! line and prefixed with the plugin's name, never to the host's own standard
//! output. A plugin that floods is cut to a steady rate; what is dropped is
//! counted and said. The rate is the plugin's, not an instance's: both of its
//! streams, in every instance it ever runs, draw on one [`OutputBudget`], so
//! a plugin that floods and traps gets no fresh allowance from its next
//! instance.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use crate::sync::lock;

/// The tracing target of what plugins print (the module's own path, so a
/// filter written for it before still holds).
pub(crate) const TARGET: &str = "hotslot::output";

/// Longest line logged; the rest of a longer line is dropped.
const MAX_LINE: usize = 4096;
/// Bytes a plugin may log at once, and per second after that.
const BURST: f64 = 256.0 * 1024.0;
const RATE: f64 = 64.0 * 1024.0;

/// What one plugin may still log: a token bucket refilled at `RATE` up to
/// `BURST`, shared by everything the plugin prints.
#[derive(Clone)]
pub(crate) struct OutputBudget {
    inner: Arc<Mutex<Bucket>>,
}

struct Bucket {
    allowance: f64,
    refilled: Instant,
}

impl OutputBudget {
    pub(crate) fn new() -> Self {
        OutputBudget {
            inner: Arc::new(Mutex::new(Bucket {
                allowance: BURST,
                refilled: Instant::now(),
            })),
        }
    }

    /// Takes `cost` bytes' worth if the budget allows, else nothing.
    fn take(&self, cost: f64) -> bool {
        let mut bucket = lock(&self.inner);
        let now = Instant::now();
        let refill = RATE * (now - bucket.refilled).as_secs_f64();
        bucket.allowance = (bucket.allowance + refill).min(BURST);
        bucket.refilled = now;
        if bucket.allowance < cost {
            return false;
        }
        bucket.allowance -= cost;
        true
    }
}

/// One plugin stream (stdout or stderr) feeding the log.
#[derive(Clone)]
pub(crate) struct LogOutput {
    inner: Arc<Mutex<LineLog>>,
}

struct LineLog {
    plugin: Arc<str>,
    stream: &'static str,
    line: Vec<u8>,
    /// The current line was longer than `MAX_LINE`.
    cut: bool,
    budget: OutputBudget,
    dropped: u64,
}

impl LogOutput {
    pub(crate) fn new(plugin: &Arc<str>, stream: &'static str, budget: &OutputBudget) -> Self {
        LogOutput {
            inner: Arc::new(Mutex::new(LineLog {
                plugin: plugin.clone(),
                stream,
                line: Vec::new(),
                cut: false,
                budget: budget.clone(),
                dropped: 0,
            })),
        }
    }

    fn write(&self, bytes: &[u8]) {
        let mut log = lock(&self.inner);
        log.write(bytes);
    }
}

impl Drop for LineLog {
    /// A last line without a newline is logged when the instance goes.
    fn drop(&mut self) {
        self.emit();
    }
}

impl LineLog {
    fn write(&mut self, bytes: &[u8]) {
        for piece in bytes.split_inclusive(|b| *b == b'\n') {
            let (text, ends_line) = match piece.strip_suffix(b"\n") {
                Some(text) => (text, true),
                None => (piece, false),
            };
            let room = MAX_LINE.saturating_sub(self.line.len());
            self.line.extend_from_slice(&text[..text.len().min(room)]);
            self.cut |= text.len() > room;
            if ends_line {
                self.emit();
            }
        }
    }

    /// Logs the line gathered so far, if the rate allows.
    fn emit(&mut self) {
        if self.line.is_empty() && !self.cut {
            return;
        }
        let cost = self.line.len().max(1) as f64;
        if !self.budget.take(cost) {
            self.dropped += self.line.len() as u64 + 1;
        } else {
            if self.dropped > 0 {
                tracing::warn!(
                    "[{} {}] output flood: {} bytes dropped",
                    self.plugin,
                    self.stream,
                    self.dropped
                );
                self.dropped = 0;
            }
            let text = String::from_utf8_lossy(&self.line);
            // Escaped: a `\r` or a terminal's escape sequence in a plugin's
            // line would hide its prefix, forge a log line or retitle the
            // terminal.
            let text = crate::error::escape_controls(&text, |c| c == '\t');
            let cut = if self.cut { " [line cut]" } else { "" };
            tracing::info!(target: TARGET, "[{} {}] {text}{cut}", self.plugin, self.stream);
        }
        self.line.clear();
        self.cut = false;
    }
}

impl IsTerminal for LogOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for LogOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        LogOutput::write(self, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        // Lines are logged whole, at their newline: guests flush after every
        // piece of a line.
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl AsyncWrite for LogOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        LogOutput::write(&self, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_and_floods_are_dropped() {
        let out = LogOutput::new(&"p".into(), "stdout", &OutputBudget::new());
        out.write(&vec![b'x'; MAX_LINE * 2]);
        out.write(b"\n");
        {
            let log = out.inner.lock().unwrap();
            assert!(log.line.is_empty() && !log.cut);
        }
        for _ in 0..200 {
            out.write(&[b'y'; 4000]);
            out.write(b"\n");
        }
        assert!(
            out.inner.lock().unwrap().dropped > 0,
            "a flood is cut to the rate"
        );
    }

    #[test]
    fn a_new_instance_gets_no_fresh_allowance() {
        let budget = OutputBudget::new();
        let first = LogOutput::new(&"p".into(), "stdout", &budget);
        for _ in 0..100 {
            first.write(&[b'y'; 4000]);
            first.write(b"\n");
        }
        let second = LogOutput::new(&"p".into(), "stderr", &budget);
        second.write(&[b'z'; 4000]);
        second.write(b"\n");
        assert!(
            second.inner.lock().unwrap().dropped > 0,
            "the budget is spent"
        );
    }
}
