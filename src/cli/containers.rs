//! Container commands other than `create`/`run`/`start`/`attach` (see `run`):
//! `ps`, `stop`, `kill`, `restart`, `pause`, `unpause`, `rm`, `logs`,
//! `inspect`, `exec`, `wait`, `top`, `cp`, `rename`, `diff`, `commit`,
//! `export`, `events`, `stats`, `update`, `container prune`, and the
//! `container` group that names them all.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use berth_model::container::{ContainerConfig, Status};
use clap::{ArgAction, Args, Subcommand};
use futures_util::TryStreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::Method;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use super::client::{each, empty, enc, Client, DaemonError};
use super::format::{tabwrite, Format};
use super::images::parse_filters;
use super::run::{self, parse_restart, AttachArgs, CreateArgs, RunArgs, StartArgs};
use super::units::parse_memory;
use super::stdio::{copy_output, follow_terminal_size, pump, RawTerminal};
use super::units::{bytes_size, go_time, human_duration, human_size};
use crate::apitypes::containers::{
    ContainerInspect, ContainerPathStat, ContainerPruneResponse, ContainerSummary, ContainerTopResponse,
    ContainerUpdateRequest, ContainerUpdateResponse, ContainerWaitResponse, EventMessage, ExecCreateRequest, ExecInspect,
    ExecStartRequest, FilesystemChange, IdResponse, StatsResponse,
};
use crate::apitypes::system::ErrorResponse;

/// `berth container ...`.
#[derive(Subcommand, Debug)]
pub enum ContainerCommand {
    /// Create a new container.
    Create(CreateArgs),
    /// Create and run a new container from an image.
    Run(RunArgs),
    /// Start one or more stopped containers.
    Start(StartArgs),
    /// List containers.
    #[command(visible_aliases = ["ps", "list"])]
    Ls(PsArgs),
    /// Stop one or more running containers.
    Stop(StopArgs),
    /// Kill one or more running containers.
    Kill(KillArgs),
    /// Restart one or more containers.
    Restart(StopArgs),
    /// Pause all processes within one or more containers.
    Pause(NamesArgs),
    /// Unpause all processes within one or more containers.
    Unpause(NamesArgs),
    /// Remove one or more containers.
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Fetch the logs of a container.
    Logs(LogsArgs),
    /// Display detailed information on one or more containers.
    Inspect(InspectArgs),
    /// Execute a command in a running container.
    Exec(ExecArgs),
    /// Attach local standard input, output, and error streams to a running container.
    Attach(AttachArgs),
    /// Block until one or more containers stop, then print their exit codes.
    Wait(NamesArgs),
    /// Display the running processes of a container.
    Top(TopArgs),
    /// Copy files/folders between a container and the local filesystem.
    Cp(CpArgs),
    /// Rename a container.
    Rename(RenameArgs),
    /// Inspect changes to files or directories on a container's filesystem.
    Diff(ContainerArg),
    /// Create a new image from a container's changes.
    Commit(CommitArgs),
    /// Export a container's filesystem as a tar archive.
    Export(ExportArgs),
    /// Display a live stream of container(s) resource usage statistics.
    Stats(StatsArgs),
    /// Update configuration of one or more containers.
    Update(UpdateArgs),
    /// Remove all stopped containers.
    Prune(PruneArgs),
    /// List port mappings or a specific mapping for the container.
    Port(super::networks::PortArgs),
}

/// Dispatches `container` subcommands.
pub async fn container(client: &Client, cmd: ContainerCommand) -> Result<ExitCode> {
    match cmd {
        ContainerCommand::Create(a) => run::create(client, &a).await,
        ContainerCommand::Run(a) => run::run(client, &a).await,
        ContainerCommand::Start(a) => run::start(client, &a).await,
        ContainerCommand::Ls(a) => ps(client, &a).await,
        ContainerCommand::Stop(a) => stop(client, &a).await,
        ContainerCommand::Kill(a) => kill(client, &a).await,
        ContainerCommand::Restart(a) => restart(client, &a).await,
        ContainerCommand::Pause(a) => simple(client, &a.containers, "pause").await,
        ContainerCommand::Unpause(a) => simple(client, &a.containers, "unpause").await,
        ContainerCommand::Rm(a) => rm(client, &a).await,
        ContainerCommand::Logs(a) => logs(client, &a).await,
        ContainerCommand::Inspect(mut a) => {
            a.kind.get_or_insert_with(|| "container".to_string());
            inspect(client, &a).await
        }
        ContainerCommand::Exec(a) => exec(client, &a).await,
        ContainerCommand::Attach(a) => run::attach(client, &a).await,
        ContainerCommand::Wait(a) => wait(client, &a).await,
        ContainerCommand::Top(a) => top(client, &a).await,
        ContainerCommand::Cp(a) => cp(client, &a).await,
        ContainerCommand::Rename(a) => rename(client, &a).await,
        ContainerCommand::Diff(a) => diff(client, &a).await,
        ContainerCommand::Commit(a) => commit(client, &a).await,
        ContainerCommand::Export(a) => export(client, &a).await,
        ContainerCommand::Stats(a) => stats(client, &a).await,
        ContainerCommand::Update(a) => update(client, &a).await,
        ContainerCommand::Prune(a) => prune(client, &a).await,
        ContainerCommand::Port(a) => super::networks::port(client, &a).await,
    }
}

