//! Our own accept loop: HTTP/1.1 only, with a header-read timeout, an idle keep-alive timeout
//! and a cap on open connections (`axum::serve` has none of them; see ADR 11).
//!
//! Every connection is in one of three phases, tracked as it goes:
//! - `Head`: waiting for a request's head, since its first byte (or since the accept, for the
//!   first request). Past `header_timeout` the connection is closed: slowloris.
//! - `Busy`: a request is being handled or its response written. No transport timeout: the
//!   handlers have their own budgets (`INGEST_TIMEOUT_MS`, the shutdown deadline).
//! - `Idle`: between requests on a keep-alive connection. Past `idle_timeout` it is closed.
//!
//! At `max_connections` a new connection closes the open one that has been in `Head` or `Idle`
//! the longest: an attacker holding idle or half-sent connections only ever evicts its own
//! oldest ones, and a webhook's fresh connection is served. Only when every connection is busy
//! does the loop stop accepting until one is free (the kernel's backlog holds the rest).
//!
//! hyper answers a request head it cannot parse (400, 414, 431) itself, with an empty body,
//! before our router sees it; `Tracked` recognises that answer on its way out and writes the
//! documented JSON error in its place.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::TransportConfig;

/// hyper's own limit on a request head (request line and headers). Our smaller limits
/// (`boundary::MAX_HEADER_BYTES`, `boundary::MAX_URI_BYTES`) answer first, as JSON; this one
/// only bounds the buffering, and its answer is rewritten to JSON here. Above hyper's fixed
/// URI limit (65534 bytes), so an overlong URI gets 414 rather than 431.
const HYPER_MAX_HEADER_BYTES: usize = 96 * 1024;
/// hyper's read buffer per connection (its default is about 400 KiB): bounds the memory an
/// open connection can pin.
const HYPER_MAX_BUF_BYTES: usize = 128 * 1024;
/// How long the loop pauses after an accept error that is not the peer's (EMFILE, ENFILE,
/// ENOBUFS...): retrying at once would spin on the error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How often a loop that found every connection busy looks again.
const ALL_BUSY_RECHECK: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Copy)]
enum Phase {
    Head { since: Instant },
    Busy,
    Idle { since: Instant },
}

/// One open connection, shared between its task, its IO, its service and the registry.
struct Conn {
    id: u64,
    phase: Mutex<Phase>,
    evict: Notify,
}

impl Conn {
    fn phase(&self) -> Phase {
        *self.phase.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, phase: Phase) {
        *self.phase.lock().unwrap_or_else(|p| p.into_inner()) = phase;
    }

    /// Bytes arrived: between requests, that starts the next request's head.
    fn on_read(&self) {
        let mut phase = self.phase.lock().unwrap_or_else(|p| p.into_inner());
        if let Phase::Idle { .. } = *phase {
            *phase = Phase::Head {
                since: Instant::now(),
            };
        }
    }

    /// When the connection must be closed if its phase has not changed by then.
    fn deadline(&self, limits: &TransportConfig) -> Option<Instant> {
        match self.phase() {
            Phase::Head { since } => Some(since + limits.header_timeout),
            Phase::Idle { since } => Some(since + limits.idle_timeout),
            Phase::Busy => None,
        }
    }
}

/// Marks the connection idle when the response is done (written, or abandoned).
struct IdleOnDrop(Arc<Conn>);

impl Drop for IdleOnDrop {
    fn drop(&mut self) {
        self.0.set(Phase::Idle {
            since: Instant::now(),
        });
    }
}

