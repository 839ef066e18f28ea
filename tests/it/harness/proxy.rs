//! A TCP fault proxy between the relay and a broker, for the chaos tests.
//!
//! Every harness broker has a `PROXIED` listener that advertises this
//! proxy's port, so a client that bootstraps through the proxy keeps talking
//! through it (metadata points back at the proxy), while the tests' own
//! checker uses the direct listener. Faults apply to live and new
//! connections alike:
//! - blackhole: bytes stop flowing both ways (held, like packets on a cut
//!   link); connections stay open, so clients run into their own timeouts;
//! - reset: every live connection is closed with an RST;
//! - latency (plus jitter) per forwarded chunk, and a bandwidth cap: a
//!   stalling link, each chunk waits before the next is read;
//! - a long link (`link`): a one-way delay that chunks spend in flight
//!   while the next ones follow (a wide-area link, for the benchmarks),
//!   with an in-flight window and modelled packet loss (see [`Link`]).
//!
//! Plain threads, four per connection: a test proxy needs no executor.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The faults in force.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    pub blackhole: bool,
    pub latency: Duration,
    /// Added to `latency`, uniformly drawn from 0..jitter per chunk.
    pub jitter: Duration,
    pub bytes_per_sec: Option<u64>,
    pub link: Link,
}

/// A long link, each direction alike. netem would be the real thing; this
/// machine's kernel has no `sch_netem`, so the proxy models what matters
/// to throughput:
/// - `one_way`: each chunk is written out that long after it was read,
///   while later chunks follow (a chunk read at `t` leaves at `t + one_way`,
///   in order);
/// - `window`: at most this many bytes in flight per direction and
///   connection, as a TCP receive window bounds them (Linux's default
///   `tcp_rmem` maximum is 6 MiB): one connection carries at most
///   `window / RTT`;
/// - `loss`: each 1448-byte packet of a chunk is lost with this
///   probability. A loss costs what it costs TCP: the chunk and everything
///   after it on the connection wait one more round trip (the
///   retransmission; the receiver delivers in order), and the window
///   halves (at least 64 KiB), then grows back by one packet per round
///   trip (Reno's congestion avoidance; CUBIC regrows faster, so the
///   figures under loss are a pessimistic bound).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    pub one_way: Duration,
    pub window: u64,
    pub loss: f64,
}

impl Default for Link {
    /// Loopback: no delay, no loss (the window never fills).
    fn default() -> Link {
        Link {
            one_way: Duration::ZERO,
            window: 6 << 20,
            loss: 0.0,
        }
    }
}

const PACKET: u64 = 1448;
const MIN_WINDOW: u64 = 64 << 10;

struct Shared {
    upstream: SocketAddr,
    faults: Mutex<Faults>,
    live: Mutex<Vec<TcpStream>>,
}

