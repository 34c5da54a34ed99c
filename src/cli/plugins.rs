//! `plugin install|ls|inspect|enable|disable|rm|set`: Docker's plugin
//! commands over the `/plugins` routes. `install` takes a plugin directory
//! or a tar of one (berth plugins are WebAssembly components or dylibs with a
//! `plugin.toml`, not images), shows the permissions it asks for and needs
//! `--grant-all-permissions` or a yes, as `docker plugin install` does.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::{Args, Subcommand};
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::{json, Value};

use super::client::{each, empty, enc, inspect_each, Client};
use super::format::Format;
use crate::apitypes::plugins::{Plugin, PluginSetRequest};

/// `berth plugin ...`.
#[derive(Subcommand, Debug)]
pub enum PluginCommand {
    /// Install a plugin from a directory or a tar of one.
    Install(InstallArgs),
    /// List plugins.
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more plugins.
    Inspect(InspectArgs),
    /// Enable a plugin.
    Enable(NameArgs),
    /// Disable a plugin.
    Disable(DisableArgs),
    /// Remove one or more plugins.
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Change settings for a plugin.
    Set(SetArgs),
}

/// Flags of `plugin install`.
#[derive(Args, Debug)]
pub struct InstallArgs {
    /// Local name for the plugin (also its driver name).
    #[arg(long)]
    pub alias: Option<String>,
    /// Do not enable the plugin on install.
    #[arg(long)]
    pub disable: bool,
    /// Grant all permissions necessary to run the plugin.
    #[arg(long)]
    pub grant_all_permissions: bool,
    /// A plugin directory (with plugin.toml) or a tar of one.
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
}

/// Flags of `plugin ls`.
#[derive(Args, Debug)]
pub struct LsArgs {
    /// Provide filter values (e.g. "enabled=true").
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template.
    #[arg(long)]
    pub format: Option<String>,
    /// Don't truncate output.
    #[arg(long)]
    pub no_trunc: bool,
    /// Only display plugin IDs.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// Flags of `plugin inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Format output using a custom template.
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    #[arg(value_name = "PLUGIN", required = true)]
    pub plugins: Vec<String>,
}

/// A single plugin name.
#[derive(Args, Debug)]
pub struct NameArgs {
    #[arg(value_name = "PLUGIN")]
    pub plugin: String,
}

/// Flags of `plugin disable`.
#[derive(Args, Debug)]
pub struct DisableArgs {
    /// Force the disable of an active plugin.
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(value_name = "PLUGIN")]
    pub plugin: String,
}

/// Flags of `plugin rm`.
#[derive(Args, Debug)]
pub struct RmArgs {
    /// Force the removal of an active plugin.
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(value_name = "PLUGIN", required = true)]
    pub plugins: Vec<String>,
}

/// Flags of `plugin set`.
#[derive(Args, Debug)]
pub struct SetArgs {
    #[arg(value_name = "PLUGIN")]
    pub plugin: String,
    /// `key=value` settings.
    #[arg(value_name = "KEY=VALUE", required = true)]
    pub settings: Vec<String>,
}

