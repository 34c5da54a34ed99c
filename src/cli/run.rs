//! `create`, `run` and `start`: Docker's flags turned into the API's Config
//! and HostConfig, and the attach-before-start dance `run` does so no output
//! is lost and the exit status is the container's.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use berth_model::container::{ContainerConfig, HostConfig, LogConfig, RestartPolicy, Ulimit};
use clap::{ArgAction, Args};
use http_body_util::BodyExt;
use hyper::Method;

use super::client::{empty, enc, Client, DaemonError};
use super::stdio::{follow_terminal_size, proxy_signals, pump, RawTerminal};
use super::units::parse_memory;
use crate::apitypes::containers::{ContainerCreateRequest, ContainerCreateResponse, ContainerInspect, ContainerWaitResponse};

/// The flags `create` and `run` share (Docker's container options).
#[derive(Args, Debug, Default, Clone)]
pub struct CreateFlags {
    /// Attach to STDIN, STDOUT or STDERR.
    #[arg(short = 'a', long = "attach", value_name = "STREAM")]
    pub attach: Vec<String>,
    /// Keep STDIN open even if not attached.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Assign a name to the container.
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables.
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Read in a file of environment variables.
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container.
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>]).
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Container host name.
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Container NIS domain name.
    #[arg(long)]
    pub domainname: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image.
    #[arg(long, allow_hyphen_values = true)]
    pub entrypoint: Option<String>,
    /// Set meta data on a container.
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
    pub label: Vec<String>,
    /// Read in a line delimited file of labels.
    #[arg(long = "label-file", value_name = "FILE")]
    pub label_file: Vec<PathBuf>,
    /// Restart policy to apply when a container exits (no, always, on-failure[:N], unless-stopped).
    #[arg(long)]
    pub restart: Option<String>,
    /// Automatically remove the container and its associated anonymous volumes when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Signal to stop the container.
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container.
    #[arg(long = "stop-timeout", allow_hyphen_values = true)]
    pub stop_timeout: Option<i64>,
    /// Memory limit.
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Swap limit equal to memory plus swap: '-1' to enable unlimited swap.
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Memory soft limit.
    #[arg(long = "memory-reservation")]
    pub memory_reservation: Option<String>,
    /// Tune container memory swappiness (0 to 100).
    #[arg(long = "memory-swappiness", allow_hyphen_values = true)]
    pub memory_swappiness: Option<i64>,
    /// Disable OOM Killer.
    #[arg(long = "oom-kill-disable")]
    pub oom_kill_disable: bool,
    /// Tune host's OOM preferences (-1000 to 1000).
    #[arg(long = "oom-score-adj", allow_hyphen_values = true)]
    pub oom_score_adj: Option<i64>,
    /// Number of CPUs.
    #[arg(long)]
    pub cpus: Option<String>,
    /// CPU shares (relative weight).
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) period.
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) quota.
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1).
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// MEMs in which to allow execution (0-3, 0,1).
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Tune container pids limit (set -1 for unlimited).
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Optional parent cgroup for the container.
    #[arg(long = "cgroup-parent")]
    pub cgroup_parent: Option<String>,
    /// Add Linux capabilities.
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities.
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Security Options.
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    /// Give extended privileges to this container.
    #[arg(long)]
    pub privileged: bool,
    /// Ulimit options.
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// Mount the container's root filesystem as read only.
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Run an init inside the container that forwards signals and reaps processes.
    #[arg(long)]
    pub init: bool,
    /// Connect a container to a network (bridge, NAME, none, host, container:<name|id>).
    #[arg(long, visible_alias = "net")]
    pub network: Vec<String>,
    #[command(flatten)]
    pub net: super::networks::NetFlags,
    /// Runtime to use for this container (runc, crun).
    #[arg(long)]
    pub runtime: Option<String>,
    /// Logging driver for the container.
    #[arg(long = "log-driver")]
    pub log_driver: Option<String>,
    /// Log driver options.
    #[arg(long = "log-opt")]
    pub log_opt: Vec<String>,
    /// Size of /dev/shm.
    #[arg(long = "shm-size")]
    pub shm_size: Option<String>,
    /// Mount a tmpfs directory (/path[:options]).
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Bind mount a volume ([SOURCE:]TARGET[:OPTIONS]).
    #[arg(short = 'v', long = "volume")]
    pub volume: Vec<String>,
    /// Attach a filesystem mount to the container (type=,source=,target=,...).
    #[arg(long)]
    pub mount: Vec<String>,
    /// Mount volumes from the specified container(s) (CONTAINER[:ro|rw]).
    #[arg(long = "volumes-from")]
    pub volumes_from: Vec<String>,
    /// Optional volume driver for the container.
    #[arg(long = "volume-driver")]
    pub volume_driver: Option<String>,
    /// Sysctl options.
    #[arg(long)]
    pub sysctl: Vec<String>,
    /// Add additional groups to join.
    #[arg(long = "group-add")]
    pub group_add: Vec<String>,
    /// Set platform if server is multi-platform capable.
    #[arg(long)]
    pub platform: Option<String>,
    /// Write the container ID to the file.
    #[arg(long)]
    pub cidfile: Option<PathBuf>,
    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,
}

