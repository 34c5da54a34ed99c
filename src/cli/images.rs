//! Image commands: `images`, `image ls|inspect|history|load|save|import|tag|rm|prune|mount|unmount`,
//! and their top-level aliases `history load save import tag rmi`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use berth_model::ImageRef;
use bytes::Bytes;
use clap::{ArgAction, Args, Subcommand};
use futures_util::TryStreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::Method;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

use super::client::{empty, enc, Body, Client, DaemonError};
use super::format::Format;
use super::progress::LayerBoard;
use super::stdout_is_terminal;
use super::units::{go_time, human_size, human_size4, time_ago};
use crate::apitypes::filters::Filters;
use crate::apitypes::images::{
    HistoryEntry, ImageDeleteResponseItem, ImageMountResponse, ImagePruneResponse, ImageSearchResponseItem, ImageSummary,
};
use crate::apitypes::system::JsonMessage;

/// `berth image ...`.
#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// List images.
    #[command(visible_alias = "list")]
    Ls(ImagesArgs),
    /// Display detailed information on one or more images.
    Inspect(InspectArgs),
    /// Show the history of an image.
    History(HistoryArgs),
    /// Load an image from a tar archive or STDIN.
    Load(LoadArgs),
    /// Download an image from a registry.
    Pull(PullArgs),
    /// Upload an image to a registry.
    Push(PushArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default).
    Save(SaveArgs),
    /// Import the contents from a tarball to create a filesystem image.
    Import(ImportArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE.
    Tag(TagArgs),
    /// Remove one or more images.
    #[command(visible_alias = "remove")]
    Rm(RmiArgs),
    /// Remove unused images.
    Prune(PruneArgs),
    /// Mount an image's root filesystem read-only and print where (podman's `image mount`).
    Mount(MountArgs),
    /// Unmount images mounted with `image mount`.
    #[command(visible_alias = "umount")]
    Unmount(MountArgs),
}

/// Flags of `images` / `image ls`.
#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Show all images (default hides intermediate images).
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Show digests.
    #[arg(long)]
    pub digests: bool,
    /// Filter output based on conditions provided (dangling=true, reference=..., label=..., before=..., since=...).
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template ('table', 'table TEMPLATE', 'json', or a Go template).
    #[arg(long)]
    pub format: Option<String>,
    /// Don't truncate output.
    #[arg(long)]
    pub no_trunc: bool,
    /// Only show image IDs.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Only images of this repository (and tag).
    pub repository: Option<String>,
}

/// Flags of `image inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Format output using a custom template.
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    /// Images to inspect.
    #[arg(required = true)]
    pub images: Vec<String>,
}

/// Flags of `history`.
#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// Format output using a custom template.
    #[arg(long)]
    pub format: Option<String>,
    /// Print sizes and dates in human readable format (-H=false for raw values).
    #[arg(short = 'H', long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "true", default_missing_value = "true")]
    pub human: bool,
    /// Don't truncate output.
    #[arg(long)]
    pub no_trunc: bool,
    /// Only show image IDs.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// The image.
    pub image: String,
}

/// Flags of `load`.
#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN.
    #[arg(short = 'i', long)]
    pub input: Option<PathBuf>,
    /// Suppress the load output.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// Flags of `save`.
#[derive(Args, Debug)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Archive format: docker (docker save's format) or oci (an OCI image layout).
    #[arg(long, default_value = "docker", value_parser = ["docker", "oci"])]
    pub format: String,
    /// Images to save.
    #[arg(required = true)]
    pub images: Vec<String>,
}

/// Flags of `import`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Apply Dockerfile instruction to the created image (CMD, ENTRYPOINT, ENV, WORKDIR, ...).
    #[arg(short = 'c', long = "change")]
    pub changes: Vec<String>,
    /// Set commit message for imported image.
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// Set platform if server is multi-platform capable.
    #[arg(long)]
    pub platform: Option<String>,
    /// A tar file, or - for STDIN.
    pub file: String,
    /// REPOSITORY[:TAG] for the new image.
    pub reference: Option<String>,
}

/// Flags of `tag`.
#[derive(Args, Debug)]
pub struct TagArgs {
    /// SOURCE_IMAGE[:TAG]
    pub source: String,
    /// TARGET_IMAGE[:TAG]
    pub target: String,
}

