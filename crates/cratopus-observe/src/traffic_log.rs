//! The traffic log: one JSON line per request, also for requests the gateway rejected.
//!
//! Requests hand a [`LogLine`] (plain values, nothing formatted) to a bounded queue; a dedicated
//! thread formats and writes them, so a slow disk never slows a request. When the queue is full
//! the line is dropped and counted ([`TrafficLog::dropped`]) instead; so is a line the writer
//! cannot write (a full disk).
//!
//! Only the path is written, never the query string (API keys travel there), and no header but
//! Host and User-Agent: Authorization, Cookie and key values never reach the file.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What one request leaves in the log. Built on the request path from values the request already
/// holds (cheap clones of `Bytes`-backed types); formatted by the writer thread.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub ts: SystemTime,
    pub request_id: http::HeaderValue,
    pub org: Option<Arc<str>>,
    pub route: Option<Arc<str>>,
    /// `None` for a request refused before its request line could be read.
    pub method: Option<http::Method>,
    pub host: Option<http::HeaderValue>,
    pub uri: Option<http::Uri>,
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// The target that served the request (`10.0.0.1:8080`, `mirror`).
    pub upstream: Option<Arc<str>>,
    pub total_ms: f64,
    pub upstream_ms: Option<f64>,
    pub client_ip: IpAddr,
    pub user_agent: Option<http::HeaderValue>,
    /// Why the gateway answered itself (`no_route`, `upstream_timeout`, …).
    pub error: Option<&'static str>,
    /// The W3C trace id the request carried or was given (`traceparent`).
    pub trace_id: Option<[u8; 16]>,
    /// The consumer the request was authenticated as.
    pub consumer: Option<Arc<str>>,
    /// Why a policy refused the request, beyond `error` (`expired`, `missing_scope`, …).
    pub reason: Option<&'static str>,
    /// Fields a policy or a protocol adds (a GraphQL operation's name and cost, a WebSocket's
    /// duration), written after the fixed ones in this order. Empty for most requests, and an
    /// empty `Vec` allocates nothing.
    pub fields: Vec<(&'static str, LogValue)>,
}

/// The value of an added log field.
#[derive(Debug, Clone, PartialEq)]
pub enum LogValue {
    Str(Arc<str>),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl LogLine {
    /// A line of a request the gateway answered with `status` now, knowing nothing of it yet but
    /// the client's address: the other fields are filled by struct update where known.
    pub fn answered(request_id: http::HeaderValue, client_ip: IpAddr, status: u16) -> LogLine {
        LogLine {
            ts: SystemTime::now(),
            request_id,
            org: None,
            route: None,
            method: None,
            host: None,
            uri: None,
            status,
            bytes_in: 0,
            bytes_out: 0,
            upstream: None,
            total_ms: 0.0,
            upstream_ms: None,
            client_ip,
            user_agent: None,
            error: None,
            trace_id: None,
            consumer: None,
            reason: None,
            fields: Vec::new(),
        }
    }
}

/// Where lines go; settings read from the gateway config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficLogSettings {
    /// A file, or `-` for standard output.
    pub path: PathBuf,
    pub max_size: Option<u64>,
    pub keep: usize,
    pub queue: usize,
}

/// What the writer thread takes a line from: a [`LogLine`], or a request's own box holding one
/// (sent as it is, so that the line is neither copied out of it nor boxed again).
pub trait Logged: Send {
    fn line(&self) -> &LogLine;
}

impl Logged for LogLine {
    fn line(&self) -> &LogLine {
        self
    }
}

enum Msg {
    Line(Box<dyn Logged>),
    Reopen,
    /// Write out everything queued before this, then answer.
    Flush(std::sync::mpsc::Sender<()>),
}

/// A handle to the writer; cheap to clone. With no writer (traffic log off) it does nothing.
#[derive(Clone, Default)]
pub struct TrafficLog {
    tx: Option<SyncSender<Msg>>,
    dropped: Arc<AtomicU64>,
    settings: Option<Arc<TrafficLogSettings>>,
}

