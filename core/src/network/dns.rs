//! The embedded DNS server (hickory-proto): sockets at 127.0.0.11:53 inside
//! each container's namespace on a user-defined network; answers container
//! names, short IDs and aliases (round-robin), forwards the rest.
//!
//! The sockets are created by a thread that entered the container's
//! namespace (`netns::run_in`); a socket stays in the namespace it was
//! created in, so the daemon serves them all from one small runtime of its
//! own, in its own namespace. Queries for other names are forwarded from
//! there to the host's resolvers, which is where the host's resolv.conf
//! points (often a 127.0.0.53 stub that only the host namespace can reach).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::NetError;

/// The address containers on user-defined networks use as their nameserver.
pub const DNS_ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);

/// TTL of the answers for containers (Docker's embedded DNS uses 600).
const TTL: u32 = 600;
/// How long one upstream resolver gets to answer before the next is tried.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// A TCP client that sends nothing for this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// How long `detach` waits for the sockets to be closed.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// What the DNS server asks the engine: the IPv4 addresses that `name`
/// (a container name, short or full ID, or alias; without a trailing dot,
/// lowercase) has for the container `asking` — only containers sharing a
/// user-defined network with it count. Empty when the name is not a container.
pub trait NameLookup: Send + Sync {
    fn lookup(&self, asking_container: &str, name: &str) -> Vec<Ipv4Addr>;
}

/// The embedded DNS server: one UDP and one TCP socket per attached
/// container, opened inside its namespace, served on the daemon's runtime.
pub struct DnsServer {
    shared: Arc<Shared>,
    /// Started on the first attach (the daemon may never need it).
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    attached: Mutex<HashMap<String, Attachment>>,
}

/// What the serving tasks share.
struct Shared {
    lookup: Arc<dyn NameLookup>,
    upstream: Vec<SocketAddr>,
    /// Per-name query counters: the start of the next round-robin rotation.
    rotation: Mutex<HashMap<String, usize>>,
}

/// One attached container: how to stop its tasks and learn they closed their sockets.
struct Attachment {
    stop: watch::Sender<bool>,
    closed: mpsc::Receiver<()>,
}

/// A socket owned together with a "closed" signal: the sender drops after
/// the socket (fields drop in order), so `detach` knows the port is free.
struct Owned<S> {
    socket: S,
    _closed: mpsc::Sender<()>,
}

impl DnsServer {
    /// A server answering from `lookup` and forwarding other names to
    /// `upstream` (the host's resolvers; empty means answer SERVFAIL at once).
    pub fn new(lookup: Arc<dyn NameLookup>, upstream: Vec<SocketAddr>) -> DnsServer {
        DnsServer {
            shared: Arc::new(Shared { lookup, upstream, rotation: Mutex::new(HashMap::new()) }),
            runtime: Mutex::new(None),
            attached: Mutex::new(HashMap::new()),
        }
    }

