//! Published ports: kernel NAT rules (nftables, via the executor) plus a
//! userland proxy so `127.0.0.1:hostPort` works too.
//!
//! The proxy's listening socket is the port's reservation, as with Docker's
//! docker-proxy: a port is taken from the moment `publish` binds it until
//! `unpublish` closes it, so two containers can never get the same one. TCP
//! connections are relayed with splice(2) (socket → pipe → socket, no copy
//! through user space) on two threads per connection; UDP keeps a flow per
//! client address that expires after 90 idle seconds, as docker-proxy does.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use berth_model::network::{FirewallRule, PortBinding, PortMap};

use super::NetError;

/// One published port, as asked (`host_port` 0: pick a free one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortRequest {
    /// `tcp` or `udp` (`sctp` parses, as in Docker, but cannot be proxied).
    pub proto: String,
    /// `None`: every address.
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    /// `Some(end)`: any free host port in `host_port..=end` (Docker's
    /// `-p 8000-8010:80`, one container port with a host port range).
    pub host_port_end: Option<u16>,
    pub container_port: u16,
}

/// One published port as set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishedPort {
    pub proto: String,
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_ip: Ipv4Addr,
    pub container_port: u16,
}

/// How long a UDP flow without traffic in either direction lives
/// (docker-proxy's UDPConnTrackTimeout).
const UDP_FLOW_TIMEOUT: Duration = Duration::from_secs(90);
/// How often blocked proxy threads look at their stop flag even when no
/// shutdown(2) woke them.
const POLL: Duration = Duration::from_secs(1);
/// Connecting to the container gives up after this (a stopped container's
/// address may not answer at all).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The pipe between the two sockets of a spliced TCP direction.
const PIPE_SIZE: usize = 1 << 20;

fn invalid(msg: impl Into<String>) -> NetError {
    NetError::Invalid(msg.into())
}

/// Parses Docker's `-p` forms: `80`, `8080:80`, `127.0.0.1:8080:80`,
/// `127.0.0.1::80`, `[::1]:8080:80`, `8000-8001:80-81`, `8000-8010:80`,
/// each with `/tcp`, `/udp` or `/sctp`. Errors are Docker's
/// (`invalid containerPort: x`, `invalid hostPort: x`, ...).
pub fn parse_publish(spec: &str) -> Result<Vec<PortRequest>, NetError> {
    // Docker splits on ':' from the right: the last part is the container
    // port, the one before it the host port, everything before that the IP.
    let parts: Vec<&str> = spec.split(':').collect();
    let n = parts.len();
    let (ip, host, container) = match n {
        1 => ("".to_string(), "", parts[0]),
        2 => ("".to_string(), parts[0], parts[1]),
        _ => (parts[..n - 2].join(":"), parts[n - 2], parts[n - 1]),
    };
    let (proto, container) = split_proto(container);
    let host_ip = parse_host_ip(&ip)?;
    if container.is_empty() {
        return Err(invalid(format!("no port specified: {spec}<empty>")));
    }
    let (start, end) = parse_range(container).ok_or_else(|| invalid(format!("invalid containerPort: {container}")))?;
    if start == 0 {
        return Err(invalid(format!("invalid containerPort: {container}")));
    }
    let host_range = if host.is_empty() {
        None
    } else {
        Some(parse_range(host).ok_or_else(|| invalid(format!("invalid hostPort: {host}")))?)
    };
    if let Some((hs, he)) = host_range {
        // A host range with a single container port is a range to pick from.
        if end - start != he - hs && end != start {
            return Err(invalid(format!(
                "invalid ranges specified for container and host Ports: {container} and {host}"
            )));
        }
    }
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(invalid(format!("invalid proto: {proto}")));
    }
    let mut out = Vec::new();
    for i in 0..=(end - start) {
        let (host_port, host_port_end) = match host_range {
            None => (0, None),
            Some((hs, he)) if start == end && hs != he => (hs, Some(he)),
            Some((hs, _)) => (hs + i, None),
        };
        out.push(PortRequest { proto: proto.clone(), host_ip, host_port, host_port_end, container_port: start + i });
    }
    Ok(out)
}

/// Docker's SplitProtoPort: `80/udp` → (`udp`, `80`); no or empty proto is tcp.
fn split_proto(raw: &str) -> (&str, &str) {
    let mut parts = raw.split('/');
    let port = parts.next().unwrap_or("");
    if port.is_empty() {
        return ("", "");
    }
    match parts.next() {
        None | Some("") => ("tcp", port),
        Some(proto) => (proto, port),
    }
}

/// `80` or `80-90` (end ≥ start), each 0-65535.
fn parse_range(text: &str) -> Option<(u16, u16)> {
    match text.split_once('-') {
        None => text.parse().ok().map(|p| (p, p)),
        Some((a, b)) => {
            let (a, b): (u16, u16) = (a.parse().ok()?, b.parse().ok()?);
            (b >= a).then_some((a, b))
        }
    }
}

/// The IP part of `-p`: empty, an IPv4 address, or an IPv6 one in brackets.
fn parse_host_ip(ip: &str) -> Result<Option<IpAddr>, NetError> {
    if ip.is_empty() {
        return Ok(None);
    }
    let bare = match ip.strip_prefix('[') {
        Some(rest) => {
            rest.strip_suffix(']').ok_or_else(|| invalid(format!("invalid IP address {ip}: missing ']' in address")))?
        }
        None => ip,
    };
    let addr: IpAddr = bare.parse().map_err(|_| invalid(format!("invalid IP address: {bare}")))?;
    Ok(Some(addr))
}

