//! `docker create`: everything is checked before anything is written, and a
//! failure after the first write undoes what was done.

use std::collections::BTreeMap;

use berth_model::container::{
    ContainerConfig, ContainerId, ContainerRecord, ContainerState, HostConfig, RestartPolicy, Status, ZERO_TIME,
};
use berth_runtime::clock::now_rfc3339;

use crate::error::{EngineError, EngineResult};
use crate::network::{parse_network_mode, NetworkMode};
use super::ContainerService;
use super::names;

/// Docker's minimum `--memory`.
const MIN_MEMORY: i64 = 6 * 1024 * 1024;

/// Entrypoint and Cmd as Docker merges them: a container's entrypoint
/// replaces the image's and drops the image's Cmd; `--entrypoint ""` (an
/// empty list) resets it; a container's Cmd replaces the image's.
pub fn resolve_command(
    entrypoint: Option<&[String]>,
    cmd: Option<&[String]>,
    image_entrypoint: Option<&[String]>,
    image_cmd: Option<&[String]>,
) -> (Option<Vec<String>>, Option<Vec<String>>) {
    let user_ep = entrypoint.filter(|e| !(e.is_empty() || (e.len() == 1 && e[0].is_empty())));
    match user_ep {
        Some(ep) => (Some(ep.to_vec()), cmd.map(|c| c.to_vec())),
        None => {
            let cmd = match cmd {
                Some(c) if !c.is_empty() => Some(c.to_vec()),
                _ => image_cmd.map(|c| c.to_vec()),
            };
            // Given but empty means "no entrypoint", not "the image's".
            let ep = if entrypoint.is_some() { None } else { image_entrypoint.map(|e| e.to_vec()) };
            (ep, cmd)
        }
    }
}

/// Number of online CPUs.
pub(crate) fn online_cpus() -> i64 {
    // SAFETY: sysconf reads a value and has no memory effects.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n < 1 {
        1
    } else {
        n as i64
    }
}

/// Checks a restart policy and returns it normalised ("" becomes "no").
pub fn validate_restart_policy(policy: &RestartPolicy) -> EngineResult<RestartPolicy> {
    let name = if policy.name.is_empty() { "no" } else { policy.name.as_str() };
    if !matches!(name, "no" | "always" | "unless-stopped" | "on-failure") {
        return Err(EngineError::InvalidArgument(format!(
            "invalid restart policy: unknown policy '{name}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
        )));
    }
    if policy.maximum_retry_count < 0 {
        return Err(EngineError::InvalidArgument(
            "invalid restart policy: maximum retry count cannot be negative".into(),
        ));
    }
    if policy.maximum_retry_count > 0 && name != "on-failure" {
        return Err(EngineError::InvalidArgument(
            "invalid restart policy: maximum retry count can only be used with 'on-failure'".into(),
        ));
    }
    Ok(RestartPolicy { name: name.to_string(), maximum_retry_count: policy.maximum_retry_count })
}

/// Parses a `--log-opt max-size` value (`10m`, `1k`, `2g`, bytes).
pub fn parse_size(value: &str) -> Option<u64> {
    let v = value.trim().to_ascii_lowercase();
    let v = v.strip_suffix('b').unwrap_or(&v);
    let (num, mult) = match v.chars().last()? {
        'k' => (&v[..v.len() - 1], 1u64 << 10),
        'm' => (&v[..v.len() - 1], 1 << 20),
        'g' => (&v[..v.len() - 1], 1 << 30),
        _ => (v, 1),
    };
    let n: f64 = num.parse().ok()?;
    (n >= 0.0).then_some((n * mult as f64) as u64)
}