/// Flags of `rmi` / `image rm`.
#[derive(Args, Debug)]
pub struct RmiArgs {
    /// Force removal of the image.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Do not delete untagged parents.
    #[arg(long)]
    pub no_prune: bool,
    /// Images to remove.
    #[arg(required = true)]
    pub images: Vec<String>,
}

/// Flags of `image prune`.
#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Remove all unused images, not just dangling ones.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Provide filter values (e.g. "until=<timestamp>", "label=<key>=<value>").
    #[arg(long)]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation.
    #[arg(short = 'f', long)]
    pub force: bool,
}

/// Flags of `image mount` / `image unmount`.
#[derive(Args, Debug)]
pub struct MountArgs {
    /// Images.
    #[arg(required = true)]
    pub images: Vec<String>,
}

/// Dispatches `image` subcommands.
pub async fn image(client: &Client, cmd: ImageCommand) -> Result<ExitCode> {
    match cmd {
        ImageCommand::Ls(a) => list(client, &a).await,
        ImageCommand::Inspect(a) => inspect(client, &a).await,
        ImageCommand::History(a) => history(client, &a).await,
        ImageCommand::Load(a) => load(client, &a).await,
        ImageCommand::Pull(a) => pull(client, &a).await,
        ImageCommand::Push(a) => push(client, &a).await,
        ImageCommand::Save(a) => save(client, &a).await,
        ImageCommand::Import(a) => import(client, &a).await,
        ImageCommand::Tag(a) => tag(client, &a).await,
        ImageCommand::Rm(a) => remove(client, &a).await,
        ImageCommand::Prune(a) => prune(client, &a).await,
        ImageCommand::Mount(a) => mount(client, &a).await,
        ImageCommand::Unmount(a) => unmount(client, &a).await,
    }
}

/// Percent-encodes an image name for a path, keeping the '/' of repositories.
pub fn path_name(name: &str) -> String {
    name.split('/').map(enc).collect::<Vec<_>>().join("/")
}

/// The `--filter key=value` flags of a command.
pub fn parse_filters(flags: &[String]) -> Result<Filters> {
    let mut filters = Filters::default();
    for f in flags {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| anyhow!("bad format of filter (expected name=value): {f}"))?;
        filters.add(k.trim().to_lowercase(), v);
    }
    Ok(filters)
}

fn short_id(id: &str, no_trunc: bool) -> String {
    if no_trunc {
        return id.to_string();
    }
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.chars().take(12).collect()
}

/// How `image_rows` shows an image.
pub struct ImageRowOptions {
    /// Full IDs (`--no-trunc`).
    pub no_trunc: bool,
    /// The current unix time, for "2 hours ago".
    pub now: i64,
}

fn split_repo_tag(rt: &str) -> (&str, &str) {
    match rt.rfind(':') {
        Some(i) if !rt[i..].contains('/') => (&rt[..i], &rt[i + 1..]),
        _ => (rt, "<none>"),
    }
}

/// The rows `docker images` prints for one image: one per tag, plus one per
/// digest-only repository, or a single `<none>` row.
pub fn image_rows(img: &ImageSummary, opts: &ImageRowOptions) -> Vec<Value> {
    let tags = &img.repo_tags;
    let digests = &img.repo_digests;
    let (id, created, size, shared, containers) = (img.id.as_str(), img.created, img.size, img.shared_size, img.containers);
    let digest_of = |repo: &str| -> String {
        digests
            .iter()
            .find_map(|d| d.split_once('@').filter(|(r, _)| *r == repo).map(|(_, dg)| dg.to_string()))
            .unwrap_or_else(|| "<none>".to_string())
    };
    let mut pairs: Vec<(String, String, String)> = Vec::new();
    for t in tags {
        let (repo, tag) = split_repo_tag(t);
        pairs.push((repo.to_string(), tag.to_string(), digest_of(repo)));
    }
    for d in digests {
        if let Some((repo, dg)) = d.split_once('@') {
            if !pairs.iter().any(|(r, _, _)| r == repo) {
                pairs.push((repo.to_string(), "<none>".to_string(), dg.to_string()));
            }
        }
    }
    if pairs.is_empty() {
        pairs.push(("<none>".to_string(), "<none>".to_string(), "<none>".to_string()));
    }
    pairs
        .into_iter()
        .map(|(repo, tag, digest)| {
            json!({
                "Containers": if containers < 0 { "N/A".to_string() } else { containers.to_string() },
                "CreatedAt": go_time(created),
                "CreatedSince": time_ago(created, opts.now),
                "Digest": digest,
                "ID": short_id(id, opts.no_trunc),
                "Repository": repo,
                "SharedSize": if shared < 0 { "N/A".to_string() } else { human_size(shared as u64) },
                "Size": human_size(size),
                "Tag": tag,
                "UniqueSize": if shared < 0 { "N/A".to_string() } else { human_size(size.saturating_sub(shared as u64)) },
                "VirtualSize": human_size(size),
            })
        })
        .collect()
}