impl TrafficLog {
    /// A log that writes nothing.
    pub fn disabled() -> Self {
        TrafficLog::default()
    }

    /// Opens the file (creating it and its directory) and starts the writer thread.
    pub fn start(settings: TrafficLogSettings) -> io::Result<Self> {
        let dropped = Arc::new(AtomicU64::new(0));
        let sink = Sink::open(&settings, dropped.clone())?;
        let (tx, rx) = sync_channel(settings.queue.max(1));
        let settings = Arc::new(settings);
        std::thread::Builder::new()
            .name("traffic-log".into())
            .spawn(move || writer(rx, sink))?;
        Ok(TrafficLog {
            tx: Some(tx),
            dropped,
            settings: Some(settings),
        })
    }

    pub fn settings(&self) -> Option<&TrafficLogSettings> {
        self.settings.as_deref()
    }

    /// Queues `line`; never blocks. A full queue drops the line and counts it.
    pub fn log(&self, line: LogLine) {
        if self.tx.is_some() {
            self.send(Box::new(line));
        }
    }

    /// Queues the line that `boxed` holds, in its box; like [`TrafficLog::log`].
    pub fn send(&self, boxed: Box<dyn Logged>) {
        if let Some(tx) = &self.tx
            && let Err(TrySendError::Full(_)) = tx.try_send(Msg::Line(boxed))
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Closes and reopens the file (after an external rotation, on SIGHUP).
    pub fn reopen(&self) {
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(Msg::Reopen);
        }
    }

    /// Waits (blocking, up to `timeout`) until every line queued so far is in the file.
    pub fn flush(&self, timeout: Duration) {
        if let Some(tx) = &self.tx {
            let (ack, done) = std::sync::mpsc::channel();
            if tx.send(Msg::Flush(ack)).is_ok() {
                let _ = done.recv_timeout(timeout);
            }
        }
    }

    /// Lines dropped because the queue was full or they could not be written (a full disk).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Where the writer thread puts lines: a file (rotated by size) or standard output. Lines are
/// gathered in a buffer and written in one `write` of many lines; a line that cannot be written
/// (a full disk, a file that cannot be opened) is counted as dropped, like one the queue had no
/// room for.
struct Sink {
    path: PathBuf,
    file: Option<File>,
    stdout: bool,
    /// Whole lines not yet written.
    buf: Vec<u8>,
    /// The file's length once `buf` is written.
    size: u64,
    max_size: Option<u64>,
    keep: usize,
    dropped: Arc<AtomicU64>,
}

/// Bytes of lines gathered before they are written.
const BUFFER: usize = 64 * 1024;

impl Sink {
    fn open(s: &TrafficLogSettings, dropped: Arc<AtomicU64>) -> io::Result<Sink> {
        let mut sink = Sink {
            path: s.path.clone(),
            file: None,
            stdout: s.path == Path::new("-"),
            buf: Vec::with_capacity(BUFFER),
            size: 0,
            max_size: s.max_size,
            keep: s.keep,
            dropped,
        };
        if !sink.stdout {
            sink.reopen()?;
        }
        Ok(sink)
    }

    fn lost(&self, lines: u64) {
        self.dropped.fetch_add(lines, Ordering::Relaxed);
    }

    fn reopen(&mut self) -> io::Result<()> {
        let _ = self.flush();
        self.file = None;
        if let Some(dir) = self.path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&self.path)?;
        self.size = file.metadata().map(|m| m.len()).unwrap_or(0);
        self.file = Some(file);
        Ok(())
    }