/// The checks of resource limits shared by `create` and `update`.
pub fn validate_resources(hc: &HostConfig) -> EngineResult<()> {
    let bad = |m: &str| Err(EngineError::InvalidArgument(m.to_string()));
    if hc.memory != 0 && hc.memory < MIN_MEMORY {
        return bad("Minimum memory limit allowed is 6MB");
    }
    if hc.memory_reservation != 0 && hc.memory_reservation < MIN_MEMORY {
        return bad("Minimum memory reservation allowed is 6MB");
    }
    if hc.memory > 0 && hc.memory_reservation > 0 && hc.memory < hc.memory_reservation {
        return bad("Minimum memory limit can not be less than memory reservation limit, see usage");
    }
    if hc.memory_swap > 0 {
        if hc.memory == 0 {
            return bad("You should always set the Memory limit when using Memoryswap limit, see usage");
        }
        if hc.memory_swap < hc.memory {
            return bad("Minimum memoryswap limit should be larger than memory limit, see usage");
        }
    }
    if let Some(s) = hc.memory_swappiness {
        if s != -1 && !(0..=100).contains(&s) {
            return bad(&format!("Invalid value: {s}, valid memory swappiness range is 0-100"));
        }
    }
    if hc.nano_cpus < 0 {
        return bad("invalid CPU value: CPUs cannot be negative");
    }
    let ncpu = online_cpus();
    if hc.nano_cpus > 0 && hc.nano_cpus > ncpu * 1_000_000_000 {
        return bad(&format!("Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available"));
    }
    if hc.nano_cpus > 0 && (hc.cpu_quota > 0 || hc.cpu_period > 0) {
        return bad("Conflicting options: Nano CPUs and CPU Period cannot both be set");
    }
    if hc.cpu_shares < 0 {
        return bad("invalid CPU shares: cannot be negative");
    }
    if hc.cpu_period != 0 && !(1000..=1_000_000).contains(&hc.cpu_period) {
        return bad("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)");
    }
    if hc.cpu_quota > 0 && hc.cpu_quota < 1000 {
        return bad("CPU cfs quota can not be less than 1ms (i.e. 1000)");
    }
    if hc.oom_score_adj < -1000 || hc.oom_score_adj > 1000 {
        return bad(&format!("Invalid value {}, range for oom score adj is [-1000, 1000]", hc.oom_score_adj));
    }
    Ok(())
}

/// Merges Docker's env lists: later `KEY=...` replaces earlier `KEY`.
fn merge_env(image: &[String], user: &[String]) -> Vec<String> {
    let mut out: Vec<String> = image.to_vec();
    for e in user {
        let key = e.split_once('=').map(|(k, _)| k).unwrap_or(e);
        if let Some(slot) = out.iter_mut().find(|x| x.split_once('=').map(|(k, _)| k).unwrap_or(x) == key) {
            *slot = e.clone();
        } else {
            out.push(e.clone());
        }
    }
    out
}

/// The container's config with the image's defaults filled in, as Docker stores it.
pub fn merge_config(mut config: ContainerConfig, image: Option<&oci_spec::image::Config>) -> ContainerConfig {
    let img = image.cloned().unwrap_or_default();
    let (ep, cmd) = resolve_command(
        config.entrypoint.as_deref(),
        config.cmd.as_deref(),
        img.entrypoint().as_deref(),
        img.cmd().as_deref(),
    );
    config.entrypoint = ep;
    config.cmd = cmd;
    config.env = Some(merge_env(img.env().as_deref().unwrap_or_default(), config.env.as_deref().unwrap_or_default()));
    if config.working_dir.is_empty() {
        config.working_dir = img.working_dir().clone().unwrap_or_default();
    }
    if config.user.is_empty() {
        config.user = img.user().clone().unwrap_or_default();
    }
    if config.stop_signal.as_deref().is_none_or(str::is_empty) {
        config.stop_signal = img.stop_signal().clone();
    }
    if let Some(labels) = img.labels() {
        let mut merged: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        merged.extend(config.labels.take().unwrap_or_default());
        config.labels = Some(merged);
    }
    if let Some(ports) = img.exposed_ports() {
        let set = config.exposed_ports.get_or_insert_with(Default::default);
        for p in ports {
            set.entry(p.clone()).or_default();
        }
    }
    if let Some(vols) = img.volumes() {
        let set = config.volumes.get_or_insert_with(Default::default);
        for v in vols {
            set.entry(v.clone()).or_default();
        }
    }
    config
}