/// `80/tcp`: how Docker keys ports (ExposedPorts, PortBindings, Ports).
pub fn port_key(proto: &str, port: u16) -> String {
    format!("{port}/{proto}")
}

/// Parses a port key (`80/tcp`, `53/udp`, `80` meaning tcp).
pub fn parse_port_key(key: &str) -> Result<(u16, String), NetError> {
    let (proto, port) = split_proto(key);
    let port: u16 = port.parse().map_err(|_| invalid(format!("invalid port {key:?}: want PORT[/PROTO]")))?;
    let proto = proto.to_ascii_lowercase();
    if port == 0 || !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(invalid(format!("invalid port {key:?}: want PORT[/tcp|udp|sctp] with PORT 1-65535")));
    }
    Ok((port, proto))
}

/// What `run -p` sends as `HostConfig.PortBindings` (Docker's CLI format:
/// empty HostIp/HostPort for "any"/"pick one", `8000-8010` for a range).
pub fn requests_to_port_map(requests: &[PortRequest]) -> PortMap {
    let mut map = PortMap::new();
    for r in requests {
        let host_port = match (r.host_port, r.host_port_end) {
            (0, _) => String::new(),
            (p, Some(end)) => format!("{p}-{end}"),
            (p, None) => p.to_string(),
        };
        let host_ip = r.host_ip.map(|ip| ip.to_string()).unwrap_or_default();
        map.entry(port_key(&r.proto, r.container_port))
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding { host_ip, host_port });
    }
    map
}

/// The requests a container's `HostConfig.PortBindings` stand for (the API
/// may send any of Docker's spellings: empty or `0` host port, `0.0.0.0`).
pub fn requests_from_port_map(map: &PortMap) -> Result<Vec<PortRequest>, NetError> {
    let mut out = Vec::new();
    for (key, bindings) in map {
        let (container_port, proto) = parse_port_key(key)?;
        let bindings = bindings.as_deref().unwrap_or(&[]);
        let default = [PortBinding::default()];
        // A key with no bindings still publishes, on a random port.
        let bindings = if bindings.is_empty() { &default[..] } else { bindings };
        for b in bindings {
            let host_ip = match b.host_ip.trim() {
                "" => None,
                ip => Some(parse_host_ip(ip)?.ok_or_else(|| invalid(format!("invalid IP address: {ip}")))?),
            };
            let host = b.host_port.trim();
            let (host_port, host_port_end) = if host.is_empty() {
                (0, None)
            } else {
                let (s, e) = parse_range(host).ok_or_else(|| invalid(format!("invalid hostPort: {host}")))?;
                (s, (e != s).then_some(e))
            };
            out.push(PortRequest { proto: proto.clone(), host_ip, host_port, host_port_end, container_port });
        }
    }
    Ok(out)
}

/// `NetworkSettings.Ports`: every exposed port (`80/tcp` keys), with its
/// host bindings when published, `null` when only exposed.
pub fn ports_settings(published: &[PublishedPort], exposed: &[String]) -> PortMap {
    let mut map = PortMap::new();
    for key in exposed {
        if let Ok((port, proto)) = parse_port_key(key) {
            map.insert(port_key(&proto, port), None);
        }
    }
    for p in published {
        let host_ip = p.host_ip.map(|ip| ip.to_string()).unwrap_or_else(|| "0.0.0.0".to_string());
        map.entry(port_key(&p.proto, p.container_port))
            .or_insert(None)
            .get_or_insert_with(Vec::new)
            .push(PortBinding { host_ip, host_port: p.host_port.to_string() });
    }
    map
}

/// The NAT rules that publish `port`: DNAT of `host_ip:host_port` (external
/// traffic in prerouting, the host's own non-loopback traffic in output).
/// Loopback goes to the userland proxy; hairpin masquerade comes with the
/// network's `Masquerade` rule. An IPv6 host address gets no rule (the
/// table is IPv4; the proxy serves it).
pub fn nat_rules(port: &PublishedPort) -> Vec<FirewallRule> {
    let host_ip = match port.host_ip {
        Some(IpAddr::V6(_)) => return Vec::new(),
        Some(IpAddr::V4(ip)) if !ip.is_unspecified() => Some(ip.to_string()),
        _ => None,
    };
    vec![FirewallRule::PortForward {
        proto: port.proto.clone(),
        host_ip,
        host_port: port.host_port,
        container_ip: port.container_ip.to_string(),
        container_port: port.container_port,
    }]
}

/// Userland proxies and port reservations of running containers.
#[derive(Default)]
pub struct PortPublisher {
    state: Mutex<PublisherState>,
}

#[derive(Default)]
struct PublisherState {
    proxies: HashMap<String, Vec<Proxy>>,
    /// The last host port picked for `host_port` 0, per protocol: Docker
    /// hands out the ephemeral range in order rather than at random.
    last_picked: HashMap<String, u16>,
}

