//! IPAM: subnets for new networks from the default pool, addresses for
//! endpoints in order from a network's ip-range, persisted in the store and
//! never handed out twice.
//!
//! A network's allocations live in the `networks` table under
//! `ipam/<network id>` (`Allocations` as JSON), beside the network records
//! keyed by ID. An allocation reads, picks and writes inside one store write
//! transaction, and a lock per network keeps concurrent starts on the same
//! network in order; so fifty containers starting at once get fifty distinct
//! addresses, and a crash never leaves one address with two holders.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use berth_model::network::{IpamConfigEntry, NetworkRecord};
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, EngineResult};
use crate::store::{DefinitionTable, Store};
use super::NetError;

pub use berth_model::Subnet;

/// A network's checked IPv4 pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool {
    pub subnet: Subnet,
    /// Where container addresses come from (the subnet when no ip-range).
    pub range: Subnet,
    pub gateway: Option<Ipv4Addr>,
}

impl Pool {
    /// The pool of a stored network (its first IPv4 config entry).
    pub fn of(network: &NetworkRecord) -> Option<Pool> {
        network.ipam.config.iter().find_map(|c| {
            let subnet = Subnet::parse(&c.subnet)?.masked();
            let range = if c.ip_range.is_empty() { subnet } else { Subnet::parse(&c.ip_range)?.masked() };
            let gateway = if c.gateway.is_empty() { None } else { c.gateway.parse().ok() };
            Some(Pool { subnet, range, gateway })
        })
    }

    /// The addresses that are never handed out: the subnet's network and
    /// broadcast addresses and the gateway.
    fn reserved(&self, ip: u32) -> bool {
        (self.subnet.prefix < 31 && (ip == self.subnet.first() || ip == self.subnet.last()))
            || self.gateway.is_some_and(|g| u32::from(g) == ip)
    }
}

/// Checks `--subnet`, `--ip-range`, `--gateway` with Docker's messages
/// (`invalid network config:` followed by every problem found).
pub fn validate_config(entries: &[IpamConfigEntry]) -> Result<(), NetError> {
    let mut errs = Vec::new();
    for c in entries {
        let Some(subnet) = Subnet::parse(&c.subnet) else {
            if c.subnet.contains(':') {
                errs.push(format!("invalid subnet {}: IPv6 is not supported by berth yet", c.subnet));
            } else {
                errs.push(format!("invalid subnet {}: invalid CIDR block notation", c.subnet));
            }
            continue;
        };
        if subnet != subnet.masked() {
            errs.push(format!("invalid subnet {subnet}: it should be {}", subnet.masked()));
        }
        if !c.ip_range.is_empty() {
            match Subnet::parse(&c.ip_range) {
                None => errs.push(format!("invalid ip-range {}: invalid CIDR block notation", c.ip_range)),
                Some(r) => {
                    if r.prefix < subnet.prefix {
                        errs.push(format!(
                            "invalid ip-range {}: CIDR block is bigger than its parent subnet {subnet}",
                            c.ip_range
                        ));
                    }
                    if r != r.masked() {
                        errs.push(format!("invalid ip-range {r}: it should be {}", r.masked()));
                    }
                    if !subnet.masked().overlaps(&r.masked()) {
                        errs.push(format!(
                            "invalid ip-range {}: parent subnet {subnet} doesn't contain ip-range",
                            c.ip_range
                        ));
                    }
                }
            }
        }
        if !c.gateway.is_empty() {
            match c.gateway.parse::<Ipv4Addr>() {
                Err(_) => errs.push(format!("invalid gateway {}: invalid address", c.gateway)),
                Ok(g) if !subnet.contains(g) => errs.push(format!(
                    "invalid gateway {}: parent subnet {subnet} doesn't contain this address",
                    c.gateway
                )),
                Ok(_) => {}
            }
        }
    }
    if entries.len() > 1 && errs.is_empty() {
        errs.push("berth supports one IPv4 subnet per network".to_string());
    }
    match errs.len() {
        0 => Ok(()),
        1 => Err(NetError::Invalid(format!("invalid network config:\n{}", errs[0]))),
        _ => Err(NetError::Invalid(format!("invalid network config:\n* {}", errs.join("\n* ")))),
    }
}