/// `berth create`.
#[derive(Args, Debug)]
#[command(disable_help_flag = true)]
pub struct CreateArgs {
    #[command(flatten)]
    pub flags: CreateFlags,
    /// IMAGE [COMMAND] [ARG...]
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "IMAGE [COMMAND] [ARG...]")]
    pub args: Vec<String>,
}

/// With `--rm`, a container that never started is removed too, so a failed
/// `run --rm` leaves nothing behind (the daemon may already have removed it).
async fn remove_after_failed_start(client: &Client, id: &str, auto_remove: bool) {
    if auto_remove {
        let _ = client.call(Method::DELETE, &format!("/containers/{id}?force=1"), empty(), None).await;
    }
}

/// `berth run`.
#[derive(Args, Debug)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Run container in background and print container ID.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Proxy received signals to the process.
    #[arg(long = "sig-proxy", action = ArgAction::Set, default_value = "true", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub sig_proxy: bool,
    #[command(flatten)]
    pub flags: CreateFlags,
    /// IMAGE [COMMAND] [ARG...]
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "IMAGE [COMMAND] [ARG...]")]
    pub args: Vec<String>,
}

/// `berth start`.
#[derive(Args, Debug)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals.
    #[arg(short = 'a', long)]
    pub attach: bool,
    /// Attach container's STDIN.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Containers to start.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `--security-opt` as the daemon takes it: as the docker CLI does, a
/// `seccomp=FILE` is replaced by the file's JSON, compacted.
fn security_opts(opts: &[String]) -> Result<Vec<String>> {
    opts.iter()
        .map(|opt| {
            let Some(path) = opt.strip_prefix("seccomp=").or_else(|| opt.strip_prefix("seccomp:")).filter(|p| *p != "unconfined") else {
                return Ok(opt.clone());
            };
            let text = std::fs::read_to_string(path).map_err(|e| anyhow!("opening seccomp profile ({path}) failed: {e}"))?;
            let json: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| anyhow!("compacting json for seccomp profile ({path}) failed: {e}"))?;
            Ok(format!("seccomp={json}"))
        })
        .collect()
}

/// `--ulimit name=soft[:hard]`.
pub fn parse_ulimit(s: &str) -> Result<Ulimit> {
    let (name, limits) = s.split_once('=').ok_or_else(|| anyhow!("invalid ulimit argument: {s}"))?;
    const NAMES: &[&str] = &[
        "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc", "rss", "rtprio",
        "rttime", "sigpending", "stack", "as",
    ];
    if !NAMES.contains(&name) {
        bail!("invalid ulimit type: {name}");
    }
    let num = |v: &str| -> Result<i64> { v.parse().map_err(|_| anyhow!("invalid ulimit argument: {s}")) };
    let (soft, hard) = match limits.split_once(':') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => {
            let v = num(limits)?;
            (v, v)
        }
    };
    if soft > hard && hard != -1 {
        bail!("ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}");
    }
    Ok(Ulimit { name: name.to_string(), soft, hard })
}

/// `--restart no|always|unless-stopped|on-failure[:N]`.
pub fn parse_restart(s: &str) -> Result<RestartPolicy> {
    let (name, count) = match s.split_once(':') {
        Some((n, c)) => (n, Some(c)),
        None => (s, None),
    };
    match (name, count) {
        ("no" | "always" | "unless-stopped", None) => Ok(RestartPolicy { name: name.into(), maximum_retry_count: 0 }),
        ("on-failure", None) => Ok(RestartPolicy { name: name.into(), maximum_retry_count: 0 }),
        ("on-failure", Some(c)) => {
            let n: i64 = c.parse().map_err(|_| anyhow!("invalid restart policy format: maximum retry count must be an integer"))?;
            if n < 0 {
                bail!("invalid restart policy format: maximum retry count cannot be negative");
            }
            Ok(RestartPolicy { name: name.into(), maximum_retry_count: n })
        }
        ("no" | "always" | "unless-stopped", Some(_)) => {
            bail!("invalid restart policy format: maximum retry count can only be used with 'on-failure'")
        }
        _ => bail!("invalid restart policy format: unknown policy '{name}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"),
    }
}