impl PortPublisher {
    /// Binds every requested host port (reserving it; a taken port is
    /// `NetError::PortInUse` with Docker's message and nothing stays bound),
    /// picks free ports for `host_port` 0, and starts a proxy per port to
    /// `container_ip`. Returns what was published.
    pub fn publish(
        &self,
        container_id: &str,
        container_ip: Ipv4Addr,
        ports: &[PortRequest],
    ) -> Result<Vec<PublishedPort>, NetError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // Bind everything first; dropping `reserved` on error frees them all.
        let mut reserved = Vec::with_capacity(ports.len());
        for req in ports {
            if req.proto == "sctp" {
                return Err(invalid(format!(
                    "cannot publish {}/sctp: berth publishes tcp and udp ports only",
                    req.container_port
                )));
            }
            let socket = reserve(req, &mut state.last_picked)?;
            let host_port = socket.local_port()?;
            let port = PublishedPort {
                proto: req.proto.clone(),
                host_ip: req.host_ip.filter(|ip| !ip.is_unspecified()),
                host_port,
                container_ip,
                container_port: req.container_port,
            };
            reserved.push((socket, port));
        }
        let mut started = Vec::with_capacity(reserved.len());
        for (socket, port) in reserved {
            match Proxy::start(socket, port) {
                Ok(proxy) => started.push(proxy),
                Err(e) => {
                    started.into_iter().for_each(Proxy::stop);
                    return Err(e);
                }
            }
        }
        let published = started.iter().map(|p| p.port.clone()).collect();
        state.proxies.entry(container_id.to_string()).or_default().extend(started);
        Ok(published)
    }

    /// Re-creates the proxies of a running container after a daemon restart
    /// (the kernel's NAT rules survived; the old daemon's sockets did not).
    /// Replaces proxies the container still has here. Ports that cannot be
    /// bound again are reported; the others are served.
    pub fn readopt(&self, container_id: &str, ports: &[PublishedPort]) -> Result<(), NetError> {
        self.unpublish(container_id);
        let mut started = Vec::new();
        let mut failed = Vec::new();
        for port in ports {
            let req = PortRequest {
                proto: port.proto.clone(),
                host_ip: port.host_ip,
                host_port: port.host_port,
                host_port_end: None,
                container_port: port.container_port,
            };
            let mut scratch = HashMap::new();
            match reserve(&req, &mut scratch).and_then(|s| Proxy::start(s, port.clone())) {
                Ok(proxy) => started.push(proxy),
                Err(e) => failed.push(e.to_string()),
            }
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.proxies.entry(container_id.to_string()).or_default().extend(started);
        if failed.is_empty() {
            Ok(())
        } else {
            Err(NetError::PortInUse(format!(
                "container {container_id}: cannot publish again after the daemon restart: {}",
                failed.join("; ")
            )))
        }
    }

    /// Stops the container's proxies and frees its ports (they are free
    /// when this returns).
    pub fn unpublish(&self, container_id: &str) {
        let proxies = self.state.lock().unwrap_or_else(|e| e.into_inner()).proxies.remove(container_id);
        proxies.into_iter().flatten().for_each(Proxy::stop);
    }

    /// The ports published for `container_id` now.
    pub fn published(&self, container_id: &str) -> Vec<PublishedPort> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.proxies.get(container_id).map(|ps| ps.iter().map(|p| p.port.clone()).collect()).unwrap_or_default()
    }
}

impl Drop for PortPublisher {
    fn drop(&mut self) {
        let state = std::mem::take(&mut *self.state.lock().unwrap_or_else(|e| e.into_inner()));
        state.proxies.into_values().flatten().for_each(Proxy::stop);
    }
}

/// A bound (reserved) host port.
enum Reserved {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

impl Reserved {
    fn local_port(&self) -> Result<u16, NetError> {
        let addr = match self {
            Reserved::Tcp(l) => l.local_addr(),
            Reserved::Udp(s) => s.local_addr(),
        };
        addr.map(|a| a.port()).map_err(|e| NetError::io("reading a published port's address", e))
    }
}

fn bind(proto: &str, addr: SocketAddr) -> io::Result<Reserved> {
    if proto == "udp" {
        UdpSocket::bind(addr).map(Reserved::Udp)
    } else {
        // std sets SO_REUSEADDR, so a port in TIME_WAIT from an earlier
        // container binds again, while a listening one does not.
        TcpListener::bind(addr).map(Reserved::Tcp)
    }
}

/// Binds one asked-for port. A port freed a moment ago may still be held by
/// a child process the daemon is forking (its copy of the fd lives until
/// exec closes it), so a lone port gets a few short retries before it
/// counts as taken.
fn bind_explicit(proto: &str, addr: SocketAddr, retry: bool) -> io::Result<Reserved> {
    let mut delay = Duration::from_millis(5);
    loop {
        match bind(proto, addr) {
            Err(e) if retry && e.kind() == io::ErrorKind::AddrInUse && delay <= Duration::from_millis(40) => {
                std::thread::sleep(delay);
                delay *= 2;
            }
            other => return other,
        }
    }
}

/// Binds the port `req` asks for: the given one, the first free one of a
/// range, or the next free one of the ephemeral range.
fn reserve(req: &PortRequest, last_picked: &mut HashMap<String, u16>) -> Result<Reserved, NetError> {
    let ip = req.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let shown = |port: &str| match ip {
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
        IpAddr::V4(v4) => format!("{v4}:{port}"),
    };
    let refuse = |port: &str, e: io::Error| -> NetError {
        if e.kind() == io::ErrorKind::AddrInUse {
            NetError::PortInUse(format!("Bind for {} failed: port is already allocated", shown(port)))
        } else {
            let family = if ip.is_ipv4() { "tcp4" } else { "tcp6" };
            let family = if req.proto == "udp" { family.replace("tcp", "udp") } else { family.to_string() };
            NetError::io(format!("Error starting userland proxy: listen {family} {}", shown(port)), e)
        }
    };
    if req.host_port != 0 {
        let end = req.host_port_end.unwrap_or(req.host_port);
        let mut last_err = None;
        for port in req.host_port..=end {
            let single = end == req.host_port;
            match bind_explicit(&req.proto, SocketAddr::new(ip, port), single) {
                Ok(s) => return Ok(s),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => last_err = Some(e),
                Err(e) => return Err(refuse(&port.to_string(), e)),
            }
        }
        let range = if end == req.host_port { end.to_string() } else { format!("{}-{end}", req.host_port) };
        return Err(refuse(&range, last_err.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrInUse))));
    }
    let (lo, hi) = ephemeral_range();
    let last = last_picked.get(&req.proto).copied().unwrap_or(hi);
    let span = u32::from(hi - lo) + 1;
    for step in 1..=span {
        let port = lo + ((u32::from(last.clamp(lo, hi) - lo) + step) % span) as u16;
        match bind(&req.proto, SocketAddr::new(ip, port)) {
            Ok(s) => {
                last_picked.insert(req.proto.clone(), port);
                return Ok(s);
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(refuse(&port.to_string(), e)),
        }
    }
    Err(NetError::Exhausted(format!(
        "all ports are allocated: no free {} port in {lo}-{hi} on {}",
        req.proto,
        shown("*")
    )))
}