    /// Starts answering inside the namespace at `netns` for `container_id`.
    /// Replaces an earlier attach of the same container.
    pub fn attach(&self, container_id: &str, netns: &Path) -> Result<(), NetError> {
        self.detach(container_id);
        let handle = self.runtime_handle()?;
        let shown = netns.display().to_string();
        let (udp, tcp) = super::netns::run_in(netns, move || {
            let udp = bind_dns_socket(false)?;
            let tcp = bind_dns_socket(true)?;
            Ok((udp, tcp))
        })
        .map_err(|e| NetError::Invalid(format!("embedded DNS for container {container_id} in {shown}: {e}")))?;

        let _in_runtime = handle.enter();
        let io = |e| NetError::io(format!("embedded DNS for container {container_id}: registering its sockets"), e);
        let udp = tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(udp)).map_err(io)?;
        let tcp = tokio::net::TcpListener::from_std(std::net::TcpListener::from(tcp)).map_err(io)?;
        let (stop, stop_rx) = watch::channel(false);
        let (closed_tx, closed) = mpsc::channel();
        let id = container_id.to_string();
        handle.spawn(serve_udp(
            self.shared.clone(),
            id.clone(),
            Owned { socket: udp, _closed: closed_tx.clone() },
            stop_rx.clone(),
        ));
        handle.spawn(serve_tcp(self.shared.clone(), id, Owned { socket: tcp, _closed: closed_tx }, stop_rx));
        self.attached
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(container_id.to_string(), Attachment { stop, closed });
        Ok(())
    }

    /// Stops answering for `container_id` and closes its sockets.
    pub fn detach(&self, container_id: &str) {
        let attachment = self.attached.lock().unwrap_or_else(|e| e.into_inner()).remove(container_id);
        if let Some(a) = attachment {
            let _ = a.stop.send(true);
            // Every Owned socket holds a sender; Disconnected means all are closed.
            loop {
                match a.closed.recv_timeout(CLOSE_WAIT) {
                    Ok(()) => continue,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        tracing::warn!(
                            "embedded DNS: sockets of container {container_id} not closed after {CLOSE_WAIT:?}"
                        );
                        break;
                    }
                }
            }
        }
    }

    /// Whether `container_id` is attached now.
    pub fn is_attached(&self, container_id: &str) -> bool {
        self.attached.lock().unwrap_or_else(|e| e.into_inner()).contains_key(container_id)
    }

    fn runtime_handle(&self) -> Result<tokio::runtime::Handle, NetError> {
        let mut rt = self.runtime.lock().unwrap_or_else(|e| e.into_inner());
        if rt.is_none() {
            // Its threads are started from here, so they live in the
            // daemon's namespace: that is where forwarded queries go out.
            let built = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("berth-dns")
                .enable_io()
                .enable_time()
                .build()
                .map_err(|e| NetError::io("starting the embedded DNS server's runtime", e))?;
            *rt = Some(built);
        }
        rt.as_ref().map(|r| r.handle().clone()).ok_or_else(|| NetError::Invalid("embedded DNS runtime missing".into()))
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        let ids: Vec<String> = self.attached.lock().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect();
        for id in ids {
            self.detach(&id);
        }
        // shutdown_background: dropping a runtime may happen inside another
        // runtime's context (the daemon's), where a blocking drop panics.
        if let Some(rt) = self.runtime.lock().unwrap_or_else(|e| e.into_inner()).take() {
            rt.shutdown_background();
        }
    }
}

/// A socket bound to 127.0.0.11:53 in the calling thread's namespace.
/// IP_FREEBIND: the container's `lo` may still be down (no 127/8 address
/// yet) when this runs before its process starts.
fn bind_dns_socket(stream: bool) -> Result<OwnedFd, NetError> {
    let what = if stream { "tcp" } else { "udp" };
    let err = |step: &str| {
        NetError::io(format!("{step} the {what} socket at {DNS_ADDRESS}:53"), std::io::Error::last_os_error())
    };
    let kind = if stream { libc::SOCK_STREAM } else { libc::SOCK_DGRAM };
    // SAFETY: socket(2) with constant arguments; the fd is owned at once.
    let raw = unsafe { libc::socket(libc::AF_INET, kind | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0) };
    if raw < 0 {
        return Err(err("creating"));
    }
    // SAFETY: `raw` is a fresh fd nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let set = |level: libc::c_int, opt: libc::c_int| -> bool {
        let one: libc::c_int = 1;
        // SAFETY: setsockopt reads one c_int from the pointer we pass.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                level,
                opt,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            ) == 0
        }
    };
    if !set(libc::IPPROTO_IP, libc::IP_FREEBIND) {
        return Err(err("setting IP_FREEBIND on"));
    }
    // Connections of an earlier attach may linger on the port.
    if stream && !set(libc::SOL_SOCKET, libc::SO_REUSEADDR) {
        return Err(err("setting SO_REUSEADDR on"));
    }
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 53u16.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(DNS_ADDRESS).to_be() },
        sin_zero: [0; 8],
    };
    // The sockets of an earlier attach in this namespace may live on for a
    // moment in a child some daemon thread is forking (until its exec closes
    // them): a busy port gets a few short retries.
    let mut delay = Duration::from_millis(5);
    loop {
        // SAFETY: bind reads a sockaddr_in of the size we pass.
        let bound = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if bound == 0 {
            break;
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EADDRINUSE) || delay > Duration::from_millis(80)
        {
            return Err(err("binding"));
        }
        std::thread::sleep(delay);
        delay *= 2;
    }
    // SAFETY: listen on our own socket.
    if stream && unsafe { libc::listen(fd.as_raw_fd(), 64) } != 0 {
        return Err(err("listening on"));
    }
    Ok(fd)
}