/// One or more containers.
#[derive(Args, Debug)]
pub struct NamesArgs {
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// One container.
#[derive(Args, Debug)]
pub struct ContainerArg {
    /// The container.
    pub container: String,
}

/// Flags of `ps`.
#[derive(Args, Debug)]
pub struct PsArgs {
    /// Show all containers (default shows just running).
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Filter output based on conditions provided.
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template.
    #[arg(long)]
    pub format: Option<String>,
    /// Show n last created containers (includes all states).
    #[arg(short = 'n', long = "last", default_value_t = -1, allow_hyphen_values = true)]
    pub last: i64,
    /// Show the latest created container (includes all states).
    #[arg(short = 'l', long)]
    pub latest: bool,
    /// Don't truncate output.
    #[arg(long)]
    pub no_trunc: bool,
    /// Only display container IDs.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Display total file sizes.
    #[arg(short = 's', long)]
    pub size: bool,
}

/// Flags of `stop` and `restart`.
#[derive(Args, Debug)]
pub struct StopArgs {
    /// Signal to send to the container.
    #[arg(short = 's', long)]
    pub signal: Option<String>,
    /// Seconds to wait before killing the container.
    #[arg(short = 't', long = "timeout", visible_alias = "time", allow_hyphen_values = true)]
    pub timeout: Option<i64>,
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// Flags of `kill`.
#[derive(Args, Debug)]
pub struct KillArgs {
    /// Signal to send to the container.
    #[arg(short = 's', long, default_value = "KILL")]
    pub signal: String,
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// Flags of `rm`.
#[derive(Args, Debug)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL).
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Remove anonymous volumes associated with the container.
    #[arg(short = 'v', long)]
    pub volumes: bool,
    /// Remove the specified link.
    #[arg(short = 'l', long)]
    pub link: bool,
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// Flags of `logs`.
#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Show extra details provided to logs.
    #[arg(long)]
    pub details: bool,
    /// Follow log output.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes).
    #[arg(long)]
    pub since: Option<String>,
    /// Number of lines to show from the end of the logs.
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Show timestamps.
    #[arg(short = 't', long)]
    pub timestamps: bool,
    /// Show logs before a timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes).
    #[arg(long)]
    pub until: Option<String>,
    /// The container.
    pub container: String,
}

/// Flags of `inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Format output using a custom template.
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    /// Display total file sizes if the type is container.
    #[arg(short = 's', long)]
    pub size: bool,
    /// Return JSON for specified type (container, image, volume, network, plugin).
    #[arg(long = "type")]
    pub kind: Option<String>,
    /// Names or IDs.
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// Flags of `exec`.
#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Detached mode: run command in the background.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Set environment variables.
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Read in a file of environment variables.
    #[arg(long = "env-file")]
    pub env_file: Vec<PathBuf>,
    /// Keep STDIN open even if not attached.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give extended privileges to the command.
    #[arg(long)]
    pub privileged: bool,
    /// Allocate a pseudo-TTY.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Username or UID (format: "<name|uid>[:<group|gid>]").
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// CONTAINER COMMAND [ARG...]
    #[arg(required = true, num_args = 2.., trailing_var_arg = true, allow_hyphen_values = true, value_name = "CONTAINER COMMAND [ARG...]")]
    pub args: Vec<String>,
}

/// Flags of `top`.
#[derive(Args, Debug)]
pub struct TopArgs {
    /// The container.
    pub container: String,
    /// `ps` options.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

/// Flags of `cp`.
#[derive(Args, Debug)]
pub struct CpArgs {
    /// Archive mode (copy all uid/gid information).
    #[arg(short = 'a', long)]
    pub archive: bool,
    /// Always follow symbol link in SRC_PATH.
    #[arg(short = 'L', long)]
    pub follow_link: bool,
    /// Suppress progress output during copy.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// CONTAINER:SRC_PATH or SRC_PATH (- for a tar on stdin).
    pub src: String,
    /// DEST_PATH (- for a tar on stdout) or CONTAINER:DEST_PATH.
    pub dest: String,
}

/// Flags of `rename`.
#[derive(Args, Debug)]
pub struct RenameArgs {
    /// The container.
    pub container: String,
    /// Its new name.
    pub new_name: String,
}

/// Flags of `commit`.
#[derive(Args, Debug)]
pub struct CommitArgs {
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>").
    #[arg(short = 'a', long)]
    pub author: Option<String>,
    /// Apply Dockerfile instruction to the created image.
    #[arg(short = 'c', long = "change")]
    pub changes: Vec<String>,
    /// Commit message.
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// Pause container during commit.
    #[arg(short = 'p', long, action = ArgAction::Set, default_value = "true", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub pause: bool,
    /// The container.
    pub container: String,
    /// REPOSITORY[:TAG]
    pub reference: Option<String>,
}

/// Flags of `export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Write to a file, instead of STDOUT.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// The container.
    pub container: String,
}

/// Flags of `events`.
#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Filter output based on conditions provided.
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template.
    #[arg(long)]
    pub format: Option<String>,
    /// Show all events created since timestamp.
    #[arg(long)]
    pub since: Option<String>,
    /// Stream events until this timestamp.
    #[arg(long)]
    pub until: Option<String>,
}

/// Flags of `stats`.
#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Show all containers (default shows just running).
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Format output using a custom template.
    #[arg(long)]
    pub format: Option<String>,
    /// Disable streaming stats and only pull the first result.
    #[arg(long)]
    pub no_stream: bool,
    /// Do not truncate output.
    #[arg(long)]
    pub no_trunc: bool,
    /// Containers (default: all running).
    pub containers: Vec<String>,
}

/// Flags of `update`.
#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// Number of CPUs.
    #[arg(long)]
    pub cpus: Option<f64>,
    /// CPU shares (relative weight).
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<i64>,
    /// Limit CPU CFS period.
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<i64>,
    /// Limit CPU CFS quota.
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1).
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// MEMs in which to allow execution (0-3, 0,1).
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Memory limit.
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Memory soft limit.
    #[arg(long = "memory-reservation")]
    pub memory_reservation: Option<String>,
    /// Swap limit equal to memory plus swap: -1 to enable unlimited swap.
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Tune container pids limit (set -1 for unlimited).
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Restart policy to apply when a container exits.
    #[arg(long)]
    pub restart: Option<String>,
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// Flags of `container prune`.
#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Provide filter values (e.g. "until=<timestamp>").
    #[arg(long)]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation.
    #[arg(short = 'f', long)]
    pub force: bool,
}

fn now_unix() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Go's `time.ParseDuration` (`1h30m`, `10s`, `1.5h`), in seconds.
pub fn parse_go_duration(s: &str) -> Option<f64> {
    let mut rest = s;
    let mut total = 0.0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += value * scale;
    }
    Some(total)
}

/// Docker's `GetTimestamp`: a relative duration (`42m`), a unix time, or an
/// RFC 3339 / date string; returned as unix seconds for the API.
pub fn timestamp_param(value: &str, now: f64) -> Result<String> {
    if let Some(d) = parse_go_duration(value) {
        return Ok(format!("{:.9}", now - d));
    }
    if value.parse::<f64>().is_ok() {
        return Ok(value.to_string());
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(value) {
        return Ok(format!("{}.{:09}", t.timestamp(), t.timestamp_subsec_nanos()));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(value, fmt) {
            let t = t.and_utc();
            return Ok(format!("{}.{:09}", t.timestamp(), t.timestamp_subsec_nanos()));
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc().timestamp().to_string());
        }
    }
    bail!("invalid value for \"since/until\": failed to parse value as time or duration: \"{value}\"")
}

/// Go's `Ellipsis`: at most `max` characters, the last one `…` when cut.
fn ellipsis(s: &str, max: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= max {
        return s.to_string();
    }
    let mut out: String = chars[..max.saturating_sub(1)].iter().collect();
    out.push('…');
    out
}

fn short(id: &str, no_trunc: bool) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    if no_trunc {
        id.to_string()
    } else {
        hex.chars().take(12).collect()
    }
}

/// One `ps` row's fields, named as docker's `--format` names them.
pub fn ps_row(c: &ContainerSummary, no_trunc: bool, now: f64) -> Value {
    let image = if !no_trunc && c.image.starts_with("sha256:") { short(&c.image, false) } else { c.image.clone() };
    let command = if no_trunc { c.command.clone() } else { ellipsis(&c.command, 20) };
    let created = c.created;
    let names: Vec<String> = c
        .names
        .iter()
        .map(|n| n.trim_start_matches('/').to_string())
        .filter(|n| no_trunc || !n.contains('/'))
        .collect();
    let labels: Vec<String> = c.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let size = match (c.size_rw, c.size_root_fs) {
        (Some(rw), Some(root)) => format!("{} (virtual {})", human_size(rw), human_size(root)),
        (Some(rw), None) => human_size(rw),
        _ => "0B".to_string(),
    };
    let networks: Vec<&str> = c.network_settings.networks.keys().map(String::as_str).collect();
    json!({
        "ID": short(&c.id, no_trunc),
        "Image": image,
        "Command": serde_json::to_string(&command).unwrap_or_default(),
        "CreatedAt": go_time(created),
        "RunningFor": format!("{} ago", human_duration((now as i64 - created).max(0))),
        "Ports": super::networks::displayable_ports(&c.ports),
        "State": c.state,
        "Status": c.status,
        "Size": size,
        "Names": names.join(","),
        "Labels": labels.join(","),
        "Mounts": super::volumes::mounts_column(&c.mounts, no_trunc),
        "Networks": networks.join(","),
        "LocalVolumes": super::volumes::local_volumes_column(&c.mounts),
    })
}

