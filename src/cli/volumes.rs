//! `volume create|ls|inspect|rm|prune`: Docker's flags, output and exit
//! codes over the `/volumes` routes.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{json, Value};

use super::client::{each, enc, inspect_each, Client};
use crate::apitypes::containers::MountPoint;
use crate::apitypes::filters::Filters;
use crate::apitypes::volumes::{Volume, VolumeCreateRequest, VolumeListResponse, VolumePruneResponse};
use super::format::Format;
use super::images::parse_filters;
use super::units::human_size4;

/// `berth volume ...`.
#[derive(Subcommand, Debug)]
pub enum VolumeCommand {
    /// Create a volume.
    Create(CreateArgs),
    /// List volumes.
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more volumes.
    Inspect(InspectArgs),
    /// Remove one or more volumes.
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Remove unused local volumes.
    Prune(PruneArgs),
}

/// Flags of `volume create`.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Specify volume driver name.
    #[arg(short = 'd', long, default_value = "local")]
    pub driver: String,
    /// Set metadata for a volume.
    #[arg(long)]
    pub label: Vec<String>,
    /// Set driver specific options.
    #[arg(short = 'o', long = "opt")]
    pub opt: Vec<String>,
    /// Specify volume name.
    #[arg(long, hide = true)]
    pub name: Option<String>,
    /// The volume's name (random when absent).
    #[arg(value_name = "VOLUME")]
    pub volume: Option<String>,
}

/// Flags of `volume ls`.
#[derive(Args, Debug)]
pub struct LsArgs {
    /// Provide filter values (e.g. "dangling=true").
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template.
    #[arg(long)]
    pub format: Option<String>,
    /// Only display volume names.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// Flags of `volume inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Format output using a custom template.
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    /// Volumes.
    #[arg(required = true, value_name = "VOLUME")]
    pub volumes: Vec<String>,
}

/// Flags of `volume rm`.
#[derive(Args, Debug)]
pub struct RmArgs {
    /// Force the removal of one or more volumes.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Volumes.
    #[arg(required = true, value_name = "VOLUME")]
    pub volumes: Vec<String>,
}

/// Flags of `volume prune`.
#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Remove all unused volumes, not just anonymous ones.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Provide filter values (e.g. "label=<label>").
    #[arg(long)]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation.
    #[arg(short = 'f', long)]
    pub force: bool,
}

/// Dispatches `volume` subcommands.
pub async fn volume(client: &Client, cmd: VolumeCommand) -> Result<ExitCode> {
    match cmd {
        VolumeCommand::Create(a) => create(client, &a).await,
        VolumeCommand::Ls(a) => ls(client, &a).await,
        VolumeCommand::Inspect(a) => inspect(client, &a).await,
        VolumeCommand::Rm(a) => rm(client, &a).await,
        VolumeCommand::Prune(a) => prune(client, &a).await,
    }
}

/// `KEY=VALUE` items as a map; a bare `KEY` maps to "" (Docker's `ConvertKVStringsToMap`).
fn kv_map(items: &[String]) -> BTreeMap<String, String> {
    items
        .iter()
        .map(|i| match i.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (i.clone(), String::new()),
        })
        .collect()
}

/// The body `volume create` sends.
fn create_body(args: &CreateArgs) -> Result<VolumeCreateRequest> {
    let name = match (&args.name, &args.volume) {
        (Some(a), Some(b)) if a != b => {
            bail!("conflicting options: cannot specify a volume-name through both --name and as a positional arg")
        }
        (Some(n), _) | (None, Some(n)) => n.clone(),
        (None, None) => String::new(),
    };
    // `--opt` is Docker's MapOpts: the part before the first '=' is the key.
    let opts: BTreeMap<String, String> = args
        .opt
        .iter()
        .map(|o| {
            let (k, v) = o.split_once('=').unwrap_or((o.as_str(), ""));
            (k.to_string(), v.to_string())
        })
        .collect();
    Ok(VolumeCreateRequest {
        name: Some(name),
        driver: Some(args.driver.clone()),
        driver_opts: Some(opts),
        labels: Some(kv_map(&args.label)),
    })
}

/// `berth volume create`.
pub async fn create(client: &Client, args: &CreateArgs) -> Result<ExitCode> {
    let created: Volume = client.post_typed("/volumes/create", &create_body(args)?).await?;
    println!("{}", created.name);
    Ok(ExitCode::SUCCESS)
}