/// The kernel's ephemeral port range (`net.ipv4.ip_local_port_range`),
/// which Docker allocates random host ports from.
fn ephemeral_range() -> (u16, u16) {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut it = text.split_whitespace().filter_map(|v| v.parse::<u16>().ok());
    match (it.next(), it.next()) {
        (Some(lo), Some(hi)) if lo > 0 && lo <= hi => (lo, hi),
        _ => (32768, 60999),
    }
}

/// One running proxy: its listening socket (the reservation) and threads.
struct Proxy {
    port: PublishedPort,
    stop: Arc<AtomicBool>,
    /// The listening/receiving socket's fd, for shutdown(2) to wake its thread.
    socket_fd: RawFd,
    thread: Option<JoinHandle<()>>,
    /// Open TCP connections (both sockets), shut down on stop.
    conns: Arc<Mutex<HashMap<u64, [Arc<TcpStream>; 2]>>>,
}

impl Proxy {
    fn start(socket: Reserved, port: PublishedPort) -> Result<Proxy, NetError> {
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<HashMap<u64, [Arc<TcpStream>; 2]>>> = Arc::default();
        let backend = SocketAddr::new(IpAddr::V4(port.container_ip), port.container_port);
        let name = format!("proxy-{}-{}", port.proto, port.host_port);
        let (socket_fd, thread) = match socket {
            Reserved::Tcp(listener) => {
                let fd = listener.as_raw_fd();
                let (stop, conns) = (stop.clone(), conns.clone());
                let t = std::thread::Builder::new().name(name).spawn(move || serve_tcp(listener, backend, stop, conns));
                (fd, t)
            }
            Reserved::Udp(socket) => {
                let fd = socket.as_raw_fd();
                let stop = stop.clone();
                let t = std::thread::Builder::new().name(name).spawn(move || serve_udp(socket, backend, stop));
                (fd, t)
            }
        };
        let thread =
            thread.map_err(|e| NetError::io(format!("starting the proxy for host port {}", port.host_port), e))?;
        Ok(Proxy { port, stop, socket_fd, thread: Some(thread), conns })
    }