    /// `path` → `path.1` → `path.2` …, keeping `keep` old files.
    fn rotate(&mut self) -> io::Result<()> {
        let _ = self.flush();
        self.file = None;
        let name = |i: usize| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{i}"));
            PathBuf::from(p)
        };
        if self.keep == 0 {
            let _ = std::fs::remove_file(&self.path);
        } else {
            let _ = std::fs::remove_file(name(self.keep));
            for i in (1..self.keep).rev() {
                let _ = std::fs::rename(name(i), name(i + 1));
            }
            std::fs::rename(&self.path, name(1))?;
        }
        self.reopen()
    }

    /// Adds one line (ending in a newline); writes the buffer out when it is full.
    fn write(&mut self, line: &[u8]) -> io::Result<()> {
        if self.stdout {
            let written = io::stdout().lock().write_all(line);
            if written.is_err() {
                self.lost(1);
            }
            return written;
        }
        if let Some(max) = self.max_size
            && self.size > 0
            && self.size + line.len() as u64 > max
            && let Err(e) = self.rotate()
        {
            self.lost(1);
            return Err(e);
        }
        if self.file.is_none()
            && let Err(e) = self.reopen()
        {
            self.lost(1);
            return Err(e);
        }
        let flushed = if self.buf.len() + line.len() > BUFFER {
            self.flush()
        } else {
            Ok(())
        };
        self.buf.extend_from_slice(line);
        self.size += line.len() as u64;
        flushed
    }

    /// Writes the buffered lines. What does not reach the file is counted as dropped and
    /// forgotten (a full disk is not waited for); a line cut in the middle by the failure is
    /// taken back out of the file, so that every line in it stays whole JSON.
    fn flush(&mut self) -> io::Result<()> {
        if self.stdout {
            return io::stdout().flush();
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        let mut written = 0;
        let result = match &mut self.file {
            None => Err(io::Error::from(io::ErrorKind::NotConnected)),
            Some(file) => loop {
                match file.write(&self.buf[written..]) {
                    Ok(0) => break Err(io::Error::from(io::ErrorKind::WriteZero)),
                    Ok(n) => {
                        written += n;
                        if written == self.buf.len() {
                            break Ok(());
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            },
        };
        if result.is_err() {
            let whole = self.buf[..written]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            let start = self.size - self.buf.len() as u64;
            if whole < written
                && let Some(file) = &self.file
            {
                let _ = file.set_len(start + whole as u64);
            }
            self.lost(self.buf[whole..].iter().filter(|&&b| b == b'\n').count() as u64);
            self.size = start + whole as u64;
        }
        self.buf.clear();
        result
    }
}

/// How often the writer thread takes what was queued. It is never woken per line: a wake-up is
/// a futex call and two context switches, more than the rest of a line's cost (measured with
/// `perf` on a saturated single-worker gateway: about a third of its CPU went to switching to the
/// writer and back). Lines reach the file within this time; a flush asked for waits as long.
const DRAIN_EVERY: Duration = Duration::from_millis(10);

fn writer(rx: Receiver<Msg>, mut sink: Sink) {
    let mut buf = Vec::with_capacity(1024);
    let mut warned = false;
    let mut idle = Duration::ZERO;
    loop {
        let mut took = false;
        loop {
            let msg = match rx.try_recv() {
                Ok(m) => m,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    let _ = sink.flush();
                    return;
                }
            };
            took = true;
            let result = match msg {
                Msg::Line(line) => {
                    buf.clear();
                    format_line(line.line(), &mut buf);
                    sink.write(&buf)
                }
                Msg::Reopen => sink.reopen(),
                Msg::Flush(ack) => {
                    let result = sink.flush();
                    let _ = ack.send(());
                    result
                }
            };
            warn_once(&sink, result, &mut warned);
        }
        // What was written reaches the file when the queue runs dry (and at least every 200 ms).
        if took || idle >= Duration::from_millis(200) {
            let result = sink.flush();
            warn_once(&sink, result, &mut warned);
            idle = Duration::ZERO;
        }
        std::thread::sleep(DRAIN_EVERY);
        idle += DRAIN_EVERY;
    }
}

/// Logs the first failure of a run of failures (lines lost meanwhile are counted, not logged).
fn warn_once(sink: &Sink, result: io::Result<()>, warned: &mut bool) {
    match result {
        Err(e) if !*warned => {
            tracing::error!(path = %sink.path.display(), error = %e, "cannot write the traffic log; lines are dropped and counted");
            *warned = true;
        }
        Ok(()) => *warned = false,
        Err(_) => {}
    }
}

/// `s` as a JSON string. Paths, hosts and ids almost never hold a byte JSON escapes, and are
/// copied as they are; serde_json escapes the rest (the same bytes as it would have).
fn push_str(buf: &mut Vec<u8>, s: &str) {
    if plain_json(s.as_bytes()) {
        buf.reserve(s.len() + 2);
        buf.push(b'"');
        buf.extend_from_slice(s.as_bytes());
        buf.push(b'"');
    } else {
        // Writing to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *buf, s);
    }
}

/// Whether no byte of `b` needs escaping in a JSON string (a control byte, `"` or `\`).
/// Eight bytes at a time: every line's strings (ids, path, host, agent) pass through here.
fn plain_json(b: &[u8]) -> bool {
    plain_json_with(b, false)
}

/// [`plain_json`], and, with `ascii`, no byte above 0x7f either (bytes that are then UTF-8
/// without checking).
fn plain_json_with(b: &[u8], ascii: bool) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A byte of `x` is zero, or below `n` (n <= 128): its high bit in the result is set.
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGH;
    let mut words = b.chunks_exact(8);
    for w in words.by_ref() {
        let mut eight = [0u8; 8];
        eight.copy_from_slice(w);
        let x = u64::from_le_bytes(eight);
        let high = if ascii { x & HIGH } else { 0 };
        if below(x, 0x20) | zero(x ^ (ONES * u64::from(b'"'))) | zero(x ^ (ONES * u64::from(b'\\'))) | high != 0 {
            return false;
        }
    }
    words
        .remainder()
        .iter()
        .all(|&c| c >= 0x20 && c != b'"' && c != b'\\' && !(ascii && c > 0x7f))
}

fn push_header(buf: &mut Vec<u8>, v: &http::HeaderValue) {
    // Almost always plain ASCII: copied as it is, without a UTF-8 check of its own.
    let b = v.as_bytes();
    if plain_json_with(b, true) {
        buf.reserve(b.len() + 2);
        buf.push(b'"');
        buf.extend_from_slice(b);
        buf.push(b'"');
        return;
    }
    match std::str::from_utf8(b) {
        Ok(s) => push_str(buf, s),
        Err(_) => push_str(buf, &String::from_utf8_lossy(v.as_bytes())),
    }
}

fn push_field(buf: &mut Vec<u8>, name: &str) {
    buf.extend_from_slice(b",\"");
    buf.extend_from_slice(name.as_bytes());
    buf.extend_from_slice(b"\":");
}

/// A fixed field's `,"name":`, one constant copy (inlined, so its length is known where it is
/// copied: no call to `memcpy` for a dozen bytes).
#[inline(always)]
fn push_key<const N: usize>(buf: &mut Vec<u8>, key: &[u8; N]) {
    buf.extend_from_slice(key);
}

/// A string field, or `null`.
#[inline(always)]
fn push_opt_str<const N: usize>(buf: &mut Vec<u8>, key: &[u8; N], s: Option<&str>) {
    push_key(buf, key);
    match s {
        Some(s) => push_str(buf, s),
        None => buf.extend_from_slice(b"null"),
    }
}

/// A header value field, or `null`.
#[inline(always)]
fn push_opt_header<const N: usize>(buf: &mut Vec<u8>, key: &[u8; N], v: Option<&http::HeaderValue>) {
    push_key(buf, key);
    match v {
        Some(v) => push_header(buf, v),
        None => buf.extend_from_slice(b"null"),
    }
}

fn push_int(buf: &mut Vec<u8>, n: impl itoa::Integer) {
    buf.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// A number with three decimals (`0.187`, milliseconds mostly), from whole thousandths:
/// without `f64`'s `Display`, which was most of a line's formatting time. Not finite: `null`.
fn push_ms(buf: &mut Vec<u8>, ms: f64) {
    if !ms.is_finite() {
        buf.extend_from_slice(b"null");
        return;
    }
    if !(0.0..1e12).contains(&ms) {
        use std::io::Write as _;
        let _ = write!(buf, "{ms:.3}");
        return;
    }
    let micros = (ms * 1000.0).round() as u64;
    push_int(buf, micros / 1000);
    buf.push(b'.');
    push_digits(buf, micros % 1000, 3);
}

/// `n` in exactly `width` digits, zero-padded (`n` has no more).
fn push_digits(buf: &mut Vec<u8>, n: u64, width: u32) {
    let mut div = 10u64.pow(width.saturating_sub(1));
    while div > 0 {
        buf.push(b'0' + (n / div % 10) as u8);
        div /= 10;
    }
}

fn push_ip(buf: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            buf.push(b'"');
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf.push(b'.');
                }
                push_int(buf, octet);
            }
            buf.push(b'"');
        }
        IpAddr::V6(v6) => {
            use std::io::Write as _;
            let _ = write!(buf, "\"{v6}\"");
        }
    }
}