/// `sortorder.NaturalLess`: digit runs compare as numbers, the rest byte by byte.
fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i].is_ascii_digit() && b[j].is_ascii_digit() {
            let (si, sj) = (i, j);
            while i < a.len() && a[i].is_ascii_digit() {
                i += 1;
            }
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            let na = std::str::from_utf8(&a[si..i]).unwrap_or("").trim_start_matches('0');
            let nb = std::str::from_utf8(&b[sj..j]).unwrap_or("").trim_start_matches('0');
            let ord = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb)).then_with(|| (i - si).cmp(&(j - sj)));
            if ord != Ordering::Equal {
                return ord;
            }
        } else {
            if a[i] != b[j] {
                return a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
    }
    (a.len() - i).cmp(&(b.len() - j))
}

/// One `volume ls` row: the fields Docker's volume formatter offers.
pub fn volume_row(v: &Volume) -> Value {
    let labels: Vec<String> = v.labels.iter().map(|(k, x)| format!("{k}={x}")).collect();
    let (links, size) = match &v.usage_data {
        Some(u) => {
            let links = u.ref_count.to_string();
            let size = if u.size >= 0 { human_size4(u.size as u64) } else { "N/A".into() };
            (links, size)
        }
        None => ("N/A".to_string(), "N/A".to_string()),
    };
    json!({
        "Name": v.name,
        "Driver": v.driver,
        "Scope": v.scope,
        "Mountpoint": v.mountpoint,
        "Labels": labels.join(","),
        "Links": links,
        "Size": size,
        "Group": "N/A",
        "Availability": "N/A",
        "Status": "N/A",
    })
}

/// `ps`'s `.Mounts`: each mount's volume name (a bind's source), cut to 15
/// characters unless `--no-trunc`.
pub fn mounts_column(mounts: &[MountPoint], no_trunc: bool) -> String {
    let names: Vec<String> = mounts
        .iter()
        .map(|m| {
            let name = m.name.as_deref().filter(|n| !n.is_empty()).unwrap_or(&m.source);
            let chars: Vec<char> = name.chars().collect();
            if no_trunc || chars.len() <= 15 {
                name.to_string()
            } else {
                format!("{}…", chars[..14].iter().collect::<String>())
            }
        })
        .collect();
    names.join(",")
}

/// `ps`'s `.LocalVolumes`: how many mounts are `local` volumes.
pub fn local_volumes_column(mounts: &[MountPoint]) -> String {
    local_volume_count(mounts).to_string()
}

/// How many mounts are `local` volumes (`ps`'s `.LocalVolumes`, `system df -v`).
pub fn local_volume_count(mounts: &[MountPoint]) -> usize {
    mounts.iter().filter(|m| m.driver.as_deref() == Some("local")).count()
}

/// The header row of the volume table.
pub fn volume_header() -> Value {
    json!({
        "Name": "VOLUME NAME", "Driver": "DRIVER", "Scope": "SCOPE", "Mountpoint": "MOUNTPOINT", "Labels": "LABELS",
        "Links": "LINKS", "Size": "SIZE", "Group": "GROUP", "Availability": "AVAILABILITY", "Status": "STATUS",
    })
}

/// `berth volume ls`.
pub async fn ls(client: &Client, args: &LsArgs) -> Result<ExitCode> {
    let filters = parse_filters(&args.filter)?;
    let path = if !filters.is_empty() {
        format!("/volumes?filters={}", enc(&filters.to_string()))
    } else {
        "/volumes".to_string()
    };
    let answer: VolumeListResponse = client.get_typed(&path).await?;
    let mut volumes = answer.volumes;
    volumes.sort_by(|a, b| natural_cmp(&a.name, &b.name));
    for w in &answer.warnings {
        eprintln!("{w}");
    }
    let given = args.format.as_deref().filter(|f| !f.is_empty());
    let template = match given {
        Some("table") | None if args.quiet => "{{.Name}}",
        Some("table") | None => "table {{.Driver}}\t{{.Name}}",
        Some(f) => f,
    };
    let format = Format::parse(template)?;
    let rows: Vec<Value> = volumes.iter().map(volume_row).collect();
    print!("{}", format.render_rows(&volume_header(), &rows)?);
    Ok(ExitCode::SUCCESS)
}

/// `berth volume inspect`.
pub async fn inspect(client: &Client, args: &InspectArgs) -> Result<ExitCode> {
    inspect_each(client, &args.volumes, args.format.as_deref(), |n| format!("/volumes/{}", enc(n))).await
}

/// `berth volume rm`.
pub async fn rm(client: &Client, args: &RmArgs) -> Result<ExitCode> {
    let force = u8::from(args.force);
    each(client, &args.volumes, Method::DELETE, false, |n| format!("/volumes/{}?force={force}", enc(n))).await
}