/// The subnet of the default `bridge` network.
pub const DEFAULT_BRIDGE_SUBNET: &str = "172.17.0.0/16";

/// Docker's default address pools after the default bridge's:
/// 172.18.0.0/16 ... 172.31.0.0/16, then 192.168.0.0/20 ... 192.168.240.0/20.
pub fn default_pool() -> impl Iterator<Item = Subnet> {
    let wide = (18u8..=31).map(|b| Subnet { addr: Ipv4Addr::new(172, b, 0, 0), prefix: 16 });
    let narrow = (0u8..16).map(|i| Subnet { addr: Ipv4Addr::new(192, 168, i * 16, 0), prefix: 20 });
    wide.chain(narrow)
}

/// The first pool subnet overlapping neither a network's subnet nor a
/// route of the host.
pub fn pick_subnet(taken: &[Subnet], host_routes: &[Subnet]) -> Result<Subnet, NetError> {
    default_pool()
        .find(|s| !taken.iter().chain(host_routes).any(|t| t.overlaps(s)))
        .ok_or_else(|| {
            NetError::Exhausted(
                "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network"
                    .into(),
            )
        })
}

/// The destinations of the routes in the calling thread's network
/// namespace (default routes excluded): a new network's subnet must not
/// hide one of them.
pub fn host_routes() -> Vec<Subnet> {
    let Ok(table) = std::fs::read_to_string("/proc/thread-self/net/route") else {
        return Vec::new();
    };
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let dest = u32::from_str_radix(f.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(f.get(7)?, 16).ok()?;
            // The kernel prints the address's bytes as one native-endian word.
            let dest = Ipv4Addr::from(dest.to_ne_bytes());
            let prefix = mask.count_ones() as u8;
            (prefix > 0).then_some(Subnet { addr: dest, prefix })
        })
        .collect()
}

/// The first usable address of a subnet (Docker's default gateway).
pub fn default_gateway(subnet: Subnet) -> Ipv4Addr {
    let s = subnet.masked();
    if s.prefix >= 31 {
        Ipv4Addr::from(s.first())
    } else {
        Ipv4Addr::from(s.first() + 1)
    }
}

/// A network's addresses in use, by address: the endpoint holding each.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Allocations {
    pub addresses: BTreeMap<Ipv4Addr, String>,
    /// Whether IPAM chose the subnet (no `--subnet`): Docker refuses `--ip` there.
    #[serde(default)]
    pub auto_subnet: bool,
}

/// The store key of a network's allocations.
pub fn allocations_key(network_id: &str) -> String {
    format!("ipam/{network_id}")
}

/// Whether a key of the networks table holds allocations, not a network.
pub fn is_allocations_key(key: &str) -> bool {
    key.starts_with("ipam/")
}

/// The lowest free address of the pool's range, if any.
pub fn next_free(pool: &Pool, allocs: &Allocations) -> Option<Ipv4Addr> {
    let (first, last) = (pool.range.first(), pool.range.last());
    (first..=last)
        .find(|ip| !pool.reserved(*ip) && !allocs.addresses.contains_key(&Ipv4Addr::from(*ip)))
        .map(Ipv4Addr::from)
}