fn push_hex(buf: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        buf.push(HEX[usize::from(b >> 4)]);
        buf.push(HEX[usize::from(b & 0xf)]);
    }
}

/// One JSON object and a newline.
pub fn format_line(l: &LogLine, buf: &mut Vec<u8>) {
    // Room for a usual line at once: the pushes below then never grow the buffer.
    buf.reserve(512);
    buf.extend_from_slice(b"{\"ts\":\"");
    rfc3339(l.ts, buf);
    buf.push(b'"');
    push_opt_header(buf, b",\"request_id\":", Some(&l.request_id));
    push_opt_str(buf, b",\"org\":", l.org.as_deref());
    push_opt_str(buf, b",\"route\":", l.route.as_deref());
    push_opt_str(buf, b",\"method\":", l.method.as_ref().map(http::Method::as_str));
    push_opt_header(buf, b",\"host\":", l.host.as_ref());
    push_opt_str(buf, b",\"path\":", l.uri.as_ref().map(http::Uri::path));
    push_key(buf, b",\"status\":");
    push_int(buf, l.status);
    push_key(buf, b",\"bytes_in\":");
    push_int(buf, l.bytes_in);
    push_key(buf, b",\"bytes_out\":");
    push_int(buf, l.bytes_out);
    push_opt_str(buf, b",\"upstream\":", l.upstream.as_deref());
    push_key(buf, b",\"total_ms\":");
    push_ms(buf, l.total_ms);
    push_key(buf, b",\"upstream_ms\":");
    match l.upstream_ms {
        Some(ms) => push_ms(buf, ms),
        None => buf.extend_from_slice(b"null"),
    }
    push_key(buf, b",\"client_ip\":");
    push_ip(buf, l.client_ip);
    push_opt_header(buf, b",\"user_agent\":", l.user_agent.as_ref());
    push_opt_str(buf, b",\"error\":", l.error);
    push_opt_str(buf, b",\"consumer\":", l.consumer.as_deref());
    push_opt_str(buf, b",\"reason\":", l.reason);
    push_key(buf, b",\"trace_id\":");
    match &l.trace_id {
        Some(id) => {
            buf.push(b'"');
            push_hex(buf, id);
            buf.push(b'"');
        }
        None => buf.extend_from_slice(b"null"),
    }
    for (name, value) in &l.fields {
        push_field(buf, name);
        match value {
            LogValue::Str(s) => push_str(buf, s),
            LogValue::Int(n) => push_int(buf, *n),
            LogValue::Float(f) => push_ms(buf, *f),
            LogValue::Bool(b) => buf.extend_from_slice(if *b { b"true" } else { b"false" }),
        }
    }
    buf.extend_from_slice(b"}\n");
}