/// The header row of image tables: each field's column title.
fn image_header() -> Value {
    json!({
        "Containers": "CONTAINERS", "CreatedAt": "CREATED AT", "CreatedSince": "CREATED", "Digest": "DIGEST",
        "ID": "IMAGE ID", "Repository": "REPOSITORY", "SharedSize": "SHARED SIZE", "Size": "SIZE", "Tag": "TAG",
        "UniqueSize": "UNIQUE SIZE", "VirtualSize": "VIRTUAL SIZE",
    })
}

/// `berth images`.
pub async fn list(client: &Client, args: &ImagesArgs) -> Result<ExitCode> {
    let mut filters = parse_filters(&args.filter)?;
    if let Some(r) = &args.repository {
        filters.add("reference", r.as_str());
    }
    let mut path = format!("/images/json?all={}", if args.all { 1 } else { 0 });
    if !filters.is_empty() {
        path.push_str(&format!("&filters={}", enc(&filters.to_string())));
    }
    let images: Vec<ImageSummary> = client.get_typed(&path).await?;
    let opts = ImageRowOptions { no_trunc: args.no_trunc, now: chrono::Utc::now().timestamp() };
    let rows: Vec<Value> = images.iter().flat_map(|i| image_rows(i, &opts)).collect();
    let format = if args.quiet {
        "{{.ID}}".to_string()
    } else {
        match args.format.as_deref() {
            Some(f) if f != "table" => f.to_string(),
            _ if args.digests => r"table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}".into(),
            _ => r"table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}".into(),
        }
    };
    print!("{}", Format::parse(&format)?.render_rows(&image_header(), &rows)?);
    Ok(ExitCode::SUCCESS)
}

/// `berth image inspect`.
pub async fn inspect(client: &Client, args: &InspectArgs) -> Result<ExitCode> {
    let format = args.format.as_deref().map(Format::parse).transpose()?;
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for name in &args.images {
        match client.get(&format!("/images/{}/json", path_name(name))).await {
            Ok(v) => found.push(v),
            Err(e) => errors.push(e.to_string()),
        }
    }
    super::format::print_inspected(found, &errors, format.as_ref())
}

/// `berth history`.
pub async fn history(client: &Client, args: &HistoryArgs) -> Result<ExitCode> {
    let entries: Vec<HistoryEntry> = client.get_typed(&format!("/images/{}/history", path_name(&args.image))).await?;
    let now = chrono::Utc::now().timestamp();
    let rows: Vec<Value> = entries
        .iter()
        .map(|h| {
            let id = if h.id.is_empty() { "<missing>" } else { h.id.as_str() };
            let (created, size) = (h.created, h.size);
            let by = h.created_by.replace('\t', " ");
            let by = if !args.no_trunc && by.chars().count() > 45 {
                format!("{}…", by.chars().take(44).collect::<String>())
            } else {
                by
            };
            json!({
                "ID": if id == "<missing>" { id.to_string() } else { short_id(id, args.no_trunc) },
                "CreatedSince": if args.human { time_ago(created, now) } else { go_time_rfc3339(created) },
                "CreatedAt": go_time_rfc3339(created),
                "CreatedBy": by,
                "Size": if args.human { human_size(size) } else { size.to_string() },
                "Comment": h.comment,
            })
        })
        .collect();
    let format = if args.quiet {
        "{{.ID}}".to_string()
    } else {
        match args.format.as_deref() {
            Some(f) if f != "table" => f.to_string(),
            _ => r"table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}".into(),
        }
    };
    let header = json!({
        "ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "CreatedBy": "CREATED BY",
        "Size": "SIZE", "Comment": "COMMENT",
    });
    print!("{}", Format::parse(&format)?.render_rows(&header, &rows)?);
    Ok(ExitCode::SUCCESS)
}

