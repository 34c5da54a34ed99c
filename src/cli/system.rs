//! `version`, `info` and `system df|info`.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::client::Client;
use super::format::{tabwrite, Format};
use super::images::{image_rows, ImageRowOptions};
use super::units::{bytes_size, human_size4};
use crate::version;

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
    let server = client.get("/version").await;
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
    let _ = writeln!(out, "\nServer: {}", server.pointer("/Platform/Name").and_then(Value::as_str).unwrap_or(""));
    for c in server.get("Components").and_then(Value::as_array).into_iter().flatten() {
        let d = c.get("Details").cloned().unwrap_or(Value::Null);
        let _ = writeln!(out, " {}:", s(c, "Name"));
        let mut rows = vec![("Version", s(c, "Version").to_string())];
        if s(c, "Name") == "Engine" {
            rows.extend([
                ("API version", format!("{} (minimum version {})", s(&d, "ApiVersion"), s(&d, "MinAPIVersion"))),
                ("Go version", s(&d, "GoVersion").to_string()),
                ("Git commit", s(&d, "GitCommit").to_string()),
                ("Built", ansic(s(&d, "BuildTime"))),
                ("OS/Arch", format!("{}/{}", s(&d, "Os"), s(&d, "Arch"))),
                ("Experimental", s(&d, "Experimental").to_string()),
            ]);
        } else if let Some(commit) = d.get("GitCommit").and_then(Value::as_str) {
            rows.push(("GitCommit", commit.to_string()));
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
    let i = client.get("/info").await?;
    if let Some(f) = &args.format {
        println!("{}", Format::parse(f)?.render(&i)?);
        return Ok(ExitCode::SUCCESS);
    }
    let n = |k: &str| i.get(k).map(|v| v.to_string()).unwrap_or_default();
    let b = |k: &str| i.get(k).and_then(Value::as_bool).unwrap_or(false);
    let list = |p: &str| -> Vec<String> {
        i.pointer(p)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let mut o = String::new();
    let _ = writeln!(o, "Client:\n Version:    {}\n Context:    default\n Debug Mode: false\n", version::VERSION);
    let _ = writeln!(o, "Server:");
    let _ = writeln!(o, " Containers: {}", n("Containers"));
    for (label, key) in [("Running", "ContainersRunning"), ("Paused", "ContainersPaused"), ("Stopped", "ContainersStopped")] {
        let _ = writeln!(o, "  {label}: {}", n(key));
    }
    let _ = writeln!(o, " Images: {}", n("Images"));
    let _ = writeln!(o, " Server Version: {}", s(&i, "ServerVersion"));
    let _ = writeln!(o, " Storage Driver: {}", s(&i, "Driver"));
    for pair in i.get("DriverStatus").and_then(Value::as_array).into_iter().flatten() {
        if let (Some(k), Some(v)) = (pair.get(0).and_then(Value::as_str), pair.get(1).and_then(Value::as_str)) {
            let _ = writeln!(o, "  {k}: {v}");
        }
    }
    let _ = writeln!(o, " Logging Driver: {}", s(&i, "LoggingDriver"));
    let _ = writeln!(o, " Cgroup Driver: {}", s(&i, "CgroupDriver"));
    let _ = writeln!(o, " Cgroup Version: {}", s(&i, "CgroupVersion"));
    let _ = writeln!(o, " Plugins:");
    for kind in ["Volume", "Network", "Log"] {
        let _ = writeln!(o, "  {kind}: {}", list(&format!("/Plugins/{kind}")).join(" "));
    }
    let _ = writeln!(o, " Swarm: {}", i.pointer("/Swarm/LocalNodeState").and_then(Value::as_str).unwrap_or("inactive"));
    let runtimes: Vec<String> =
        i.get("Runtimes").and_then(Value::as_object).map(|m| m.keys().cloned().collect()).unwrap_or_default();
    let _ = writeln!(o, " Runtimes: {}", runtimes.join(" "));
    let _ = writeln!(o, " Default Runtime: {}", s(&i, "DefaultRuntime"));
    let _ = writeln!(o, " Init Binary: {}", s(&i, "InitBinary"));
    let security = list("/SecurityOptions");
    if !security.is_empty() {
        let _ = writeln!(o, " Security Options:");
        // Docker's form: the name, then its options (`name=seccomp,profile=default`).
        for opt in security {
            for (i, (key, value)) in opt.split(',').filter_map(|kv| kv.split_once('=')).enumerate() {
                match (i, key) {
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
    let _ = writeln!(o, " Kernel Version: {}", s(&i, "KernelVersion"));
    let _ = writeln!(o, " Operating System: {}", s(&i, "OperatingSystem"));
    let _ = writeln!(o, " OSType: {}", s(&i, "OSType"));
    let _ = writeln!(o, " Architecture: {}", s(&i, "Architecture"));
    let _ = writeln!(o, " CPUs: {}", n("NCPU"));
    let _ = writeln!(o, " Total Memory: {}", bytes_size(i.get("MemTotal").and_then(Value::as_u64).unwrap_or(0)));
    let _ = writeln!(o, " Name: {}", s(&i, "Name"));
    let _ = writeln!(o, " ID: {}", s(&i, "ID"));
    let _ = writeln!(o, " Berth Root Dir: {}", s(&i, "DockerRootDir"));
    let _ = writeln!(o, " Debug Mode: {}", b("Debug"));
    let _ = writeln!(o, " Experimental: {}", b("ExperimentalBuild"));
    let _ = writeln!(o, " Insecure Registries:");
    for cidr in list("/RegistryConfig/InsecureRegistryCIDRs") {
        let _ = writeln!(o, "  {cidr}");
    }
    let _ = writeln!(o, " Live Restore Enabled: {}", b("LiveRestoreEnabled"));
    print!("{o}");
    let mut warnings = Vec::new();
    for (key, text) in [
        ("MemoryLimit", "WARNING: No memory limit support"),
        ("SwapLimit", "WARNING: No swap limit support"),
        ("CpuCfsQuota", "WARNING: No cpu cfs quota support"),
        ("CpuCfsPeriod", "WARNING: No cpu cfs period support"),
        ("CPUShares", "WARNING: No cpu shares support"),
        ("CPUSet", "WARNING: No cpuset support"),
    ] {
        if !b(key) {
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
    let d = client.get("/system/df").await?;
    let images = d.get("Images").and_then(Value::as_array).cloned().unwrap_or_default();
    let layers = d.get("LayersSize").and_then(Value::as_u64).unwrap_or(0);
    let active = images.iter().filter(|i| i.get("Containers").and_then(Value::as_i64).unwrap_or(0) > 0).count();
    let used: u64 = images
        .iter()
        .filter(|i| i.get("Containers").and_then(Value::as_i64).unwrap_or(0) > 0)
        .map(|i| {
            let size = i.get("Size").and_then(Value::as_u64).unwrap_or(0);
            let shared = i.get("SharedSize").and_then(Value::as_u64).unwrap_or(0);
            size.saturating_sub(shared)
        })
        .sum();
    let reclaimable = layers.saturating_sub(used);
    let reclaim_text = match (reclaimable * 100).checked_div(layers) {
        Some(percent) => format!("{} ({percent}%)", human_size4(reclaimable)),
        None => human_size4(reclaimable),
    };
    let containers = d.get("Containers").and_then(Value::as_array).cloned().unwrap_or_default();
    let running = |c: &Value| c.get("State").and_then(Value::as_str) == Some("running");
    let size_rw = |c: &Value| c.get("SizeRw").and_then(Value::as_u64).unwrap_or(0);
    let containers_size: u64 = containers.iter().map(size_rw).sum();
    // Stopped containers' writable layers are what `container prune` would free.
    let containers_reclaimable: u64 = containers.iter().filter(|c| !running(c)).map(size_rw).sum();
    let containers_reclaim_text = match (containers_reclaimable * 100).checked_div(containers_size) {
        Some(percent) => format!("{} ({percent}%)", human_size4(containers_reclaimable)),
        None => human_size4(containers_reclaimable),
    };
    let volumes = d.get("Volumes").and_then(Value::as_array).cloned().unwrap_or_default();
    let rows = vec![
        json!({"Type": "Images", "TotalCount": images.len(), "Active": active, "Size": human_size4(layers), "Reclaimable": reclaim_text}),
        json!({
            "Type": "Containers", "TotalCount": containers.len(), "Active": containers.iter().filter(|c| running(c)).count(),
            "Size": human_size4(containers_size), "Reclaimable": containers_reclaim_text,
        }),
        volumes_row(&volumes),
        json!({"Type": "Build Cache", "TotalCount": 0, "Active": 0, "Size": "0B", "Reclaimable": "0B"}),
    ];
    if let Some(f) = &args.format {
        let header = json!({"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE", "Reclaimable": "RECLAIMABLE"});
        print!("{}", Format::parse(f)?.render_rows(&header, &rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if !args.verbose {
        let mut text = String::from("TYPE\tTOTAL\tACTIVE\tSIZE\tRECLAIMABLE\n");
        for r in &rows {
            let _ = writeln!(text, "{}\t{}\t{}\t{}\t{}", s(r, "Type"), r["TotalCount"], r["Active"], s(r, "Size"), s(r, "Reclaimable"));
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
            local_volume_count(c),
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

/// `system df`'s Local Volumes line: volumes in use count as active, the
/// unused ones' sizes as reclaimable (sizes of -1, unknown, are left out).
fn volumes_row(volumes: &[Value]) -> Value {
    let usage = |v: &Value, k: &str| v.pointer(&format!("/UsageData/{k}")).and_then(Value::as_i64).unwrap_or(0);
    let active = volumes.iter().filter(|v| usage(v, "RefCount") > 0).count();
    let (mut size, mut reclaimable) = (0u64, 0u64);
    for v in volumes {
        let bytes = usage(v, "Size");
        if bytes >= 0 {
            size += bytes as u64;
            if usage(v, "RefCount") == 0 {
                reclaimable += bytes as u64;
            }
        }
    }
    let reclaim_text = match (reclaimable * 100).checked_div(size) {
        Some(percent) => format!("{} ({percent}%)", human_size4(reclaimable)),
        None => human_size4(reclaimable),
    };
    json!({
        "Type": "Local Volumes", "TotalCount": volumes.len(), "Active": active, "Size": human_size4(size),
        "Reclaimable": reclaim_text,
    })
}

/// The `LOCAL VOLUMES` column of `system df -v`: mounts of `local` volumes.
fn local_volume_count(container: &Value) -> usize {
    container["Mounts"].as_array().map(|m| m.iter().filter(|x| x["Driver"] == "local").count()).unwrap_or(0)
}

#[cfg(test)]
mod volume_tests {
    use super::*;

    #[test]
    fn volume_line_counts_active_and_reclaimable() {
        let vols = vec![
            json!({"Name": "a", "UsageData": {"Size": 3000, "RefCount": 1}}),
            json!({"Name": "b", "UsageData": {"Size": 1000, "RefCount": 0}}),
            json!({"Name": "c", "UsageData": {"Size": -1, "RefCount": 0}}),
        ];
        let row = volumes_row(&vols);
        assert_eq!(row["TotalCount"], 3);
        assert_eq!(row["Active"], 1);
        assert_eq!(row["Size"], "4kB");
        assert_eq!(row["Reclaimable"], "1kB (25%)");
        assert_eq!(volumes_row(&[])["Reclaimable"], "0B");
        let c = json!({"Mounts": [{"Driver": "local"}, {"Type": "bind"}, {"Driver": "local"}]});
        assert_eq!(local_volume_count(&c), 2);
    }
}