/// `2026-11-23T13:45:01.123Z`, as a string (for records that carry a time).
pub fn rfc3339_string(ts: SystemTime) -> String {
    let mut buf = Vec::with_capacity(24);
    rfc3339(ts, &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

thread_local! {
    /// The last second [`rfc3339`] wrote, and its text up to the seconds: the writer thread
    /// writes many lines a second, and the calendar arithmetic was a sixth of a line's cost.
    static SECOND: std::cell::Cell<(u64, [u8; 19])> = const { std::cell::Cell::new((u64::MAX, [0; 19])) };
}

/// `2026-11-23T13:45:01.123Z`
fn rfc3339(ts: SystemTime, buf: &mut Vec<u8>) {
    let d = ts.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (last, text) = SECOND.get();
    if last == secs {
        buf.extend_from_slice(&text);
    } else {
        let start = buf.len();
        date_time(secs, buf);
        if let Ok(t) = <[u8; 19]>::try_from(&buf[start..]) {
            SECOND.set((secs, t));
        }
    }
    buf.push(b'.');
    push_digits(buf, u64::from(d.subsec_millis()), 3);
    buf.push(b'Z');
}

/// `2026-11-23T13:45:01` for `secs` since the epoch.
fn date_time(secs: u64, buf: &mut Vec<u8>) {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = if month <= 2 { y + 1 } else { y };
    push_digits(buf, year.clamp(0, 9999) as u64, 4);
    buf.push(b'-');
    push_digits(buf, month as u64, 2);
    buf.push(b'-');
    push_digits(buf, day as u64, 2);
    buf.push(b'T');
    push_digits(buf, rem / 3600, 2);
    buf.push(b':');
    push_digits(buf, rem % 3600 / 60, 2);
    buf.push(b':');
    push_digits(buf, rem % 60, 2);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(status: u16) -> LogLine {
        LogLine {
            ts: UNIX_EPOCH + Duration::from_millis(1_795_442_701_123),
            request_id: http::HeaderValue::from_static("abc"),
            org: Some("acme".into()),
            route: None,
            method: Some(http::Method::GET),
            host: Some(http::HeaderValue::from_static("api.acme.test")),
            uri: Some("/users/1?api_key=secret".parse().unwrap()),
            status,
            bytes_in: 0,
            bytes_out: 12,
            upstream: Some("127.0.0.1:9000".into()),
            total_ms: 1.5,
            upstream_ms: Some(1.25),
            client_ip: "127.0.0.1".parse().unwrap(),
            user_agent: None,
            error: None,
            trace_id: Some([0xab; 16]),
            consumer: Some("c-1".into()),
            reason: None,
            fields: Vec::new(),
        }
    }

    #[test]
    fn added_fields_follow_the_fixed_ones() {
        let mut l = line(200);
        l.fields = vec![
            ("graphql_operation", LogValue::Str("Get \"me\"".into())),
            ("graphql_depth", LogValue::Int(3)),
            ("ws_duration_ms", LogValue::Float(12.5)),
            ("apq", LogValue::Bool(true)),
        ];
        let mut buf = Vec::new();
        format_line(&l, &mut buf);
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["graphql_operation"], "Get \"me\"");
        assert_eq!(v["graphql_depth"], 3);
        assert_eq!(v["ws_duration_ms"], 12.5);
        assert_eq!(v["apq"], true);
        assert_eq!(v["status"], 200);
    }

    #[test]
    fn formats_json_without_query() {
        let mut buf = Vec::new();
        format_line(&line(200), &mut buf);
        let text = String::from_utf8(buf).unwrap();
        assert!(text.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["ts"], "2026-11-23T14:05:01.123Z");
        assert_eq!(v["path"], "/users/1");
        assert_eq!(v["status"], 200);
        assert_eq!(v["route"], serde_json::Value::Null);
        assert_eq!(v["trace_id"], "abababababababababababababababab");
        assert!(!text.contains("secret"));
    }

    #[test]
    fn numbers_strings_and_addresses_are_written_as_json_would() {
        let fmt = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = Vec::new();
            f(&mut b);
            String::from_utf8(b).unwrap()
        };
        assert_eq!(fmt(&|b| push_ms(b, 0.187_345)), "0.187");
        assert_eq!(fmt(&|b| push_ms(b, 1.5)), "1.500");
        assert_eq!(fmt(&|b| push_ms(b, 12_345.000_6)), "12345.001");
        assert_eq!(fmt(&|b| push_ms(b, 0.0)), "0.000");
        assert_eq!(fmt(&|b| push_ms(b, f64::NAN)), "null");
        for s in [
            "/plain/path",
            "quote \" and \\ back",
            "tab\tnew\nline\u{1}",
            "ünïcode ✓",
            "",
            // The eight-byte check: a byte to escape in the first word, the last, the tail.
            "/abcdefg\"/abcdefgh",
            "/abcdefgh/abcdef\u{1f}h",
            "/abcdefgh/abcdefgh/a\\",
            "/abcdefgh/abcdefgh/a\u{7f}\u{80}ü",
        ] {
            assert_eq!(fmt(&|b| push_str(b, s)), serde_json::to_string(s).unwrap(), "{s:?}");
        }
        // Every byte value at every place of a word is told apart as a byte-by-byte check would.
        for at in 0..11 {
            for c in 0..=255u8 {
                let mut b = *b"abcdefghijk";
                b[at] = c;
                let plain = b.iter().all(|&c| c >= 0x20 && c != b'"' && c != b'\\');
                assert_eq!(plain_json(&b), plain, "{c} at {at}");
                assert_eq!(plain_json_with(&b, true), plain && b.is_ascii(), "{c} at {at}");
            }
        }
        assert_eq!(fmt(&|b| push_ip(b, "10.0.255.1".parse().unwrap())), "\"10.0.255.1\"");
        assert_eq!(fmt(&|b| push_ip(b, "::1".parse().unwrap())), "\"::1\"");
        assert_eq!(fmt(&|b| push_hex(b, &[0x00, 0x0f, 0xa5])), "000fa5");
        let latin1 = http::HeaderValue::from_bytes(b"caf\xe9").unwrap();
        assert_eq!(fmt(&|b| push_header(b, &latin1)), "\"caf\u{fffd}\"");
    }

    /// Times in one second share the cached date; the next second, and a jump back, do not.
    #[test]
    fn timestamps_are_rfc3339_in_utc() {
        for (ms, text) in [
            (1_795_442_701_123, "2026-11-23T14:05:01.123Z"),
            (1_795_442_701_999, "2026-11-23T14:05:01.999Z"),
            (1_795_442_702_000, "2026-11-23T14:05:02.000Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (4_102_444_799_999, "2099-12-31T23:59:59.999Z"),
            (1_795_442_701_000, "2026-11-23T14:05:01.000Z"),
        ] {
            assert_eq!(rfc3339_string(UNIX_EPOCH + Duration::from_millis(ms)), text);
        }
    }

    #[test]
    fn writes_rotates_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/traffic.log");
        let log = TrafficLog::start(TrafficLogSettings {
            path: path.clone(),
            max_size: Some(1000),
            keep: 2,
            queue: 1024,
        })
        .unwrap();
        for _ in 0..20 {
            log.log(line(200));
        }
        log.flush(Duration::from_secs(10)); // answered once every line before it is written
        drop(log);
        let current = std::fs::read_to_string(&path).unwrap();
        let one = std::fs::read_to_string(path.with_extension("log.1")).unwrap();
        assert!(current.len() <= 1000 && one.len() <= 1000);
        assert!(std::fs::metadata(path.with_extension("log.3")).is_err());
        for l in one.lines().chain(current.lines()) {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["status"], 200);
        }
    }

    #[test]
    fn lines_that_cannot_be_written_are_counted_as_dropped() {
        // Every write to /dev/full fails with ENOSPC, as on a full disk.
        let log = TrafficLog::start(TrafficLogSettings {
            path: PathBuf::from("/dev/full"),
            max_size: None,
            keep: 0,
            queue: 1024,
        })
        .unwrap();
        for _ in 0..7 {
            log.log(line(200));
        }
        log.flush(Duration::from_secs(10));
        assert_eq!(log.dropped(), 7);
        log.log(line(500));
        log.flush(Duration::from_secs(10));
        assert_eq!(log.dropped(), 8);
    }
}