/// RFC 3339 local time, as `history -H=false` prints it.
fn go_time_rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.with_timezone(&chrono::Local).to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// Inputs at least this large get a progress bar (when stdout is a terminal).
const PROGRESS_THRESHOLD: u64 = 16 * 1024 * 1024;

fn progress_bar(total: Option<u64>, verb: &str) -> ProgressBar {
    let bar = match total {
        Some(t) => ProgressBar::new(t),
        None => ProgressBar::new_spinner(),
    };
    let template = if total.is_some() {
        "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}"
    } else {
        "{msg} {spinner} {bytes} {binary_bytes_per_sec}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(verb.to_string());
    bar
}

/// A streamed request body from a file or stdin, with a progress bar for large inputs.
async fn input_body(path: Option<&Path>, verb: &str) -> Result<(Body, Option<ProgressBar>)> {
    let (reader, size): (Box<dyn tokio::io::AsyncRead + Send + Unpin>, Option<u64>) = match path {
        Some(p) if p != Path::new("-") => {
            let f = tokio::fs::File::open(p).await.with_context(|| format!("open {}", p.display()))?;
            let size = f.metadata().await.ok().map(|m| m.len());
            (Box::new(f), size)
        }
        _ => (Box::new(tokio::io::stdin()), None),
    };
    let bar = (stdout_is_terminal() && size.is_some_and(|s| s >= PROGRESS_THRESHOLD)).then(|| progress_bar(size, verb));
    let tick = bar.clone();
    let stream = ReaderStream::with_capacity(reader, 256 * 1024).map_ok(move |chunk: Bytes| {
        if let Some(b) = &tick {
            b.inc(chunk.len() as u64);
        }
        Frame::data(chunk)
    });
    Ok((BodyExt::boxed_unsync(StreamBody::new(stream)), bar))
}

/// Where a JSON message stream is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamOutput {
    Stdout,
    /// `run` and `create` print the pull of a missing image on stderr.
    Stderr,
    /// Read to the end for its error only (`pull -q`).
    Nowhere,
}

/// Prints a daemon's JSON message stream (`{"stream":...}`, `{"status":...}`) as
/// the docker CLI does; an `error` message ends it with that error.
async fn print_json_stream(resp: hyper::Response<hyper::body::Incoming>) -> Result<()> {
    follow_json_stream(resp, StreamOutput::Stdout).await
}

/// `print_json_stream` to `output`. Progress lines (`progressDetail`) are
/// left out, as the docker CLI leaves them out when not on a terminal.
pub async fn follow_json_stream(resp: hyper::Response<hyper::body::Incoming>, output: StreamOutput) -> Result<()> {
    let mut body = resp.into_body();
    let mut pending = Vec::new();
    let mut out: Box<dyn Write> = match output {
        StreamOutput::Stdout => Box::new(std::io::stdout().lock()),
        StreamOutput::Stderr => Box::new(std::io::stderr().lock()),
        StreamOutput::Nowhere => Box::new(std::io::sink()),
    };
    // On a terminal, layers get bars; elsewhere a line per event.
    let terminal = match output {
        StreamOutput::Stdout => std::io::stdout().is_terminal(),
        StreamOutput::Stderr => std::io::stderr().is_terminal(),
        StreamOutput::Nowhere => false,
    };
    let mut board = terminal.then(|| LayerBoard::new(output == StreamOutput::Stderr));
    let mut handle = |line: &[u8], out: &mut Box<dyn Write>| -> Result<()> {
        let line = std::str::from_utf8(line).unwrap_or("").trim();
        if line.is_empty() {
            return Ok(());
        }
        let Ok(msg) = serde_json::from_str::<JsonMessage>(line) else {
            writeln!(out, "{line}")?;
            return Ok(());
        };
        if let Some(err) = msg.error {
            return Err(DaemonError { message: err, status: 500 }.into());
        }
        // A push's result for programs; its status line said it for people.
        if msg.aux.is_some() && msg.status.is_none() {
            return Ok(());
        }
        if let Some(board) = board.as_mut() {
            board.show(&msg);
            return Ok(());
        }
        if msg.progress_detail.as_ref().is_some_and(|p| p.current > 0 || p.total > 0) {
            return Ok(());
        }
        if let Some(s) = msg.stream {
            write!(out, "{s}")?;
        } else if let Some(status) = msg.status {
            match msg.id {
                Some(id) => writeln!(out, "{id}: {status}")?,
                None => writeln!(out, "{status}")?,
            }
        }
        out.flush()?;
        Ok(())
    };
    let mut result = Ok(());
    'read: while let Some(frame) = body.frame().await {
        let frame = match frame.context("reading the daemon's answer") {
            Ok(frame) => frame,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        if let Some(data) = frame.data_ref() {
            pending.extend_from_slice(data);
            while let Some(nl) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=nl).collect();
                if let Err(e) = handle(&line, &mut out) {
                    result = Err(e);
                    break 'read;
                }
            }
        }
    }
    if result.is_ok() {
        result = handle(&pending, &mut out);
    }
    if let Some(board) = board {
        board.finish();
    }
    result
}