/// An environment entry: `KEY=VALUE` as is; a bare `KEY` takes the local
/// value, and is dropped when unset (as the docker CLI does in effect).
fn env_entry(entry: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Option<String>> {
    if entry.is_empty() || entry.starts_with('=') {
        bail!("invalid environment variable: {entry}");
    }
    if entry.contains('=') {
        return Ok(Some(entry.to_string()));
    }
    Ok(lookup(entry).map(|v| format!("{entry}={v}")))
}

/// Docker's env-file format: one `KEY=VALUE` or `KEY` per line, `#` comments.
pub fn parse_env_file(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, _) = line.split_once('=').unwrap_or((line, ""));
        if key.chars().any(char::is_whitespace) {
            bail!("variable '{key}' contains whitespaces (line {})", i + 1);
        }
        if let Some(e) = env_entry(line, lookup)? {
            out.push(e);
        }
    }
    Ok(out)
}

fn read_lines_file(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("open {}: cannot read the file", path.display()))
}

/// `--cpus 1.5` as nano-CPUs.
fn parse_cpus(s: &str) -> Result<i64> {
    let v: f64 = s.parse().map_err(|_| anyhow!("invalid argument \"{s}\" for \"--cpus\" flag: failed to parse {s} as a rational number"))?;
    if v.is_nan() || v < 0.0 {
        bail!("invalid argument \"{s}\" for \"--cpus\" flag: must be a positive number");
    }
    Ok((v * 1e9) as i64)
}

/// Splits `KEY=VALUE` (a bare `KEY` has an empty value).
fn key_value(s: &str) -> (String, String) {
    match s.split_once('=') {
        Some((k, v)) => (k.to_string(), v.to_string()),
        None => (s.to_string(), String::new()),
    }
}

/// What `create` sends: the name and the Config/HostConfig.
#[derive(Debug)]
pub struct CreateRequest {
    pub name: Option<String>,
    pub config: ContainerConfig,
    pub host_config: HostConfig,
    /// Endpoint settings per network (`--ip`, `--network-alias`, `--link`).
    pub networking: berth_model::network::NetworkingConfig,
}