    /// Stops the proxy; the port is free and every relayed connection is
    /// closed when this returns.
    fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes accept(2)/recvfrom(2) blocked on the socket. The fd is still
        // open: the thread owns the socket and closes it when it returns.
        // SAFETY: shutdown on an fd we own; no memory is involved.
        unsafe { libc::shutdown(self.socket_fd, libc::SHUT_RDWR) };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let conns: Vec<_> = self.conns.lock().unwrap_or_else(|e| e.into_inner()).drain().collect();
        for (_, pair) in conns {
            for s in pair {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop.store(true, Ordering::SeqCst);
            // SAFETY: as in stop(); the accept thread still owns the fd.
            unsafe { libc::shutdown(self.socket_fd, libc::SHUT_RDWR) };
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }
}

fn serve_tcp(
    listener: TcpListener,
    backend: SocketAddr,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<HashMap<u64, [Arc<TcpStream>; 2]>>>,
) {
    let mut next_id = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(_) if stop.load(Ordering::SeqCst) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted || e.kind() == io::ErrorKind::ConnectionAborted => {
                continue
            }
            Err(e) => {
                // Out of fds or memory: back off instead of spinning.
                tracing::warn!("port proxy to {backend}: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        next_id += 1;
        let (id, conns, stop) = (next_id, conns.clone(), stop.clone());
        let spawned = std::thread::Builder::new()
            .name("proxy-conn".into())
            .spawn(move || relay_tcp(id, client, backend, &conns, &stop));
        if let Err(e) = spawned {
            tracing::warn!("port proxy to {backend}: cannot start a connection thread: {e}");
        }
    }
}

fn relay_tcp(
    id: u64,
    client: TcpStream,
    backend: SocketAddr,
    conns: &Mutex<HashMap<u64, [Arc<TcpStream>; 2]>>,
    stop: &AtomicBool,
) {
    let server = match TcpStream::connect_timeout(&backend, CONNECT_TIMEOUT) {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!("port proxy: cannot connect to {backend}: {e}");
            return;
        }
    };
    // Go (docker-proxy) sets TCP_NODELAY on every connection; request and
    // response traffic must not wait for Nagle.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client, server) = (Arc::new(client), Arc::new(server));
    {
        let mut map = conns.lock().unwrap_or_else(|e| e.into_inner());
        // stop() may have drained the map just before this insert.
        if stop.load(Ordering::SeqCst) {
            return;
        }
        map.insert(id, [client.clone(), server.clone()]);
    }
    let (c2, s2) = (client.clone(), server.clone());
    let back = std::thread::Builder::new().name("proxy-conn".into()).spawn(move || pump(&s2, &c2));
    pump(&client, &server);
    if let Ok(t) = back {
        let _ = t.join();
    }
    conns.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
}

/// Moves bytes `from` → `to` until EOF, then half-closes `to`. On an error
/// both sockets are shut down so the other direction ends too.
fn pump(from: &TcpStream, to: &TcpStream) {
    let result = splice_all(from, to).or_else(|e| match e {
        SpliceError::Unsupported => copy_all(from, to),
        SpliceError::Io(e) => Err(e),
    });
    match result {
        Ok(()) => {
            let _ = to.shutdown(std::net::Shutdown::Write);
        }
        Err(_) => {
            let _ = from.shutdown(std::net::Shutdown::Both);
            let _ = to.shutdown(std::net::Shutdown::Both);
        }
    }
}

enum SpliceError {
    /// splice(2) does not work for these fds and nothing was moved yet.
    Unsupported,
    Io(io::Error),
}

fn splice_all(from: &TcpStream, to: &TcpStream) -> Result<(), SpliceError> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two fds into the array we pass.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(SpliceError::Unsupported);
    }
    // SAFETY: pipe2 succeeded; both fds are ours alone.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // A bigger pipe means fewer syscalls per byte; the default 64 KiB works too.
    // SAFETY: fcntl on a pipe fd we own.
    let size = unsafe { libc::fcntl(wr.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE as libc::c_int) };
    let chunk = if size > 0 { size as usize } else { 1 << 16 };
    let splice = |src: RawFd, dst: RawFd, len: usize| -> io::Result<usize> {
        loop {
            // SAFETY: splice between fds we hold; null offsets (sockets and pipes).
            let n =
                unsafe { libc::splice(src, std::ptr::null_mut(), dst, std::ptr::null_mut(), len, libc::SPLICE_F_MOVE) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    };
    let mut moved_any = false;
    loop {
        let n = match splice(from.as_raw_fd(), wr.as_raw_fd(), chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if !moved_any && e.raw_os_error() == Some(libc::EINVAL) => return Err(SpliceError::Unsupported),
            Err(e) => return Err(SpliceError::Io(e)),
        };
        moved_any = true;
        let mut left = n;
        while left > 0 {
            match splice(rd.as_raw_fd(), to.as_raw_fd(), left) {
                Ok(0) => return Err(SpliceError::Io(io::Error::from(io::ErrorKind::WriteZero))),
                Ok(m) => left -= m,
                Err(e) => return Err(SpliceError::Io(e)),
            }
        }
    }
}

fn copy_all(mut from: &TcpStream, mut to: &TcpStream) -> io::Result<()> {
    io::copy(&mut from, &mut to).map(|_| ())
}

/// One UDP client of a published port: a socket connected to the container.
struct Flow {
    socket: Arc<UdpSocket>,
    last: Arc<AtomicU64>,
    thread: JoinHandle<()>,
}

fn serve_udp(listener: UdpSocket, backend: SocketAddr, stop: Arc<AtomicBool>) {
    let listener = Arc::new(listener);
    let _ = listener.set_read_timeout(Some(POLL));
    let started = Instant::now();
    let now = move || started.elapsed().as_millis() as u64;
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    let mut buf = vec![0u8; 65_535];
    while !stop.load(Ordering::SeqCst) {
        let received = listener.recv_from(&mut buf);
        if stop.load(Ordering::SeqCst) {
            break;
        }
        // Expired flows have ended their threads; collect them.
        flows.retain(|_, f| !f.thread.is_finished());
        let (len, client) = match received {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => {
                tracing::debug!("udp proxy to {backend}: {e}");
                continue;
            }
        };
        if !flows.contains_key(&client) {
            match open_flow(&listener, client, backend, &stop, now) {
                Ok(flow) => {
                    flows.insert(client, flow);
                }
                Err(e) => {
                    tracing::debug!("udp proxy: cannot open a flow to {backend} for {client}: {e}");
                    continue;
                }
            }
        }
        if let Some(flow) = flows.get(&client) {
            flow.last.store(now(), Ordering::Relaxed);
            let _ = flow.socket.send(&buf[..len]);
        }
    }
    for (_, flow) in flows.drain() {
        // UdpSocket has no shutdown(); the syscall still wakes the flow's recv.
        // SAFETY: shutdown on an fd the flow's socket keeps open.
        unsafe { libc::shutdown(flow.socket.as_raw_fd(), libc::SHUT_RDWR) };
        let _ = flow.thread.join();
    }
}

fn open_flow(
    listener: &Arc<UdpSocket>,
    client: SocketAddr,
    backend: SocketAddr,
    stop: &Arc<AtomicBool>,
    now: impl Fn() -> u64 + Send + 'static,
) -> io::Result<Flow> {
    let socket = UdpSocket::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0))?;
    socket.connect(backend)?;
    socket.set_read_timeout(Some(POLL))?;
    let socket = Arc::new(socket);
    let last = Arc::new(AtomicU64::new(now()));
    let (sock, reply_to, seen, stop) = (socket.clone(), listener.clone(), last.clone(), stop.clone());
    let thread = std::thread::Builder::new().name("proxy-udp-flow".into()).spawn(move || {
        let mut buf = vec![0u8; 65_535];
        while !stop.load(Ordering::SeqCst) {
            match sock.recv(&mut buf) {
                Ok(n) => {
                    seen.store(now(), Ordering::Relaxed);
                    let _ = reply_to.send_to(&buf[..n], client);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                    ) => {}
                // ICMP port unreachable from the container: keep the flow, as docker-proxy does.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(_) => break,
            }
            if now().saturating_sub(seen.load(Ordering::Relaxed)) > UDP_FLOW_TIMEOUT.as_millis() as u64 {
                break;
            }
        }
    })?;
    Ok(Flow { socket, last, thread })
}