/// Flags of `pull`.
#[derive(Args, Debug)]
pub struct PullArgs {
    /// Download all tagged images in the repository.
    #[arg(short = 'a', long)]
    pub all_tags: bool,
    /// Suppress verbose output.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Set platform if server is multi-platform capable (os/arch[/variant]).
    #[arg(long)]
    pub platform: Option<String>,
    /// NAME[:TAG|@DIGEST]
    pub image: String,
}

/// `berth pull`.
pub async fn pull(client: &Client, args: &PullArgs) -> Result<ExitCode> {
    let output = if args.quiet { StreamOutput::Nowhere } else { StreamOutput::Stdout };
    let full_name = if args.all_tags {
        pull_all_tags(client, &args.image, args.platform.as_deref(), output).await?
    } else {
        pull_image(client, &args.image, args.platform.as_deref(), output).await?
    };
    println!("{full_name}");
    Ok(ExitCode::SUCCESS)
}

/// `pull -a`: the daemon pulls every tag when the request names none.
async fn pull_all_tags(client: &Client, image: &str, platform: Option<&str>, output: StreamOutput) -> Result<String> {
    let parsed = ImageRef::parse(image).map_err(|e| anyhow!("{e}"))?;
    if parsed.tag.is_some() || parsed.digest.is_some() {
        bail!("tag can't be used with --all-tags/-a");
    }
    let mut query = vec![format!("fromImage={}", enc(&parsed.name))];
    if let Some(p) = platform {
        query.push(format!("platform={}", enc(p)));
    }
    let auth: Vec<(&str, String)> = super::credentials::registry_auth_header(&parsed).into_iter().collect();
    let resp = client.call_with_headers(Method::POST, &format!("/images/create?{}", query.join("&")), empty(), None, &auth).await?;
    follow_json_stream(resp, output).await?;
    // docker prints the repository's full name (without a tag) after `pull -a`.
    Ok(parsed.full_name().rsplit_once(':').filter(|(_, t)| *t == berth_model::reference::DEFAULT_TAG).map_or_else(
        || parsed.full_name(),
        |(repo, _)| repo.to_string(),
    ))
}

/// Flags of `search`.
#[derive(Args, Debug)]
pub struct SearchArgs {
    /// Filter output based on conditions provided (stars=N, is-official=true|false).
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Pretty-print search using a Go template.
    #[arg(long)]
    pub format: Option<String>,
    /// Max number of search results.
    #[arg(long)]
    pub limit: Option<u32>,
    /// Don't truncate output.
    #[arg(long)]
    pub no_trunc: bool,
    /// TERM: what to look for; `registry.example:5000/term` searches that registry.
    pub term: String,
}

/// Descriptions longer than this are cut in the table, as the docker CLI cuts them.
const SEARCH_DESCRIPTION_WIDTH: usize = 45;