/// The filters `volume prune` sends: `--filter` plus `all=true` for `-a`.
fn prune_filters(args: &PruneArgs) -> Result<Filters> {
    let mut filters = parse_filters(&args.filter)?;
    if args.all {
        if filters.contains("all") {
            bail!("conflicting options: cannot specify both --all and --filter all=1");
        }
        filters.add("all", "true");
    }
    Ok(filters)
}

/// `berth volume prune`.
pub async fn prune(client: &Client, args: &PruneArgs) -> Result<ExitCode> {
    let filters = prune_filters(args)?;
    if !args.force {
        let what = if args.all { "all local volumes" } else { "anonymous local volumes" };
        if !super::format::confirm(&format!("WARNING! This will remove {what} not used by at least one container."))? {
            // docker: declining is not an error, nothing is removed.
            return Ok(ExitCode::SUCCESS);
        }
    }
    let path = if !filters.is_empty() {
        format!("/volumes/prune?filters={}", enc(&filters.to_string()))
    } else {
        "/volumes/prune".to_string()
    };
    let report: VolumePruneResponse = client.typed(Method::POST, &path).await?;
    let mut reclaimed = 0;
    if let Some(names) = report.volumes_deleted.filter(|a| !a.is_empty()) {
        println!("Deleted Volumes:");
        for n in &names {
            println!("{n}");
        }
        println!();
        reclaimed = report.space_reclaimed;
    }
    println!("Total reclaimed space: {}", human_size4(reclaimed));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apitypes::containers::ContainerSummary;

    fn create_args(name: Option<&str>, volume: Option<&str>) -> CreateArgs {
        CreateArgs {
            driver: "local".into(),
            label: vec!["tier=db".into(), "bare".into()],
            opt: vec!["type=tmpfs".into(), "o=size=64m,uid=1000".into()],
            name: name.map(str::to_string),
            volume: volume.map(str::to_string),
        }
    }

    #[test]
    fn create_sends_dockers_body() {
        let body = serde_json::to_value(create_body(&create_args(None, Some("data"))).unwrap()).unwrap();
        assert_eq!(
            body,
            json!({
                "Name": "data", "Driver": "local",
                "DriverOpts": {"type": "tmpfs", "o": "size=64m,uid=1000"},
                "Labels": {"tier": "db", "bare": ""},
            })
        );
        assert_eq!(create_body(&create_args(None, None)).unwrap().name.as_deref(), Some(""));
        assert_eq!(create_body(&create_args(Some("a"), Some("a"))).unwrap().name.as_deref(), Some("a"));
        assert!(create_body(&create_args(Some("a"), Some("b"))).is_err());
    }

    #[test]
    fn names_sort_naturally() {
        let mut names = vec!["vol10", "vol2", "a", "vol1", "B"];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(names, ["B", "a", "vol1", "vol2", "vol10"]);
    }

    #[test]
    fn rows_show_labels_and_usage() {
        let v = json!({"Name": "d", "Driver": "local", "Labels": {"a": "1", "b": ""}, "UsageData": {"Size": 2048, "RefCount": 1}});
        let row = volume_row(&serde_json::from_value(v).unwrap());
        assert_eq!(row["Labels"], "a=1,b=");
        assert_eq!(row["Links"], "1");
        assert_eq!(row["Size"], "2.048kB");
        let row = volume_row(&serde_json::from_value(json!({"Name": "d", "Labels": null})).unwrap());
        assert_eq!((row["Links"].as_str(), row["Size"].as_str()), (Some("N/A"), Some("N/A")));
    }

    #[test]
    fn ps_columns_name_mounts() {
        let c: ContainerSummary = serde_json::from_value(json!({"Mounts": [
            {"Type": "volume", "Name": "0123456789abcdef0123", "Driver": "local", "Source": "/r/v/_data"},
            {"Type": "bind", "Source": "/srv"},
        ]}))
        .unwrap();
        assert_eq!(mounts_column(&c.mounts, false), "0123456789abcd…,/srv");
        assert_eq!(mounts_column(&c.mounts, true), "0123456789abcdef0123,/srv");
        assert_eq!(local_volumes_column(&c.mounts), "1");
        let none: ContainerSummary = serde_json::from_value(json!({})).unwrap();
        assert_eq!(local_volumes_column(&none.mounts), "0");
    }

    #[test]
    fn prune_all_becomes_a_filter_once() {
        let args = PruneArgs { all: true, filter: vec!["label=x".into()], force: true };
        assert_eq!(prune_filters(&args).unwrap().to_string(), r#"{"all":{"true":true},"label":{"x":true}}"#);
        let both = PruneArgs { all: true, filter: vec!["all=1".into()], force: true };
        assert!(prune_filters(&both).is_err());
    }
}