/// Engine-side IPAM: allocation and release against the store.
#[derive(Default)]
pub struct Ipam {
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl Ipam {
    fn lock_of(&self, network_id: &str) -> Arc<Mutex<()>> {
        let mut m = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(network_id.to_string()).or_default().clone()
    }

    /// Drops the lock of a removed network.
    pub fn forget(&self, network_id: &str) {
        self.locks.lock().unwrap_or_else(|e| e.into_inner()).remove(network_id);
    }

    /// Gives `endpoint` an address on `network`: `wanted` if given (it must
    /// be in the subnet and free), else the lowest free one of the ip-range.
    /// An endpoint that holds an address already gets the same one back.
    pub fn allocate(
        &self,
        store: &Store,
        network: &NetworkRecord,
        endpoint: &str,
        wanted: Option<Ipv4Addr>,
    ) -> EngineResult<Ipv4Addr> {
        let pool = Pool::of(network).ok_or_else(|| {
            EngineError::Internal(format!("network {} has no IPv4 subnet to allocate from", network.name))
        })?;
        let lock = self.lock_of(&network.id);
        let _g = lock.lock().unwrap_or_else(|e| e.into_inner());
        let tx = store.write()?;
        let key = allocations_key(&network.id);
        let mut allocs: Allocations = match tx.definition(DefinitionTable::Networks, &key)? {
            Some(j) => serde_json::from_str(&j).map_err(|e| {
                EngineError::Internal(format!("network {}: corrupt address allocations: {e}", network.name))
            })?,
            None => Allocations::default(),
        };
        if let Some((ip, _)) = allocs.addresses.iter().find(|(_, e)| e.as_str() == endpoint) {
            if wanted.is_none_or(|w| w == *ip) {
                return Ok(*ip);
            }
        }
        let ip = match wanted {
            Some(w) => {
                if !pool.subnet.contains(w) {
                    return Err(EngineError::InvalidArgument(format!(
                        "invalid endpoint settings:\nno configured subnet or ip-range contain the IP address {w}"
                    )));
                }
                if pool.reserved(u32::from(w)) || allocs.addresses.get(&w).is_some_and(|e| e != endpoint) {
                    return Err(EngineError::Conflict(format!(
                        "failed to set up container networking: Address already in use ({w} on network {})",
                        network.name
                    )));
                }
                w
            }
            None => next_free(&pool, &allocs).ok_or_else(|| {
                EngineError::Conflict(format!(
                    "no available IPv4 addresses on this network's address pools: {} ({})",
                    network.name, pool.range
                ))
            })?,
        };
        allocs.addresses.retain(|_, e| e != endpoint);
        allocs.addresses.insert(ip, endpoint.to_string());
        let json = serde_json::to_string(&allocs)
            .map_err(|e| EngineError::Internal(format!("encoding address allocations: {e}")))?;
        tx.put_definition(DefinitionTable::Networks, &key, &json)?;
        tx.commit()?;
        Ok(ip)
    }

    /// Frees what `endpoint` holds on network `network_id` (idempotent).
    pub fn release(&self, store: &Store, network_id: &str, endpoint: &str) -> EngineResult<()> {
        let lock = self.lock_of(network_id);
        let _g = lock.lock().unwrap_or_else(|e| e.into_inner());
        let tx = store.write()?;
        let key = allocations_key(network_id);
        let Some(j) = tx.definition(DefinitionTable::Networks, &key)? else {
            return Ok(());
        };
        let mut allocs: Allocations = serde_json::from_str(&j)
            .map_err(|e| EngineError::Internal(format!("network {network_id}: corrupt address allocations: {e}")))?;
        let before = allocs.addresses.len();
        allocs.addresses.retain(|_, e| e != endpoint);
        if allocs.addresses.len() == before {
            return Ok(());
        }
        let json = serde_json::to_string(&allocs)
            .map_err(|e| EngineError::Internal(format!("encoding address allocations: {e}")))?;
        tx.put_definition(DefinitionTable::Networks, &key, &json)?;
        tx.commit()?;
        Ok(())
    }

    /// Keeps only the allocations whose endpoint `keep` accepts (at daemon
    /// start: endpoints no container record names were left by a crash).
    pub fn retain(&self, store: &Store, keep: &dyn Fn(&str) -> bool) -> EngineResult<()> {
        let tx = store.write()?;
        for (key, json) in tx.definitions(DefinitionTable::Networks)? {
            if !is_allocations_key(&key) {
                continue;
            }
            let Ok(mut allocs) = serde_json::from_str::<Allocations>(&json) else {
                continue;
            };
            let before = allocs.addresses.len();
            allocs.addresses.retain(|_, e| keep(e));
            if allocs.addresses.len() != before {
                let json = serde_json::to_string(&allocs)
                    .map_err(|e| EngineError::Internal(format!("encoding address allocations: {e}")))?;
                tx.put_definition(DefinitionTable::Networks, &key, &json)?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_model::network::Ipam as IpamModel;

    fn net(id: &str, subnet: &str, range: &str, gw: &str) -> NetworkRecord {
        NetworkRecord {
            name: format!("n-{id}"),
            id: id.into(),
            ipam: IpamModel {
                driver: "default".into(),
                options: None,
                config: vec![IpamConfigEntry { subnet: subnet.into(), ip_range: range.into(), gateway: gw.into() }],
            },
            ..Default::default()
        }
    }

    fn entry(subnet: &str, range: &str, gw: &str) -> IpamConfigEntry {
        IpamConfigEntry { subnet: subnet.into(), ip_range: range.into(), gateway: gw.into() }
    }

    #[test]
    fn subnets_parse_mask_and_overlap() {
        let s = Subnet::parse("172.72.3.4/16").unwrap();
        assert_eq!(s.masked().to_string(), "172.72.0.0/16");
        assert!(s.contains("172.72.255.1".parse().unwrap()) && !s.contains("172.73.0.1".parse().unwrap()));
        assert!(s.overlaps(&Subnet::parse("172.72.5.0/24").unwrap()));
        assert!(!s.overlaps(&Subnet::parse("172.73.0.0/16").unwrap()));
        assert!(Subnet::parse("10.0.0.0/33").is_none() && Subnet::parse("10.0.0/8").is_none());
        assert_eq!(default_gateway(Subnet::parse("172.72.0.0/16").unwrap()).to_string(), "172.72.0.1");
    }

    #[test]
    fn config_is_checked_with_dockers_words() {
        assert!(validate_config(&[entry("172.72.0.0/16", "172.72.0.0/24", "172.72.0.1")]).is_ok());
        let e = validate_config(&[entry("172.72.0.0/16", "10.0.0.0/24", "")]).unwrap_err().to_string();
        assert_eq!(e, "invalid network config:\ninvalid ip-range 10.0.0.0/24: parent subnet 172.72.0.0/16 doesn't contain ip-range");
        let e = validate_config(&[entry("172.72.0.0/16", "", "10.0.0.1")]).unwrap_err().to_string();
        assert_eq!(e, "invalid network config:\ninvalid gateway 10.0.0.1: parent subnet 172.72.0.0/16 doesn't contain this address");
        let e = validate_config(&[entry("172.72.0.1/16", "", "")]).unwrap_err().to_string();
        assert!(e.contains("it should be 172.72.0.0/16"), "{e}");
        let e = validate_config(&[entry("nonsense", "", "")]).unwrap_err().to_string();
        assert!(e.contains("invalid CIDR block notation"), "{e}");
        let e = validate_config(&[entry("172.72.0.0/16", "10.0.0.0/8", "10.0.0.1")]).unwrap_err().to_string();
        assert!(
            e.starts_with("invalid network config:\n* invalid ip-range") && e.contains("\n* invalid gateway"),
            "{e}"
        );
    }

    #[test]
    fn pool_skips_networks_and_routes() {
        let taken = [Subnet::parse("172.17.0.0/16").unwrap(), Subnet::parse("172.18.0.0/16").unwrap()];
        assert_eq!(pick_subnet(&taken, &[]).unwrap().to_string(), "172.19.0.0/16");
        let routes = [Subnet::parse("172.19.4.0/24").unwrap()];
        assert_eq!(pick_subnet(&taken, &routes).unwrap().to_string(), "172.20.0.0/16");
        let all: Vec<Subnet> = default_pool().collect();
        assert!(pick_subnet(&all, &[]).unwrap_err().to_string().contains("non-overlapping IPv4 address pool"));
    }

    #[test]
    fn addresses_come_in_order_skipping_reserved_ones() {
        let n = net("a", "172.17.0.0/16", "", "172.17.0.1");
        let pool = Pool::of(&n).unwrap();
        let mut a = Allocations::default();
        assert_eq!(next_free(&pool, &a).unwrap().to_string(), "172.17.0.2");
        a.addresses.insert("172.17.0.2".parse().unwrap(), "e1".into());
        assert_eq!(next_free(&pool, &a).unwrap().to_string(), "172.17.0.3");
        // An ip-range at the start of the subnet skips the network address and gateway.
        let n = net("b", "172.72.0.0/16", "172.72.0.0/24", "172.72.0.1");
        assert_eq!(next_free(&Pool::of(&n).unwrap(), &Allocations::default()).unwrap().to_string(), "172.72.0.2");
        // A /30 has two hosts, one of which is the gateway.
        let n = net("c", "10.1.0.0/30", "", "10.1.0.1");
        let pool = Pool::of(&n).unwrap();
        let mut a = Allocations::default();
        a.addresses.insert("10.1.0.2".parse().unwrap(), "e".into());
        assert_eq!(next_free(&pool, &a), None);
    }

    #[test]
    fn allocations_persist_are_released_and_static_ips_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("berth.redb")).unwrap();
        let ipam = Ipam::default();
        let n = net("n1", "172.72.0.0/16", "172.72.0.0/24", "172.72.0.1");
        let a = ipam.allocate(&store, &n, "e1", None).unwrap();
        let b = ipam.allocate(&store, &n, "e2", None).unwrap();
        assert_eq!((a.to_string(), b.to_string()), ("172.72.0.2".into(), "172.72.0.3".into()));
        assert_eq!(ipam.allocate(&store, &n, "e1", None).unwrap(), a, "an endpoint keeps its address");
        let e = ipam.allocate(&store, &n, "e3", Some(b)).unwrap_err();
        assert!(e.to_string().contains("Address already in use"), "{e}");
        let e = ipam.allocate(&store, &n, "e3", Some("10.0.0.5".parse().unwrap())).unwrap_err();
        assert!(e.to_string().contains("no configured subnet or ip-range contain the IP address 10.0.0.5"), "{e}");
        // A static address may lie outside the ip-range but inside the subnet.
        let s = ipam.allocate(&store, &n, "e3", Some("172.72.9.9".parse().unwrap())).unwrap();
        assert_eq!(s.to_string(), "172.72.9.9");
        ipam.release(&store, "n1", "e1").unwrap();
        ipam.release(&store, "n1", "e1").unwrap();
        // Survives a reopen; the freed address is the lowest again.
        drop(store);
        let store = Store::open(&dir.path().join("berth.redb")).unwrap();
        let ipam = Ipam::default();
        assert_eq!(ipam.allocate(&store, &n, "e4", None).unwrap().to_string(), "172.72.0.2");
        assert_eq!(ipam.allocate(&store, &n, "e5", None).unwrap().to_string(), "172.72.0.4");
        ipam.retain(&store, &|e| e != "e5").unwrap();
        assert_eq!(ipam.allocate(&store, &n, "e6", None).unwrap().to_string(), "172.72.0.4");
    }

    #[test]
    fn fifty_concurrent_allocations_are_distinct() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("berth.redb")).unwrap());
        let ipam = Arc::new(Ipam::default());
        let n = Arc::new(net("n1", "172.30.0.0/16", "", "172.30.0.1"));
        let threads: Vec<_> = (0..50)
            .map(|i| {
                let (store, ipam, n) = (store.clone(), ipam.clone(), n.clone());
                std::thread::spawn(move || ipam.allocate(&store, &n, &format!("e{i}"), None).unwrap())
            })
            .collect();
        let mut got: Vec<Ipv4Addr> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        got.sort();
        got.dedup();
        assert_eq!(got.len(), 50, "fifty distinct addresses");
        assert_eq!(got[0].to_string(), "172.30.0.2");
        assert_eq!(got[49].to_string(), "172.30.0.51", "no gaps");
    }
}
