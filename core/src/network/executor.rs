//! The plan executor: applies a driver's `NetworkPlan` with netlink
//! (rtnetlink) in the host's and the sandbox's namespaces, and firewall rules
//! as one nftables transaction. In-tree drivers and plugins use it alike.