/// What to do with one incoming DNS message.
#[derive(Debug, PartialEq)]
enum Handled {
    /// Send these bytes back.
    Reply(Vec<u8>),
    /// Not ours: ask the upstream resolvers; `servfail` is the answer if none replies.
    Forward { servfail: Vec<u8> },
    /// Not even a DNS header: no answer.
    Ignore,
}

/// Answers one query from `asking`'s point of view. `max_len` is what the
/// transport carries (512 or the client's EDNS size on UDP); longer answers
/// are truncated with TC set, so the client retries over TCP.
fn handle_query(shared: &Shared, asking: &str, packet: &[u8], max_len: Option<usize>) -> Handled {
    let request = match Message::from_vec(packet) {
        Ok(m) => m,
        Err(_) if packet.len() >= 12 => {
            // A header with garbage after it: FORMERR with the client's ID.
            let id = u16::from_be_bytes([packet[0], packet[1]]);
            return encode(&Message::error_msg(id, OpCode::Query, ResponseCode::FormErr))
                .map_or(Handled::Ignore, Handled::Reply);
        }
        Err(_) => return Handled::Ignore,
    };
    if request.metadata.message_type != MessageType::Query {
        return Handled::Ignore;
    }
    if request.metadata.op_code != OpCode::Query {
        return reply(&request, ResponseCode::NotImp, Vec::new(), max_len);
    }
    let [query] = request.queries.as_slice() else {
        return reply(&request, ResponseCode::FormErr, Vec::new(), max_len);
    };
    let name = query.name().to_ascii().to_ascii_lowercase();
    let name = name.trim_end_matches('.');
    let mut addresses = if name.is_empty() { Vec::new() } else { shared.lookup.lookup(asking, name) };
    if addresses.is_empty() {
        let servfail = match reply(&request, ResponseCode::ServFail, Vec::new(), max_len) {
            Handled::Reply(bytes) => bytes,
            other => return other,
        };
        return if shared.upstream.is_empty() { Handled::Reply(servfail) } else { Handled::Forward { servfail } };
    }
    // The same set in a stable order, then rotated one further per query:
    // round-robin as Docker's users rely on for `--network-alias`.
    addresses.sort();
    addresses.dedup();
    let turn = {
        let mut rotation = shared.rotation.lock().unwrap_or_else(|e| e.into_inner());
        let counter = rotation.entry(name.to_string()).or_insert(0);
        let turn = *counter;
        *counter = counter.wrapping_add(1);
        turn
    };
    let n = addresses.len();
    addresses.rotate_left(turn % n);
    let answers = match query.query_type() {
        RecordType::A | RecordType::ANY => {
            addresses.into_iter().map(|ip| Record::from_rdata(query.name().clone(), TTL, RData::A(A(ip)))).collect()
        }
        // The name exists but has nothing of this type (AAAA, MX, ...): NOERROR, no answers.
        _ => Vec::new(),
    };
    reply(&request, ResponseCode::NoError, answers, max_len)
}

fn reply(request: &Message, code: ResponseCode, answers: Vec<Record>, max_len: Option<usize>) -> Handled {
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.metadata.checking_disabled = request.metadata.checking_disabled;
    response.metadata.response_code = code;
    response.queries = request.queries.clone();
    response.answers = answers;
    let Some(bytes) = encode(&response) else { return Handled::Ignore };
    match max_len {
        Some(max) if bytes.len() > max => encode(&response.truncate()).map_or(Handled::Ignore, Handled::Reply),
        _ => Handled::Reply(bytes),
    }
}

fn encode(message: &Message) -> Option<Vec<u8>> {
    message.to_vec().ok()
}