#[derive(Default)]
struct Registry {
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn open(&self) -> Arc<Conn> {
        let conn = Arc::new(Conn {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            phase: Mutex::new(Phase::Head {
                since: Instant::now(),
            }),
            evict: Notify::new(),
        });
        self.lock().insert(conn.id, conn.clone());
        conn
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    fn any_waiting(&self) -> bool {
        self.lock()
            .values()
            .any(|c| !matches!(c.phase(), Phase::Busy))
    }

    /// Closes the connection that has waited longest without a request in progress; false
    /// when every connection is busy. The victim leaves the count at once.
    fn evict_longest_waiting(&self) -> bool {
        let mut conns = self.lock();
        let victim = conns
            .values()
            .filter_map(|c| match c.phase() {
                Phase::Head { since } | Phase::Idle { since } => Some((since, c.id)),
                Phase::Busy => None,
            })
            .min();
        match victim.and_then(|(_, id)| conns.remove(&id)) {
            Some(conn) => {
                conn.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Removes a connection from the registry when its task ends, however it ends.
struct Registered(Arc<Registry>, u64);

impl Drop for Registered {
    fn drop(&mut self) {
        self.0.lock().remove(&self.1);
    }
}

/// Serves `router` on `listener` until `stop` turns true; then stops accepting, lets every
/// connection finish its request (idle ones close at once) and returns when all are closed.
/// Dropping the returned future closes every connection.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: TransportConfig,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let registry = Arc::new(Registry::default());
    let mut tasks = JoinSet::new();
    let (drain, draining) = watch::channel(false);
    let mut errors = AcceptErrors::default();
    let stopped = |s: &bool| *s;
    loop {
        while tasks.try_join_next().is_some() {}
        if registry.len() >= limits.max_connections && !registry.any_waiting() {
            errors.note_all_busy(limits.max_connections);
            tokio::select! {
                _ = stop.wait_for(stopped) => break,
                _ = tasks.join_next(), if !tasks.is_empty() => continue,
                () = tokio::time::sleep(ALL_BUSY_RECHECK) => continue,
            }
        }
        let accepted = tokio::select! {
            _ = stop.wait_for(stopped) => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => {
                errors.recovered();
                stream
            }
            Err(e) => {
                if errors.failed(&e) {
                    // Out of descriptors (or buffers): a waiting connection gives one back, so
                    // the next accept can succeed even when the open-file limit is below the cap.
                    registry.evict_longest_waiting();
                    tokio::select! {
                        _ = stop.wait_for(stopped) => break,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    }
                }
                continue;
            }
        };
        // At the cap, the newcomer takes the slot of the longest-waiting connection. (Should
        // every one have turned busy since the check above, we are over by this one.)
        if registry.len() >= limits.max_connections {
            registry.evict_longest_waiting();
        }
        let conn = registry.open();
        let registered = Registered(registry.clone(), conn.id);
        tasks.spawn(serve_connection(
            stream,
            conn,
            registered,
            router.clone(),
            limits,
            draining.clone(),
        ));
    }
    drop(listener);
    let _ = drain.send(true);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Logs accept failures once per burst, not once per attempt.
#[derive(Default)]
struct AcceptErrors {
    failures: u64,
    all_busy: bool,
}

impl AcceptErrors {
    /// Whether to back off before the next attempt.
    fn failed(&mut self, e: &io::Error) -> bool {
        // The peer gave up between SYN and accept: nothing is wrong with us.
        let peer = matches!(
            e.kind(),
            io::ErrorKind::ConnectionAborted
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::Interrupted
        );
        if !peer {
            if self.failures == 0 {
                tracing::warn!(error = %e, "accept failed; backing off (lower HTTP_MAX_CONNECTIONS or raise the open-file limit)");
            }
            self.failures += 1;
        }
        !peer
    }

    fn recovered(&mut self) {
        if self.failures > 0 {
            tracing::info!(failures = self.failures, "accepting connections again");
        }
        self.failures = 0;
        self.all_busy = false;
    }

    fn note_all_busy(&mut self, max: usize) {
        if !self.all_busy {
            tracing::warn!(
                max_connections = max,
                "every connection is busy with a request; new ones wait (HTTP_MAX_CONNECTIONS)"
            );
            self.all_busy = true;
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    conn: Arc<Conn>,
    _registered: Registered,
    router: Router,
    limits: TransportConfig,
    mut draining: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let io = TokioIo::new(Tracked::new(stream, conn.clone()));
    let mut builder = hyper::server::conn::http1::Builder::new();
    // No timer is given to hyper: its own header timeout would also cut idle keep-alive
    // connections at the header timeout. Both timeouts are ours, below.
    builder
        .keep_alive(true)
        .max_header_size(HYPER_MAX_HEADER_BYTES)
        .max_buf_size(HYPER_MAX_BUF_BYTES);
    let connection = builder.serve_connection(io, service(router, conn.clone()));
    tokio::pin!(connection);
    let mut drained = false;
    loop {
        // Phases change without telling this loop, so it also looks again every
        // min(header, idle) timeout: a deadline of the new phase can't be passed unseen.
        let next_look = Instant::now() + limits.header_timeout.min(limits.idle_timeout);
        let check = conn
            .deadline(&limits)
            .map_or(next_look, |d| d.min(next_look));
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = conn.evict.notified() => {
                tracing::debug!("connection closed for a new one at HTTP_MAX_CONNECTIONS");
                return;
            }
            _ = draining.wait_for(|d| *d), if !drained => {
                drained = true;
                connection.as_mut().graceful_shutdown();
            }
            () = tokio::time::sleep_until(check) => {
                if conn.deadline(&limits).is_some_and(|d| d <= Instant::now()) {
                    tracing::debug!(phase = ?conn.phase(), "connection timed out");
                    return;
                }
            }
        }
    }
}

type Served = Response<GuardedBody>;

fn service(
    router: Router,
    conn: Arc<Conn>,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Served,
    Error = Infallible,
    Future = impl std::future::Future<Output = Result<Served, Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |request: Request<Incoming>| {
        conn.set(Phase::Busy);
        let guard = IdleOnDrop(conn.clone());
        let mut router = router.clone();
        async move {
            let response = tower_service::Service::call(&mut router, request.map(Body::new))
                .await
                .unwrap_or_else(|never| match never {});
            Ok(response.map(|inner| GuardedBody {
                inner,
                guard: Some(guard),
            }))
        }
    })
}

/// The response body; the connection is busy until it is written out.
pub struct GuardedBody {
    inner: Body,
    guard: Option<IdleOnDrop>,
}

impl http_body::Body for GuardedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if frame.is_none() {
            self.guard = None;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, seen by hyper: reads mark the start of a request's head; hyper's own
/// empty-bodied error answers are replaced with JSON ones.
struct Tracked {
    stream: TcpStream,
    conn: Arc<Conn>,
    /// Our answer in place of hyper's, and how much of it is written.
    replacement: Option<(Vec<u8>, usize)>,
}

impl Tracked {
    fn new(stream: TcpStream, conn: Arc<Conn>) -> Self {
        Tracked {
            stream,
            conn,
            replacement: None,
        }
    }

    /// Writes what is left of the replacement.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some((bytes, written)) = &mut self.replacement {
            while *written < bytes.len() {
                let n = ready!(Pin::new(&mut self.stream).poll_write(cx, &bytes[*written..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                *written += n;
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = ready!(Pin::new(&mut self.stream).poll_read(cx, buf));
        if buf.filled().len() > before {
            self.conn.on_read();
        }
        Poll::Ready(result)
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.replacement.is_none() {
            match hyper_error_status(buf) {
                Some(status) => self.replacement = Some((json_answer(status), 0)),
                None => return Pin::new(&mut self.stream).poll_write(cx, buf),
            }
        }
        // hyper closes the connection after its error answer: what it writes is swallowed,
        // and ours goes out here or at the flush that follows.
        if let Poll::Ready(Err(e)) = self.drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    // Plain writes only, so that a response head always arrives in one `poll_write`.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

/// The status of hyper's automatic answer to an unparsable head, if `buf` is one: a complete
/// head with status 400, 414 or 431 and no `content-type`. Every answer of ours at those
/// statuses is JSON (`boundary`), so it carries one.
fn hyper_error_status(buf: &[u8]) -> Option<StatusCode> {
    let rest = buf
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| buf.strip_prefix(b"HTTP/1.0 "))?;
    let status = match rest.get(..4)? {
        b"400 " => StatusCode::BAD_REQUEST,
        b"414 " => StatusCode::URI_TOO_LONG,
        b"431 " => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        _ => return None,
    };
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = buf[..end].to_ascii_lowercase();
    let typed = head.windows(15).any(|w| w == b"\r\ncontent-type:");
    (!typed).then_some(status)
}

/// A complete HTTP/1.1 answer with the JSON error body for `status`.
fn json_answer(status: StatusCode) -> Vec<u8> {
    let (code, message) = super::boundary::describe(status);
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len(),
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hyper_s_untyped_error_heads_are_replaced() {
        let hyper =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        assert_eq!(
            hyper_error_status(hyper),
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
        let ours = b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(hyper_error_status(ours), None);
        assert_eq!(
            hyper_error_status(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"),
            None
        );
        assert_eq!(hyper_error_status(b"{\"error\":\"HTTP/1.1 400 \"}"), None);
        let answer = String::from_utf8(json_answer(StatusCode::URI_TOO_LONG)).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long\r\n"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "uri_too_long");
    }
}