/// Turns the flags and positional arguments into the API's objects.
/// `attach_default` is what `run` attaches without `-a` (stdout+stderr, stdin with `-i`).
pub fn build(flags: &CreateFlags, args: &[String], detach: bool, lookup: &dyn Fn(&str) -> Option<String>) -> Result<CreateRequest> {
    let (image, command) = args.split_first().ok_or_else(|| anyhow!("\"create\" requires at least 1 argument"))?;
    // The positional list takes hyphenated words (for the command); before the image they are unknown flags.
    if image.starts_with('-') {
        bail!("unknown flag: {}\nSee 'berth run --help'.", image.split('=').next().unwrap_or(image));
    }
    let mut c = ContainerConfig { image: image.clone(), tty: flags.tty, open_stdin: flags.interactive, ..Default::default() };
    if !command.is_empty() {
        c.cmd = Some(command.to_vec());
    }
    if let Some(ep) = &flags.entrypoint {
        // `--entrypoint ""` resets the image's entrypoint.
        c.entrypoint = Some(if ep.is_empty() { vec![String::new()] } else { vec![ep.clone()] });
    }
    // Which streams to attach: -a, else (for a foreground run) stdout+stderr and stdin with -i.
    if !flags.attach.is_empty() {
        for a in &flags.attach {
            match a.to_ascii_lowercase().as_str() {
                "stdin" => c.attach_stdin = true,
                "stdout" => c.attach_stdout = true,
                "stderr" => c.attach_stderr = true,
                _ => bail!("invalid argument \"{a}\" for \"-a, --attach\" flag: valid streams are STDIN, STDOUT and STDERR"),
            }
        }
    } else if !detach {
        c.attach_stdout = true;
        c.attach_stderr = true;
        c.attach_stdin = flags.interactive;
    }
    if c.attach_stdin {
        c.stdin_once = true;
    }
    let mut env = Vec::new();
    for f in &flags.env_file {
        env.extend(parse_env_file(&read_lines_file(f)?, lookup)?);
    }
    for e in &flags.env {
        if let Some(e) = env_entry(e, lookup)? {
            env.push(e);
        }
    }
    if !env.is_empty() {
        c.env = Some(env);
    }
    if let Some(w) = &flags.workdir {
        if !w.starts_with('/') {
            bail!("the working directory '{w}' is invalid, it needs to be an absolute path");
        }
        c.working_dir = w.clone();
    }
    c.user = flags.user.clone().unwrap_or_default();
    c.hostname = flags.hostname.clone().unwrap_or_default();
    c.domainname = flags.domainname.clone().unwrap_or_default();
    let mut labels = BTreeMap::new();
    for f in &flags.label_file {
        for line in read_lines_file(f)?.lines() {
            let line = line.trim();
            if !line.is_empty() && !line.starts_with('#') {
                let (k, v) = key_value(line);
                labels.insert(k, v);
            }
        }
    }
    for l in &flags.label {
        let (k, v) = key_value(l);
        if k.is_empty() {
            bail!("invalid label '{l}': empty name");
        }
        labels.insert(k, v);
    }
    if !labels.is_empty() {
        c.labels = Some(labels);
    }
    c.stop_signal = flags.stop_signal.clone();
    c.stop_timeout = flags.stop_timeout;

    let mut h = HostConfig { auto_remove: flags.rm, privileged: flags.privileged, readonly_rootfs: flags.read_only, ..Default::default() };
    if flags.tty {
        // As docker does: the container starts at the terminal's size, so a
        // program that reads it at once does not see 0x0 before the first resize.
        h.console_size = super::stdio::terminal_size().map(|(rows, cols)| [u64::from(rows), u64::from(cols)]);
    }
    if let Some(r) = &flags.restart {
        h.restart_policy = parse_restart(r)?;
        if flags.rm && !matches!(h.restart_policy.name.as_str(), "" | "no") {
            bail!("Conflicting options: --restart and --rm");
        }
    }
    if let Some(m) = &flags.memory {
        h.memory = parse_memory(m).map_err(|e| anyhow!("invalid argument \"{m}\" for \"-m, --memory\" flag: {e}"))?;
    }
    if let Some(m) = &flags.memory_swap {
        h.memory_swap = if m == "-1" {
            -1
        } else {
            parse_memory(m).map_err(|e| anyhow!("invalid argument \"{m}\" for \"--memory-swap\" flag: {e}"))?
        };
    }
    if let Some(m) = &flags.memory_reservation {
        h.memory_reservation = parse_memory(m).map_err(|e| anyhow!("invalid argument \"{m}\" for \"--memory-reservation\" flag: {e}"))?;
    }
    h.memory_swappiness = flags.memory_swappiness;
    if flags.oom_kill_disable {
        h.oom_kill_disable = Some(true);
    }
    h.oom_score_adj = flags.oom_score_adj.unwrap_or(0);
    if let Some(cpus) = &flags.cpus {
        h.nano_cpus = parse_cpus(cpus)?;
    }
    h.cpu_shares = flags.cpu_shares.unwrap_or(0);
    h.cpu_period = flags.cpu_period.unwrap_or(0);
    h.cpu_quota = flags.cpu_quota.unwrap_or(0);
    h.cpuset_cpus = flags.cpuset_cpus.clone().unwrap_or_default();
    h.cpuset_mems = flags.cpuset_mems.clone().unwrap_or_default();
    h.pids_limit = flags.pids_limit;
    h.cgroup_parent = flags.cgroup_parent.clone().unwrap_or_default();
    let list = |v: &Vec<String>| if v.is_empty() { None } else { Some(v.clone()) };
    h.cap_add = list(&flags.cap_add);
    h.cap_drop = list(&flags.cap_drop);
    h.security_opt = list(&security_opts(&flags.security_opt)?);
    h.group_add = list(&flags.group_add);
    if !flags.ulimit.is_empty() {
        h.ulimits = Some(flags.ulimit.iter().map(|u| parse_ulimit(u)).collect::<Result<_>>()?);
    }
    if flags.init {
        h.init = Some(true);
    }
    let networking = super::networks::apply_network_flags(&flags.network, &flags.net, &mut c, &mut h)?;
    h.runtime = flags.runtime.clone().unwrap_or_default();
    let mut log_opts = BTreeMap::new();
    for o in &flags.log_opt {
        let (k, v) = o.split_once('=').ok_or_else(|| anyhow!("invalid key/value pair format in --log-opt: {o}"))?;
        log_opts.insert(k.to_string(), v.to_string());
    }
    h.log_config = LogConfig { kind: flags.log_driver.clone().unwrap_or_default(), config: log_opts };
    if let Some(s) = &flags.shm_size {
        h.shm_size = parse_memory(s).map_err(|e| anyhow!("invalid argument \"{s}\" for \"--shm-size\" flag: {e}"))?;
    }
    if !flags.tmpfs.is_empty() {
        let mut map = BTreeMap::new();
        for t in &flags.tmpfs {
            let (path, opts) = t.split_once(':').unwrap_or((t.as_str(), ""));
            map.insert(path.to_string(), opts.to_string());
        }
        h.tmpfs = Some(map);
    }
    let volume_flags = super::mounts::MountFlags {
        volume: &flags.volume,
        mount: &flags.mount,
        volumes_from: &flags.volumes_from,
        volume_driver: flags.volume_driver.as_deref(),
    };
    super::mounts::apply(volume_flags, &mut c, &mut h)?;
    if !flags.sysctl.is_empty() {
        let mut map = BTreeMap::new();
        for s in &flags.sysctl {
            let (k, v) = s.split_once('=').ok_or_else(|| anyhow!("invalid argument \"{s}\" for \"--sysctl\" flag: sysctl '{s}' is not allowed"))?;
            map.insert(k.to_string(), v.to_string());
        }
        h.sysctls = Some(map);
    }
    Ok(CreateRequest { name: flags.name.clone(), config: c, host_config: h, networking })
}

