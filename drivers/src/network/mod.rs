//! In-tree network drivers: `bridge` (the default), `macvlan`, `host` and
//! `null` (Docker's driver of the `none` network). They decide; the core's
//! executor applies their plans (ARCHITECTURE §2).

pub mod bridge;
pub mod macvlan;
pub mod none;

use std::sync::Arc;

use berth_model::drivers::{DriverError, DriverResult, NetworkDriver};

pub use bridge::BridgeDriver;
pub use macvlan::MacvlanDriver;
pub use none::InertDriver;

/// Every in-tree network driver, by the name `network create -d` takes; the
/// daemon registers them beside the plugins' drivers.
pub fn in_tree() -> Vec<(&'static str, Arc<dyn NetworkDriver>)> {
    vec![
        ("bridge", Arc::new(BridgeDriver::default())),
        ("host", Arc::new(InertDriver("host"))),
        ("null", Arc::new(InertDriver("null"))),
        ("macvlan", Arc::new(MacvlanDriver::default())),
    ]
}

/// The address an endpoint request must carry (checked) and its MAC: the
/// one asked for, or Docker's derived from the address.
pub fn endpoint_address_and_mac(
    request: &berth_model::network::EndpointCreateRequest,
    kind: &str,
) -> DriverResult<(String, String)> {
    let address = request
        .address
        .clone()
        .ok_or_else(|| DriverError::InvalidArgument(format!("a {kind} endpoint needs an IPv4 address")))?;
    split_cidr(&address)?;
    let mac = match request.mac_address.as_deref().filter(|m| !m.is_empty()) {
        Some(m) => m.to_ascii_lowercase(),
        None => mac_for(&address).ok_or_else(|| DriverError::InvalidArgument(format!("invalid address {address}")))?,
    };
    Ok((address, mac))
}

/// Docker's MAC for an IPv4 address: `02:42` and the four address bytes.
pub fn mac_for(address: &str) -> Option<String> {
    let ip: std::net::Ipv4Addr = address.split('/').next()?.parse().ok()?;
    let o = ip.octets();
    Some(format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3]))
}

/// `a.b.c.d/len` split, checked.
pub(crate) fn split_cidr(s: &str) -> DriverResult<(std::net::Ipv4Addr, u8)> {
    let bad = || DriverError::InvalidArgument(format!("invalid address {s:?}: expected IPv4 CIDR like 172.18.0.2/16"));
    let cidr = berth_model::Subnet::parse(s).ok_or_else(bad)?;
    Ok((cidr.addr, cidr.prefix))
}

/// The link name of an endpoint: `prefix` and as much of the endpoint ID as fits in 15 characters.
pub(crate) fn link_name(prefix: &str, endpoint_id: &str) -> String {
    let room = 15usize.saturating_sub(prefix.len());
    let id: String = endpoint_id.chars().filter(|c| c.is_ascii_alphanumeric()).take(room).collect();
    format!("{prefix}{id}")
}

/// `com.docker.network.driver.mtu`, checked.
pub(crate) fn mtu_option(options: &std::collections::BTreeMap<String, String>) -> DriverResult<Option<u32>> {
    match options.get("com.docker.network.driver.mtu") {
        None => Ok(None),
        Some(v) => match v.parse::<u32>() {
            Ok(m) if (68..=65535).contains(&m) => Ok(Some(m)),
            _ => Err(DriverError::InvalidArgument(format!(
                "invalid MTU {v:?} (com.docker.network.driver.mtu): expected a number from 68 to 65535"
            ))),
        },
    }
}

/// Whether an interface exists in the caller's network namespace.
pub(crate) fn interface_exists(name: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(name) else {
        return false;
    };
    // SAFETY: a valid NUL-terminated string; the call only reads it.
    unsafe { libc::if_nametoindex(c.as_ptr()) != 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_and_names_follow_docker() {
        assert_eq!(mac_for("172.17.0.2/16").as_deref(), Some("02:42:ac:11:00:02"));
        assert_eq!(link_name("veth", "0123456789abcdef"), "veth0123456789a");
        assert_eq!(link_name("veth", "0123456789abcdef").len(), 15);
    }
}
