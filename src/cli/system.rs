//! `version`, `info` and `system df|info`.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Result;
use berth_model::container::Status;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::apitypes::containers::ContainerSummary;
use crate::apitypes::system::{DiskUsage, SystemInfo, SystemVersion};
use crate::apitypes::volumes::Volume;
use crate::version;
use super::client::Client;
use super::format::{tabwrite, Format};
use super::images::{image_rows, ImageRowOptions};
use super::units::{bytes_size, human_size4};
use super::volumes::local_volume_count;

/// A lone `-f/--format` flag.
#[derive(Args, Debug)]
pub struct FormatArgs {
    /// Format the output using the given Go template.
    #[arg(short = 'f', long)]
    pub format: Option<String>,
}

/// `berth system ...`.
#[derive(Subcommand, Debug)]
pub enum SystemCommand {
    /// Show berth disk usage.
    Df(DfArgs),
    /// Display system-wide information.
    Info(FormatArgs),
}

/// Flags of `system df`.
#[derive(Args, Debug)]
pub struct DfArgs {
    /// Show detailed information on space usage.
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Format the output using the given Go template.
    #[arg(long)]
    pub format: Option<String>,
}

/// Dispatches `system` subcommands.
pub async fn system(client: &Client, cmd: SystemCommand) -> Result<ExitCode> {
    match cmd {
        SystemCommand::Df(a) => df(client, &a).await,
        SystemCommand::Info(a) => info(client, &a).await,
    }
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Go's ANSIC time layout, which `docker version` uses for "Built".
fn ansic(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.format("%a %b %e %H:%M:%S %Y").to_string())
        .unwrap_or_else(|_| rfc3339.to_string())
}

