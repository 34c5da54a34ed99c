//! `berth daemon`: the process lifecycle around the API router — one daemon per
//! run directory (an flock'd lock file), the pid file, the unix socket (mode
//! 0660, a stale one replaced), and a graceful stop on SIGTERM/SIGINT.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use berth_core::drivers::Drivers;
use berth_plugins::PluginManager;
use berth_core::registry::RegistryConfig;
use berth_core::{Engine, EngineConfig};
use clap::Args;
use nix::fcntl::{Flock, FlockArg};
use tokio::net::UnixListener;
use tokio::signal::unix::{signal, SignalKind};

use crate::daemon_config::DaemonFlags;
use crate::paths::Locations;
use crate::Cli;

/// Flags of `berth daemon` (the global `-H`, `--root`, `--run` work too).
#[derive(Args, Debug)]
pub struct DaemonArgs {
    /// Socket to listen on (unix:///path); default <run>/berth.sock.
    #[arg(short = 'H', long, env = "BERTH_HOST", value_name = "HOST")]
    pub host: Option<String>,
    /// Persistent state directory (default /var/lib/berth).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Runtime state directory (default /run/berth).
    #[arg(long, value_name = "DIR")]
    pub run: Option<PathBuf>,
    /// Storage driver: overlay, vfs, or an enabled plugin providing storage
    /// (default: overlay, vfs where overlay cannot mount).
    #[arg(short = 's', long, value_name = "DRIVER")]
    pub storage_driver: Option<String>,
    /// Log level: error, warn, info, debug, trace.
    #[arg(short = 'l', long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Daemon configuration file, Docker's daemon.json format (default
    /// /etc/berth/daemon.json); `certs.d/` beside it holds registries' certificates.
    #[arg(long, value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// A registry that may be reached over plain HTTP or unverified HTTPS
    /// (host[:port] or IPv4 CIDR; repeatable). Loopback registries always may.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
    /// A mirror of Docker Hub, tried before it (URL; repeatable).
    #[arg(long = "registry-mirror", value_name = "URL")]
    pub registry_mirrors: Vec<String>,
    /// Layers downloaded at once per pull (default 3).
    #[arg(long, value_name = "N")]
    pub max_concurrent_downloads: Option<usize>,
    /// Layers uploaded at once per push (default 5).
    #[arg(long, value_name = "N")]
    pub max_concurrent_uploads: Option<usize>,
    /// Tries of one layer download (default 5).
    #[arg(long, value_name = "N")]
    pub max_download_attempts: Option<usize>,
}

/// Runs the daemon until SIGTERM/SIGINT; the exit code says whether it started.
pub fn main(cli: &Cli, args: &DaemonArgs) -> ExitCode {
    let flags = DaemonFlags {
        host: args.host.clone().or(cli.host.clone()),
        root: args.root.clone().or(cli.root.clone()),
        run: args.run.clone().or(cli.run.clone()),
        storage_driver: args.storage_driver.clone(),
        log_level: args.log_level.clone(),
        insecure_registries: args.insecure_registries.clone(),
        registry_mirrors: args.registry_mirrors.clone(),
        max_concurrent_downloads: args.max_concurrent_downloads,
        max_concurrent_uploads: args.max_concurrent_uploads,
        max_download_attempts: args.max_download_attempts,
        config_file: args.config_file.clone(),
    };
    let settings = match flags.settle() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("berth daemon: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let level = settings.log_level.as_deref().unwrap_or(&cli.log_level);
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .or_else(|_| tracing_subscriber::EnvFilter::try_new("info"));
    match filter {
        Ok(filter) => {
            use std::io::IsTerminal;
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .init()
        }
        Err(e) => eprintln!("berth daemon: cannot set up logging: {e}"),
    }
    let result = Locations::resolve(settings.host.as_deref(), settings.root.as_deref(), settings.run.as_deref()).and_then(|loc| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("berth-daemon")
            .build()
            .context("cannot start the async runtime")?;
        runtime.block_on(serve(loc, settings.storage_driver.clone(), settings.registries.clone()))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Plain stderr, not tracing: the message must show even if logging is off.
            eprintln!("berth daemon: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Holds the run directory's lock and removes the pid file and socket on drop.
struct RunDirGuard {
    _lock: Flock<File>,
    pid_file: PathBuf,
    socket: PathBuf,
}

impl Drop for RunDirGuard {
    fn drop(&mut self) {
        // Best effort: a leftover file is replaced by the next daemon anyway.
        let _ = fs::remove_file(&self.socket);
        let _ = fs::remove_file(&self.pid_file);
    }
}

/// Creates a state directory with `mode`; an existing one is left as it is
/// (it may be a directory the user chose, such as a shared mount point).
fn create_dir(path: &Path, mode: u32, what: &str) -> Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(path).with_context(|| format!("cannot create the {what} directory {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of the {what} directory {}", path.display()))
}

/// Takes the run directory's lock; a second daemon on the same run directory is refused.
fn lock_run_dir(loc: &Locations) -> Result<RunDirGuard> {
    let lock_path = loc.run.join("berth.lock");
    let pid_file = loc.run.join("berth.pid");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .with_context(|| format!("cannot open the lock file {}", lock_path.display()))?;
    let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
            let pid = fs::read_to_string(&pid_file).map(|s| s.trim().to_string()).unwrap_or_default();
            let who = if pid.is_empty() { String::new() } else { format!(" (pid {pid})") };
            bail!(
                "another berth daemon{who} is already running with run directory {}; stop it first or use a different --run",
                loc.run.display()
            );
        }
        Err((_, e)) => bail!("cannot lock {}: {e}", lock_path.display()),
    };
    let (mut file, tmp) = tempfile_in(&loc.run, "berth.pid")?;
    writeln!(file, "{}", std::process::id()).context("cannot write the pid file")?;
    fs::rename(&tmp, &pid_file).with_context(|| format!("cannot write {}", pid_file.display()))?;
    Ok(RunDirGuard { _lock: lock, pid_file, socket: loc.socket.clone() })
}

/// A uniquely named new file next to `name`, for write-then-rename.
fn tempfile_in(dir: &Path, name: &str) -> Result<(File, PathBuf)> {
    let path = dir.join(format!(".{name}.{}", std::process::id()));
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o644)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    Ok((file, path))
}