/// `berth search`.
pub async fn search(client: &Client, args: &SearchArgs) -> Result<ExitCode> {
    let mut query = vec![format!("term={}", enc(&args.term))];
    if let Some(limit) = args.limit {
        query.push(format!("limit={limit}"));
    }
    let filters = parse_filters(&args.filter)?;
    if !filters.is_empty() {
        query.push(format!("filters={}", enc(&filters.to_string())));
    }
    let found: Vec<ImageSearchResponseItem> = client.get_typed(&format!("/images/search?{}", query.join("&"))).await?;
    let template = match args.format.as_deref().filter(|f| !f.is_empty()) {
        None | Some("table") => "table {{.Name}}\t{{.Description}}\t{{.StarCount}}\t{{.IsOfficial}}",
        Some(f) => f,
    };
    let format = Format::parse(template)?;
    let header = serde_json::json!({"Name": "NAME", "Description": "DESCRIPTION", "StarCount": "STARS", "IsOfficial": "OFFICIAL", "IsAutomated": "AUTOMATED"});
    let rows: Vec<Value> = found
        .iter()
        .map(|r| {
            let description = r.description.replace('\n', " ");
            let description = if !args.no_trunc && description.chars().count() > SEARCH_DESCRIPTION_WIDTH {
                format!("{}…", description.chars().take(SEARCH_DESCRIPTION_WIDTH - 1).collect::<String>())
            } else {
                description
            };
            serde_json::json!({
                "Name": r.name,
                "Description": description,
                "StarCount": r.star_count.to_string(),
                "IsOfficial": if r.is_official { "[OK]" } else { "" },
                "IsAutomated": if r.is_automated { "[OK]" } else { "" },
            })
        })
        .collect();
    print!("{}", format.render_rows(&header, &rows)?);
    Ok(ExitCode::SUCCESS)
}

/// Pulls `image` through the daemon, printing its progress to `output`;
/// returns the full name (`docker.io/library/busybox:latest`).
pub async fn pull_image(client: &Client, image: &str, platform: Option<&str>, output: StreamOutput) -> Result<String> {
    let parsed = ImageRef::parse(image).map_err(|e| anyhow!("{e}"))?;
    if parsed.tag.is_none() && parsed.digest.is_none() && output != StreamOutput::Nowhere {
        let mut out: Box<dyn Write> =
            if output == StreamOutput::Stderr { Box::new(std::io::stderr()) } else { Box::new(std::io::stdout()) };
        writeln!(out, "Using default tag: {}", berth_model::reference::DEFAULT_TAG)?;
    }
    let reference = parsed.with_default_tag();
    let mut query = vec![format!("fromImage={}", enc(&reference.name)), format!("tag={}", enc(&reference.tag_or_digest()))];
    if let Some(p) = platform {
        query.push(format!("platform={}", enc(p)));
    }
    // The stored credentials of the image's registry go along, as the docker CLI sends them.
    let auth: Vec<(&str, String)> = super::credentials::registry_auth_header(&reference).into_iter().collect();
    let path = format!("/images/create?{}", query.join("&"));
    let resp = client.call_with_headers(Method::POST, &path, empty(), None, &auth).await?;
    follow_json_stream(resp, output).await?;
    Ok(reference.full_name())
}

/// Flags of `push`.
#[derive(Args, Debug)]
pub struct PushArgs {
    /// Push all tagged images in the repository.
    #[arg(short = 'a', long = "all-tags")]
    pub all_tags: bool,
    /// Suppress verbose output.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// NAME[:TAG]
    pub image: String,
}

/// `berth push`: the daemon's progress as the docker CLI prints it off a
/// terminal; with `-q` only the name pushed.
pub async fn push(client: &Client, args: &PushArgs) -> Result<ExitCode> {
    let mut reference = ImageRef::parse(&args.image).map_err(|e| anyhow!("{e}"))?;
    if reference.digest.is_some() {
        bail!("cannot push a digest reference");
    }
    if args.all_tags && reference.tag.is_some() {
        bail!("tag can't be used with --all-tags/-a");
    }
    if !args.all_tags && reference.tag.is_none() {
        reference = reference.with_default_tag();
        if !args.quiet {
            println!("Using default tag: {}", berth_model::reference::DEFAULT_TAG);
        }
    }
    let mut path = format!("/images/{}/push", path_name(&reference.name));
    if let Some(tag) = &reference.tag {
        path.push_str(&format!("?tag={}", enc(tag)));
    }
    // The stored credentials for the image's registry, as the docker CLI sends them.
    let auth: Vec<(&str, String)> = super::credentials::registry_auth_header(&reference).into_iter().collect();
    let resp = client.call_with_headers(Method::POST, &path, empty(), None, &auth).await?;
    follow_json_stream(resp, if args.quiet { StreamOutput::Nowhere } else { StreamOutput::Stdout }).await?;
    if args.quiet {
        println!("{}", reference.full_name());
    }
    Ok(ExitCode::SUCCESS)
}

