//! `berth login` and `berth logout`: the daemon checks the credentials
//! (`POST /auth`), the client keeps them (`credentials`), as with docker.

use std::io::{BufRead, IsTerminal, Write};
use std::os::fd::AsFd;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use berth_model::auth::DOCKER_HUB_AUTH_KEY;

use clap::Args;

use super::client::Client;
use super::credentials::ConfigFile;
use crate::apitypes::auth::{AuthConfig, AuthResponse};

/// Flags of `login`.
#[derive(Args, Debug)]
pub struct LoginArgs {
    /// Username.
    #[arg(short = 'u', long)]
    pub username: Option<String>,
    /// Password (visible to other users in the process list: prefer --password-stdin).
    #[arg(short = 'p', long)]
    pub password: Option<String>,
    /// Take the password from stdin.
    #[arg(long)]
    pub password_stdin: bool,
    /// The registry (Docker Hub when not given).
    pub server: Option<String>,
}

/// Flags of `logout`.
#[derive(Args, Debug)]
pub struct LogoutArgs {
    /// The registry (Docker Hub when not given).
    pub server: Option<String>,
}

/// The key a server argument is stored under: as given, Docker Hub's when none.
fn server_key(server: Option<&str>) -> String {
    match server.map(str::trim).filter(|s| !s.is_empty()) {
        None | Some("docker.io") | Some("index.docker.io") => DOCKER_HUB_AUTH_KEY.to_string(),
        Some(s) => s.trim_end_matches('/').to_string(),
    }
}

/// `berth login [-u USER] [-p PASS | --password-stdin] [SERVER]`.
pub async fn login(client: &Client, args: &LoginArgs) -> Result<ExitCode> {
    if args.password.is_some() && args.password_stdin {
        bail!("--password and --password-stdin are mutually exclusive");
    }
    if args.password_stdin && args.username.is_none() {
        bail!("Must provide --username with --password-stdin");
    }
    if args.password.is_some() {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
    }
    let key = server_key(args.server.as_deref());
    let password = if args.password_stdin {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut text).context("cannot read the password from stdin")?;
        // As docker: the trailing newline of `echo pass |` is not part of the password.
        Some(text.trim_end_matches(['\n', '\r']).to_string())
    } else {
        args.password.clone()
    };
    let username = match &args.username {
        Some(u) => u.trim().to_string(),
        None => prompt("Username: ", true)?,
    };
    if username.is_empty() {
        bail!("Error: Non-null Username Required");
    }
    let password = match password {
        Some(p) => p,
        None => prompt("Password: ", false)?,
    };
    if password.is_empty() {
        bail!("Error: Password Required");
    }
    let credentials = AuthConfig { username, password, serveraddress: key.clone(), ..Default::default() };
    let answer: AuthResponse = client.post_typed("/auth", &credentials).await?;
    let mut stored = credentials;
    if !answer.identity_token.is_empty() {
        // A registry that hands out an identity token wants it kept instead of the password.
        stored.password.clear();
        stored.identitytoken = answer.identity_token;
    }
    let mut config = ConfigFile::load()?;
    config.store(&key, &stored).context("error saving credentials")?;
    if !config.uses_helper(&key) {
        eprintln!(
            "WARNING! Your credentials are stored unencrypted in '{}'.\nConfigure a credential helper to remove this warning. See\nhttps://docs.docker.com/go/credential-store/\n",
            config.path().display()
        );
    }
    println!("{}", if answer.status.is_empty() { "Login Succeeded" } else { &answer.status });
    Ok(ExitCode::SUCCESS)
}

/// `berth logout [SERVER]`.
pub async fn logout(args: &LogoutArgs) -> Result<ExitCode> {
    let key = server_key(args.server.as_deref());
    println!("Removing login credentials for {key}");
    let mut config = ConfigFile::load()?;
    config.erase(&key)?;
    Ok(ExitCode::SUCCESS)
}

/// Asks on the terminal; `echo` false hides what is typed (a password).
fn prompt(question: &str, echo: bool) -> Result<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!("Error: Cannot perform an interactive login from a non TTY device");
    }
    eprint!("{question}");
    std::io::stderr().flush()?;
    let saved = if echo {
        None
    } else {
        use nix::sys::termios::{self, LocalFlags, SetArg};
        let saved = termios::tcgetattr(stdin.as_fd()).context("cannot read the terminal's settings")?;
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &quiet).context("cannot turn the terminal's echo off")?;
        Some(saved)
    };
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let Some(saved) = saved {
        let _ = nix::sys::termios::tcsetattr(stdin.as_fd(), nix::sys::termios::SetArg::TCSANOW, &saved);
        eprintln!();
    }
    read.context("cannot read from the terminal")?;
    Ok(line.trim_end_matches(['\n', '\r']).trim().to_string())
}