impl ContainerService {
    /// `docker create`: validates everything (image, name, command, limits,
    /// ulimits, restart policy, networks: `--ip`, `--network-alias`,
    /// `--link`) before anything is written; returns the record and
    /// Docker's warnings.
    pub fn create(
        &self,
        name: Option<&str>,
        config: ContainerConfig,
        mut host_config: HostConfig,
        networking: berth_model::network::NetworkingConfig,
    ) -> EngineResult<(ContainerRecord, Vec<String>)> {
        let mut warnings = Vec::new();
        if config.image.is_empty() {
            return Err(EngineError::InvalidArgument("no image specified (Config.Image is empty)".into()));
        }
        let image = self.images.find(&config.image)?;
        let name = name.filter(|n| !n.is_empty()).map(names::validate).transpose()?;
        let config = merge_config(config, image.config.config().as_ref());
        let mut full: Vec<String> = config.entrypoint.clone().unwrap_or_default();
        full.extend(config.cmd.clone().unwrap_or_default());
        if full.is_empty() {
            return Err(EngineError::InvalidArgument("no command specified".into()));
        }
        validate_resources(&host_config)?;
        host_config.restart_policy = validate_restart_policy(&host_config.restart_policy)?;
        if host_config.auto_remove && host_config.restart_policy.name != "no" {
            return Err(EngineError::InvalidArgument(
                "Conflicting options: AutoRemove and a restart policy (--rm and --restart) cannot be used together"
                    .into(),
            ));
        }
        if let Some(sig) = config.stop_signal.as_deref().filter(|s| !s.is_empty()) {
            super::signal::parse(sig)?;
        }
        self.validate_log_config(&mut host_config)?;
        let mut mode = parse_network_mode(&host_config.network_mode)?;
        let mut shared_hostname = None;
        if let NetworkMode::Container(other) = &mode {
            // Docker checks the container exists at create, and runs at start.
            // The network's identity is the other container's: its name, hosts and DNS.
            let conflict = |what: &str| {
                Err(EngineError::InvalidArgument(format!("conflicting options: {what} and the network mode")))
            };
            if !config.hostname.is_empty() {
                return conflict("hostname");
            }
            if host_config.dns.as_ref().is_some_and(|d| !d.is_empty()) {
                return conflict("dns");
            }
            if host_config.extra_hosts.as_ref().is_some_and(|d| !d.is_empty()) {
                return conflict("custom host-to-IP mapping");
            }
            let o = self.find(other)?;
            host_config.network_mode = format!("container:{}", o.record.id);
            shared_hostname = Some(o.record.config.hostname.clone());
            mode = NetworkMode::Container(o.record.id.to_string());
        }
        if host_config.memory > 0 && host_config.memory_swap == 0 {
            // Docker's default: as much swap as memory.
            host_config.memory_swap = host_config.memory * 2;
        }
        let top_storage = match image.record.layers.last() {
            Some(top) => Some(self.images.layer_storage_id(top)?.ok_or_else(|| {
                EngineError::InvalidArgument(format!(
                    "image {}: layer {top} is missing from the store",
                    image.record.id.short()
                ))
            })?),
            None => None,
        };

        let id = ContainerId::random().map_err(|e| EngineError::io("reading random bytes for a container ID", e))?;
        let mut config = config;
        let hostname = if let Some(h) = shared_hostname {
            h
        } else if !config.hostname.is_empty() {
            config.hostname.clone()
        } else if mode == NetworkMode::Host {
            nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_else(|_| id.short().into())
        } else {
            id.short().to_string()
        };
        config.hostname = hostname.clone();
        let mut record = ContainerRecord {
            id: id.clone(),
            name: String::new(),
            created: now_rfc3339(),
            image: image.record.id.clone(),
            path: full[0].clone(),
            args: full[1..].to_vec(),
            config,
            host_config,
            state: ContainerState {
                status: Status::Created,
                started_at: ZERO_TIME.into(),
                finished_at: ZERO_TIME.into(),
                ..Default::default()
            },
            restart_count: 0,
            rw_layer: id.as_str().to_string(),
            manually_stopped: false,
            networks: Default::default(),
            ports: Default::default(),
            sandbox_key: String::new(),
            mounts: Vec::new(),
        };

        warnings.extend(self.networks.plan_container_networks(&mut record, &networking)?);
        let image_volumes: Vec<String> =
            image.config.config().as_ref().and_then(|c| c.volumes().clone()).unwrap_or_default();
        // Writes start here; `undo` removes whatever exists of them.
        self.volumes.plan_container_mounts(&mut record, &image_volumes)?;
        let dir = self.catalog.dir(id.as_str());
        let undo = |layer: bool| {
            // The volumes the plan made go too (a failed create leaves none).
            self.volumes.undo_container_mounts(id.as_str());
            if layer {
                if let Err(e) = self.storage.remove(id.as_str()) {
                    tracing::warn!(container = %id, error = %e, "removing the layer of a failed create; the next start removes it");
                }
            }
            self.root_trash.put_or_warn(&dir, "removing the directory of a failed create");
        };
        if let Err(e) = self.networks.write_sandbox_files(&record, &mode) {
            undo(false);
            return Err(e);
        }
        if let Err(e) = self.storage.create_read_write(id.as_str(), top_storage.as_deref()) {
            undo(false);
            return Err(crate::error::driver_error("creating the container's writable layer", e));
        }
        let stored = (|| -> EngineResult<ContainerRecord> {
            let tx = self.store.write()?;
            let existing = tx.containers()?;
            let mut record = record;
            record.name = match name {
                Some(n) => {
                    if let Some(other) = existing.iter().find(|c| c.name == n) {
                        return Err(EngineError::Conflict(format!(
                            "Conflict. The container name \"/{n}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.",
                            other.id
                        )));
                    }
                    n
                }
                None => {
                    let mut retry = 0;
                    loop {
                        let mut r = [0u8; 4];
                        r.copy_from_slice(&crate::ids::random_bytes(4)?);
                        let n = names::generate(&r, retry);
                        if !existing.iter().any(|c| c.name == n) {
                            break n;
                        }
                        retry += 1;
                    }
                }
            };
            tx.put_container(&record)?;
            tx.commit()?;
            Ok(record)
        })();
        match stored {
            Ok(record) => {
                self.emit(&record, "create", &[]);
                Ok((record, warnings))
            }
            Err(e) => {
                undo(true);
                Err(e)
            }
        }
    }

