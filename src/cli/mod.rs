//! The `berth` CLI: one module per command group, each an HTTP client of the
//! daemon's API with Docker's command names, flags, output and exit codes.

pub mod client;
pub mod format;
pub mod images;
pub mod system;
pub mod units;

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Result;

use crate::paths::Locations;
use crate::{Cli, Command};
use client::{Autostart, Client};

/// Runs a client command and turns its outcome into docker's exit codes.
pub fn main(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let loc = Locations::resolve(cli.host.as_deref(), cli.root.as_deref(), cli.run.as_deref())?;
    let client = Client::connect(loc, Autostart { disabled: cli.no_autostart, log_level: &cli.log_level })
        .await?;
    match cli.command {
        Command::Daemon(_) => unreachable_daemon(),
        Command::Version(a) => system::version(&client, &a).await,
        Command::Info(a) => system::info(&client, &a).await,
        Command::Images(a) => images::list(&client, &a).await,
        Command::Image(c) => images::image(&client, c).await,
        Command::History(a) => images::history(&client, &a).await,
        Command::Load(a) => images::load(&client, &a).await,
        Command::Save(a) => images::save(&client, &a).await,
        Command::Import(a) => images::import(&client, &a).await,
        Command::Tag(a) => images::tag(&client, &a).await,
        Command::Rmi(a) => images::remove(&client, &a).await,
        Command::System(c) => system::system(&client, c).await,
    }
}

/// `main` sends `daemon` elsewhere; reaching here is a wiring mistake, reported, not panicked on.
fn unreachable_daemon() -> Result<ExitCode> {
    anyhow::bail!("internal error: the daemon command was dispatched to the client")
}

/// Whether standard output is a terminal (progress bars, `save` refusal).
pub fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}
