//! `berth`: the command line entry. `berth daemon` serves the Docker Engine API;
//! every other command is a client of that API (see `cli/`). This file only
//! parses arguments and dispatches: no engine logic lives here.

#![recursion_limit = "256"]

mod api;
mod apitypes;
mod cli;
mod daemon_config;
mod paths;
mod shim;
mod version;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::cli::images::{
    HistoryArgs, ImageCommand, ImagesArgs, ImportArgs, LoadArgs, PullArgs, PushArgs, RmiArgs, SaveArgs, SearchArgs, TagArgs,
};
use crate::cli::containers::{
    CommitArgs, ContainerArg, ContainerCommand, CpArgs, EventsArgs, ExecArgs, ExportArgs, InspectArgs as ObjectInspectArgs,
    KillArgs, LogsArgs, NamesArgs, PsArgs, RenameArgs, RmArgs, StatsArgs, StopArgs, TopArgs, UpdateArgs,
};
use crate::cli::networks::{NetworkCommand, PortArgs};
use crate::cli::run::{AttachArgs, CreateArgs, RunArgs, StartArgs};
use crate::cli::system::{FormatArgs, SystemCommand};
use crate::cli::plugins::PluginCommand;
use crate::cli::volumes::VolumeCommand;

/// A container engine for Linux, compatible with the docker CLI.
#[derive(Parser, Debug)]
#[command(name = "berth", version, about, disable_help_subcommand = true)]
pub struct Cli {
    /// Daemon socket to connect to (unix:///path); default <run>/berth.sock.
    #[arg(short = 'H', long, env = "BERTH_HOST", value_name = "HOST")]
    pub host: Option<String>,
    /// Persistent state directory of the daemon (default /var/lib/berth).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Runtime state directory of the daemon (default /run/berth).
    #[arg(long, value_name = "DIR")]
    pub run: Option<PathBuf>,
    /// Do not start a daemon when none answers on the socket.
    #[arg(long)]
    pub no_autostart: bool,
    /// Log level: error, warn, info, debug, trace.
    #[arg(short = 'l', long, value_name = "LEVEL", default_value = "info")]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands, named as docker names them.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the berth daemon (the Docker Engine API server).
    Daemon(api::server::DaemonArgs),
    /// Show the berth version information.
    Version(FormatArgs),
    /// Display system-wide information.
    Info(FormatArgs),
    /// Log in to a registry.
    Login(cli::login::LoginArgs),
    /// Log out from a registry.
    Logout(cli::login::LogoutArgs),
    /// List images.
    Images(ImagesArgs),
    /// Manage images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Show the history of an image.
    History(HistoryArgs),
    /// Load an image from a tar archive or STDIN.
    Load(LoadArgs),
    /// Download an image from a registry.
    Pull(PullArgs),
    /// Upload an image to a registry.
    Push(PushArgs),
    /// Search a registry for images (Docker Hub, or the registry the term names).
    Search(SearchArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default).
    Save(SaveArgs),
    /// Import the contents from a tarball to create a filesystem image.
    Import(ImportArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE.
    Tag(TagArgs),
    /// Remove one or more images.
    Rmi(RmiArgs),
    /// Manage berth.
    #[command(subcommand)]
    System(SystemCommand),
    /// Manage containers.
    #[command(subcommand)]
    Container(ContainerCommand),
    /// Create a new container.
    Create(CreateArgs),
    /// Create and run a new container from an image.
    Run(RunArgs),
    /// Start one or more stopped containers.
    Start(StartArgs),
    /// List containers.
    Ps(PsArgs),
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
    Rm(RmArgs),
    /// Fetch the logs of a container.
    Logs(LogsArgs),
    /// Return low-level information on berth objects.
    Inspect(ObjectInspectArgs),
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
    /// Get real time events from the server.
    Events(EventsArgs),
    /// Display a live stream of container(s) resource usage statistics.
    Stats(StatsArgs),
    /// Update configuration of one or more containers.
    Update(UpdateArgs),
    /// Manage networks.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// List port mappings or a specific mapping for the container.
    Port(PortArgs),
    /// Manage volumes.
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Manage plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

fn main() -> ExitCode {
    // `berth shim <state_dir>` is internal and must stay small: dispatched before clap.
    if let Some(code) = shim::dispatch() {
        return code;
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let code = match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => 0,
                // docker exits 125 when its own flags are wrong.
                _ => 125,
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Command::Daemon(ref args) => api::server::main(&cli, args),
        _ => cli::main(cli),
    }
}