    fn validate_log_config(&self, hc: &mut HostConfig) -> EngineResult<()> {
        let kind = if hc.log_config.kind.is_empty() { "json-file" } else { hc.log_config.kind.as_str() };
        if kind != "json-file" {
            return Err(EngineError::InvalidArgument(format!(
                "logging driver \"{kind}\" is not supported: berth writes json-file logs"
            )));
        }
        hc.log_config.kind = kind.to_string();
        for (k, v) in &hc.log_config.config {
            match k.as_str() {
                "max-size" => {
                    if parse_size(v).is_none_or(|n| n == 0) {
                        return Err(EngineError::InvalidArgument(format!("invalid max-size {v:?}: expected e.g. 10m")));
                    }
                }
                "max-file" => {
                    if v.parse::<u32>().map_or(true, |n| n < 1) {
                        return Err(EngineError::InvalidArgument(format!(
                            "invalid max-file {v:?}: expected a number of at least 1"
                        )));
                    }
                    if v != "1" && !hc.log_config.config.contains_key("max-size") {
                        return Err(EngineError::InvalidArgument(
                            "max-file cannot be set when max-size is not set".into(),
                        ));
                    }
                }
                "compress" | "labels" | "env" | "tag" | "labels-regex" | "env-regex" => {}
                other => {
                    return Err(EngineError::InvalidArgument(format!(
                        "unknown log opt '{other}' for json-file log driver"
                    )))
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn command_resolution_follows_docker() {
        let ie = v(&["/entry"]);
        let ic = v(&["sh"]);
        // Nothing given: the image's.
        assert_eq!(resolve_command(None, None, Some(&ie), Some(&ic)), (Some(ie.clone()), Some(ic.clone())));
        // A cmd replaces the image's cmd, keeps its entrypoint.
        let c = v(&["echo", "hi"]);
        assert_eq!(resolve_command(None, Some(&c), Some(&ie), Some(&ic)), (Some(ie.clone()), Some(c.clone())));
        // An entrypoint drops the image's cmd.
        let e = v(&["/bin/true"]);
        assert_eq!(resolve_command(Some(&e), None, Some(&ie), Some(&ic)), (Some(e.clone()), None));
        // `--entrypoint ""` resets the entrypoint, keeps the image's cmd.
        assert_eq!(resolve_command(Some(&[]), None, Some(&ie), Some(&ic)), (None, Some(ic.clone())));
        assert_eq!(resolve_command(Some(&v(&[""])), None, Some(&ie), None), (None, None));
    }

    #[test]
    fn limits_are_checked_with_dockers_messages() {
        let hc = |f: &dyn Fn(&mut HostConfig)| {
            let mut h = HostConfig::default();
            f(&mut h);
            validate_resources(&h).map_err(|e| e.to_string())
        };
        assert_eq!(hc(&|h| h.memory = 1 << 20).unwrap_err(), "Minimum memory limit allowed is 6MB");
        assert!(hc(&|h| h.memory = 6 << 20).is_ok());
        assert_eq!(
            hc(&|h| {
                h.memory = 64 << 20;
                h.memory_swap = 32 << 20
            })
            .unwrap_err(),
            "Minimum memoryswap limit should be larger than memory limit, see usage"
        );
        assert!(hc(&|h| {
            h.memory = 64 << 20;
            h.memory_swap = -1
        })
        .is_ok());
        let too_many = (online_cpus() + 1) * 1_000_000_000;
        assert!(hc(&|h| h.nano_cpus = too_many).unwrap_err().starts_with("Range of CPUs is from 0.01 to"));
    }

    #[test]
    fn restart_policies() {
        let p = |n: &str, c: i64| validate_restart_policy(&RestartPolicy { name: n.into(), maximum_retry_count: c });
        assert_eq!(p("", 0).unwrap().name, "no");
        assert_eq!(p("on-failure", 2).unwrap().maximum_retry_count, 2);
        assert!(p("always", 0).is_ok() && p("unless-stopped", 0).is_ok());
        assert!(p("sometimes", 0).unwrap_err().to_string().contains("unknown policy 'sometimes'"));
        assert!(p("always", 3).unwrap_err().to_string().contains("only be used with 'on-failure'"));
        assert!(p("on-failure", -1).is_err());
    }

    #[test]
    fn network_modes() {
        assert_eq!(parse_network_mode("").unwrap(), NetworkMode::Network("bridge".into()));
        assert_eq!(parse_network_mode("default").unwrap(), NetworkMode::Network("bridge".into()));
        assert_eq!(parse_network_mode("none").unwrap(), NetworkMode::None);
        assert_eq!(parse_network_mode("host").unwrap(), NetworkMode::Host);
        assert_eq!(parse_network_mode("container:web").unwrap(), NetworkMode::Container("web".into()));
        assert!(parse_network_mode("container:").is_err());
        assert_eq!(parse_network_mode("mynet").unwrap(), NetworkMode::Network("mynet".into()));
    }

    #[test]
    fn sizes_and_env_merge() {
        assert_eq!(parse_size("10m"), Some(10 << 20));
        assert_eq!(parse_size("1k"), Some(1024));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("x"), None);
        assert_eq!(merge_env(&v(&["PATH=/bin", "A=1"]), &v(&["A=2", "B=3"])), v(&["PATH=/bin", "A=2", "B=3"]));
    }
}