/// The largest UDP answer the client takes: its EDNS size, else 512.
fn udp_limit(packet: &[u8]) -> usize {
    Message::from_vec(packet).map(|m| usize::from(m.max_payload()).max(512)).unwrap_or(512)
}

async fn serve_udp(
    shared: Arc<Shared>,
    container: String,
    owned: Owned<tokio::net::UdpSocket>,
    mut stop: watch::Receiver<bool>,
) {
    // Forwarded answers come back through this channel, so only this task
    // ever holds the socket and closing it is this task's alone.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Vec<u8>, SocketAddr)>(64);
    let mut buf = vec![0u8; 4096];
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            Some((answer, to)) = rx.recv() => {
                let _ = owned.socket.send_to(&answer, to).await;
            }
            received = owned.socket.recv_from(&mut buf) => {
                let Ok((n, from)) = received else { continue };
                let packet = &buf[..n];
                match handle_query(&shared, &container, packet, Some(udp_limit(packet))) {
                    Handled::Reply(answer) => {
                        let _ = owned.socket.send_to(&answer, from).await;
                    }
                    Handled::Forward { servfail } => {
                        let (shared, tx, query) = (shared.clone(), tx.clone(), packet.to_vec());
                        tokio::spawn(async move {
                            let answer = forward_udp(&shared.upstream, &query).await.unwrap_or(servfail);
                            let _ = tx.send((answer, from)).await;
                        });
                    }
                    Handled::Ignore => {}
                }
            }
        }
    }
}

async fn serve_tcp(
    shared: Arc<Shared>,
    container: String,
    owned: Owned<tokio::net::TcpListener>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = owned.socket.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                tokio::spawn(serve_tcp_client(shared.clone(), container.clone(), stream, stop.clone()));
            }
        }
    }
}

/// Length-prefixed queries on one connection until the client stops, goes
/// idle, or the container is detached.
async fn serve_tcp_client(
    shared: Arc<Shared>,
    container: String,
    mut stream: tokio::net::TcpStream,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let query = tokio::select! {
            _ = stop.changed() => return,
            q = tokio::time::timeout(TCP_IDLE, read_framed(&mut stream)) => match q {
                Ok(Some(q)) => q,
                _ => return,
            },
        };
        let answer = match handle_query(&shared, &container, &query, None) {
            Handled::Reply(answer) => answer,
            Handled::Forward { servfail } => forward_tcp(&shared.upstream, &query).await.unwrap_or(servfail),
            Handled::Ignore => return,
        };
        if write_framed(&mut stream, &answer).await.is_err() {
            return;
        }
    }
}

async fn read_framed<S: AsyncReadExt + Unpin>(stream: &mut S) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await.ok()?;
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut msg).await.ok()?;
    Some(msg)
}

