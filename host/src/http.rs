//! Outbound HTTP by grant: which authorities a plugin may reach through
//! `wasi:http/outgoing-handler`, and the bounds on each request.
//!
//! Every plugin is linked `wasi:http` (componentize-js imports it by
//! default), but nothing is reachable unless granted: a request goes out
//! only when its authority is in the plugin's `[http] allow` and, if the
//! operator set one, in the ceiling (`--http-allow`). Any other request
//! fails inside the plugin with wasi:http's own `HTTP-request-denied`
//! before a connection is tried, and is logged under the plugin's name.
//!
//! A request that goes out is bounded: from connecting to the last byte of
//! its response it gets at most the request's time (never more than the
//! plugin's call deadline: the request is made inside a call), and its
//! response body at most so many bytes.
//!
//! Incoming HTTP (`wasi:http/incoming-handler`) is not served.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// Authorities HTTP requests may go to: each `host` (any port), `host:port`,
/// or `*.domain` (any subdomain of `domain`, not `domain` itself), with or
/// without a port. Hosts compare without regard to case; IPv6 addresses are
/// written in brackets (`[::1]:8080`).
///
/// ```
/// use hotslot::HttpAllow;
/// let allow = HttpAllow::new(["api.example.com", "*.cdn.net:443", "127.0.0.1:8080"]).unwrap();
/// assert!(allow.allows("API.example.com", 443));
/// assert!(allow.allows("img.cdn.net", 443));
/// assert!(!allow.allows("cdn.net", 443));
/// assert!(!allow.allows("127.0.0.1", 8081));
/// assert!(HttpAllow::new(["https://api.example.com/"]).is_err());
/// assert!(HttpAllow::new(["api.*.com"]).is_err());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpAllow {
    entries: Arc<[Authority]>,
}

/// One allowed authority.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Authority {
    host: HostPattern,
    /// `None`: any port.
    port: Option<u16>,
    /// As written, for messages.
    text: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum HostPattern {
    /// This host only.
    Exact(String),
    /// Any host ending in `.` and this.
    Subdomains(String),
}

impl HttpAllow {
    /// Parses a list of authorities; the error names the entry and why it
    /// is refused.
    ///
    /// ```
    /// let allow = hotslot::HttpAllow::new(["api.example.com", "*.cdn.example.com:443"])?;
    /// assert!(allow.allows("img.cdn.example.com", 443));
    /// # Ok::<(), String>(())
    /// ```
    pub fn new<I, S>(entries: I) -> Result<HttpAllow, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let entries = entries
            .into_iter()
            .map(|entry| Authority::parse(entry.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(HttpAllow {
            entries: entries.into(),
        })
    }

    /// Whether a request to `host` on `port` may go out.
    ///
    /// ```
    /// let allow = hotslot::HttpAllow::new(["127.0.0.1:8080"])?;
    /// assert!(allow.allows("127.0.0.1", 8080));
    /// assert!(!allow.allows("127.0.0.1", 8081));
    /// # Ok::<(), String>(())
    /// ```
    pub fn allows(&self, host: &str, port: u16) -> bool {
        let host = normal_host(host);
        self.entries.iter().any(|entry| entry.matches(&host, port))
    }

    /// Whether nothing is allowed.
    ///
    /// ```
    /// assert!(hotslot::HttpAllow::default().is_empty()); // nothing goes out
    /// ```
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl std::fmt::Display for HttpAllow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.entries.is_empty() {
            return f.write_str("nothing");
        }
        let texts: Vec<&str> = self.entries.iter().map(|e| e.text.as_str()).collect();
        f.write_str(&texts.join(", "))
    }
}

impl Authority {
    fn parse(text: &str) -> Result<Authority, String> {
        let refuse = |why: &str| Err(format!("`{text}`: {why}"));
        let written = text.trim();
        if written.is_empty() {
            return refuse("an empty authority");
        }
        if written.contains("://") || written.contains(['/', '?', '#', '@']) {
            return refuse("give an authority (host or host:port), not a URL");
        }
        let (host, port) = match split_port(written) {
            Ok(split) => split,
            Err(why) => return refuse(&why),
        };
        if host.chars().any(char::is_whitespace) {
            return refuse("a host has no spaces");
        }
        // Empty once normal too (`.`): no host.
        let normal = normal_host(host);
        let host = match normal.strip_prefix("*.") {
            Some(domain) if !domain.is_empty() && !domain.contains('*') => {
                HostPattern::Subdomains(domain.to_string())
            }
            Some(_) => return refuse("`*.` must be followed by a domain"),
            None if normal.contains('*') => {
                return refuse("a wildcard is allowed only as a leading `*.`")
            }
            None if normal.is_empty() => return refuse("no host"),
            None => HostPattern::Exact(normal),
        };
        Ok(Authority {
            host,
            port,
            text: written.to_string(),
        })
    }