/// Binds the API socket, replacing a stale one but never one a live daemon answers on.
async fn bind_socket(socket: &Path) -> Result<UnixListener> {
    if let Some(dir) = socket.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create the socket directory {}", dir.display()))?;
    }
    match fs::symlink_metadata(socket) {
        Ok(meta) => {
            use std::os::unix::fs::FileTypeExt;
            if !meta.file_type().is_socket() {
                bail!("{} exists and is not a socket; remove it or choose another -H", socket.display());
            }
            if tokio::net::UnixStream::connect(socket).await.is_ok() {
                bail!("a daemon is already listening on {}; stop it first or choose another -H", socket.display());
            }
            tracing::info!(socket = %socket.display(), "replacing stale socket");
            fs::remove_file(socket).with_context(|| format!("cannot remove the stale socket {}", socket.display()))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(anyhow!(e).context(format!("cannot check {}", socket.display()))),
    }
    let listener = UnixListener::bind(socket).with_context(|| format!("cannot listen on {}", socket.display()))?;
    fs::set_permissions(socket, fs::Permissions::from_mode(0o660))
        .with_context(|| format!("cannot set the mode of {}", socket.display()))?;
    Ok(listener)
}

async fn serve(loc: Locations, storage_driver: Option<String>, registries: RegistryConfig) -> Result<()> {
    let root = loc.root_or_default();
    create_dir(&root, 0o711, "root")?;
    create_dir(&loc.run, 0o711, "run")?;
    let guard = lock_run_dir(&loc)?;

    let (engine, plugins) = {
        let root = root.clone();
        let run = loc.run.clone();
        tokio::task::spawn_blocking(move || -> Result<(Arc<Engine>, Arc<PluginManager>)> {
            let drivers = Drivers::default();
            // Volumes: the in-tree `local` driver.
            let local = berth_drivers::volume::LocalDriver::new(&root).context("cannot set up the local volume driver")?;
            drivers.volume.register(berth_drivers::volume::local::NAME, Arc::new(local));
            // Networks: bridge (the default), host, null (`none`), macvlan.
            for (name, driver) in berth_drivers::network::in_tree() {
                drivers.network.register(name, driver);
            }
            // Enabled plugins before the engine opens: it re-adopts the
            // containers, volumes and networks that use their drivers, and a
            // plugin may be the storage driver.
            let plugins = PluginManager::open(root.join("plugins"), berth_plugins::DataLimit::Enforce).context("cannot open the plugin directory")?;
            for warning in plugins.load_enabled(&drivers) {
                tracing::warn!("plugin not loaded: {warning}");
            }
            let storage = match storage_driver.as_deref() {
                Some(name) if !berth_drivers::storage::DRIVER_NAMES.contains(&name) => {
                    plugins.storage_driver(name, &drivers).with_context(|| {
                        format!("cannot use the storage driver {name:?} (in-tree: {})", berth_drivers::storage::DRIVER_NAMES.join(", "))
                    })?
                }
                requested => berth_drivers::storage::select(&root, requested).context("cannot set up the storage driver")?,
            };
            tracing::info!(driver = storage.name(), "storage driver ready");
            let config = EngineConfig { registries, ..EngineConfig::new(root, run) };
            let engine = Engine::open(config, storage, drivers).context("cannot open the engine state")?;
            Ok((engine, Arc::new(plugins)))
        })
        .await
        .context("engine start-up panicked")??
    };
    let state = super::AppState::new(engine, plugins, &root)?;
    let listener = bind_socket(&loc.socket).await?;
    tracing::info!(socket = %loc.socket.display(), root = %root.display(), run = %loc.run.display(), pid = std::process::id(), "API listening");

    super::serve(listener, state, shutdown_signal()).await.context("API server failed")?;
    tracing::info!("daemon stopped");
    drop(guard);
    Ok(())
}

/// Resolves on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
                _ = int.recv() => tracing::info!("SIGINT received, shutting down"),
            }
        }
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!("cannot install signal handlers ({e}); stop the daemon with SIGKILL");
            std::future::pending::<()>().await;
        }
    }
}