impl Shared {
    fn faults(&self) -> Faults {
        *self.faults.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct FaultProxy {
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Listens on 127.0.0.1:`port` and forwards to `upstream`.
    pub fn start(port: u16, upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("proxy cannot listen on {port}: {e}"));
        let shared = Arc::new(Shared {
            upstream,
            faults: Mutex::new(Faults::default()),
            live: Mutex::new(Vec::new()),
        });
        let accept_shared = shared.clone();
        std::thread::Builder::new()
            .name(format!("proxy-{port}"))
            .spawn(move || {
                for client in listener.incoming().flatten() {
                    let shared = accept_shared.clone();
                    std::thread::spawn(move || connect(client, &shared));
                }
            })
            .expect("proxy thread");
        FaultProxy { shared }
    }

    pub fn set(&self, faults: Faults) {
        *self.shared.faults.lock().unwrap_or_else(|p| p.into_inner()) = faults;
    }

    pub fn clear(&self) {
        self.set(Faults::default());
    }

    /// Closes every live connection with an RST; returns how many sockets.
    pub fn reset_connections(&self) -> usize {
        let live = std::mem::take(&mut *self.shared.live.lock().unwrap_or_else(|p| p.into_inner()));
        for socket in &live {
            reset(socket);
        }
        live.len()
    }
}

fn connect(client: TcpStream, shared: &Arc<Shared>) {
    let Ok(server) = TcpStream::connect_timeout(&shared.upstream, Duration::from_secs(5)) else {
        reset(&client);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (
        client.try_clone(),
        server.try_clone(),
        client.try_clone(),
        server.try_clone(),
    ) else {
        return;
    };
    shared
        .live
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .extend([c3, s3]);
    let up = shared.clone();
    std::thread::spawn(move || pump(client, server, up));
    pump(s2, c2, shared.clone());
}

/// One direction: chunks read from `from` go through the stall faults, then
/// through the link (`InFlight`) to a thread that writes them to `to`.
fn pump(mut from: TcpStream, to: TcpStream, shared: Arc<Shared>) {
    let in_flight = Arc::new(InFlight::default());
    let writer = {
        let (in_flight, shared) = (in_flight.clone(), shared.clone());
        std::thread::spawn(move || deliver(to, &in_flight, &shared))
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        loop {
            let f = shared.faults();
            if !f.blackhole {
                let jitter = if f.jitter.is_zero() {
                    Duration::ZERO
                } else {
                    f.jitter.mul_f64(rand::random::<f64>())
                };
                let throttle = f.bytes_per_sec.map_or(Duration::ZERO, |rate| {
                    Duration::from_secs_f64(n as f64 / rate.max(1) as f64)
                });
                std::thread::sleep(f.latency + jitter + throttle);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if !in_flight.send(buf[..n].to_vec(), shared.faults().link) {
            break;
        }
    }
    in_flight.close();
    let _ = writer.join();
}

/// Writes each chunk once it is due; holds them while blackholed.
fn deliver(mut to: TcpStream, in_flight: &InFlight, shared: &Shared) {
    while let Some((due, chunk)) = in_flight.next() {
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        while shared.faults().blackhole {
            std::thread::sleep(Duration::from_millis(20));
        }
        let written = to.write_all(&chunk);
        in_flight.delivered(chunk.len() as u64, shared.faults().link.one_way);
        if written.is_err() {
            in_flight.close();
            return;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// The chunks on the link of one direction, oldest first.
#[derive(Default)]
struct InFlight {
    state: Mutex<LinkState>,
    changed: Condvar,
}

#[derive(Default)]
struct LinkState {
    chunks: VecDeque<(Instant, Vec<u8>)>,
    /// Delivered chunks whose acknowledgement is still on its way back:
    /// when it arrives and how many bytes it frees.
    acks: VecDeque<(Instant, u64)>,
    /// Bytes sent and not yet acknowledged.
    bytes: u64,
    /// The congestion window after losses; `None`: the link's window.
    cwnd: Option<u64>,
    last_growth: Option<Instant>,
    /// No chunk leaves before this (the retransmission a loss waits for).
    not_before: Option<Instant>,
    closed: bool,
}

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, LinkState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts `chunk` on the link once the window has room; false when the
    /// other side is gone.
    fn send(&self, chunk: Vec<u8>, link: Link) -> bool {
        let len = chunk.len() as u64;
        let rtt = link.one_way * 2;
        let mut state = self.lock();
        loop {
            if state.closed {
                return false;
            }
            let now = Instant::now();
            while let Some(&(at, freed)) = state.acks.front() {
                if at > now {
                    break;
                }
                state.acks.pop_front();
                state.bytes = state.bytes.saturating_sub(freed);
            }
            if let (Some(cwnd), Some(last)) = (state.cwnd, state.last_growth) {
                // One packet more per round trip since the last growth.
                let rounds = now.duration_since(last).as_secs_f64() / rtt.as_secs_f64().max(1e-3);
                if rounds >= 1.0 {
                    let grown = cwnd + PACKET * rounds as u64;
                    state.cwnd = (grown < link.window).then_some(grown);
                    state.last_growth = Some(now);
                }
            }
            let window = state.cwnd.unwrap_or(link.window).max(len);
            if state.bytes == 0 || state.bytes + len <= window {
                break;
            }
            state = self
                .changed
                .wait_timeout(state, Duration::from_millis(5))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let now = Instant::now();
        let mut due = now + link.one_way;
        let packets = len.div_ceil(PACKET) as i32;
        if link.loss > 0.0 && rand::random::<f64>() < 1.0 - (1.0 - link.loss).powi(packets) {
            due += rtt;
            state.not_before = Some(due);
            state.cwnd = Some((state.cwnd.unwrap_or(link.window) / 2).max(MIN_WINDOW));
            state.last_growth = Some(now);
        }
        // In order, as TCP delivers: nothing overtakes a retransmission.
        let due = state.not_before.map_or(due, |nb| due.max(nb));
        state.bytes += len;
        state.chunks.push_back((due, chunk));
        self.changed.notify_all();
        true
    }

    /// The next chunk and when it is due; `None` once closed and empty.
    fn next(&self) -> Option<(Instant, Vec<u8>)> {
        let mut state = self.lock();
        loop {
            if let Some(chunk) = state.chunks.pop_front() {
                return Some(chunk);
            }
            if state.closed {
                return None;
            }
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// `len` bytes reached the other side; their acknowledgement takes
    /// `one_way` to come back.
    fn delivered(&self, len: u64, one_way: Duration) {
        let mut state = self.lock();
        state.acks.push_back((Instant::now() + one_way, len));
        self.changed.notify_all();
    }

    fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }
}

/// Closes `socket` with an RST rather than a FIN (SO_LINGER with timeout 0).
fn reset(socket: &TcpStream) {
    use std::os::fd::AsRawFd as _;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket this process owns, with a correctly sized value.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    let _ = socket.shutdown(Shutdown::Both);
}
