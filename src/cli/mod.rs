//! The `berth` CLI: one module per command group, each an HTTP client of the
//! daemon's API with Docker's command names, flags, output and exit codes.

pub mod client;
pub mod containers;
pub mod credentials;
pub mod format;
pub mod images;
pub mod login;
pub mod mounts;
pub mod networks;
pub mod plugins;
pub mod progress;
pub mod run;
pub mod stdio;
pub mod system;
pub mod units;
pub mod volumes;

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
    // Logging out touches only the client's config: no daemon needed (nor started).
    if let Command::Logout(a) = &cli.command {
        return login::logout(a).await;
    }
    let loc = Locations::resolve(cli.host.as_deref(), cli.root.as_deref(), cli.run.as_deref())?;
    let client = Client::connect(loc, Autostart { disabled: cli.no_autostart, log_level: &cli.log_level })
        .await?;
    match cli.command {
        Command::Daemon(_) => unreachable_daemon(),
        Command::Version(a) => system::version(&client, &a).await,
        Command::Login(a) => login::login(&client, &a).await,
        Command::Logout(a) => login::logout(&a).await,
        Command::Info(a) => system::info(&client, &a).await,
        Command::Images(a) => images::list(&client, &a).await,
        Command::Image(c) => images::image(&client, c).await,
        Command::History(a) => images::history(&client, &a).await,
        Command::Load(a) => images::load(&client, &a).await,
        Command::Pull(a) => images::pull(&client, &a).await,
        Command::Push(a) => images::push(&client, &a).await,
        Command::Search(a) => images::search(&client, &a).await,
        Command::Save(a) => images::save(&client, &a).await,
        Command::Import(a) => images::import(&client, &a).await,
        Command::Tag(a) => images::tag(&client, &a).await,
        Command::Rmi(a) => images::remove(&client, &a).await,
        Command::System(c) => system::system(&client, c).await,
        Command::Container(c) => containers::container(&client, c).await,
        Command::Create(a) => run::create(&client, &a).await,
        Command::Run(a) => run::run(&client, &a).await,
        Command::Start(a) => run::start(&client, &a).await,
        Command::Ps(a) => containers::ps(&client, &a).await,
        Command::Stop(a) => containers::stop(&client, &a).await,
        Command::Kill(a) => containers::kill(&client, &a).await,
        Command::Restart(a) => containers::restart(&client, &a).await,
        Command::Pause(a) => containers::pause(&client, &a).await,
        Command::Unpause(a) => containers::unpause(&client, &a).await,
        Command::Rm(a) => containers::rm(&client, &a).await,
        Command::Logs(a) => containers::logs(&client, &a).await,
        Command::Inspect(a) => containers::inspect(&client, &a).await,
        Command::Exec(a) => containers::exec(&client, &a).await,
        Command::Attach(a) => run::attach(&client, &a).await,
        Command::Wait(a) => containers::wait(&client, &a).await,
        Command::Top(a) => containers::top(&client, &a).await,
        Command::Cp(a) => containers::cp(&client, &a).await,
        Command::Rename(a) => containers::rename(&client, &a).await,
        Command::Diff(a) => containers::diff(&client, &a).await,
        Command::Commit(a) => containers::commit(&client, &a).await,
        Command::Export(a) => containers::export(&client, &a).await,
        Command::Events(a) => containers::events(&client, &a).await,
        Command::Stats(a) => containers::stats(&client, &a).await,
        Command::Update(a) => containers::update(&client, &a).await,
        Command::Network(c) => networks::network(&client, c).await,
        Command::Port(a) => networks::port(&client, &a).await,
        Command::Volume(c) => volumes::volume(&client, c).await,
        Command::Plugin(c) => plugins::plugin(&client, c).await,
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