/// `berth version`.
pub async fn version(client: &Client, args: &FormatArgs) -> Result<ExitCode> {
    let client_info = json!({
        "Platform": { "Name": "berth" },
        "Version": version::VERSION,
        "ApiVersion": version::MAX_API_VERSION,
        "DefaultAPIVersion": version::MAX_API_VERSION,
        "GitCommit": version::GIT_COMMIT,
        "GoVersion": version::RUSTC_VERSION,
        "Os": "linux",
        "Arch": version::go_arch(),
        "BuildTime": ansic(version::BUILD_TIME),
        "Context": "default",
    });
    let server: Result<SystemVersion> = client.get_typed("/version").await;
    if let Some(f) = &args.format {
        let data = json!({ "Client": client_info, "Server": server.as_ref().ok() });
        println!("{}", Format::parse(f)?.render(&data)?);
        return server.map(|_| ExitCode::SUCCESS);
    }
    let mut out = String::new();
    let _ = writeln!(out, "Client:");
    for (k, v) in [
        ("Version", s(&client_info, "Version").to_string()),
        ("API version", version::MAX_API_VERSION.to_string()),
        ("Go version", version::RUSTC_VERSION.to_string()),
        ("Git commit", version::GIT_COMMIT.to_string()),
        ("Built", ansic(version::BUILD_TIME)),
        ("OS/Arch", format!("linux/{}", version::go_arch())),
        ("Context", "default".to_string()),
    ] {
        let _ = writeln!(out, " {:<19}{v}", format!("{k}:"));
    }
    print!("{out}");
    let server = server?;
    let mut out = String::new();
    let _ = writeln!(out, "\nServer: {}", server.platform.name);
    for c in &server.components {
        // Details are free-form: a component may leave any of them out.
        let detail = |k: &str| c.details.get(k).map(String::as_str).unwrap_or("");
        let _ = writeln!(out, " {}:", c.name);
        let mut rows = vec![("Version", c.version.clone())];
        if c.name == "Engine" {
            rows.extend([
                ("API version", format!("{} (minimum version {})", detail("ApiVersion"), detail("MinAPIVersion"))),
                ("Go version", detail("GoVersion").to_string()),
                ("Git commit", detail("GitCommit").to_string()),
                ("Built", ansic(detail("BuildTime"))),
                ("OS/Arch", format!("{}/{}", detail("Os"), detail("Arch"))),
                ("Experimental", detail("Experimental").to_string()),
            ]);
        } else if let Some(commit) = c.details.get("GitCommit") {
            rows.push(("GitCommit", commit.clone()));
        }
        for (k, v) in rows {
            let _ = writeln!(out, "  {:<18}{v}", format!("{k}:"));
        }
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// `berth info`.
pub async fn info(client: &Client, args: &FormatArgs) -> Result<ExitCode> {
    let i: SystemInfo = client.get_typed("/info").await?;
    if let Some(f) = &args.format {
        println!("{}", Format::parse(f)?.render(&serde_json::to_value(&i)?)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut o = String::new();
    let _ = writeln!(o, "Client:\n Version:    {}\n Context:    default\n Debug Mode: false\n", version::VERSION);
    let _ = writeln!(o, "Server:");
    let _ = writeln!(o, " Containers: {}", i.containers);
    for (label, n) in [("Running", i.containers_running), ("Paused", i.containers_paused), ("Stopped", i.containers_stopped)] {
        let _ = writeln!(o, "  {label}: {n}");
    }
    let _ = writeln!(o, " Images: {}", i.images);
    let _ = writeln!(o, " Server Version: {}", i.server_version);
    let _ = writeln!(o, " Storage Driver: {}", i.driver);
    for pair in &i.driver_status {
        if let [k, v, ..] = pair.as_slice() {
            let _ = writeln!(o, "  {k}: {v}");
        }
    }
    let _ = writeln!(o, " Logging Driver: {}", i.logging_driver);
    let _ = writeln!(o, " Cgroup Driver: {}", i.cgroup_driver);
    let _ = writeln!(o, " Cgroup Version: {}", i.cgroup_version);
    let _ = writeln!(o, " Plugins:");
    for (kind, names) in [("Volume", &i.plugins.volume), ("Network", &i.plugins.network), ("Log", &i.plugins.log)] {
        let _ = writeln!(o, "  {kind}: {}", names.join(" "));
    }
    let swarm = if i.swarm.local_node_state.is_empty() { "inactive" } else { i.swarm.local_node_state.as_str() };
    let _ = writeln!(o, " Swarm: {swarm}");
    let runtimes: Vec<&str> = i.runtimes.keys().map(String::as_str).collect();
    let _ = writeln!(o, " Runtimes: {}", runtimes.join(" "));
    let _ = writeln!(o, " Default Runtime: {}", i.default_runtime);
    let _ = writeln!(o, " Init Binary: {}", i.init_binary);
    if !i.security_options.is_empty() {
        let _ = writeln!(o, " Security Options:");
        // Docker's form: the name, then its options (`name=seccomp,profile=default`).
        for opt in &i.security_options {
            for (n, (key, value)) in opt.split(',').filter_map(|kv| kv.split_once('=')).enumerate() {
                match (n, key) {
                    (0, "name") => {
                        let _ = writeln!(o, "  {value}");
                    }
                    (_, "profile") => {
                        let _ = writeln!(o, "   Profile: {value}");
                    }
                    _ => {}
                }
            }
        }
    }
    let _ = writeln!(o, " Kernel Version: {}", i.kernel_version);
    let _ = writeln!(o, " Operating System: {}", i.operating_system);
    let _ = writeln!(o, " OSType: {}", i.os_type);
    let _ = writeln!(o, " Architecture: {}", i.architecture);
    let _ = writeln!(o, " CPUs: {}", i.ncpu);
    let _ = writeln!(o, " Total Memory: {}", bytes_size(i.mem_total));
    let _ = writeln!(o, " Name: {}", i.name);
    let _ = writeln!(o, " ID: {}", i.id);
    let _ = writeln!(o, " Berth Root Dir: {}", i.docker_root_dir);
    let _ = writeln!(o, " Debug Mode: {}", i.debug);
    let _ = writeln!(o, " Experimental: {}", i.experimental_build);
    let _ = writeln!(o, " Insecure Registries:");
    for cidr in &i.registry_config.insecure_registry_cidrs {
        let _ = writeln!(o, "  {cidr}");
    }
    let _ = writeln!(o, " Live Restore Enabled: {}", i.live_restore_enabled);
    print!("{o}");
    let mut warnings = Vec::new();
    for (supported, text) in [
        (i.memory_limit, "WARNING: No memory limit support"),
        (i.swap_limit, "WARNING: No swap limit support"),
        (i.cpu_cfs_quota, "WARNING: No cpu cfs quota support"),
        (i.cpu_cfs_period, "WARNING: No cpu cfs period support"),
        (i.cpu_shares, "WARNING: No cpu shares support"),
        (i.cpu_set, "WARNING: No cpuset support"),
    ] {
        if !supported {
            warnings.push(text);
        }
    }
    if !warnings.is_empty() {
        eprintln!("\n{}", warnings.join("\n"));
    }
    Ok(ExitCode::SUCCESS)
}

/// `berth system df`.
pub async fn df(client: &Client, args: &DfArgs) -> Result<ExitCode> {
    let d: DiskUsage = client.get_typed("/system/df").await?;
    let images = d.images.unwrap_or_default();
    let layers = d.layers_size.unwrap_or(0);
    let active = images.iter().filter(|i| i.containers > 0).count();
    let used: u64 = images
        .iter()
        .filter(|i| i.containers > 0)
        // An unknown shared size (-1) counts as nothing shared.
        .map(|i| i.size.saturating_sub(u64::try_from(i.shared_size).unwrap_or(0)))
        .sum();
    let reclaimable = layers.saturating_sub(used);
    let reclaim_text = match (reclaimable * 100).checked_div(layers) {
        Some(percent) => format!("{} ({percent}%)", human_size4(reclaimable)),
        None => human_size4(reclaimable),
    };
    let containers = d.containers.unwrap_or_default();
    let running = |c: &ContainerSummary| c.state == Status::Running;
    let size_rw = |c: &ContainerSummary| c.size_rw.unwrap_or(0);
    let containers_size: u64 = containers.iter().map(size_rw).sum();
    // Stopped containers' writable layers are what `container prune` would free.
    let containers_reclaimable: u64 = containers.iter().filter(|c| !running(c)).map(size_rw).sum();
    let containers_reclaim_text = match (containers_reclaimable * 100).checked_div(containers_size) {
        Some(percent) => format!("{} ({percent}%)", human_size4(containers_reclaimable)),
        None => human_size4(containers_reclaimable),
    };
    let volumes = d.volumes.unwrap_or_default();
    let lines = [
        UsageLine::new("Images", images.len(), active, human_size4(layers), reclaim_text),
        UsageLine::new(
            "Containers",
            containers.len(),
            containers.iter().filter(|c| running(c)).count(),
            human_size4(containers_size),
            containers_reclaim_text,
        ),
        volumes_line(&volumes),
        UsageLine::new("Build Cache", 0, 0, "0B".to_string(), "0B".to_string()),
    ];
    if let Some(f) = &args.format {
        let header = json!({"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE", "Reclaimable": "RECLAIMABLE"});
        let rows = lines.iter().map(serde_json::to_value).collect::<Result<Vec<_>, _>>()?;
        print!("{}", Format::parse(f)?.render_rows(&header, &rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if !args.verbose {
        let mut text = String::from("TYPE\tTOTAL\tACTIVE\tSIZE\tRECLAIMABLE\n");
        for l in &lines {
            let _ = writeln!(text, "{}\t{}\t{}\t{}\t{}", l.kind, l.total_count, l.active, l.size, l.reclaimable);
        }
        print!("{}", tabwrite(&text));
        return Ok(ExitCode::SUCCESS);
    }
    let now = chrono::Utc::now().timestamp();
    let opts = ImageRowOptions { no_trunc: false, now };
    let mut text = String::from("REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE\tSHARED SIZE\tUNIQUE SIZE\tCONTAINERS\n");
    for img in &images {
        for row in image_rows(img, &opts) {
            let _ = writeln!(
                text,
                "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                s(&row, "Repository"),
                s(&row, "Tag"),
                s(&row, "ID"),
                s(&row, "CreatedSince"),
                s(&row, "Size"),
                s(&row, "SharedSize"),
                s(&row, "UniqueSize"),
                s(&row, "Containers")
            );
        }
    }
    print!("Images space usage:\n\n{}\n", tabwrite(&text));
    let mut ctext = String::from("CONTAINER ID\tIMAGE\tCOMMAND\tLOCAL VOLUMES\tSIZE\tCREATED\tSTATUS\tNAMES\n");
    for c in &containers {
        let row = super::containers::ps_row(c, false, now as f64);
        let _ = writeln!(
            ctext,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            s(&row, "ID"),
            s(&row, "Image"),
            s(&row, "Command"),
            local_volume_count(&c.mounts),
            human_size4(size_rw(c)),
            s(&row, "RunningFor"),
            s(&row, "Status"),
            s(&row, "Names")
        );
    }
    print!("Containers space usage:\n\n{}\n", tabwrite(&ctext));
    let mut vtext = String::from("VOLUME NAME\tLINKS\tSIZE\n");
    for v in &volumes {
        let row = super::volumes::volume_row(v);
        let _ = writeln!(vtext, "{}\t{}\t{}", s(&row, "Name"), s(&row, "Links"), s(&row, "Size"));
    }
    print!("Local Volumes space usage:\n\n{}\n", tabwrite(&vtext));
    print!("Build cache usage: 0B\n\n{}", tabwrite("CACHE ID\tCACHE TYPE\tSIZE\tCREATED\tLAST USED\tUSAGE\tSHARED\n"));
    Ok(ExitCode::SUCCESS)
}

/// One line of `system df`'s summary, with the names its `--format`
/// templates use.
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct UsageLine {
    #[serde(rename = "Type")]
    kind: &'static str,
    total_count: usize,
    active: usize,
    size: String,
    reclaimable: String,
}

impl UsageLine {
    fn new(kind: &'static str, total_count: usize, active: usize, size: String, reclaimable: String) -> UsageLine {
        UsageLine { kind, total_count, active, size, reclaimable }
    }
}

/// `system df`'s Local Volumes line: volumes in use count as active, the
/// unused ones' sizes as reclaimable (sizes of -1, unknown, are left out).
fn volumes_line(volumes: &[Volume]) -> UsageLine {
    let usage = |v: &Volume| v.usage_data.unwrap_or_default();
    let active = volumes.iter().filter(|v| usage(v).ref_count > 0).count();
    let (mut size, mut reclaimable) = (0u64, 0u64);
    for v in volumes {
        let bytes = usage(v).size;
        if bytes >= 0 {
            size += bytes as u64;
            if usage(v).ref_count == 0 {
                reclaimable += bytes as u64;
            }
        }
    }
    let reclaim_text = match (reclaimable * 100).checked_div(size) {
        Some(percent) => format!("{} ({percent}%)", human_size4(reclaimable)),
        None => human_size4(reclaimable),
    };
    UsageLine::new("Local Volumes", volumes.len(), active, human_size4(size), reclaim_text)
}


#[cfg(test)]
mod volume_tests {
    use super::*;

    #[test]
    fn volume_line_counts_active_and_reclaimable() {
        let vols: Vec<Volume> = serde_json::from_value(json!([
            {"Name": "a", "UsageData": {"Size": 3000, "RefCount": 1}},
            {"Name": "b", "UsageData": {"Size": 1000, "RefCount": 0}},
            {"Name": "c", "UsageData": {"Size": -1, "RefCount": 0}},
        ]))
        .unwrap();
        let line = volumes_line(&vols);
        assert_eq!(line.total_count, 3);
        assert_eq!(line.active, 1);
        assert_eq!(line.size, "4kB");
        assert_eq!(line.reclaimable, "1kB (25%)");
        assert_eq!(volumes_line(&[]).reclaimable, "0B");
        let c: ContainerSummary =
            serde_json::from_value(json!({"Mounts": [{"Driver": "local"}, {"Type": "bind"}, {"Driver": "local"}]})).unwrap();
        assert_eq!(local_volume_count(&c.mounts), 2);
    }
}
