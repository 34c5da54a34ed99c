//! IPAM: subnets for new networks from the default pool, addresses for
//! endpoints in order from a network's ip-range, persisted in the store and
//! never handed out twice.