async fn write_framed<S: AsyncWriteExt + Unpin>(stream: &mut S, msg: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(msg.len()).map_err(|_| std::io::Error::other("DNS message longer than 65535 bytes"))?;
    let mut framed = Vec::with_capacity(msg.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(msg);
    stream.write_all(&framed).await
}

/// Asks each upstream in turn over UDP; the first answer with the query's
/// ID wins. `None` when every one failed or stayed silent.
async fn forward_udp(upstream: &[SocketAddr], query: &[u8]) -> Option<Vec<u8>> {
    let id = query.get(..2)?;
    for server in upstream {
        let local: SocketAddr = match server.ip() {
            IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let Ok(socket) = tokio::net::UdpSocket::bind(local).await else { continue };
        if socket.connect(server).await.is_err() || socket.send(query).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; 65_535];
        let answer = tokio::time::timeout(UPSTREAM_TIMEOUT, async {
            loop {
                match socket.recv(&mut buf).await {
                    Ok(n) if n >= 12 && &buf[..2] == id => return Some(buf[..n].to_vec()),
                    Ok(_) => continue,     // a stray datagram: keep waiting for ours
                    Err(_) => return None, // ICMP unreachable: this server is not there
                }
            }
        })
        .await;
        if let Ok(Some(answer)) = answer {
            return Some(answer);
        }
    }
    None
}

/// As `forward_udp`, over TCP (for clients that asked over TCP).
async fn forward_tcp(upstream: &[SocketAddr], query: &[u8]) -> Option<Vec<u8>> {
    for server in upstream {
        let attempt = tokio::time::timeout(UPSTREAM_TIMEOUT, async {
            let mut stream = tokio::net::TcpStream::connect(server).await.ok()?;
            write_framed(&mut stream, query).await.ok()?;
            read_framed(&mut stream).await
        })
        .await;
        if let Ok(Some(answer)) = attempt {
            return Some(answer);
        }
    }
    None
}

/// The host's resolvers from a resolv.conf text (`nameserver` lines), port 53.
pub fn upstream_from_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("nameserver")).then(|| words.next()).flatten()
        })
        // A zone index (fe80::1%eth0) cannot be used from the daemon: skip it.
        .filter_map(|a| a.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;
    use std::time::Instant;

    /// Containers `web` (one address) and `svc` (an alias of three), seen by `asker` only.
    struct Fixed;
    impl NameLookup for Fixed {
        fn lookup(&self, asking: &str, name: &str) -> Vec<Ipv4Addr> {
            match (asking, name) {
                ("asker", "web") => vec![Ipv4Addr::new(172, 18, 0, 2)],
                ("asker", "svc") => {
                    vec![Ipv4Addr::new(172, 18, 0, 5), Ipv4Addr::new(172, 18, 0, 3), Ipv4Addr::new(172, 18, 0, 4)]
                }
                ("asker", "many") => (1..=60).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect(),
                _ => Vec::new(),
            }
        }
    }

    fn shared(upstream: Vec<SocketAddr>) -> Shared {
        Shared { lookup: Arc::new(Fixed), upstream, rotation: Mutex::new(HashMap::new()) }
    }

    fn query(name: &str, kind: RecordType) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = 0x4242;
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
        m.to_vec().unwrap()
    }

    fn answer(h: Handled) -> Message {
        match h {
            Handled::Reply(bytes) => Message::from_vec(&bytes).unwrap(),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    fn a_records(m: &Message) -> Vec<Ipv4Addr> {
        m.answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn answers_container_names_case_insensitively() {
        let s = shared(Vec::new());
        for name in ["web", "web.", "WeB.", "WEB"] {
            let m = answer(handle_query(&s, "asker", &query(name, RecordType::A), Some(512)));
            assert_eq!(m.metadata.id, 0x4242);
            assert_eq!(m.metadata.message_type, MessageType::Response);
            assert_eq!(m.metadata.response_code, ResponseCode::NoError);
            assert!(m.metadata.recursion_available && m.metadata.recursion_desired);
            assert_eq!(a_records(&m), vec![Ipv4Addr::new(172, 18, 0, 2)], "{name}");
            assert_eq!(m.answers[0].ttl, TTL);
            assert_eq!(m.queries.len(), 1);
        }
        // Another container does not see `web`: with no upstream, SERVFAIL at once.
        let m = answer(handle_query(&s, "stranger", &query("web", RecordType::A), Some(512)));
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    }

    #[test]
    fn aliases_rotate_round_robin_over_every_holder() {
        let s = shared(Vec::new());
        let mut firsts = Vec::new();
        for _ in 0..6 {
            let m = answer(handle_query(&s, "asker", &query("svc", RecordType::A), Some(512)));
            let got = a_records(&m);
            let mut sorted = got.clone();
            sorted.sort();
            assert_eq!(
                sorted,
                vec![Ipv4Addr::new(172, 18, 0, 3), Ipv4Addr::new(172, 18, 0, 4), Ipv4Addr::new(172, 18, 0, 5)]
            );
            firsts.push(got[0].octets()[3]);
        }
        assert_eq!(firsts, vec![3, 4, 5, 3, 4, 5]);
    }

    #[test]
    fn known_names_have_no_aaaa_and_unknown_names_fail_fast_without_upstream() {
        let s = shared(Vec::new());
        let m = answer(handle_query(&s, "asker", &query("web", RecordType::AAAA), Some(512)));
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
        let m = answer(handle_query(&s, "asker", &query("example.com.", RecordType::A), Some(512)));
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(m.metadata.id, 0x4242);
        // With an upstream, unknown names are forwarded (the SERVFAIL kept for when it fails).
        let s = shared(vec!["192.0.2.53:53".parse().unwrap()]);
        assert!(matches!(
            handle_query(&s, "asker", &query("example.com", RecordType::A), Some(512)),
            Handled::Forward { .. }
        ));
    }

    #[test]
    fn malformed_and_oversized() {
        let s = shared(Vec::new());
        assert_eq!(handle_query(&s, "asker", b"\x01\x02", Some(512)), Handled::Ignore);
        let mut junk = query("web", RecordType::A);
        junk.truncate(14);
        let m = answer(handle_query(&s, "asker", &junk, Some(512)));
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        assert_eq!(m.metadata.id, 0x4242);
        // 60 addresses do not fit in 512 bytes: truncated, so the client retries over TCP.
        let m = answer(handle_query(&s, "asker", &query("many", RecordType::A), Some(512)));
        assert!(m.metadata.truncation && m.answers.is_empty());
        let m = answer(handle_query(&s, "asker", &query("many", RecordType::A), None));
        assert_eq!(a_records(&m).len(), 60);
    }

    #[test]
    fn resolv_conf_nameservers() {
        let text = "# generated\nsearch example.com\nnameserver 10.0.0.2\nnameserver  2001:db8::1 \noptions ndots:0\nnameserver fe80::1%eth0\n";
        assert_eq!(
            upstream_from_resolv_conf(text),
            vec!["10.0.0.2:53".parse::<SocketAddr>().unwrap(), "[2001:db8::1]:53".parse().unwrap()]
        );
    }

    /// A thread parked in a network namespace of its own (lo up), standing
    /// in for a container's; its nsfs path works for `attach` while it lives.
    struct ParkedNetns {
        path: std::path::PathBuf,
        release: mpsc::Sender<()>,
        thread: std::thread::JoinHandle<()>,
    }

    fn parked_netns() -> ParkedNetns {
        let (path_tx, path_rx) = mpsc::channel();
        let (release, wait) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare for the container netns");
            let st = std::process::Command::new("ip").args(["link", "set", "lo", "up"]).status().unwrap();
            assert!(st.success());
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() };
            path_tx.send(format!("/proc/{}/task/{tid}/ns/net", std::process::id())).unwrap();
            let _ = wait.recv();
        });
        ParkedNetns { path: path_rx.recv().unwrap().into(), release, thread }
    }

    impl ParkedNetns {
        /// Runs `f` inside the namespace.
        fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
            super::super::netns::run_in(&self.path, move || Ok(f())).expect("entering the container netns")
        }
        fn done(self) {
            drop(self.release);
            self.thread.join().unwrap();
        }
    }

    fn udp_ask(name: &str, kind: RecordType) -> std::io::Result<Message> {
        let c = std::net::UdpSocket::bind("127.0.0.1:0")?;
        c.set_read_timeout(Some(Duration::from_secs(5)))?;
        c.send_to(&query(name, kind), (DNS_ADDRESS, 53))?;
        let mut buf = [0u8; 4096];
        let (n, from) = c.recv_from(&mut buf)?;
        assert_eq!(from, SocketAddr::from((DNS_ADDRESS, 53)));
        Ok(Message::from_vec(&buf[..n]).expect("a DNS answer"))
    }

    fn tcp_ask(name: &str) -> std::io::Result<Message> {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect((DNS_ADDRESS, 53))?;
        c.set_read_timeout(Some(Duration::from_secs(5)))?;
        let q = query(name, RecordType::A);
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&q);
        c.write_all(&framed)?;
        let mut len = [0u8; 2];
        c.read_exact(&mut len)?;
        let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
        c.read_exact(&mut msg)?;
        Ok(Message::from_vec(&msg).expect("a DNS answer"))
    }

    #[test]
    fn serves_inside_the_container_namespace() {
        super::super::firewall::testns::in_private_netns("serves_inside_the_container_namespace", || {
            // The "host's resolver": answers every forwarded query with one A record.
            let upstream = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let up_addr = upstream.local_addr().unwrap();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok((n, from)) = upstream.recv_from(&mut buf) {
                    let q = Message::from_vec(&buf[..n]).unwrap();
                    let mut r = Message::response(q.metadata.id, OpCode::Query);
                    r.queries = q.queries.clone();
                    r.answers.push(Record::from_rdata(
                        q.queries[0].name().clone(),
                        60,
                        RData::A(A(Ipv4Addr::new(198, 51, 100, 7))),
                    ));
                    upstream.send_to(&r.to_vec().unwrap(), from).unwrap();
                }
            });
            let server = DnsServer::new(Arc::new(Fixed), vec![up_addr]);
            let ctr = parked_netns();
            server.attach("asker", &ctr.path).unwrap();
            assert!(server.is_attached("asker"));

            let (web, svc, fwd, tcp) = ctr.run(|| {
                let web = udp_ask("web", RecordType::A).unwrap();
                let svc: Vec<Message> = (0..3).map(|_| udp_ask("svc", RecordType::A).unwrap()).collect();
                let fwd = udp_ask("example.org", RecordType::A).unwrap();
                let tcp = tcp_ask("web").unwrap();
                (web, svc, fwd, tcp)
            });
            assert_eq!(a_records(&web), vec![Ipv4Addr::new(172, 18, 0, 2)]);
            let firsts: Vec<u8> = svc.iter().map(|m| a_records(m)[0].octets()[3]).collect();
            assert_eq!(firsts, vec![3, 4, 5]);
            assert_eq!(a_records(&fwd), vec![Ipv4Addr::new(198, 51, 100, 7)], "forwarded to the upstream");
            assert_eq!(a_records(&tcp), vec![Ipv4Addr::new(172, 18, 0, 2)]);
            // Nothing listens on 127.0.0.11 in the daemon's own namespace.
            assert!(std::net::TcpStream::connect((DNS_ADDRESS, 53)).is_err());

            // Attach again replaces; detach closes the sockets at once.
            server.attach("asker", &ctr.path).unwrap();
            assert_eq!(
                a_records(&ctr.run(|| udp_ask("web", RecordType::A).unwrap())),
                vec![Ipv4Addr::new(172, 18, 0, 2)]
            );
            server.detach("asker");
            assert!(!server.is_attached("asker"));
            // (A child another test thread forks may hold a copy of the fds
            // until it execs: give that a moment.)
            let soon =
                |f: fn() -> bool| (0..100).any(|_| f() || (std::thread::sleep(Duration::from_millis(10)), false).1);
            let gone = ctr.run(move || soon(|| std::net::TcpStream::connect((DNS_ADDRESS, 53)).is_err()));
            assert!(gone, "the TCP socket is still open after detach");
            let bound = ctr.run(move || soon(|| std::net::UdpSocket::bind((DNS_ADDRESS, 53)).is_ok()));
            assert!(bound, "the UDP port is still taken after detach");
            ctr.done();
        });
    }

    #[test]
    fn unreachable_or_silent_upstreams_give_servfail_without_hanging() {
        super::super::firewall::testns::in_private_netns("unreachable_or_silent_upstreams", || {
            // One upstream that never answers, one where nothing listens.
            let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
            for upstream in [vec![closed], vec![silent.local_addr().unwrap()], Vec::new()] {
                let server = DnsServer::new(Arc::new(Fixed), upstream.clone());
                let ctr = parked_netns();
                server.attach("asker", &ctr.path).unwrap();
                let started = Instant::now();
                let m = ctr.run(|| udp_ask("nowhere.invalid", RecordType::A).unwrap());
                assert_eq!(m.metadata.response_code, ResponseCode::ServFail, "{upstream:?}");
                assert!(
                    started.elapsed() < UPSTREAM_TIMEOUT + Duration::from_secs(1),
                    "{upstream:?}: {:?}",
                    started.elapsed()
                );
                server.detach("asker");
                ctr.done();
            }
        });
    }
}
