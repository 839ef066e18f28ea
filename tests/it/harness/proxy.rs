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
//! - latency (plus jitter) per forwarded chunk, and a bandwidth cap.
//!
//! Plain threads, two per connection: a test proxy needs no executor.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The faults in force.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    pub blackhole: bool,
    pub latency: Duration,
    /// Added to `latency`, uniformly drawn from 0..jitter per chunk.
    pub jitter: Duration,
    pub bytes_per_sec: Option<u64>,
}

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
    std::thread::spawn(move || pump(client, server, &up));
    pump(s2, c2, shared);
}

fn pump(mut from: TcpStream, mut to: TcpStream, shared: &Shared) {
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
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
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