#[cfg(test)]
mod tests {
    use super::super::firewall::testns::in_private_netns;
    use super::*;
    use std::io::{Read, Write};

    fn req(host_ip: Option<&str>, host_port: u16, end: Option<u16>, container_port: u16, proto: &str) -> PortRequest {
        PortRequest {
            proto: proto.into(),
            host_ip: host_ip.map(|ip| ip.parse().unwrap()),
            host_port,
            host_port_end: end,
            container_port,
        }
    }

    #[test]
    fn parses_every_docker_form() {
        assert_eq!(parse_publish("80").unwrap(), vec![req(None, 0, None, 80, "tcp")]);
        assert_eq!(parse_publish("8080:80").unwrap(), vec![req(None, 8080, None, 80, "tcp")]);
        assert_eq!(parse_publish("8080:80/udp").unwrap(), vec![req(None, 8080, None, 80, "udp")]);
        assert_eq!(parse_publish("8080:80/UDP").unwrap(), vec![req(None, 8080, None, 80, "udp")]);
        assert_eq!(parse_publish("80/").unwrap(), vec![req(None, 0, None, 80, "tcp")]);
        assert_eq!(parse_publish("127.0.0.1:8080:80").unwrap(), vec![req(Some("127.0.0.1"), 8080, None, 80, "tcp")]);
        assert_eq!(parse_publish("127.0.0.1::80").unwrap(), vec![req(Some("127.0.0.1"), 0, None, 80, "tcp")]);
        assert_eq!(parse_publish("[::1]:8080:80").unwrap(), vec![req(Some("::1"), 8080, None, 80, "tcp")]);
        assert_eq!(parse_publish("[::]::53/udp").unwrap(), vec![req(Some("::"), 0, None, 53, "udp")]);
        // Without brackets, everything before the last two parts is the IP.
        assert_eq!(parse_publish("::1:8080:80").unwrap(), vec![req(Some("::1"), 8080, None, 80, "tcp")]);
        assert_eq!(
            parse_publish("8000-8001:80-81/udp").unwrap(),
            vec![req(None, 8000, None, 80, "udp"), req(None, 8001, None, 81, "udp")]
        );
        assert_eq!(parse_publish("80-81").unwrap(), vec![req(None, 0, None, 80, "tcp"), req(None, 0, None, 81, "tcp")]);
        assert_eq!(parse_publish("8000-8010:80").unwrap(), vec![req(None, 8000, Some(8010), 80, "tcp")]);
        assert_eq!(parse_publish("0.0.0.0:0:80").unwrap(), vec![req(Some("0.0.0.0"), 0, None, 80, "tcp")]);
        assert_eq!(parse_publish("9000:9000/sctp").unwrap(), vec![req(None, 9000, None, 9000, "sctp")]);
    }

    #[test]
    fn refuses_with_dockers_messages() {
        let err = |s: &str| parse_publish(s).expect_err(s).to_string();
        assert_eq!(err("abc"), "invalid containerPort: abc");
        assert_eq!(err("8080:abc"), "invalid containerPort: abc");
        assert_eq!(err("0"), "invalid containerPort: 0");
        assert_eq!(err("70000"), "invalid containerPort: 70000");
        assert_eq!(err("abc:80"), "invalid hostPort: abc");
        assert_eq!(err("90-80:80"), "invalid hostPort: 90-80");
        assert_eq!(err("1.2.3:8080:80"), "invalid IP address: 1.2.3");
        assert_eq!(err("[::1:8080:80"), "invalid IP address [::1: missing ']' in address");
        assert_eq!(err("8080:"), "no port specified: 8080:<empty>");
        assert_eq!(err("8080:80/icmp"), "invalid proto: icmp");
        assert_eq!(
            err("8000-8002:80-81"),
            "invalid ranges specified for container and host Ports: 80-81 and 8000-8002"
        );
    }