fn ps_header() -> Value {
    json!({
        "ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT", "RunningFor": "CREATED",
        "Ports": "PORTS", "State": "STATE", "Status": "STATUS", "Size": "SIZE", "Names": "NAMES", "Labels": "LABELS",
        "Mounts": "MOUNTS", "Networks": "NETWORKS", "LocalVolumes": "LOCAL VOLUMES",
    })
}

/// `berth ps`.
pub async fn ps(client: &Client, args: &PsArgs) -> Result<ExitCode> {
    let filters = parse_filters(&args.filter)?;
    let limit = if args.latest { 1 } else { args.last };
    let all = args.all || limit > 0;
    let mut path = format!("/containers/json?all={}&size={}", u8::from(all), u8::from(args.size));
    if limit > 0 {
        path.push_str(&format!("&limit={limit}"));
    }
    if !filters.is_empty() {
        path.push_str(&format!("&filters={}", enc(&filters.to_string())));
    }
    let containers: Vec<ContainerSummary> = client.get_typed(&path).await?;
    let now = now_unix();
    if args.quiet && args.format.is_none() {
        for c in &containers {
            println!("{}", short(&c.id, args.no_trunc));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let default = if args.size {
        "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}\t{{.Size}}"
    } else {
        "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
    };
    let format = Format::parse(args.format.as_deref().filter(|f| !f.is_empty() && *f != "table").unwrap_or(default))?;
    let rows: Vec<Value> = containers.iter().map(|c| ps_row(c, args.no_trunc, now)).collect();
    print!("{}", format.render_rows(&ps_header(), &rows)?);
    Ok(ExitCode::SUCCESS)
}

async fn simple(client: &Client, names: &[String], verb: &str) -> Result<ExitCode> {
    each(client, names, Method::POST, false, |n| format!("/containers/{}/{verb}", enc(n))).await
}

/// `berth stop`.
pub async fn stop(client: &Client, args: &StopArgs) -> Result<ExitCode> {
    let mut q = Vec::new();
    if let Some(t) = args.timeout {
        q.push(format!("t={t}"));
    }
    if let Some(s) = &args.signal {
        q.push(format!("signal={}", enc(s)));
    }
    let q = q.join("&");
    each(client, &args.containers, Method::POST, false, |n| format!("/containers/{}/stop?{q}", enc(n))).await
}

/// `berth restart`.
pub async fn restart(client: &Client, args: &StopArgs) -> Result<ExitCode> {
    let q = args.timeout.map(|t| format!("t={t}")).unwrap_or_default();
    each(client, &args.containers, Method::POST, false, |n| format!("/containers/{}/restart?{q}", enc(n))).await
}

/// `berth kill`.
pub async fn kill(client: &Client, args: &KillArgs) -> Result<ExitCode> {
    let sig = enc(&args.signal);
    each(client, &args.containers, Method::POST, false, |n| format!("/containers/{}/kill?signal={sig}", enc(n))).await
}

/// `berth pause`.
pub async fn pause(client: &Client, args: &NamesArgs) -> Result<ExitCode> {
    simple(client, &args.containers, "pause").await
}

/// `berth unpause`.
pub async fn unpause(client: &Client, args: &NamesArgs) -> Result<ExitCode> {
    simple(client, &args.containers, "unpause").await
}

/// `berth rm`.
pub async fn rm(client: &Client, args: &RmArgs) -> Result<ExitCode> {
    let q = format!("force={}&v={}&link={}", u8::from(args.force), u8::from(args.volumes), u8::from(args.link));
    each(client, &args.containers, Method::DELETE, false, |n| format!("/containers/{}?{q}", enc(n))).await
}

/// `berth logs`.
pub async fn logs(client: &Client, args: &LogsArgs) -> Result<ExitCode> {
    let info: ContainerInspect = client.get_typed(&format!("/containers/{}/json", enc(&args.container))).await?;
    let tty = info.config.tty;
    let now = now_unix();
    let mut path = format!(
        "/containers/{}/logs?stdout=1&stderr=1&follow={}&timestamps={}&tail={}",
        enc(&args.container),
        u8::from(args.follow),
        u8::from(args.timestamps),
        enc(&args.tail)
    );
    if let Some(s) = &args.since {
        path.push_str(&format!("&since={}", timestamp_param(s, now)?));
    }
    if let Some(u) = &args.until {
        path.push_str(&format!("&until={}", timestamp_param(u, now)?));
    }
    let resp = client.call(Method::GET, &path, empty(), None).await?;
    let body = resp.into_body().into_data_stream().map_err(std::io::Error::other);
    copy_output(tokio_util::io::StreamReader::new(body), tty).await?;
    Ok(ExitCode::SUCCESS)
}

/// Where `inspect` looks for each kind of object.
fn inspect_path(kind: &str, name: &str, size: bool) -> Option<String> {
    Some(match kind {
        "container" => format!("/containers/{}/json?size={}", enc(name), u8::from(size)),
        "image" => format!("/images/{}/json", super::images::path_name(name)),
        "network" => format!("/networks/{}", enc(name)),
        "volume" => format!("/volumes/{}", enc(name)),
        "plugin" => format!("/plugins/{}/json", enc(name)),
        _ => return None,
    })
}

/// `berth inspect` (and `container inspect`): without `--type`, tries each
/// kind in docker's order and takes the first that exists.
pub async fn inspect(client: &Client, args: &InspectArgs) -> Result<ExitCode> {
    let format = args.format.as_deref().map(Format::parse).transpose()?;
    let kinds: Vec<&str> = match args.kind.as_deref() {
        Some(k) => {
            if inspect_path(k, "", false).is_none() {
                bail!("\"{k}\" is not a valid value for --type");
            }
            vec![k]
        }
        None => vec!["container", "image", "network", "volume", "plugin"],
    };
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for name in &args.names {
        let mut hit = None;
        for kind in &kinds {
            let Some(path) = inspect_path(kind, name, args.size) else { continue };
            match client.get(&path).await {
                Ok(v) => {
                    hit = Some(v);
                    break;
                }
                // Not this kind: try the next one, as docker does.
                Err(e) if e.downcast_ref::<DaemonError>().is_some_and(|d| d.status == 404) => {}
                Err(e) => return Err(e),
            }
        }
        match hit {
            Some(v) => found.push(v),
            None if kinds.len() == 1 => errors.push(format!("Error: No such {}: {name}", kinds[0])),
            None => errors.push(format!("Error: No such object: {name}")),
        }
    }
    super::format::print_inspected(found, &errors, format.as_ref())
}

/// `berth exec`.
pub async fn exec(client: &Client, args: &ExecArgs) -> Result<ExitCode> {
    let (container, cmd) = args.args.split_first().ok_or_else(|| anyhow!("\"exec\" requires at least 2 arguments"))?;
    if container.starts_with('-') {
        // Flag errors exit 125, like clap's own (and docker's).
        eprintln!("unknown flag: {}\nSee 'berth exec --help'.", container.split('=').next().unwrap_or(container));
        return Ok(ExitCode::from(125));
    }
    if args.tty && args.interactive && !std::io::stdin().is_terminal() {
        eprintln!("the input device is not a TTY");
        return Ok(ExitCode::from(1));
    }
    let lookup = |k: &str| std::env::var(k).ok();
    let mut env = Vec::new();
    for f in &args.env_file {
        let text = std::fs::read_to_string(f).with_context(|| format!("open {}: cannot read the file", f.display()))?;
        env.extend(run::parse_env_file(&text, &lookup)?);
    }
    for e in &args.env {
        if e.contains('=') {
            env.push(e.clone());
        } else if let Some(v) = lookup(e) {
            env.push(format!("{e}={v}"));
        }
    }
    let body = exec_create_body(args, cmd, env);
    let created: IdResponse = client.post_typed(&format!("/containers/{}/exec", enc(container)), &body).await?;
    if created.id.is_empty() {
        bail!("the daemon's exec answer has no Id");
    }
    let id = created.id;
    let start = ExecStartRequest { detach: args.detach, tty: args.tty, console_size: None };
    if args.detach {
        client.post_ignoring_answer(&format!("/exec/{id}/start"), &start).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let stream = client.hijack_json(&format!("/exec/{id}/start"), &start).await?;
    let stdin = args.interactive;
    let raw = if args.tty && stdin { RawTerminal::enable()? } else { None };
    let resizer = args.tty.then(|| follow_terminal_size(client, format!("/exec/{id}/resize")));
    let pumped = pump(stream, args.tty, stdin).await;
    if let Some(r) = resizer {
        r.abort();
    }
    drop(raw);
    pumped?;
    // The stream ends a moment before the daemon records the exit code.
    for _ in 0..50 {
        let exec: ExecInspect = client.get_typed(&format!("/exec/{id}/json")).await?;
        if !exec.running {
            return Ok(ExitCode::from((exec.exit_code.unwrap_or(0) & 0xff) as u8));
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Ok(ExitCode::SUCCESS)
}

/// What `exec` asks the daemon to run; `env` is `-e` and `--env-file`, resolved.
fn exec_create_body(args: &ExecArgs, cmd: &[String], env: Vec<String>) -> ExecCreateRequest {
    ExecCreateRequest {
        attach_stderr: !args.detach,
        attach_stdin: args.interactive && !args.detach,
        attach_stdout: !args.detach,
        cmd: cmd.to_vec(),
        detach_keys: String::new(),
        env: if env.is_empty() { None } else { Some(env) },
        privileged: args.privileged,
        tty: args.tty,
        user: args.user.clone().unwrap_or_default(),
        working_dir: args.workdir.clone().unwrap_or_default(),
    }
}

/// `berth wait`.
pub async fn wait(client: &Client, args: &NamesArgs) -> Result<ExitCode> {
    let mut failed = false;
    for name in &args.containers {
        let path = format!("/containers/{}/wait?condition=not-running", enc(name));
        match client.typed::<ContainerWaitResponse>(Method::POST, &path).await {
            Ok(answer) => println!("{}", answer.status_code),
            Err(e) => {
                eprintln!("{e:#}");
                failed = true;
            }
        }
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// `berth top`.
pub async fn top(client: &Client, args: &TopArgs) -> Result<ExitCode> {
    let mut path = format!("/containers/{}/top", enc(&args.container));
    if !args.ps_args.is_empty() {
        path.push_str(&format!("?ps_args={}", enc(&args.ps_args.join(" "))));
    }
    let top: ContainerTopResponse = client.get_typed(&path).await?;
    let mut text = String::new();
    text.push_str(&top.titles.join("\t"));
    text.push('\n');
    for row in &top.processes {
        text.push_str(&row.join("\t"));
        text.push('\n');
    }
    print!("{}", tabwrite(&text));
    Ok(ExitCode::SUCCESS)
}

/// One side of `cp`: a container path or a local one.
#[derive(Debug, PartialEq, Eq)]
pub enum CpSide {
    Container(String, String),
    Local(String),
}

/// Docker's `splitCpArg`: `name:path` unless the argument is clearly local
/// (absolute, or starting with `.`).
pub fn split_cp_arg(arg: &str) -> CpSide {
    if arg.starts_with('/') || arg.starts_with('.') {
        return CpSide::Local(arg.to_string());
    }
    match arg.split_once(':') {
        Some((c, p)) if !c.is_empty() && !c.contains('/') => CpSide::Container(c.to_string(), p.to_string()),
        _ => CpSide::Local(arg.to_string()),
    }
}

/// The decoded `X-Docker-Container-Path-Stat` header.
fn path_stat(headers: &hyper::HeaderMap) -> Option<ContainerPathStat> {
    let raw = headers.get("x-docker-container-path-stat")?.to_str().ok()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(raw).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Go's `os.ModeDir` bit in the stat's `mode`.
const GO_MODE_DIR: u32 = 1 << 31;

fn base_name(p: &str) -> String {
    let trimmed = p.trim_end_matches('/');
    Path::new(trimmed).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| trimmed.to_string())
}

/// Extracts a tar stream under `dest`: into it when it is a directory,
/// else as `dest` itself (the archive's top entry renamed).
fn extract_local(reader: impl std::io::Read, dest: &Path, preserve_owners: bool) -> Result<()> {
    let mut archive = tar::Archive::new(reader);
    archive.set_overwrite(true);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(preserve_owners);
    if dest.is_dir() {
        archive.unpack(dest).with_context(|| format!("cannot extract into {}", dest.display()))?;
        return Ok(());
    }
    let parent = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !parent.is_dir() {
        bail!("destination directory {} does not exist", parent.display());
    }
    // Unpack beside the destination, then move the one top entry into place.
    let tmp = parent.join(format!(".berth-cp-{}", std::process::id()));
    std::fs::create_dir(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let result = (|| -> Result<()> {
        archive.unpack(&tmp).with_context(|| format!("cannot extract into {}", parent.display()))?;
        let mut tops = std::fs::read_dir(&tmp)?.collect::<std::io::Result<Vec<_>>>()?;
        if tops.len() != 1 {
            bail!("the archive has {} top-level entries; expected one", tops.len());
        }
        let top = tops.remove(0).path();
        std::fs::rename(&top, dest).with_context(|| format!("cannot move the copy to {}", dest.display()))
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// `berth cp`.
pub async fn cp(client: &Client, args: &CpArgs) -> Result<ExitCode> {
    match (split_cp_arg(&args.src), split_cp_arg(&args.dest)) {
        (CpSide::Container(c, p), CpSide::Local(dest)) => {
            let path = format!("/containers/{}/archive?path={}", enc(&c), enc(&p));
            let resp = client.call(Method::GET, &path, empty(), None).await?;
            let stream = resp.into_body().into_data_stream().map_err(std::io::Error::other);
            let reader = tokio_util::io::StreamReader::new(stream);
            if dest == "-" {
                let mut reader = reader;
                let mut out = tokio::io::stdout();
                tokio::io::copy(&mut reader, &mut out).await.context("writing the archive")?;
                out.flush().await?;
                return Ok(ExitCode::SUCCESS);
            }
            let sync = tokio_util::io::SyncIoBridge::new(reader);
            let dest = PathBuf::from(dest);
            let archive = args.archive;
            tokio::task::spawn_blocking(move || extract_local(sync, &dest, archive)).await.context("copy task failed")??;
            Ok(ExitCode::SUCCESS)
        }
        (CpSide::Local(src), CpSide::Container(c, p)) => {
            // Where the archive is extracted, and under which name.
            let stat = client.send(Method::HEAD, &format!("/containers/{}/archive?path={}", enc(&c), enc(&p)), empty(), None).await?;
            let dest_is_dir = match stat.status().as_u16() {
                200 => path_stat(stat.headers()).is_some_and(|s| s.mode & GO_MODE_DIR != 0),
                // A destination that does not exist yet is created with the source's contents.
                404 => false,
                _ => {
                    let status = stat.status().as_u16();
                    let bytes = stat.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    let message = serde_json::from_slice::<ErrorResponse>(&bytes)
                        .map(|e| e.message)
                        .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
                    return Err(DaemonError { message, status }.into());
                }
            };
            let (target_dir, name) = if dest_is_dir || p.ends_with('/') {
                (p.clone(), base_name(&src))
            } else {
                let parent = Path::new(&p).parent().map(|x| x.to_string_lossy().into_owned()).filter(|x| !x.is_empty());
                (parent.unwrap_or_else(|| "/".into()), base_name(&p))
            };
            let body = if src == "-" {
                let stdin = tokio_util::io::ReaderStream::new(tokio::io::stdin());
                StreamBody::new(stdin.map_ok(Frame::data)).boxed_unsync()
            } else {
                let meta = std::fs::symlink_metadata(&src).with_context(|| format!("lstat {src}: no such file or directory"))?;
                let (pipe_r, pipe_w) = tokio::io::duplex(256 * 1024);
                let writer = tokio_util::io::SyncIoBridge::new(pipe_w);
                let src_path = PathBuf::from(&src);
                let follow = args.follow_link;
                tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                    let mut b = tar::Builder::new(writer);
                    b.follow_symlinks(follow);
                    if meta.is_dir() {
                        b.append_dir_all(&name, &src_path)?;
                    } else {
                        b.append_path_with_name(&src_path, &name)?;
                    }
                    b.into_inner()?.shutdown()
                });
                let stream = tokio_util::io::ReaderStream::new(pipe_r);
                StreamBody::new(stream.map_ok(Frame::data)).boxed_unsync()
            };
            let body: super::client::Body = body.map_err(std::io::Error::other).boxed_unsync();
            let path = format!("/containers/{}/archive?path={}&noOverwriteDirNonDir=true", enc(&c), enc(&target_dir));
            client.call(Method::PUT, &path, body, Some("application/x-tar")).await?;
            Ok(ExitCode::SUCCESS)
        }
        (CpSide::Container(..), CpSide::Container(..)) => bail!("copying between containers is not supported"),
        (CpSide::Local(..), CpSide::Local(..)) => {
            bail!("must specify at least one container source")
        }
    }
}

/// `berth rename`.
pub async fn rename(client: &Client, args: &RenameArgs) -> Result<ExitCode> {
    let path = format!("/containers/{}/rename?name={}", enc(&args.container), enc(&args.new_name));
    client.call(Method::POST, &path, empty(), None).await?;
    Ok(ExitCode::SUCCESS)
}

/// `berth diff`.
pub async fn diff(client: &Client, args: &ContainerArg) -> Result<ExitCode> {
    // `null` when nothing changed.
    let changes: Option<Vec<FilesystemChange>> =
        client.get_typed(&format!("/containers/{}/changes", enc(&args.container))).await?;
    for c in changes.unwrap_or_default() {
        let kind = match c.kind {
            0 => "C",
            1 => "A",
            2 => "D",
            _ => "?",
        };
        println!("{kind} {}", c.path);
    }
    Ok(ExitCode::SUCCESS)
}

/// `berth commit`.
pub async fn commit(client: &Client, args: &CommitArgs) -> Result<ExitCode> {
    let mut path = format!("/commit?container={}&pause={}", enc(&args.container), u8::from(args.pause));
    if let Some(r) = &args.reference {
        // The tag is the part after the last ':' that is not part of a registry port.
        let (repo, tag) = match r.rfind(':') {
            Some(i) if !r[i..].contains('/') => (&r[..i], Some(&r[i + 1..])),
            _ => (r.as_str(), None),
        };
        path.push_str(&format!("&repo={}", enc(repo)));
        if let Some(t) = tag {
            path.push_str(&format!("&tag={}", enc(t)));
        }
    }
    if let Some(m) = &args.message {
        path.push_str(&format!("&comment={}", enc(m)));
    }
    if let Some(a) = &args.author {
        path.push_str(&format!("&author={}", enc(a)));
    }
    for c in &args.changes {
        path.push_str(&format!("&changes={}", enc(c)));
    }
    // No config body: the container's own config is committed.
    let committed: IdResponse = client.post_typed(&path, &Option::<ContainerConfig>::None).await?;
    println!("{}", committed.id);
    Ok(ExitCode::SUCCESS)
}

/// `berth export`.
pub async fn export(client: &Client, args: &ExportArgs) -> Result<ExitCode> {
    if args.output.is_none() && std::io::stdout().is_terminal() {
        bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
    }
    let resp = client.call(Method::GET, &format!("/containers/{}/export", enc(&args.container)), empty(), None).await?;
    let stream = resp.into_body().into_data_stream().map_err(std::io::Error::other);
    let mut reader = tokio_util::io::StreamReader::new(stream);
    match &args.output {
        Some(path) => {
            // Write beside the target and rename, so a failed export leaves nothing half-written.
            let tmp = path.with_file_name(format!(
                ".{}.berth-export-{}",
                path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                std::process::id()
            ));
            let result = async {
                let mut f = tokio::fs::File::create(&tmp).await.with_context(|| format!("cannot create {}", tmp.display()))?;
                tokio::io::copy(&mut reader, &mut f).await.context("writing the export")?;
                f.sync_all().await?;
                tokio::fs::rename(&tmp, path).await.with_context(|| format!("cannot write {}", path.display()))
            }
            .await;
            if result.is_err() {
                let _ = tokio::fs::remove_file(&tmp).await;
            }
            result?;
        }
        None => {
            let mut out = tokio::io::stdout();
            tokio::io::copy(&mut reader, &mut out).await.context("writing the export")?;
            out.flush().await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Docker's default `events` line: local time with nanoseconds, type,
/// action, actor ID and sorted attributes.
pub fn event_line(ev: &EventMessage) -> String {
    let nanos = if ev.time_nano != 0 { ev.time_nano } else { ev.time * 1_000_000_000 };
    let t = chrono::DateTime::from_timestamp(nanos.div_euclid(1_000_000_000), nanos.rem_euclid(1_000_000_000) as u32)
        .map(|t| t.with_timezone(&chrono::Local).format("%Y-%m-%dT%H:%M:%S%.9f%:z").to_string())
        .unwrap_or_default();
    let mut line = format!("{t} {} {} {}", ev.kind, ev.action, ev.actor.id);
    let attrs = &ev.actor.attributes;
    if !attrs.is_empty() {
        let mut pairs: Vec<String> = attrs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        pairs.sort();
        line.push_str(&format!(" ({})", pairs.join(", ")));
    }
    line
}

/// `berth events`.
pub async fn events(client: &Client, args: &EventsArgs) -> Result<ExitCode> {
    let now = now_unix();
    let filters = parse_filters(&args.filter)?;
    let mut q = Vec::new();
    if let Some(s) = &args.since {
        q.push(format!("since={}", timestamp_param(s, now)?));
    }
    if let Some(u) = &args.until {
        q.push(format!("until={}", timestamp_param(u, now)?));
    }
    if !filters.is_empty() {
        q.push(format!("filters={}", enc(&filters.to_string())));
    }
    let format = args.format.as_deref().map(Format::parse).transpose()?;
    let resp = client.call(Method::GET, &format!("/events?{}", q.join("&")), empty(), None).await?;
    let stream = resp.into_body().into_data_stream().map_err(std::io::Error::other);
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(tokio_util::io::StreamReader::new(stream)));
    while let Some(line) = lines.next_line().await.context("reading events")? {
        if line.trim().is_empty() {
            continue;
        }
        let ev: EventMessage = serde_json::from_str(&line).context("the daemon sent an event that is not JSON")?;
        let text = match &format {
            Some(f) => f.render(&serde_json::to_value(&ev)?)?,
            None => event_line(&ev),
        };
        let written = {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{text}").and_then(|()| out.flush())
        };
        match written {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break,
            Err(e) => return Err(e).context("writing events"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One `stats` row computed from a Docker stats sample (CPU from the
/// difference to `precpu_stats`, memory without the page cache).
pub fn stats_row(s: &StatsResponse, id: &str, name: &str, no_trunc: bool) -> Value {
    let (cpu, precpu) = (&s.cpu_stats, &s.precpu_stats);
    let cpu_delta = cpu.cpu_usage.total_usage as f64 - precpu.cpu_usage.total_usage as f64;
    let sys_delta = cpu.system_cpu_usage as f64 - precpu.system_cpu_usage as f64;
    let mut online = f64::from(cpu.online_cpus);
    if online == 0.0 {
        online = cpu.cpu_usage.percpu_usage.as_ref().map(|p| p.len() as f64).unwrap_or(0.0);
    }
    let cpu = if sys_delta > 0.0 && cpu_delta > 0.0 { cpu_delta / sys_delta * online * 100.0 } else { 0.0 };
    let usage = s.memory_stats.usage.unwrap_or(0) as f64;
    let st = &s.memory_stats.stats;
    // cgroup v1 reports total_inactive_file, v2 inactive_file: both are cache.
    let cache = ["total_inactive_file", "inactive_file"]
        .iter()
        .map(|k| st.get(*k).copied().unwrap_or(0) as f64)
        .find(|v| *v > 0.0 && *v < usage)
        .unwrap_or(0.0);
    let mem = usage - cache;
    let limit = s.memory_stats.limit.unwrap_or(0) as f64;
    let mem_pct = if limit > 0.0 { mem / limit * 100.0 } else { 0.0 };
    let (mut rx, mut tx) = (0.0, 0.0);
    for n in s.networks.iter().flat_map(|m| m.values()) {
        rx += n.rx_bytes as f64;
        tx += n.tx_bytes as f64;
    }
    let (mut read, mut write) = (0.0, 0.0);
    for e in s.blkio_stats.io_service_bytes_recursive.iter().flatten() {
        match e.op.to_ascii_lowercase().as_str() {
            "read" => read += e.value as f64,
            "write" => write += e.value as f64,
            _ => {}
        }
    }
    let pids = s.pids_stats.current.unwrap_or(0);
    json!({
        "ID": short(id, no_trunc),
        "Container": name,
        "Name": name,
        "CPUPerc": format!("{cpu:.2}%"),
        "MemUsage": format!("{} / {}", bytes_size(mem.max(0.0) as u64), bytes_size(limit as u64)),
        "MemPerc": format!("{mem_pct:.2}%"),
        "NetIO": format!("{} / {}", human_size(rx as u64), human_size(tx as u64)),
        "BlockIO": format!("{} / {}", human_size(read as u64), human_size(write as u64)),
        "PIDs": pids.to_string(),
    })
}

fn stats_header() -> Value {
    json!({
        "ID": "CONTAINER ID", "Container": "CONTAINER", "Name": "NAME", "CPUPerc": "CPU %", "MemUsage": "MEM USAGE / LIMIT",
        "MemPerc": "MEM %", "NetIO": "NET I/O", "BlockIO": "BLOCK I/O", "PIDs": "PIDS",
    })
}

/// `berth stats`.
pub async fn stats(client: &Client, args: &StatsArgs) -> Result<ExitCode> {
    let format = Format::parse(args.format.as_deref().unwrap_or(
        "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}",
    ))?;
    loop {
        let round = std::time::Instant::now();
        // Which containers: the named ones, else all running (or all with -a).
        let targets: Vec<(String, String, bool)> = if args.containers.is_empty() {
            let list: Vec<ContainerSummary> = client.get_typed(&format!("/containers/json?all={}", u8::from(args.all))).await?;
            list.into_iter()
                .map(|c| {
                    let name = c.names.first().map(|n| n.trim_start_matches('/')).unwrap_or("").to_string();
                    let running = c.state == Status::Running;
                    (c.id, name, running)
                })
                .collect()
        } else {
            let mut out = Vec::new();
            for n in &args.containers {
                let v: ContainerInspect = client.get_typed(&format!("/containers/{}/json", enc(n))).await?;
                let name = if v.name.is_empty() { n.clone() } else { v.name.trim_start_matches('/').to_string() };
                let id = if v.id.is_empty() { n.clone() } else { v.id };
                out.push((id, name, v.state.running));
            }
            out
        };
        let samples = futures_util::future::join_all(targets.iter().map(|(id, name, running)| {
            let client = client.clone();
            let (id, name, running) = (id.clone(), name.clone(), *running);
            async move {
                // A stopped container, or one that went away, is shown with zeros.
                let sample = if running {
                    client.get_typed(&format!("/containers/{id}/stats?stream=false")).await.unwrap_or_default()
                } else {
                    StatsResponse::default()
                };
                stats_row(&sample, &id, &name, args.no_trunc)
            }
        }))
        .await;
        let text = format.render_rows(&stats_header(), &samples)?;
        if args.no_stream {
            print!("{text}");
            return Ok(ExitCode::SUCCESS);
        }
        // Clear the screen and redraw from the top, as docker's live view does.
        let drawn = {
            let mut out = std::io::stdout().lock();
            write!(out, "\x1b[2J\x1b[H{text}").and_then(|()| out.flush())
        };
        match drawn {
            Ok(()) => {}
            // The reader went away (`stats | head`): done, as with SIGPIPE.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
            Err(e) => return Err(e).context("writing the stats"),
        }
        // One refresh a second, even when no sample had to be waited for.
        if let Some(rest) = std::time::Duration::from_secs(1).checked_sub(round.elapsed()) {
            tokio::time::sleep(rest).await;
        }
    }
}

/// `berth update`.
pub async fn update(client: &Client, args: &UpdateArgs) -> Result<ExitCode> {
    let body = update_body(args)?;
    if body == ContainerUpdateRequest::default() {
        bail!("you must provide one or more flags when using this command");
    }
    let mut failed = false;
    for name in &args.containers {
        match client.post_typed::<_, ContainerUpdateResponse>(&format!("/containers/{}/update", enc(name)), &body).await {
            Ok(answer) => {
                for w in &answer.warnings {
                    eprintln!("WARNING: {w}");
                }
                println!("{name}");
            }
            Err(e) => {
                eprintln!("{e:#}");
                failed = true;
            }
        }
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// The limits `update` changes: only the flags given, so the container keeps the rest.
fn update_body(args: &UpdateArgs) -> Result<ContainerUpdateRequest> {
    let mem = |s: &Option<String>, flag: &str| -> Result<Option<i64>> {
        s.as_deref()
            .map(|v| if v == "-1" { Ok(-1) } else { parse_memory(v).map_err(|e| anyhow!("invalid argument \"{v}\" for \"{flag}\" flag: {e}")) })
            .transpose()
    };
    Ok(ContainerUpdateRequest {
        cpu_period: args.cpu_period,
        cpu_quota: args.cpu_quota,
        cpu_shares: args.cpu_shares,
        cpuset_cpus: args.cpuset_cpus.clone(),
        cpuset_mems: args.cpuset_mems.clone(),
        memory: mem(&args.memory, "-m, --memory")?,
        memory_swap: mem(&args.memory_swap, "--memory-swap")?,
        memory_reservation: mem(&args.memory_reservation, "--memory-reservation")?,
        nano_cpus: args.cpus.map(|c| (c * 1e9) as i64),
        pids_limit: args.pids_limit,
        restart_policy: args.restart.as_deref().map(parse_restart).transpose()?,
        ..ContainerUpdateRequest::default()
    })
}

/// `berth container prune`.
pub async fn prune(client: &Client, args: &PruneArgs) -> Result<ExitCode> {
    if !args.force {
        if !super::format::confirm("WARNING! This will remove all stopped containers.")? {
            // docker: declining is not an error, nothing is removed.
            return Ok(ExitCode::SUCCESS);
        }
    }
    let filters = parse_filters(&args.filter)?;
    let path = if !filters.is_empty() {
        format!("/containers/prune?filters={}", enc(&filters.to_string()))
    } else {
        "/containers/prune".to_string()
    };
    let report: ContainerPruneResponse = client.typed(Method::POST, &path).await?;
    if let Some(ids) = report.containers_deleted.filter(|ids| !ids.is_empty()) {
        println!("Deleted Containers:");
        for id in &ids {
            println!("{id}");
        }
        println!();
    }
    println!("Total reclaimed space: {}", super::units::human_size4(report.space_reclaimed));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_rows_quote_and_truncate_the_command() {
        let c = json!({
            "Id": "0123456789abcdef".repeat(4), "Names": ["/web"], "Image": "busybox", "Command": "sh -c 'sleep 1000; echo done'",
            "Created": 1000, "State": "running", "Status": "Up 2 seconds", "Labels": {"a": "b"},
        });
        let c: ContainerSummary = serde_json::from_value(c).unwrap();
        let row = ps_row(&c, false, 1010.0);
        assert_eq!(row["ID"], "0123456789ab");
        assert_eq!(row["Command"], "\"sh -c 'sleep 1000; …\"");
        assert_eq!(row["RunningFor"], "10 seconds ago");
        assert_eq!(row["Names"], "web");
        assert_eq!(row["Labels"], "a=b");
        let full = ps_row(&c, true, 1010.0);
        assert_eq!(full["Command"], "\"sh -c 'sleep 1000; echo done'\"");
        assert_eq!(full["ID"].as_str().unwrap().len(), 64);
    }

    #[test]
    fn exec_sends_dockers_exec_config() {
        let args = ExecArgs {
            detach: false,
            env: vec![],
            env_file: vec![],
            interactive: true,
            privileged: false,
            tty: true,
            user: Some("nobody".into()),
            workdir: None,
            args: vec!["web".into(), "sh".into()],
        };
        let cmd = ["sh".to_string(), "-c".into(), "id".into()];
        assert_eq!(
            serde_json::to_string(&exec_create_body(&args, &cmd, Vec::new())).unwrap(),
            r#"{"AttachStderr":true,"AttachStdin":true,"AttachStdout":true,"Cmd":["sh","-c","id"],"DetachKeys":"","Env":null,"#
                .to_string()
                + r#""Privileged":false,"Tty":true,"User":"nobody","WorkingDir":""}"#
        );
        let detached = ExecArgs { detach: true, privileged: true, workdir: Some("/tmp".into()), ..args };
        let body = serde_json::to_value(exec_create_body(&detached, &cmd, vec!["A=1".into()])).unwrap();
        assert_eq!(body["AttachStdin"], false);
        assert_eq!(body["AttachStdout"], false);
        assert_eq!(body["Env"], json!(["A=1"]));
        assert_eq!(body["Privileged"], true);
        assert_eq!(body["WorkingDir"], "/tmp");
    }

    #[test]
    fn exec_start_sends_detach_and_tty() {
        let start = ExecStartRequest { detach: true, tty: false, console_size: None };
        assert_eq!(serde_json::to_string(&start).unwrap(), r#"{"Detach":true,"Tty":false}"#);
        let sized = ExecStartRequest { console_size: Some([24, 80]), ..start };
        assert_eq!(serde_json::to_string(&sized).unwrap(), r#"{"Detach":true,"Tty":false,"ConsoleSize":[24,80]}"#);
    }

    #[test]
    fn update_sends_only_the_flags_given() {
        let none = UpdateArgs {
            cpus: None,
            cpu_shares: None,
            cpu_period: None,
            cpu_quota: None,
            cpuset_cpus: None,
            cpuset_mems: None,
            memory: None,
            memory_reservation: None,
            memory_swap: None,
            pids_limit: None,
            restart: None,
            containers: vec!["web".into()],
        };
        let body = |args: &UpdateArgs| serde_json::to_string(&update_body(args).unwrap()).unwrap();
        assert_eq!(body(&none), "{}");
        let limits = UpdateArgs { memory: Some("64m".into()), cpus: Some(1.5), restart: Some("on-failure:3".into()), ..none };
        assert_eq!(
            body(&limits),
            r#"{"Memory":67108864,"NanoCpus":1500000000,"RestartPolicy":{"Name":"on-failure","MaximumRetryCount":3}}"#
        );
        let unlimited = UpdateArgs { memory_swap: Some("-1".into()), pids_limit: Some(-1), cpuset_cpus: Some("0-1".into()), ..limits };
        assert_eq!(
            body(&unlimited),
            r#"{"CpusetCpus":"0-1","Memory":67108864,"MemorySwap":-1,"NanoCpus":1500000000,"PidsLimit":-1,"#.to_string()
                + r#""RestartPolicy":{"Name":"on-failure","MaximumRetryCount":3}}"#
        );
        let bad = UpdateArgs { memory_reservation: Some("lots".into()), ..unlimited };
        let e = update_body(&bad).unwrap_err().to_string();
        assert!(e.starts_with("invalid argument \"lots\" for \"--memory-reservation\" flag"), "{e}");
    }

    #[test]
    fn ps_table_has_dockers_columns() {
        let c = json!({"Id": "a".repeat(64), "Names": ["/x"], "Image": "img", "Command": "true", "Created": 0, "Status": "Created"});
        let c: ContainerSummary = serde_json::from_value(c).unwrap();
        let f = Format::parse("table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}").unwrap();
        let out = f.render_rows(&ps_header(), &[ps_row(&c, false, 5.0)]).unwrap();
        let header = out.lines().next().unwrap();
        assert!(header.starts_with("CONTAINER ID   IMAGE     COMMAND   CREATED"), "{header}");
        assert!(header.ends_with("PORTS     NAMES"), "{header}");
        assert!(out.lines().nth(1).unwrap().contains("\"true\""));
    }

    #[test]
    fn durations_and_timestamps() {
        assert_eq!(parse_go_duration("10s"), Some(10.0));
        assert_eq!(parse_go_duration("1h30m"), Some(5400.0));
        assert_eq!(parse_go_duration("1.5m"), Some(90.0));
        assert_eq!(parse_go_duration("10"), None);
        assert_eq!(parse_go_duration("x"), None);
        assert_eq!(timestamp_param("10s", 100.0).unwrap(), "90.000000000");
        assert_eq!(timestamp_param("1700000000", 0.0).unwrap(), "1700000000");
        assert_eq!(timestamp_param("2024-01-02T03:04:05Z", 0.0).unwrap(), "1704164645.000000000");
        assert_eq!(timestamp_param("2024-01-02", 0.0).unwrap(), "1704153600");
        assert!(timestamp_param("yesterday", 0.0).is_err());
    }

    #[test]
    fn cp_arguments_split_like_docker() {
        assert_eq!(split_cp_arg("web:/etc/hosts"), CpSide::Container("web".into(), "/etc/hosts".into()));
        assert_eq!(split_cp_arg("/tmp/a:b"), CpSide::Local("/tmp/a:b".into()));
        assert_eq!(split_cp_arg("./a:b"), CpSide::Local("./a:b".into()));
        assert_eq!(split_cp_arg("file.txt"), CpSide::Local("file.txt".into()));
        assert_eq!(split_cp_arg("-"), CpSide::Local("-".into()));
    }

    #[test]
    fn stats_rows_compute_dockers_percentages() {
        let s = json!({
            "cpu_stats": {"cpu_usage": {"total_usage": 300}, "system_cpu_usage": 2000, "online_cpus": 2},
            "precpu_stats": {"cpu_usage": {"total_usage": 100}, "system_cpu_usage": 1000},
            "memory_stats": {"usage": 3_145_728u64, "limit": 104_857_600u64, "stats": {"total_inactive_file": 1_048_576u64}},
            "blkio_stats": {"io_service_bytes_recursive": [{"op": "Read", "value": 2000}, {"op": "Write", "value": 1000}]},
            "pids_stats": {"current": 3},
        });
        let s: StatsResponse = serde_json::from_value(s).unwrap();
        let row = stats_row(&s, &"f".repeat(64), "web", false);
        assert_eq!(row["CPUPerc"], "40.00%");
        assert_eq!(row["MemUsage"], "2MiB / 100MiB");
        assert_eq!(row["MemPerc"], "2.00%");
        assert_eq!(row["BlockIO"], "2kB / 1kB");
        assert_eq!(row["NetIO"], "0B / 0B");
        assert_eq!(row["PIDs"], "3");
        assert_eq!(row["ID"], "ffffffffffff");
        let empty = stats_row(&StatsResponse::default(), "x", "y", false);
        assert_eq!(empty["CPUPerc"], "0.00%");
    }

    #[test]
    fn stats_rows_read_dockerds_bodies() {
        // dockerd's: `null` for the blkio lists it has nothing in, `percpu_usage` where `online_cpus` is
        // missing, and members berth never sends.
        let body = r#"{
            "read": "2026-01-01T00:00:02Z", "preread": "2026-01-01T00:00:01Z",
            "pids_stats": {"current": 5, "limit": 4915},
            "blkio_stats": {
                "io_service_bytes_recursive": [{"major": 8, "minor": 0, "op": "read", "value": 4096}],
                "io_serviced_recursive": null
            },
            "num_procs": 0, "storage_stats": {},
            "cpu_stats": {
                "cpu_usage": {"total_usage": 600, "percpu_usage": [300, 300], "usage_in_kernelmode": 100, "usage_in_usermode": 500},
                "system_cpu_usage": 4000, "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}
            },
            "precpu_stats": {
                "cpu_usage": {"total_usage": 200, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
                "system_cpu_usage": 2000, "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}
            },
            "memory_stats": {"usage": 2097152, "stats": {"inactive_file": 1048576, "anon": 1048576}, "limit": 1048576000},
            "name": "/db", "id": "abc",
            "networks": {"eth0": {
                "rx_bytes": 1500, "rx_packets": 3, "rx_errors": 0, "rx_dropped": 0,
                "tx_bytes": 500, "tx_packets": 2, "tx_errors": 0, "tx_dropped": 0
            }}
        }"#;
        let s: StatsResponse = serde_json::from_str(body).unwrap();
        let row = stats_row(&s, "abc", "db", false);
        assert_eq!(row["CPUPerc"], "40.00%");
        assert_eq!(row["MemUsage"], "1MiB / 1000MiB");
        assert_eq!(row["NetIO"], "1.5kB / 500B");
        assert_eq!(row["BlockIO"], "4.1kB / 0B");
        assert_eq!(row["PIDs"], "5");
    }

    #[test]
    fn event_lines_sort_attributes() {
        let ev = json!({"Type": "container", "Action": "start", "Actor": {"ID": "abc", "Attributes": {"name": "web", "image": "busybox"}}, "timeNano": 0});
        let ev: EventMessage = serde_json::from_value(ev).unwrap();
        let line = event_line(&ev);
        assert!(line.ends_with(" container start abc (image=busybox, name=web)"), "{line}");
    }
}