/// Dispatches `berth plugin ...`.
pub async fn plugin(client: &Client, command: PluginCommand) -> Result<ExitCode> {
    match command {
        PluginCommand::Install(a) => install(client, &a).await,
        PluginCommand::Ls(a) => ls(client, &a).await,
        PluginCommand::Inspect(a) => inspect(client, &a).await,
        PluginCommand::Enable(a) => {
            client.call(Method::POST, &format!("/plugins/{}/enable?timeout=30", enc(&a.plugin)), empty(), None).await?;
            println!("{}", a.plugin);
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Disable(a) => {
            let path = format!("/plugins/{}/disable?force={}", enc(&a.plugin), u8::from(a.force));
            client.call(Method::POST, &path, empty(), None).await?;
            println!("{}", a.plugin);
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Rm(a) => rm(client, &a).await,
        PluginCommand::Set(a) => {
            let path = format!("/plugins/{}/set", enc(&a.plugin));
            client.post_ignoring_answer(&path, &PluginSetRequest(a.settings)).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The plugin as a tar: a given `.tar` as it is, a directory packed here.
fn plugin_archive(path: &Path) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read the plugin at {}", path.display()))?;
    if meta.is_file() {
        return std::fs::read(path).with_context(|| format!("cannot read {}", path.display()));
    }
    let mut builder = tar::Builder::new(Vec::new());
    // Links are refused by the daemon; pack what they point at instead.
    builder.follow_symlinks(true);
    builder
        .append_dir_all(".", path)
        .with_context(|| format!("cannot pack the plugin directory {}", path.display()))?;
    builder.into_inner().with_context(|| format!("cannot pack the plugin directory {}", path.display()))
}

/// `berth plugin install PATH`.
async fn install(client: &Client, args: &InstallArgs) -> Result<ExitCode> {
    let archive = plugin_archive(&args.path)?;
    let manifest = if args.path.is_dir() {
        berth_plugins::read_manifest_from_dir(&args.path)
    } else {
        berth_plugins::read_manifest_from_tar(&archive)
    }
    .with_context(|| format!("{} is not a valid berth plugin", args.path.display()))?;
    let name = args.alias.clone().unwrap_or_else(|| manifest.name.clone());
    let mut granted = args.grant_all_permissions;
    if manifest.asks_permissions() && !granted {
        println!("{}", manifest.permission_prompt());
        if !std::io::stdin().is_terminal() {
            bail!("plugin {name} asks for the permissions above; run with --grant-all-permissions to accept them");
        }
        granted = super::format::ask_yes("Do you grant the above permissions?")?;
        if !granted {
            bail!("permission denied");
        }
    }
    let mut path = format!("/plugins/install?grant-all-permissions={}&disable={}", u8::from(granted), u8::from(args.disable));
    if let Some(alias) = &args.alias {
        path.push_str(&format!("&name={}", enc(alias)));
    }
    let body = http_body_util::Full::new(Bytes::from(archive)).map_err(|never| match never {}).boxed_unsync();
    client.call(Method::POST, &path, body, Some("application/x-tar")).await?;
    println!("Installed plugin {name}");
    Ok(ExitCode::SUCCESS)
}

/// One row of `plugin ls`.
fn plugin_row(p: &Plugin, no_trunc: bool) -> Value {
    let id = &p.id;
    let description = &p.config.description;
    json!({
        "ID": if no_trunc { id.to_string() } else { id.chars().take(12).collect() },
        "Name": p.name,
        "Description": if no_trunc || description.chars().count() <= 45 {
            description.to_string()
        } else {
            format!("{}…", description.chars().take(44).collect::<String>())
        },
        "Enabled": p.enabled.to_string(),
        "PluginReference": p.plugin_reference,
    })
}

/// `berth plugin ls`.
async fn ls(client: &Client, args: &LsArgs) -> Result<ExitCode> {
    let filters = super::images::parse_filters(&args.filter)?;
    let path = if !filters.is_empty() {
        format!("/plugins?filters={}", enc(&filters.to_string()))
    } else {
        "/plugins".to_string()
    };
    let list: Vec<Plugin> = client.get_typed(&path).await?;
    let template = match args.format.as_deref().filter(|f| !f.is_empty()) {
        Some("table") | None if args.quiet => "{{.ID}}",
        Some("table") | None => "table {{.ID}}\t{{.Name}}\t{{.Description}}\t{{.Enabled}}",
        Some(f) => f,
    };
    let format = Format::parse(template)?;
    let header = json!({ "ID": "ID", "Name": "NAME", "Description": "DESCRIPTION", "Enabled": "ENABLED", "PluginReference": "PLUGIN REFERENCE" });
    let rows: Vec<Value> = list.iter().map(|p| plugin_row(p, args.no_trunc)).collect();
    print!("{}", format.render_rows(&header, &rows)?);
    Ok(ExitCode::SUCCESS)
}

/// `berth plugin inspect`.
async fn inspect(client: &Client, args: &InspectArgs) -> Result<ExitCode> {
    inspect_each(client, &args.plugins, args.format.as_deref(), |n| format!("/plugins/{}/json", enc(n))).await
}

/// `berth plugin rm`.
async fn rm(client: &Client, args: &RmArgs) -> Result<ExitCode> {
    let force = u8::from(args.force);
    each(client, &args.plugins, Method::DELETE, false, |n| format!("/plugins/{}?force={force}", enc(n))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_sends_a_bare_list_of_settings() {
        let body = PluginSetRequest(vec!["DEBUG=1".into(), "root=/data".into()]);
        assert_eq!(serde_json::to_string(&body).unwrap(), r#"["DEBUG=1","root=/data"]"#);
    }
}