    #[test]
    fn port_maps_round_trip() {
        let mut reqs = parse_publish("127.0.0.1:8080:80").unwrap();
        reqs.extend(parse_publish("53/udp").unwrap());
        reqs.extend(parse_publish("8000-8010:90").unwrap());
        let map = requests_to_port_map(&reqs);
        let json = serde_json::to_value(&map).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}],
                "53/udp": [{"HostIp": "", "HostPort": ""}],
                "90/tcp": [{"HostIp": "", "HostPort": "8000-8010"}],
            })
        );
        let mut back = requests_from_port_map(&map).unwrap();
        let key = |r: &PortRequest| (r.container_port, r.proto.clone());
        back.sort_by_key(key);
        reqs.sort_by_key(key);
        assert_eq!(back, reqs);
        // Docker API spellings: "0" host port and an exposed key with null bindings.
        let api: PortMap = serde_json::from_value(serde_json::json!({
            "81/tcp": [{"HostIp": "0.0.0.0", "HostPort": "0"}], "82/tcp": null,
        }))
        .unwrap();
        let got = requests_from_port_map(&api).unwrap();
        assert_eq!(got, vec![req(Some("0.0.0.0"), 0, None, 81, "tcp"), req(None, 0, None, 82, "tcp")]);
        assert!(requests_from_port_map(&serde_json::from_value(serde_json::json!({"x/tcp": null})).unwrap()).is_err());
    }

    #[test]
    fn ports_settings_shows_published_and_exposed() {
        let published = [PublishedPort {
            proto: "tcp".into(),
            host_ip: None,
            host_port: 18080,
            container_ip: Ipv4Addr::new(172, 17, 0, 2),
            container_port: 80,
        }];
        let map = ports_settings(&published, &["80/tcp".into(), "443/tcp".into()]);
        assert_eq!(
            serde_json::to_value(&map).unwrap(),
            serde_json::json!({"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "18080"}], "443/tcp": null})
        );
    }

    #[test]
    fn nat_rules_forward_the_host_port() {
        let mut p = PublishedPort {
            proto: "udp".into(),
            host_ip: None,
            host_port: 5353,
            container_ip: Ipv4Addr::new(172, 18, 0, 3),
            container_port: 53,
        };
        assert_eq!(
            nat_rules(&p),
            vec![FirewallRule::PortForward {
                proto: "udp".into(),
                host_ip: None,
                host_port: 5353,
                container_ip: "172.18.0.3".into(),
                container_port: 53
            }]
        );
        p.host_ip = Some("192.0.2.1".parse().unwrap());
        assert!(matches!(&nat_rules(&p)[0], FirewallRule::PortForward { host_ip: Some(ip), .. } if ip == "192.0.2.1"));
        p.host_ip = Some("::1".parse().unwrap());
        assert!(nat_rules(&p).is_empty());
    }

    /// Whether `bind` succeeds within a second. A closed socket can stay
    /// bound for a moment in a child another test thread is forking (its
    /// copy of the fd lives until exec closes it); nothing of ours holds it.
    fn binds_soon(bind: impl Fn() -> bool) -> bool {
        (0..100).any(|_| {
            bind() || {
                std::thread::sleep(Duration::from_millis(10));
                false
            }
        })
    }

    /// A TCP echo server on 127.0.0.1 standing in for a container.
    fn echo_server() -> (SocketAddr, JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            for conn in l.incoming().take(2) {
                let mut c = conn.unwrap();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    loop {
                        match c.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => c.write_all(&buf[..n]).unwrap(),
                        }
                    }
                });
            }
        });
        (addr, t)
    }

    #[test]
    fn tcp_proxy_relays_both_ways_and_frees_the_port() {
        // Sockets on this namespace's loopback only, never the host's.
        in_private_netns("tcp_proxy_relays_both_ways_and_frees_the_port", || {
            // The "container" is 127.0.0.1 here: the proxy only needs an address to connect to.
            let (backend, _t) = echo_server();
            let publisher = PortPublisher::default();
            let mut request = req(Some("127.0.0.1"), 0, None, backend.port(), "tcp");
            let published = publisher.publish("c1", Ipv4Addr::LOCALHOST, std::slice::from_ref(&request)).unwrap();
            assert_eq!(published.len(), 1);
            let host_port = published[0].host_port;
            let (lo, hi) = ephemeral_range();
            assert!((lo..=hi).contains(&host_port), "{host_port} not in {lo}-{hi}");

            let mut c = TcpStream::connect(("127.0.0.1", host_port)).unwrap();
            let data: Vec<u8> = (0..4 << 20).map(|i| (i * 7 % 251) as u8).collect();
            let writer = {
                let (mut w, data) = (c.try_clone().unwrap(), data.clone());
                std::thread::spawn(move || {
                    w.write_all(&data).unwrap();
                    w.shutdown(std::net::Shutdown::Write).unwrap();
                })
            };
            let mut back = Vec::new();
            c.read_to_end(&mut back).unwrap();
            writer.join().unwrap();
            assert!(back == data, "echoed {} bytes, sent {}", back.len(), data.len());

            // The port is held: another publish of it is refused with Docker's message.
            request.host_port = host_port;
            let err = publisher.publish("c2", Ipv4Addr::LOCALHOST, &[request.clone()]).unwrap_err();
            assert_eq!(err.to_string(), format!("Bind for 127.0.0.1:{host_port} failed: port is already allocated"));
            assert!(matches!(err, NetError::PortInUse(_)));

            // A connection still open is cut by unpublish, and the port is free after it.
            let mut open = TcpStream::connect(("127.0.0.1", host_port)).unwrap();
            open.write_all(b"x").unwrap();
            let mut one = [0u8; 1];
            open.read_exact(&mut one).unwrap();
            publisher.unpublish("c1");
            assert!(publisher.published("c1").is_empty());
            open.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            assert!(matches!(open.read(&mut one), Ok(0) | Err(_)), "connection survived unpublish");
            assert!(
                binds_soon(|| TcpListener::bind(("127.0.0.1", host_port)).is_ok()),
                "port still bound after unpublish"
            );
        });
    }

    #[test]
    fn a_taken_port_fails_the_whole_publish_and_binds_nothing() {
        // Sockets on this namespace's loopback only, never the host's.
        in_private_netns("a_taken_port_fails_the_whole_publish_and_binds_nothing", || {
            let blocker = TcpListener::bind("127.0.0.1:0").unwrap();
            let taken = blocker.local_addr().unwrap().port();
            let free = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let publisher = PortPublisher::default();
            let reqs = [req(Some("127.0.0.1"), free, None, 80, "tcp"), req(Some("127.0.0.1"), taken, None, 81, "tcp")];
            let err = publisher.publish("c", Ipv4Addr::LOCALHOST, &reqs).unwrap_err();
            assert_eq!(err.to_string(), format!("Bind for 127.0.0.1:{taken} failed: port is already allocated"));
            assert!(publisher.published("c").is_empty());
            assert!(binds_soon(|| TcpListener::bind(("127.0.0.1", free)).is_ok()), "the first port was not released");
            // The same port twice in one request is refused too.
            let twice = [req(Some("127.0.0.1"), free, None, 80, "tcp"), req(Some("127.0.0.1"), free, None, 81, "tcp")];
            assert!(matches!(publisher.publish("c", Ipv4Addr::LOCALHOST, &twice), Err(NetError::PortInUse(_))));
            // A range picks the first free port of it.
            let range = [req(Some("127.0.0.1"), taken, Some(taken.saturating_add(20)), 80, "tcp")];
            let got = publisher.publish("c", Ipv4Addr::LOCALHOST, &range).unwrap();
            assert!(got[0].host_port > taken && got[0].host_port <= taken + 20, "{got:?}");
            publisher.unpublish("c");
            // A host address this machine does not have.
            let err = publisher.publish("c", Ipv4Addr::LOCALHOST, &[req(Some("192.0.2.123"), 8080, None, 80, "tcp")]);
            assert!(err.unwrap_err().to_string().contains("listen tcp4 192.0.2.123:8080"), "wrong error");
        });
    }

    #[test]
    fn random_ports_are_handed_out_in_order() {
        // Sockets on this namespace's loopback only, never the host's.
        in_private_netns("random_ports_are_handed_out_in_order", || {
            let publisher = PortPublisher::default();
            let reqs = [req(Some("127.0.0.1"), 0, None, 80, "tcp"), req(Some("127.0.0.1"), 0, None, 81, "tcp")];
            let got = publisher.publish("c", Ipv4Addr::LOCALHOST, &reqs).unwrap();
            let (a, b) = (got[0].host_port, got[1].host_port);
            let (lo, _) = ephemeral_range();
            // Nothing else is bound in this fresh namespace: the start of the range, then the next.
            assert_eq!((a, b), (lo, lo + 1));
            // A port in use is skipped.
            let _blocker = TcpListener::bind(("127.0.0.1", lo + 2)).unwrap();
            let next = publisher.publish("d", Ipv4Addr::LOCALHOST, &reqs[..1]).unwrap();
            assert_eq!(next[0].host_port, lo + 3);
            publisher.unpublish("d");
            publisher.unpublish("c");
        });
    }

    #[test]
    fn udp_proxy_relays_replies_to_each_client() {
        // Sockets on this namespace's loopback only, never the host's.
        in_private_netns("udp_proxy_relays_replies_to_each_client", || {
            let backend = UdpSocket::bind("127.0.0.1:0").unwrap();
            let baddr = backend.local_addr().unwrap();
            let echo = std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                for _ in 0..2 {
                    let (n, from) = backend.recv_from(&mut buf).unwrap();
                    let mut reply = b"re:".to_vec();
                    reply.extend_from_slice(&buf[..n]);
                    backend.send_to(&reply, from).unwrap();
                }
            });
            let publisher = PortPublisher::default();
            let got = publisher
                .publish("u", Ipv4Addr::LOCALHOST, &[req(Some("127.0.0.1"), 0, None, baddr.port(), "udp")])
                .unwrap();
            let port = got[0].host_port;
            for msg in [&b"one"[..], b"two"] {
                let c = UdpSocket::bind("127.0.0.1:0").unwrap();
                c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                c.send_to(msg, ("127.0.0.1", port)).unwrap();
                let mut buf = [0u8; 64];
                let (n, from) = c.recv_from(&mut buf).unwrap();
                assert_eq!(from.port(), port, "the reply comes from the published port");
                assert_eq!(&buf[..n], [&b"re:"[..], msg].concat().as_slice());
            }
            echo.join().unwrap();
            publisher.unpublish("u");
            assert!(
                binds_soon(|| UdpSocket::bind(("127.0.0.1", port)).is_ok()),
                "udp port still bound after unpublish"
            );
        });
    }

    #[test]
    fn readopt_binds_the_recorded_ports_again() {
        // Sockets on this namespace's loopback only, never the host's.
        in_private_netns("readopt_binds_the_recorded_ports_again", || {
            let (backend, _t) = echo_server();
            let first = PortPublisher::default();
            let got = first
                .publish("c", Ipv4Addr::LOCALHOST, &[req(Some("127.0.0.1"), 0, None, backend.port(), "tcp")])
                .unwrap();
            drop(first); // the daemon went away: its sockets are gone
            let second = PortPublisher::default();
            second.readopt("c", &got).unwrap();
            assert_eq!(second.published("c"), got);
            let mut c = TcpStream::connect(("127.0.0.1", got[0].host_port)).unwrap();
            c.write_all(b"ping").unwrap();
            let mut buf = [0u8; 4];
            c.read_exact(&mut buf).unwrap();
            assert_eq!(&buf, b"ping");
            // Again (the same container re-adopted twice) replaces, not doubles.
            drop(c);
            second.readopt("c", &got).unwrap();
            assert_eq!(second.published("c").len(), 1);
        });
    }
}