    fn matches(&self, host: &str, port: u16) -> bool {
        let host_matches = match &self.host {
            HostPattern::Exact(exact) => host == exact,
            HostPattern::Subdomains(domain) => host
                .strip_suffix(domain.as_str())
                .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
        };
        host_matches && self.port.is_none_or(|p| p == port)
    }
}

/// `host` and `port` of `host[:port]` (`[v6][:port]` for IPv6).
fn split_port(written: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if let Some(rest) = written.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or("an IPv6 address without its closing `]`")?;
        match after.strip_prefix(':') {
            Some(port) => (v6, Some(port)),
            None if after.is_empty() => (v6, None),
            None => return Err(format!("`{after}` after the IPv6 address")),
        }
    } else {
        match written.rsplit_once(':') {
            Some((host, _)) if host.contains(':') => {
                return Err("an IPv6 address goes in brackets: `[::1]` or `[::1]:8080`".into())
            }
            Some((host, port)) => (host, Some(port)),
            None => (written, None),
        }
    };
    let port = match port {
        Some(port) => match port.parse::<u16>() {
            Ok(0) | Err(_) => return Err(format!("`{port}` is not a port (1 to 65535)")),
            Ok(port) => Some(port),
        },
        None => None,
    };
    Ok((host, port))
}

/// Lower case, without IPv6 brackets or a trailing dot, an IP address in
/// its one canonical form: how hosts compare (`[0:0::1]` is `::1`).
fn normal_host(host: &str) -> String {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => host,
    }
}

/// What one plugin instance may do over HTTP: wasmtime-wasi-http asks it
/// before each request goes out.
pub(crate) struct HttpGate {
    /// Named in the log when a request is denied.
    pub(crate) plugin: Arc<str>,
    /// What the plugin's manifest allows.
    pub(crate) grant: HttpAllow,
    /// What the operator allows, if bounded.
    pub(crate) ceiling: Option<HttpAllow>,
    /// The most one request may take, from connecting to the last byte
    /// of its response.
    pub(crate) timeout: Duration,
    /// The most bytes of a response body.
    pub(crate) max_response: u64,
    /// When the call running now must end, on `clock` (set at each call;
    /// 0: not known), and how long one of its ticks is.
    pub(crate) call_ends: u64,
    pub(crate) clock: fn() -> u64,
    pub(crate) tick: Duration,
    /// When a denial was last logged.
    pub(crate) logged: Option<std::time::Instant>,
}

/// The least time between two denials logged for one instance.
const DENIAL_LOG_GAP: Duration = Duration::from_millis(200);

/// Where a request goes: its host and port. Refused when the authority is
/// missing or carries credentials (`user@host`).
fn destination(uri: &http::Uri) -> Result<(String, u16), String> {
    let authority = uri.authority().ok_or("without an authority")?;
    if authority.as_str().contains('@') {
        return Err(format!(
            "to `{authority}`: credentials in a URL are not sent"
        ));
    }
    let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    Ok((authority.host().to_string(), port))
}

/// Points `request` at exactly `host:port`, whatever else its authority
/// said.
fn aim(request: &mut http::Request<WasiBody>, host: &str, port: u16) -> Result<(), String> {
    let fail = |e: &dyn std::fmt::Display| format!("to {host}:{port}: {e}");
    let mut parts = request.uri().clone().into_parts();
    parts.authority = Some(format!("{host}:{port}").parse().map_err(|e| fail(&e))?);
    *request.uri_mut() = http::Uri::from_parts(parts).map_err(|e| fail(&e))?;
    Ok(())
}

type Sent = Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ),
    HttpError,
>;

impl HttpGate {
    /// A denied request: logged (at most five lines a second per
    /// instance), and failed with wasi:http's own error.
    fn deny(&mut self, why: &str) -> Box<dyn Future<Output = Sent> + Send> {
        let now = std::time::Instant::now();
        if self
            .logged
            .is_none_or(|at| now.duration_since(at) >= DENIAL_LOG_GAP)
        {
            self.logged = Some(now);
            tracing::warn!("plugin {}: HTTP request denied {why}", self.plugin);
        }
        Box::new(async { Err(HttpError::HttpRequestDenied) })
    }

    /// What the request may take: the request's bound, or what is left of
    /// the call making it, whichever is less.
    fn time_left(&self) -> Duration {
        match self.call_left() {
            Some(left) => self.timeout.min(left),
            None => self.timeout,
        }
    }