/// Docker's normalized name for messages (`busybox` -> `busybox:latest`).
fn with_latest(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') || last.contains(':') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

/// Whether a `create` failed because its image is not here (Docker's 404 "No such image").
fn image_missing(e: &anyhow::Error) -> bool {
    e.downcast_ref::<DaemonError>().is_some_and(|d| d.status == 404 && d.message.to_ascii_lowercase().contains("image"))
}

/// Sends `POST /containers/create`; returns the ID. Warnings go to stderr.
/// An image that is not here is pulled first (for `platform`), as Docker does.
async fn create_container(client: &Client, req: &CreateRequest, platform: Option<&str>) -> Result<String> {
    let body = ContainerCreateRequest {
        config: req.config.clone(),
        host_config: Some(req.host_config.clone()),
        networking_config: Some(req.networking.clone()),
    };
    let path = match &req.name {
        Some(n) => format!("/containers/create?name={}", enc(n)),
        None => "/containers/create".to_string(),
    };
    let created: ContainerCreateResponse = match client.post_typed(&path, &body).await {
        Ok(c) => c,
        Err(e) if image_missing(&e) => {
            eprintln!("Unable to find image '{}' locally", with_latest(&req.config.image));
            super::images::pull_image(client, &req.config.image, platform, super::images::StreamOutput::Stderr).await?;
            client.post_typed(&path, &body).await?
        }
        Err(e) => return Err(e),
    };
    for w in &created.warnings {
        eprintln!("WARNING: {w}");
    }
    if created.id.is_empty() {
        bail!("the daemon's create answer has no Id");
    }
    Ok(created.id)
}

/// Prints an error as docker does for `run`/`create` and returns status 125.
fn fail_125(e: &anyhow::Error) -> ExitCode {
    eprintln!("{}", docker_error_text(e));
    ExitCode::from(125)
}

fn docker_error_text(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    if text.starts_with("berth: ") {
        text
    } else {
        format!("berth: {text}")
    }
}

/// Docker's status for a failed start: 127 command not found, 126 not executable, 125 else.
pub fn start_error_status(message: &str) -> u8 {
    if message.contains("executable file not found") || message.contains("no such file or directory") {
        127
    } else if message.contains("permission denied") || message.contains("is a directory") {
        126
    } else {
        125
    }
}

fn write_cidfile(path: &Option<PathBuf>, id: &str) -> Result<()> {
    if let Some(p) = path {
        if p.exists() {
            bail!("container ID file found, make sure the other container isn't running or delete {}", p.display());
        }
        std::fs::write(p, id).with_context(|| format!("failed to create the container ID file {}", p.display()))?;
    }
    Ok(())
}

/// `berth create`.
pub async fn create(client: &Client, args: &CreateArgs) -> Result<ExitCode> {
    let req = match build(&args.flags, &args.args, false, &|k| std::env::var(k).ok()) {
        Ok(r) => r,
        Err(e) => return Ok(fail_125(&e)),
    };
    match create_container(client, &req, args.flags.platform.as_deref()).await {
        Ok(id) => {
            if let Err(e) = write_cidfile(&args.flags.cidfile, &id) {
                return Ok(fail_125(&e));
            }
            println!("{id}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(fail_125(&e)),
    }
}

/// Registers a wait (its answer's headers mean the daemon holds the waiter)
/// and returns a task yielding the exit status.
async fn register_wait(client: &Client, id: &str, condition: &str) -> Result<tokio::task::JoinHandle<Result<i64>>> {
    let path = format!("/containers/{}/wait?condition={condition}", enc(id));
    let resp = client.call(Method::POST, &path, empty(), None).await?;
    Ok(tokio::spawn(async move {
        let bytes = resp.into_body().collect().await.context("waiting for the container")?.to_bytes();
        let answer: ContainerWaitResponse =
            serde_json::from_slice(&bytes).context("the daemon's wait answer is not JSON")?;
        if let Some(error) = answer.error.filter(|e| !e.message.is_empty()) {
            bail!("{}", error.message);
        }
        Ok(answer.status_code)
    }))
}

/// Exit status of a container status code, as a process exit code.
fn exit_code(status: i64) -> ExitCode {
    ExitCode::from((status & 0xff) as u8)
}

/// `berth run`.
pub async fn run(client: &Client, args: &RunArgs) -> Result<ExitCode> {
    let flags = &args.flags;
    let req = match build(flags, &args.args, args.detach, &|k| std::env::var(k).ok()) {
        Ok(r) => r,
        Err(e) => return Ok(fail_125(&e)),
    };
    let c = &req.config;
    if c.tty && c.attach_stdin && !std::io::stdin().is_terminal() {
        eprintln!("the input device is not a TTY");
        return Ok(ExitCode::from(1));
    }
    let id = match create_container(client, &req, flags.platform.as_deref()).await {
        Ok(id) => id,
        Err(e) => return Ok(fail_125(&e)),
    };
    if let Err(e) = write_cidfile(&flags.cidfile, &id) {
        return Ok(fail_125(&e));
    }
    if args.detach {
        if let Err(e) = client.call(Method::POST, &format!("/containers/{id}/start"), empty(), None).await {
            let code = start_error_status(&format!("{e:#}"));
            eprintln!("{}", docker_error_text(&e));
            remove_after_failed_start(client, &id, flags.rm).await;
            return Ok(ExitCode::from(code));
        }
        println!("{id}");
        return Ok(ExitCode::SUCCESS);
    }
    let attach = c.attach_stdin || c.attach_stdout || c.attach_stderr;
    let stream = if attach {
        let path = format!(
            "/containers/{id}/attach?stream=1&stdin={}&stdout={}&stderr={}",
            u8::from(c.attach_stdin),
            u8::from(c.attach_stdout),
            u8::from(c.attach_stderr)
        );
        match client.hijack(&path).await {
            Ok(s) => Some(s),
            Err(e) => {
                remove_after_failed_start(client, &id, flags.rm).await;
                return Ok(fail_125(&e));
            }
        }
    } else {
        None
    };
    let condition = if flags.rm { "removed" } else { "next-exit" };
    let waiter = match register_wait(client, &id, condition).await {
        Ok(w) => w,
        Err(e) => {
            remove_after_failed_start(client, &id, flags.rm).await;
            return Ok(fail_125(&e));
        }
    };
    let raw = if c.tty && c.attach_stdin { RawTerminal::enable()? } else { None };
    if let Err(e) = client.call(Method::POST, &format!("/containers/{id}/start"), empty(), None).await {
        drop(raw);
        let code = start_error_status(&format!("{e:#}"));
        eprintln!("{}", docker_error_text(&e));
        waiter.abort();
        remove_after_failed_start(client, &id, flags.rm).await;
        return Ok(ExitCode::from(code));
    }
    let resizer = c.tty.then(|| follow_terminal_size(client, format!("/containers/{id}/resize")));
    let proxy = (!c.tty && args.sig_proxy).then(|| proxy_signals(client, id.clone()));
    let pumped = match stream {
        Some(s) => pump(s, c.tty, c.attach_stdin).await,
        None => Ok(()),
    };
    for task in [resizer, proxy].into_iter().flatten() {
        task.abort();
    }
    drop(raw);
    pumped?;
    match waiter.await {
        Ok(Ok(status)) => Ok(exit_code(status)),
        Ok(Err(e)) => Ok(fail_125(&e)),
        Err(e) => Ok(fail_125(&anyhow!("waiting for the container failed: {e}"))),
    }
}

/// `berth start`.
pub async fn start(client: &Client, args: &StartArgs) -> Result<ExitCode> {
    if args.attach || args.interactive {
        if args.containers.len() > 1 {
            eprintln!("you cannot start and attach multiple containers at once");
            return Ok(ExitCode::from(1));
        }
        let name = &args.containers[0];
        let v: ContainerInspect = client.get_typed(&format!("/containers/{}/json", enc(name))).await?;
        let id = if v.id.is_empty() { name.clone() } else { v.id };
        let tty = v.config.tty;
        let stdin = args.interactive && v.config.open_stdin;
        let path = format!("/containers/{id}/attach?stream=1&stdin={}&stdout=1&stderr=1", u8::from(stdin));
        let stream = client.hijack(&path).await?;
        let waiter = register_wait(client, &id, "next-exit").await?;
        let raw = if tty && stdin { RawTerminal::enable()? } else { None };
        client.call(Method::POST, &format!("/containers/{id}/start"), empty(), None).await?;
        let resizer = tty.then(|| follow_terminal_size(client, format!("/containers/{id}/resize")));
        let proxy = (!tty).then(|| proxy_signals(client, id.clone()));
        let pumped = pump(stream, tty, stdin).await;
        for task in [resizer, proxy].into_iter().flatten() {
            task.abort();
        }
        drop(raw);
        pumped?;
        let status = waiter.await.map_err(|e| anyhow!("waiting for the container failed: {e}"))??;
        return Ok(exit_code(status));
    }
    super::client::each(client, &args.containers, Method::POST, false, |n| format!("/containers/{}/start", enc(n))).await
}

/// `berth attach`.
#[derive(Args, Debug)]
pub struct AttachArgs {
    /// Do not attach STDIN.
    #[arg(long = "no-stdin")]
    pub no_stdin: bool,
    /// Proxy all received signals to the process.
    #[arg(long = "sig-proxy", action = ArgAction::Set, default_value = "true", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub sig_proxy: bool,
    /// The container.
    pub container: String,
}

/// `berth attach`.
pub async fn attach(client: &Client, args: &AttachArgs) -> Result<ExitCode> {
    let v: ContainerInspect = client.get_typed(&format!("/containers/{}/json", enc(&args.container))).await?;
    let id = if v.id.is_empty() { args.container.clone() } else { v.id };
    if !v.state.running {
        bail!("You cannot attach to a stopped container, start it first");
    }
    if v.state.paused {
        bail!("You cannot attach to a paused container, unpause it first");
    }
    let tty = v.config.tty;
    let stdin = !args.no_stdin && v.config.open_stdin;
    let path = format!("/containers/{id}/attach?stream=1&stdin={}&stdout=1&stderr=1", u8::from(stdin));
    // As docker does: the wait is registered before attaching and read once
    // the stream ends, so the exit code is the recorded one, never a state
    // inspected before the daemon has noted the exit.
    let status = register_wait(client, &id, "not-running").await?;
    let stream = client.hijack(&path).await?;
    let raw = if tty && stdin { RawTerminal::enable()? } else { None };
    let resizer = tty.then(|| follow_terminal_size(client, format!("/containers/{id}/resize")));
    let proxy = (!tty && args.sig_proxy).then(|| proxy_signals(client, id.clone()));
    let pumped = pump(stream, tty, stdin).await;
    for task in [resizer, proxy].into_iter().flatten() {
        task.abort();
    }
    drop(raw);
    pumped?;
    Ok(exit_code(status.await.context("waiting for the container")??))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(subcommand)]
        cmd: Cmd,
    }

    #[derive(clap::Subcommand)]
    enum Cmd {
        Run(RunArgs),
    }

    fn parse(args: &[&str]) -> RunArgs {
        let mut argv = vec!["berth", "run"];
        argv.extend_from_slice(args);
        match T::try_parse_from(argv).unwrap().cmd {
            Cmd::Run(r) => r,
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn memory_sizes_use_binary_units() {
        assert_eq!(parse_memory("32m").unwrap(), 32 << 20);
        assert_eq!(parse_memory("32M").unwrap(), 32 << 20);
        assert_eq!(parse_memory("1g").unwrap(), 1 << 30);
        assert_eq!(parse_memory("1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_memory("512k").unwrap(), 512 << 10);
        assert_eq!(parse_memory("100mb").unwrap(), 100 << 20);
        assert_eq!(parse_memory("1024").unwrap(), 1024);
        assert_eq!(parse_memory("2b").unwrap(), 2);
        for bad in ["", "abc", "32x", "m", "-1m", "1.2.3xm"] {
            assert!(parse_memory(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ulimits_parse_like_docker() {
        assert_eq!(parse_ulimit("nofile=1024:2048").unwrap(), Ulimit { name: "nofile".into(), soft: 1024, hard: 2048 });
        assert_eq!(parse_ulimit("nproc=64").unwrap(), Ulimit { name: "nproc".into(), soft: 64, hard: 64 });
        assert!(parse_ulimit("nofile").is_err());
        assert!(parse_ulimit("bogus=1").is_err());
        assert!(parse_ulimit("nofile=2048:1024").is_err());
        assert!(parse_ulimit("nofile=a").is_err());
    }

    #[test]
    fn restart_policies() {
        assert_eq!(parse_restart("on-failure:2").unwrap(), RestartPolicy { name: "on-failure".into(), maximum_retry_count: 2 });
        assert_eq!(parse_restart("always").unwrap().name, "always");
        assert!(parse_restart("always:3").is_err());
        assert!(parse_restart("sometimes").is_err());
        assert!(parse_restart("on-failure:x").is_err());
    }

    #[test]
    fn env_files_skip_comments_and_take_bare_names_from_the_environment() {
        let lookup = |k: &str| (k == "HOME").then(|| "/root".to_string());
        let got = parse_env_file("# comment\n\nA=1\n  B=two words\nHOME\nUNSET\nC=\n", &lookup).unwrap();
        assert_eq!(got, vec!["A=1", "B=two words", "HOME=/root", "C="]);
        assert!(parse_env_file("BAD KEY=1\n", &lookup).is_err());
    }

    #[test]
    fn flags_after_the_image_belong_to_the_command() {
        let r = parse(&["--rm", "-e", "A=1", "img", "ls", "-l", "-e"]);
        assert!(r.flags.rm);
        assert_eq!(r.args, vec!["img", "ls", "-l", "-e"]);
        let req = build(&r.flags, &r.args, r.detach, &no_env).unwrap();
        assert_eq!(req.config.image, "img");
        assert_eq!(req.config.cmd, Some(vec!["ls".to_string(), "-l".to_string(), "-e".to_string()]));
        assert_eq!(req.config.env, Some(vec!["A=1".to_string()]));
        assert!(req.host_config.auto_remove);
        assert!(req.config.attach_stdout && req.config.attach_stderr && !req.config.attach_stdin);
    }

    #[test]
    fn resource_and_security_flags_fill_host_config() {
        let r = parse(&[
            "-d", "-it", "--name", "web", "-h", "box", "-m", "32m", "--memory-swap", "-1", "--cpus", "1.5", "--cpu-shares", "512",
            "--cpuset-cpus", "0", "--pids-limit", "20", "--cap-add", "NET_ADMIN", "--cap-drop", "ALL", "--security-opt",
            "no-new-privileges", "--privileged", "--ulimit", "nofile=100:200", "--read-only", "--init", "--network", "none",
            "--restart", "on-failure:2", "--stop-signal", "SIGINT", "--stop-timeout", "3", "-l", "a=b", "-w", "/tmp", "-u",
            "1000:1000", "--entrypoint", "/bin/sh", "--log-opt", "max-size=1m", "--shm-size", "64m", "img",
        ]);
        assert!(r.detach);
        let req = build(&r.flags, &r.args, r.detach, &no_env).unwrap();
        let (c, h) = (&req.config, &req.host_config);
        assert_eq!(req.name.as_deref(), Some("web"));
        assert_eq!(c.hostname, "box");
        assert!(c.tty && c.open_stdin);
        // Detached: nothing attached.
        assert!(!c.attach_stdin && !c.attach_stdout);
        assert_eq!(c.cmd, None);
        assert_eq!(c.entrypoint, Some(vec!["/bin/sh".to_string()]));
        assert_eq!(c.working_dir, "/tmp");
        assert_eq!(c.user, "1000:1000");
        assert_eq!(c.stop_signal.as_deref(), Some("SIGINT"));
        assert_eq!(c.stop_timeout, Some(3));
        assert_eq!(c.labels.as_ref().unwrap()["a"], "b");
        assert_eq!(h.memory, 32 << 20);
        assert_eq!(h.memory_swap, -1);
        assert_eq!(h.nano_cpus, 1_500_000_000);
        assert_eq!(h.cpu_shares, 512);
        assert_eq!(h.cpuset_cpus, "0");
        assert_eq!(h.pids_limit, Some(20));
        assert_eq!(h.cap_add, Some(vec!["NET_ADMIN".to_string()]));
        assert_eq!(h.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(h.security_opt, Some(vec!["no-new-privileges".to_string()]));
        assert!(h.privileged && h.readonly_rootfs);
        assert_eq!(h.init, Some(true));
        assert_eq!(h.ulimits, Some(vec![Ulimit { name: "nofile".into(), soft: 100, hard: 200 }]));
        assert_eq!(h.network_mode, "none");
        assert_eq!(h.restart_policy, RestartPolicy { name: "on-failure".into(), maximum_retry_count: 2 });
        assert_eq!(h.log_config.config["max-size"], "1m");
        assert_eq!(h.shm_size, 64 << 20);
    }

    #[test]
    fn bad_flag_values_are_errors() {
        for args in [
            vec!["-m", "lots", "img"],
            vec!["--restart", "sometimes", "img"],
            vec!["--ulimit", "nofile", "img"],
            vec!["--rm", "--restart", "always", "img"],
            vec!["-w", "relative", "img"],
            vec!["--cpus", "x", "img"],
            vec!["--bogus", "img"],
        ] {
            let r = parse(&args);
            assert!(build(&r.flags, &r.args, r.detach, &no_env).is_err(), "{args:?}");
        }
    }

    #[test]
    fn interactive_run_attaches_stdin_once() {
        let r = parse(&["-i", "img", "cat"]);
        let req = build(&r.flags, &r.args, r.detach, &no_env).unwrap();
        assert!(req.config.attach_stdin && req.config.open_stdin && req.config.stdin_once);
    }

    #[test]
    fn start_failures_map_to_dockers_statuses() {
        assert_eq!(start_error_status("exec: \"nope\": executable file not found in $PATH"), 127);
        assert_eq!(start_error_status("open /x: no such file or directory"), 127);
        assert_eq!(start_error_status("exec /etc: permission denied"), 126);
        assert_eq!(start_error_status("cgroup setup failed"), 125);
    }
}
