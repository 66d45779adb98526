//! The little HTTP server behind `watch --metrics` and `watch --http`: GET
//! (and HEAD) requests only, one per connection, nothing a client sends
//! able to take the host down.
//!
//! tiny_http, used before, allocated a buffer the size of a request's
//! `Content-Length` to skip its body (one request claiming a petabyte
//! aborted the process), read header lines of any length, and lost its
//! accept thread for good the first time the process ran out of file
//! descriptors. Here a request's head is read within [`HEAD_LIMIT`] bytes
//! and [`HEAD_TIME`], its body never, the connections served at once are
//! capped, and the accept loop outlives any error.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The most bytes of a request's head (request line and headers) read.
const HEAD_LIMIT: usize = 8 << 10;

/// How long a client may take to send its request's head.
const HEAD_TIME: Duration = Duration::from_secs(5);

/// How long a write to a client may wait for it to read.
const WRITE_TIME: Duration = Duration::from_secs(10);

/// The most connections served at once; more are closed at once.
const CONNECTIONS: usize = 64;

/// A request's path, and the connection to answer it on.
pub(crate) struct Request {
    path: String,
    stream: TcpStream,
    /// A HEAD request: answered with the head alone.
    head_only: bool,
}

impl Request {
    /// The path asked for, without its query.
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// Answers with `body`, then closes the connection.
    pub(crate) fn respond(self, status: u16, content_type: &str, body: &str) {
        let head = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            reason(status),
            body.len()
        );
        let body = if self.head_only { "" } else { body };
        let mut stream = self.stream;
        let _ = stream
            .write_all(head.as_bytes())
            .and_then(|()| stream.write_all(body.as_bytes()))
            .and_then(|()| stream.flush());
    }

    /// The connection, after a `200 OK` head with `content_type` and no
    /// length: what a stream of events is written to until the client goes
    /// (`None` for a HEAD request, answered with the head alone).
    pub(crate) fn into_stream(self, content_type: &str) -> Option<TcpStream> {
        let mut stream = self.stream;
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n\
             Cache-Control: no-cache\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).ok()?;
        (!self.head_only).then_some(stream)
    }
}

/// Listens on `addr` and hands each GET request to `answer`, on a thread of
/// its own (an answer may last: a stream of events), for as long as the
/// host runs. Returns the address bound (`addr` may ask for port 0).
pub(crate) fn serve(
    addr: &str,
    name: &str,
    answer: impl Fn(Request) + Send + Sync + 'static,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    let answer = Arc::new(answer);
    let open = Arc::new(AtomicUsize::new(0));
    let name = name.to_string();
    std::thread::Builder::new()
        .name(format!("hotslot-{name}"))
        .spawn(move || loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    if open.load(Ordering::Relaxed) >= CONNECTIONS {
                        continue; // dropped: closed at once
                    }
                    let held = Held::take(&open);
                    let answer = answer.clone();
                    // A thread that cannot be had drops `held` with the
                    // closure; one that panics, in its unwinding.
                    let _ = std::thread::Builder::new().spawn(move || {
                        let _held = held;
                        if let Some(request) = read_request(stream) {
                            answer(request);
                        }
                    });
                }
                // Out of file descriptors, most likely: they come back as
                // connections close. No event says when; look again soon.
                Err(e) => {
                    tracing::debug!("{name} server: cannot accept a connection: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        })?;
    Ok(bound)
}

/// One of several things held at once (connections, event streams),
/// counted in its counter until it drops.
pub(crate) struct Held(Arc<AtomicUsize>);

impl Held {
    /// Counts one more in `open`, until the `Held` drops.
    pub(crate) fn take(open: &Arc<AtomicUsize>) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        Held(open.clone())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Reads a request's head from `stream`, all of it within [`HEAD_TIME`]
/// (a byte now and then does not keep a connection); answers what is not a
/// GET or HEAD within the limits itself, and gives `None` then.
fn read_request(mut stream: TcpStream) -> Option<Request> {
    stream.set_write_timeout(Some(WRITE_TIME)).ok()?;
    let deadline = std::time::Instant::now() + HEAD_TIME;
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let end = loop {
        // The blank line that ends a head (bare line feeds from a hand-typed
        // request too).
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        if let Some(end) = head.windows(2).position(|w| w == b"\n\n") {
            break end;
        }
        if head.len() >= HEAD_LIMIT {
            refuse(stream, 431, "the request's head is too large\n");
            return None;
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return None;
        }
        stream.set_read_timeout(Some(left)).ok()?;
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&chunk[..n]);
    };
    let line = head[..end].split(|b| *b == b'\n').next().unwrap_or(&[]);
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    if method != "GET" && method != "HEAD" {
        refuse(stream, 405, "only GET and HEAD are served\n");
        return None;
    }
    let path = target.split('?').next().unwrap_or("").to_string();
    let head_only = method == "HEAD";
    Some(Request {
        path,
        stream,
        head_only,
    })
}

/// Answers `status` with `body` on a connection whose request is not served.
fn refuse(stream: TcpStream, status: u16, body: &str) {
    Request {
        path: String::new(),
        stream,
        head_only: false,
    }
    .respond(status, "text/plain; charset=utf-8", body);
}

/// The reason phrase of `status`.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        431 => "Request Header Fields Too Large",
        _ => "",
    }
}