    /// What is left of the call running now, if its end is known.
    pub(crate) fn call_left(&self) -> Option<Duration> {
        if self.call_ends == 0 {
            return None;
        }
        let ticks = self.call_ends.saturating_sub((self.clock)());
        Some(
            self.tick
                .saturating_mul(u32::try_from(ticks).unwrap_or(u32::MAX)),
        )
    }

    /// Why a request to `host:port` may not go out, if it may not.
    fn refusal(&self, host: &str, port: u16) -> Option<String> {
        if !self.grant.allows(host, port) {
            return Some(format!("not in the plugin's [http] allow ({})", self.grant));
        }
        match &self.ceiling {
            Some(ceiling) if !ceiling.allows(host, port) => {
                Some(format!("not in the operator's --http-allow ({ceiling})"))
            }
            _ => None,
        }
    }

    /// The guest's own timeouts, none longer than `timeout`.
    fn bounded(&self, options: Option<RequestOptions>, timeout: Duration) -> RequestOptions {
        let options = options.unwrap_or_default();
        let bound = |asked: Option<Duration>| Some(asked.map_or(timeout, |t| t.min(timeout)));
        RequestOptions {
            connect_timeout: bound(options.connect_timeout),
            first_byte_timeout: bound(options.first_byte_timeout),
            between_bytes_timeout: bound(options.between_bytes_timeout),
        }
    }
}

impl WasiHttpHooks for HttpGate {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<dyn Future<Output = Sent> + Send> {
        let mut request = request;
        let (host, port) = match destination(request.uri()) {
            Ok(destination) => destination,
            Err(why) => return self.deny(&why),
        };
        if let Some(why) = self.refusal(&host, port) {
            return self.deny(&format!("to {host}:{port}: {why}"));
        }
        // The connection goes exactly where the check looked.
        if let Err(why) = aim(&mut request, &host, port) {
            return self.deny(&why);
        }
        tracing::debug!(
            "plugin {}: HTTP {} to {host}:{port}",
            self.plugin,
            request.method()
        );
        let timeout = self.time_left();
        let options = self.bounded(options, timeout);
        let max = self.max_response;
        Box::new(async move {
            // One deadline for the whole exchange, from connecting to the
            // body's last byte.
            let deadline = tokio::time::Instant::now() + timeout;
            let sent = wasmtime_wasi_http::default_send_request(request, Some(options));
            let (response, io) = tokio::time::timeout_at(deadline, sent)
                .await
                .map_err(|_| HttpError::HttpResponseTimeout)??;
            let response = response.map(|body| {
                Limited {
                    inner: body.boxed_unsync(),
                    max,
                    read: 0,
                    deadline: Box::pin(tokio::time::sleep_until(deadline)),
                }
                .boxed_unsync()
            });
            Ok((
                response,
                Box::new(io) as Box<dyn Future<Output = Result<(), HttpError>> + Send>,
            ))
        })
    }
}

/// A response body that fails once it goes past its size or its deadline.
struct Limited {
    inner: WasiBody,
    /// The most bytes it may carry, and how many it has.
    max: u64,
    read: u64,
    /// The end of the request's time.
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Body for Limited {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        if this.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout)));
        }
        let frame = std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if let Some(data) = frame.as_ref().and_then(|f| f.as_ref().ok()?.data_ref()) {
            this.read += data.len() as u64;
            if this.read > this.max {
                return Poll::Ready(Some(Err(HttpError::HttpResponseBodySize(Some(this.max)))));
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_match_host_and_port() {
        let allow = HttpAllow::new(["Example.com", "*.example.org:8443", "[::1]:80"]).unwrap();
        assert!(allow.allows("example.com", 1234));
        assert!(allow.allows("example.com.", 80));
        assert!(!allow.allows("www.example.com", 80));
        assert!(allow.allows("a.b.example.org", 8443));
        assert!(!allow.allows("example.org", 8443));
        assert!(!allow.allows("evilexample.org", 8443));
        assert!(!allow.allows("a.example.org", 443));
        assert!(allow.allows("[::1]", 80));
        assert!(allow.allows("[0:0::1]", 80));
        assert!(!HttpAllow::default().allows("example.com", 80));
    }

    #[test]
    fn malformed_authorities_are_refused_by_name() {
        for bad in [
            "", "*", "*.", "a.*.com", "http://x", "x/y", "x:0", "x:http", "[::1", "::1", ".", "u@x",
        ] {
            let err = HttpAllow::new([bad]).unwrap_err();
            assert!(err.contains(&format!("`{}`", bad.trim())), "{bad}: {err}");
        }
    }
}
