//! A user pulls images from a registry — Debian's `docker-registry`
//! (distribution 2.8) on 127.0.0.1 inside the sandbox, filled by `skopeo`,
//! the independent second client — with `berth pull`, `berth run` of a
//! missing image, and the docker CLI; and looks at a registry without
//! pulling (`pull -a`'s tag list, `search`, `GET /distribution/{name}/json`).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::images;
use common::net::{api_request, tcp_listening};
use common::registry::{for_arch, manifest_digest, oci_index_dir, push, skopeo, Registry, PORT};
use common::{poll_until, Sandbox};

fn repo_digests(sb: &Sandbox, name: &str) -> Vec<String> {
    sb.inspect(name)["RepoDigests"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

#[test]
fn berth_pulls_runs_and_pulls_by_digest_and_bad_references_fail_clearly() {
    let sb = Sandbox::start();
    let _registry = Registry::start(&sb);
    let img = images::busybox();
    let digest = push(&sb, &img, "test/box:1");
    let name = format!("localhost:{PORT}/test/box:1");

    let out = sb.berth_ok(&["pull", &name]);
    for line in [
        "1: Pulling from test/box".to_string(),
        "Pull complete".to_string(),
        format!("Digest: {digest}"),
        format!("Status: Downloaded newer image for {name}"),
    ] {
        assert!(out.contains(&line), "berth pull printed no {line:?}:\n{out}");
    }
    assert_eq!(out.lines().last(), Some(name.as_str()), "the full name comes last:\n{out}");
    assert!(!out.contains("Downloading"), "progress lines are not printed without a terminal:\n{out}");
    assert_eq!(sb.inspect(&name)["Id"], img.id(), "the pulled image has the pushed image's ID");
    assert_eq!(repo_digests(&sb, &name), vec![format!("localhost:{PORT}/test/box@{digest}")]);
    let listing = sb.berth_ok(&["images"]);
    assert!(listing.contains(&format!("localhost:{PORT}/test/box")) && listing.contains(&img.short_id()[7..]), "{listing}");
    let ran = sb.berth_ok(&["run", "--rm", &name, "sh", "-c", "echo pulled-and-ran"]);
    assert_eq!(ran.trim(), "pulled-and-ran");

    let again = sb.berth_ok(&["pull", &name]);
    assert!(again.contains(&format!("Status: Image is up to date for {name}")) && again.contains("Already exists"), "{again}");

    // By digest, after the image is gone: no tag, the digest reference names it.
    sb.berth_ok(&["rmi", &name]);
    let by_digest = format!("localhost:{PORT}/test/box@{digest}");
    let out = sb.berth_ok(&["pull", &by_digest]);
    assert!(out.contains(&format!("Status: Downloaded newer image for {by_digest}")), "{out}");
    assert_eq!(sb.inspect(&by_digest)["Id"], img.id());

    // On a terminal: a bar per layer and a total with throughput and ETA.
    sb.berth_ok(&["rmi", &by_digest]);
    let out = sb.berth_pty(&["pull", &name]);
    assert!(out.success(), "{}", out.describe());
    for shown in ["1: Pulling from test/box", ": Pull complete", "Total", "ETA", &format!("Status: Downloaded newer image for {name}")] {
        assert!(out.stdout.contains(shown), "the terminal shows no {shown:?}:\n{}", out.stdout);
    }
    assert!(out.stdout.contains('\u{1b}'), "bars are redrawn in place on a terminal:\n{}", out.stdout);

    // `run` of an image that is not here pulls it first, on stderr.
    sb.berth_ok(&["rmi", &name]);
    let out = sb.berth(&["run", "--rm", &name, "sh", "-c", "echo auto-pulled"]);
    assert!(out.success(), "{}", out.describe());
    assert_eq!(out.stdout.trim(), "auto-pulled");
    assert!(out.stderr.contains(&format!("Unable to find image '{name}' locally")) && out.stderr.contains("Pull complete"), "{}", out.stderr);

    let before = sb.image_ids();
    let out = sb.berth_fails(&["pull", &format!("localhost:{PORT}/test/box:nope")]);
    assert!(
        out.stderr.contains(&format!("manifest for localhost:{PORT}/test/box:nope not found: manifest unknown: manifest unknown")),
        "{}",
        out.describe()
    );
    let out = sb.berth_fails(&["pull", "localhost:5999/test/box:1"]);
    assert!(out.stderr.contains("localhost:5999") && out.stderr.to_lowercase().contains("connection refused"), "{}", out.describe());
    let out = sb.berth_fails(&["pull", "registry.example/test/box:1"]);
    // A registry that is not loopback nor declared insecure is reached over HTTPS (no DNS in the sandbox).
    assert!(out.stderr.contains("Get \"https://registry.example/v2/test/box/manifests/1\""), "{}", out.describe());
    assert_eq!(sb.image_ids(), before, "a failed pull changes no image");
    sb.berth_ok(&["version"]);
}

#[test]
fn docker_cli_pulls_through_berth_and_a_platform_picks_its_manifest_from_an_index() {
    let sb = Sandbox::start();
    let _registry = Registry::start(&sb);
    let amd64 = images::busybox();
    let arm64 = for_arch(images::busybox(), "arm64");
    let layout = sb.file("multi-layout");
    oci_index_dir(&layout, &[(&amd64, "amd64"), (&arm64, "arm64")]);
    skopeo(&sb, &format!("copy --all --dest-tls-verify=false oci:{}:1 docker://localhost:{PORT}/test/multi:1", layout.display()));
    let index_digest = manifest_digest(&sb, "test/multi:1");
    let name = format!("localhost:{PORT}/test/multi:1");

    let out = sb.docker_ok(&["pull", &name]);
    for line in [format!("Digest: {index_digest}"), format!("Status: Downloaded newer image for {name}"), name.clone()] {
        assert!(out.contains(&line), "docker pull printed no {line:?}:\n{out}");
    }
    assert_eq!(sb.inspect(&name)["Id"], amd64.id(), "the host's platform (amd64) is picked from the index");
    assert_eq!(sb.inspect(&name)["Architecture"], "amd64");
    assert_eq!(repo_digests(&sb, &name), vec![format!("localhost:{PORT}/test/multi@{index_digest}")]);

    sb.berth_ok(&["pull", "--platform", "linux/arm64", &name]);
    assert_eq!(sb.inspect(&name)["Architecture"], "arm64");
    assert_eq!(sb.inspect(&name)["Id"], arm64.id());

    let out = sb.docker_ok(&["pull", &format!("localhost:{PORT}/test/multi@{index_digest}")]);
    assert!(out.contains("Status: "), "{out}");

    let out = sb.berth_fails(&["pull", "--platform", "linux/s390x", &name]);
    assert!(
        out.stderr.contains("linux/s390x") && out.stderr.contains("linux/amd64, linux/arm64"),
        "the error names the platforms there are: {}",
        out.describe()
    );
    let out = sb.docker(&["pull", &format!("localhost:{PORT}/test/multi:nope")]);
    assert!(!out.success() && out.stderr.contains("manifest unknown"), "{}", out.describe());
}

/// Port of the search index stand-in: registry 2.8 has no `/v1/search`, so a
/// small server plays Docker Hub's index (it echoes the query it was sent).
const SEARCH_PORT: u16 = 5001;

/// A `/v1/search` server in the sandbox (python3), killed by its PID when dropped.
struct SearchIndex(Child);

impl SearchIndex {
    fn start(sb: &Sandbox) -> SearchIndex {
        let script = format!(
            r#"
import http.server, json, urllib.parse
class Index(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        if url.path != "/v1/search":
            self.send_error(404)
            return
        q = urllib.parse.parse_qs(url.query)
        sent = "q=%s n=%s" % (q.get("q", [""])[0], q.get("n", [""])[0])
        results = [
            {{"name": "team/app", "description": "An application that does a great many things well, " + sent,
              "star_count": 12, "is_official": False, "is_automated": False}},
            {{"name": "base", "description": "A base image", "star_count": 3, "is_official": True, "is_automated": False}},
        ]
        body = json.dumps({{"num_results": 2, "query": q.get("q", [""])[0], "results": results}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", {SEARCH_PORT}), Index).serve_forever()
"#
        );
        let child = Command::new("nsenter")
            .args(["-t", &sb.holder_pid().to_string(), "-n", "-m", "--", "python3", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting python3 for the search index");
        let index = SearchIndex(child);
        poll_until(Duration::from_secs(20), "the search index to listen", || tcp_listening(sb, SEARCH_PORT));
        index
    }
}

impl Drop for SearchIndex {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn pull_all_tags_search_and_distribution_inspect_ask_the_registry() {
    let sb = Sandbox::start();
    let _registry = Registry::start(&sb);
    let _index = SearchIndex::start(&sb);
    let img = images::busybox();
    let arm64 = for_arch(images::busybox(), "arm64");
    push(&sb, &img, "test/box:1");
    push(&sb, &arm64, "test/box:2");
    let repo = format!("localhost:{PORT}/test/box");

    // `pull -a`: every tag, each pulled as a pull of its own.
    let out = sb.berth_ok(&["pull", "-a", &repo]);
    for line in ["1: Pulling from test/box", "2: Pulling from test/box", &format!("Status: Downloaded newer image for {repo}")] {
        assert!(out.contains(line), "pull -a printed no {line:?}:\n{out}");
    }
    assert_eq!(sb.inspect(&format!("{repo}:1"))["Id"], img.id());
    assert_eq!(sb.inspect(&format!("{repo}:2"))["Architecture"], "arm64");
    let out = sb.docker_ok(&["pull", "-a", &repo]);
    assert!(out.contains(&format!("Status: Image is up to date for {repo}")), "{out}");
    let out = sb.berth_fails(&["pull", "-a", &format!("{repo}:1")]);
    assert!(out.stderr.contains("tag can't be used with --all-tags/-a"), "{}", out.describe());
    let out = sb.berth_fails(&["pull", "-a", &format!("localhost:{PORT}/test/none")]);
    assert!(out.stderr.contains("test/none"), "{}", out.describe());

    // Distribution inspect: the descriptor and platforms, nothing pulled.
    let index_layout = sb.file("index-layout");
    oci_index_dir(&index_layout, &[(&img, "amd64"), (&arm64, "arm64")]);
    skopeo(&sb, &format!("copy --all --dest-tls-verify=false oci:{}:1 docker://localhost:{PORT}/test/multi:1", index_layout.display()));
    let images_before = sb.image_ids();
    let (status, body) = api_request(&sb, "GET", &format!("/v1.41/distribution/localhost:{PORT}/test/multi:1/json"), None);
    assert_eq!(status, 200, "{body}");
    let info: serde_json::Value = serde_json::from_str(&body).expect("distribution inspect answers JSON");
    assert_eq!(info["Descriptor"]["digest"], manifest_digest(&sb, "test/multi:1"));
    assert_eq!(info["Descriptor"]["mediaType"], "application/vnd.oci.image.index.v1+json");
    let archs: Vec<&str> = info["Platforms"].as_array().expect("platforms").iter().filter_map(|p| p["architecture"].as_str()).collect();
    assert_eq!(archs, vec!["amd64", "arm64"]);
    let (status, body) = api_request(&sb, "GET", &format!("/distribution/{repo}:2/json"), None);
    assert_eq!(status, 200, "{body}");
    let info: serde_json::Value = serde_json::from_str(&body).expect("distribution inspect answers JSON");
    assert_eq!(info["Platforms"], serde_json::json!([{"architecture": "arm64", "os": "linux"}]), "a single manifest's platform comes from its config");
    let (status, body) = api_request(&sb, "GET", &format!("/distribution/{repo}:nope/json"), None);
    assert!(status == 404 && body.contains("manifest unknown"), "{status} {body}");
    assert_eq!(sb.image_ids(), images_before, "distribution inspect pulls nothing");

    // Search: the registry the term names gets `/v1/search?q=<rest>&n=<limit>`.
    let term = format!("localhost:{SEARCH_PORT}/app");
    let out = sb.berth_ok(&["search", "--limit", "7", "--no-trunc", &term]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("NAME") && lines[0].contains("DESCRIPTION") && lines[0].contains("STARS") && lines[0].contains("OFFICIAL"), "{out}");
    assert!(lines[1].starts_with("team/app") && lines[1].contains("q=app n=7") && lines[1].contains("12"), "{out}");
    assert!(lines[2].starts_with("base") && lines[2].contains("[OK]"), "{out}");
    let out = sb.berth_ok(&["search", &term]);
    assert!(out.contains("An application that does a great many things…") && !out.contains("q=app"), "cut at 45 characters: {out}");
    let out = sb.berth_ok(&["search", "--filter", "stars=5", "--format", "{{.Name}}: {{.StarCount}}", &term]);
    assert_eq!(out, "team/app: 12\n");
    let out = sb.docker_ok(&["search", "--filter", "is-official=true", &term]);
    assert!(out.contains("base") && !out.contains("team/app"), "{out}");
    let out = sb.docker(&["search", "--limit", "101", &term]);
    assert!(!out.success() && out.stderr.contains("Limit 101 is outside the range of [1, 100]"), "{}", out.describe());
    // Registry 2.8 has no search: dockerd's words.
    let out = sb.docker(&["search", &format!("localhost:{PORT}/test")]);
    assert!(!out.success() && out.stderr.contains("Unexpected status code 404"), "{}", out.describe());
}