/// `berth load`.
pub async fn load(client: &Client, args: &LoadArgs) -> Result<ExitCode> {
    if args.input.is_none() && std::io::stdin().is_terminal() {
        bail!("requested load from stdin, but stdin is empty");
    }
    let (body, bar) = input_body(args.input.as_deref(), "Loading").await?;
    let quiet = args.quiet || !stdout_is_terminal();
    let resp = client
        .call(Method::POST, &format!("/images/load?quiet={}", if quiet { 1 } else { 0 }), body, Some("application/x-tar"))
        .await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    // -q suppresses progress, not the "Loaded image" lines.
    print_json_stream(resp?).await?;
    Ok(ExitCode::SUCCESS)
}

/// `berth save`.
pub async fn save(client: &Client, args: &SaveArgs) -> Result<ExitCode> {
    if args.output.is_none() && stdout_is_terminal() {
        bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
    }
    let names: Vec<String> = args.images.iter().map(|n| format!("names={}", enc(n))).collect();
    let path = format!("/images/get?{}&format={}", names.join("&"), args.format);
    let resp = client.call(Method::GET, &path, empty(), None).await?;
    let mut body = resp.into_body();
    let bar = (args.output.is_some() && stdout_is_terminal()).then(|| progress_bar(None, "Saving"));
    // Written to a temporary file next to the target and renamed at the end, so
    // a failed save never leaves a truncated archive under the requested name.
    let (mut out, tmp): (Box<dyn tokio::io::AsyncWrite + Unpin>, Option<(PathBuf, PathBuf)>) = match &args.output {
        Some(target) => {
            let dir = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let name = target.file_name().ok_or_else(|| anyhow!("invalid output path {}", target.display()))?;
            let tmp = dir.join(format!(".{}.berth-save-{}", name.to_string_lossy(), std::process::id()));
            let f = tokio::fs::File::create(&tmp).await.with_context(|| format!("failed to save image: create {}", tmp.display()))?;
            (Box::new(f), Some((tmp, target.clone())))
        }
        None => (Box::new(tokio::io::stdout()), None),
    };
    let result: Result<()> = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.context("failed to save image: the daemon's stream broke off")?;
            if let Some(data) = frame.data_ref() {
                out.write_all(data).await.context("failed to save image: write")?;
                if let Some(b) = &bar {
                    b.inc(data.len() as u64);
                }
            }
        }
        out.flush().await.context("failed to save image: write")?;
        Ok(())
    }
    .await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    drop(out);
    match (result, tmp) {
        (Ok(()), Some((tmp, target))) => {
            std::fs::rename(&tmp, &target).with_context(|| format!("failed to save image: rename to {}", target.display()))?;
        }
        (Err(e), Some((tmp, _))) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        (r, None) => r?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `berth import`.
pub async fn import(client: &Client, args: &ImportArgs) -> Result<ExitCode> {
    if args.file.contains("://") {
        bail!("importing from a URL is not supported: download {} and import the file", args.file);
    }
    let mut q = vec!["fromSrc=-".to_string()];
    if let Some(r) = &args.reference {
        q.push(format!("repo={}", enc(r)));
    }
    for c in &args.changes {
        q.push(format!("changes={}", enc(c)));
    }
    if let Some(m) = &args.message {
        q.push(format!("message={}", enc(m)));
    }
    if let Some(p) = &args.platform {
        q.push(format!("platform={}", enc(p)));
    }
    let path = if args.file == "-" { None } else { Some(Path::new(&args.file)) };
    if path.is_none() && std::io::stdin().is_terminal() {
        bail!("requested import from stdin, but stdin is a terminal: pipe a tar archive in or name a file");
    }
    let (body, bar) = input_body(path, "Importing").await?;
    let resp = client.call(Method::POST, &format!("/images/create?{}", q.join("&")), body, Some("application/x-tar")).await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    print_json_stream(resp?).await?;
    Ok(ExitCode::SUCCESS)
}

/// `berth tag`.
pub async fn tag(client: &Client, args: &TagArgs) -> Result<ExitCode> {
    // The whole target goes in `repo`: the daemon parses and validates it once.
    let path = format!("/images/{}/tag?repo={}", path_name(&args.source), enc(&args.target));
    client.call(Method::POST, &path, empty(), None).await?;
    Ok(ExitCode::SUCCESS)
}

fn print_delete_items(items: &[ImageDeleteResponseItem], lower: bool) {
    for item in items {
        if let Some(u) = &item.untagged {
            println!("{}: {u}", if lower { "untagged" } else { "Untagged" });
        }
        if let Some(d) = &item.deleted {
            println!("{}: {d}", if lower { "deleted" } else { "Deleted" });
        }
    }
}

/// `berth rmi`.
pub async fn remove(client: &Client, args: &RmiArgs) -> Result<ExitCode> {
    let mut errors = Vec::new();
    for name in &args.images {
        let path = format!("/images/{}?force={}&noprune={}", path_name(name), args.force as u8, args.no_prune as u8);
        match client.typed::<Vec<ImageDeleteResponseItem>>(Method::DELETE, &path).await {
            Ok(items) => print_delete_items(&items, false),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if errors.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("{}", errors.join("\n"));
        Ok(ExitCode::FAILURE)
    }
}

/// `berth image prune`.
pub async fn prune(client: &Client, args: &PruneArgs) -> Result<ExitCode> {
    let mut filters = parse_filters(&args.filter)?;
    if args.all {
        filters.remove("dangling");
        filters.add("dangling", "false");
    }
    if !args.force {
        let warning = if args.all {
            "WARNING! This will remove all images without at least one container associated to them."
        } else {
            "WARNING! This will remove all dangling images."
        };
        if !super::format::confirm(warning)? {
            // docker: declining is not an error, nothing is removed.
            return Ok(ExitCode::SUCCESS);
        }
    }
    let path = format!("/images/prune?filters={}", enc(&filters.to_string()));
    let report: ImagePruneResponse = client.typed(Method::POST, &path).await?;
    if let Some(items) = report.images_deleted.filter(|items| !items.is_empty()) {
        println!("Deleted Images:");
        print_delete_items(&items, true);
        println!();
    }
    println!("Total reclaimed space: {}", human_size4(report.space_reclaimed));
    Ok(ExitCode::SUCCESS)
}

/// `berth image mount`.
pub async fn mount(client: &Client, args: &MountArgs) -> Result<ExitCode> {
    for name in &args.images {
        let mounted: ImageMountResponse = client.typed(Method::POST, &format!("/images/{}/mount", path_name(name))).await?;
        println!("{}", mounted.path);
    }
    Ok(ExitCode::SUCCESS)
}

/// `berth image unmount`.
pub async fn unmount(client: &Client, args: &MountArgs) -> Result<ExitCode> {
    for name in &args.images {
        client.call(Method::POST, &format!("/images/{}/unmount", path_name(name)), empty(), None).await?;
        println!("{name}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_expand_to_one_row_per_tag() {
        let img = json!({
            "Id": "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "RepoTags": ["busybox:latest", "localhost:5000/bb:1"],
            "RepoDigests": ["busybox@sha256:aaaa"],
            "Created": 1000, "Size": 4257792, "SharedSize": -1, "Containers": 0,
        });
        let img: ImageSummary = serde_json::from_value(img).unwrap();
        let rows = image_rows(&img, &ImageRowOptions { no_trunc: false, now: 1000 + 7200 });
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["Repository"], "busybox");
        assert_eq!(rows[0]["Digest"], "sha256:aaaa");
        assert_eq!(rows[0]["ID"], "0123456789ab");
        assert_eq!(rows[0]["Size"], "4.26MB");
        assert_eq!(rows[0]["CreatedSince"], "2 hours ago");
        assert_eq!(rows[1]["Repository"], "localhost:5000/bb");
        assert_eq!(rows[1]["Tag"], "1");
        assert_eq!(rows[1]["Digest"], "<none>");
        let none: ImageSummary = serde_json::from_value(json!({"Id": "sha256:ab", "RepoTags": [], "RepoDigests": []})).unwrap();
        let none = image_rows(&none, &ImageRowOptions { no_trunc: true, now: 0 });
        assert_eq!(none[0]["Repository"], "<none>");
        assert_eq!(none[0]["ID"], "sha256:ab");
    }

    #[test]
    fn filter_flags_become_api_json() {
        let f = parse_filters(&["dangling=true".into(), "reference=busy*".into(), "label=a=b".into(), "Label=c".into()]).unwrap();
        assert_eq!(f.to_string(), r#"{"dangling":{"true":true},"label":{"a=b":true,"c":true},"reference":{"busy*":true}}"#);
        assert!(parse_filters(&["nonsense".into()]).is_err());
    }

    #[test]
    fn names_keep_their_slashes_in_paths() {
        assert_eq!(path_name("localhost:5000/team/app:1"), "localhost%3A5000/team/app%3A1");
    }
}
