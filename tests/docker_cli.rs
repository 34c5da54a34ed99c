//! A Docker user points the real docker CLI at berth's socket and manages images.

mod common;

use common::images;
use common::Sandbox;

fn columns(line: &str) -> Vec<String> {
    line.split("  ").map(str::trim).filter(|c| !c.is_empty()).map(str::to_string).collect()
}

#[test]
fn docker_version_and_info_describe_the_berth_daemon() {
    let sb = Sandbox::start();
    let out = sb.docker_ok(&["version"]);
    assert!(out.contains("Server:"), "docker version shows a Server section:\n{out}");
    let api = sb.docker_ok(&["version", "--format", "{{.Server.APIVersion}}"]);
    assert_eq!(api.trim(), "1.50", "maximum API version");
    let min = sb.docker_ok(&["version", "--format", "{{.Server.MinAPIVersion}}"]);
    assert_eq!(min.trim(), "1.24", "minimum API version");
    let os = sb.docker_ok(&["version", "--format", "{{.Server.Os}}/{{.Server.Arch}}"]);
    assert_eq!(os.trim(), "linux/amd64");

    let info = sb.docker_ok(&["info"]);
    assert!(info.contains("Storage Driver:"), "docker info:\n{info}");
    let json = sb.docker_ok(&["info", "--format", "{{json .}}"]);
    let info: serde_json::Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("info JSON ({e}): {json}"));
    assert_eq!(info["Images"], 0, "fresh root has no images: {info}");
    assert_eq!(info["DockerRootDir"], sb.root.to_str().expect("utf-8"), "{info}");
    assert_eq!(info["OSType"], "linux");
    let driver = info["Driver"].as_str().unwrap_or_default();
    assert!(driver == "overlay" || driver == "vfs", "Driver is overlay (or vfs fallback), got {driver:?}");

    // No swarm: berth answers as a dockerd 20.10 that joined none (503, its words; checked on dockerd).
    assert_eq!(info["Swarm"]["LocalNodeState"], "inactive", "{info}");
    let not_manager = "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.";
    for args in [&["node", "ls"][..], &["service", "ls"], &["secret", "ls"], &["config", "ls"], &["swarm", "unlock-key"]] {
        let out = sb.docker(args);
        assert!(!out.success() && out.stderr.contains(not_manager), "docker {args:?}:\n{}", out.describe());
    }
    let out = sb.docker(&["swarm", "leave", "--force"]);
    assert!(!out.success() && out.stderr.contains("Error response from daemon: This node is not part of a swarm"), "{}", out.describe());
    let out = sb.docker(&["swarm", "init"]);
    assert!(!out.success() && out.stderr.contains("berth does not run a swarm") && out.stderr.contains("CRI"), "{}", out.describe());
    let (status, body) = common::net::api_request(&sb, "POST", "/v1.41/swarm/leave?force=1", None);
    assert_eq!((status, body.contains("not part of a swarm")), (503, true), "docker-py's leave_swarm(force=True) reads this 503: {body}");
}

#[test]
fn docker_load_images_tag_inspect_history_and_rmi() {
    let sb = Sandbox::start();
    let img = images::multilayer();
    let archive = sb.file("multilayer.tar");
    img.save_docker_archive(&["multi:latest"], &archive).expect("writing archive");

    let out = sb.docker_ok(&["load", "-i", archive.to_str().expect("utf-8")]);
    assert!(out.contains("Loaded image: multi:latest"), "docker load printed:\n{out}");

    let listing = sb.docker_ok(&["images"]);
    assert_eq!(
        columns(listing.lines().next().unwrap_or_default()),
        ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"],
        "docker images:\n{listing}"
    );
    let row = listing.lines().skip(1).map(columns).find(|c| c.first().map(String::as_str) == Some("multi"));
    let row = row.unwrap_or_else(|| panic!("no multi row:\n{listing}"));
    assert_eq!(row[1], "latest");
    assert_eq!(row[2], img.short_id(), "IMAGE ID:\n{listing}");

    sb.docker_ok(&["tag", "multi:latest", "example.com/team/multi:v1"]);
    let formatted = sb.docker_ok(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
    let mut lines: Vec<&str> = formatted.lines().collect();
    lines.sort();
    let short = img.short_id();
    assert_eq!(lines, [format!("example.com/team/multi:v1 {short}"), format!("multi:latest {short}")], "{formatted}");

    let json = sb.docker_ok(&["image", "inspect", "multi"]);
    let inspect: serde_json::Value =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("inspect JSON ({e}): {json}"));
    let inspect = &inspect[0];
    assert_eq!(inspect["Id"], img.id());
    let mut tags: Vec<String> = inspect["RepoTags"]
        .as_array()
        .expect("RepoTags")
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_string())
        .collect();
    tags.sort();
    assert_eq!(tags, ["example.com/team/multi:v1", "multi:latest"]);
    assert_eq!(inspect["RootFS"]["Layers"], serde_json::json!(img.diff_ids()));
    assert_eq!(inspect["Architecture"], "amd64");
    assert_eq!(inspect["Config"]["Cmd"], serde_json::json!(["sh"]));
    let id = sb.docker_ok(&["image", "inspect", "--format", "{{.Id}}", "example.com/team/multi:v1"]);
    assert_eq!(id.trim(), img.id());

    // history: newest first, the image ID on the top entry only.
    let history = sb.docker_ok(&["history", "multi"]);
    assert_eq!(
        columns(history.lines().next().unwrap_or_default()),
        ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
        "docker history:\n{history}"
    );
    let hist = sb.docker_ok(&["history", "--no-trunc", "--format", "{{.ID}}|{{.CreatedBy}}", "multi"]);
    let rows: Vec<&str> = hist.lines().collect();
    assert_eq!(
        rows,
        [
            format!("{}|/bin/sh -c #(nop) multilayer layer 2", img.id()),
            "<missing>|/bin/sh -c #(nop) multilayer layer 1".to_string(),
            "<missing>|/bin/sh -c #(nop) multilayer layer 0".to_string(),
        ],
        "docker history:\n{hist}"
    );

    let out = sb.docker_ok(&["rmi", "example.com/team/multi:v1"]);
    assert!(out.contains("Untagged: example.com/team/multi:v1"), "rmi printed:\n{out}");
    assert!(!out.contains("Deleted:"), "the image still has a tag, nothing is deleted:\n{out}");
    let out = sb.docker_ok(&["rmi", "multi"]);
    assert!(out.contains("Untagged: multi:latest"), "rmi printed:\n{out}");
    assert!(out.contains(&format!("Deleted: {}", img.id())), "rmi printed:\n{out}");
    assert_eq!(sb.docker_ok(&["images", "-q"]).trim(), "", "no images left");

    let missing = sb.docker(&["image", "inspect", "multi"]);
    assert!(!missing.success(), "inspect of a removed image fails");
    assert!(missing.stderr.contains("No such image"), "stderr: {}", missing.stderr);
}

#[test]
fn docker_save_then_docker_load_into_a_fresh_root() {
    let first = Sandbox::start();
    let img = images::busybox();
    let archive = first.file("busybox.tar");
    img.save_docker_archive(&["busybox:latest"], &archive).expect("writing archive");
    first.docker_ok(&["load", "-i", archive.to_str().expect("utf-8")]);
    let saved = first.file("saved.tar");
    first.docker_ok(&["save", "-o", saved.to_str().expect("utf-8"), "busybox:latest"]);
    let len = std::fs::metadata(&saved).map(|m| m.len()).unwrap_or(0);
    assert!(len > img.layers_tar_size(), "docker save wrote {len} bytes, less than the layer");

    let second = Sandbox::start();
    let out = second.docker_ok(&["load", "-i", saved.to_str().expect("utf-8")]);
    assert!(out.contains("Loaded image: busybox:latest"), "docker load printed:\n{out}");
    let id = second.docker_ok(&["image", "inspect", "--format", "{{.Id}}", "busybox:latest"]);
    assert_eq!(id.trim(), img.id());
    let layers = second.docker_ok(&["image", "inspect", "--format", "{{json .RootFS.Layers}}", "busybox:latest"]);
    assert_eq!(layers.trim(), serde_json::to_string(&img.diff_ids()).expect("json"));
}

#[test]
fn docker_import_a_rootfs_tar_with_a_change() {
    let sb = Sandbox::start();
    let rootfs = images::busybox_rootfs_tar();
    let path = sb.file("rootfs.tar");
    common::write_file(&path, &rootfs);
    let out = sb.docker_ok(&["import", "--change", "ENV FOO=bar", path.to_str().expect("utf-8"), "imported:v1"]);
    let id = out.trim();
    assert!(id.starts_with("sha256:") && id.len() == 71, "docker import prints the image ID, got {out:?}");
    let listing = sb.docker_ok(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
    assert_eq!(listing.trim(), format!("imported:v1 {}", &id[7..19]));
    let env = sb.docker_ok(&["image", "inspect", "--format", "{{json .Config.Env}}", "imported:v1"]);
    assert!(env.contains("FOO=bar"), "Env: {env}");
    let layers = sb.docker_ok(&["image", "inspect", "--format", "{{json .RootFS.Layers}}", "imported:v1"]);
    assert_eq!(layers.trim(), serde_json::to_string(&[images::sha256_digest(&rootfs)]).expect("json"));

    let out = sb.docker_stdin(&["import", "-", "fromstdin:latest"], &path);
    sb.expect_ok(out);
    let history = sb.docker_ok(&["history", "fromstdin"]);
    assert!(history.lines().count() >= 2, "history has the import entry:\n{history}");
}
