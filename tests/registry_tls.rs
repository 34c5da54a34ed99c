//! Registries as Docker reaches them: HTTPS verified with the registry's own
//! CA from `certs.d` (and a client certificate when the registry asks for
//! one), plain HTTP only for registries the daemon's `daemon.json` declares
//! insecure, and Docker Hub names served by a mirror. The registries are
//! Debian's `docker-registry` on TEST-NET addresses of the sandbox's own `lo`.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::images;
use common::net::sandbox_sh_ok;
use common::registry::{push_to, Registry};
use common::{run, Sandbox, BERTH};

/// The registries' addresses: `lo` of the sandbox's namespace carries both.
const TRUSTED: &str = "192.0.2.1";
const OTHER: &str = "192.0.2.2";
const TLS_PORT: u16 = 5443;
const PLAIN_PORT: u16 = 5000;

/// A test CA and a server certificate for `TRUSTED` signed by it, plus a client certificate, in `dir`.
fn make_certs(dir: &Path) {
    fs::create_dir_all(dir).expect("creating the certificates' dir");
    let script = format!(
        "set -e; cd {dir}
         openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
           -keyout ca.key -out ca.crt -subj /CN=berth-test-ca 2>/dev/null
         for who in server client; do
           openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout $who.key -out $who.csr -subj /CN=$who 2>/dev/null
         done
         printf 'subjectAltName=IP:{TRUSTED}\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > server.ext
         printf 'basicConstraints=CA:FALSE\\nextendedKeyUsage=clientAuth\\n' > client.ext
         for who in server client; do
           openssl x509 -req -in $who.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile $who.ext -out $who.crt 2>/dev/null
         done",
        dir = dir.display()
    );
    let out = run(
        {
            let mut c = Command::new("sh");
            c.args(["-c", &script]);
            c
        },
        None,
    );
    assert!(out.success(), "making test certificates with openssl:\n{}", out.describe());
}

#[test]
fn tls_registries_use_certs_d_plain_http_needs_insecure_registries_and_mirrors_serve_docker_hub_names() {
    let sb = Sandbox::start_configured(|sb| {
        let certs = sb.file("certs");
        make_certs(&certs);
        // certs.d sits beside daemon.json; the layout is Docker's (skopeo reads the same).
        let config_dir = sb.file("etc");
        let registry_dir = config_dir.join(format!("certs.d/{TRUSTED}:{TLS_PORT}"));
        fs::create_dir_all(&registry_dir).expect("creating certs.d");
        fs::copy(certs.join("ca.crt"), registry_dir.join("ca.crt")).expect("copying the CA");
        fs::copy(certs.join("client.crt"), registry_dir.join("client.cert")).expect("copying the client certificate");
        fs::copy(certs.join("client.key"), registry_dir.join("client.key")).expect("copying the client key");
        let daemon_json = config_dir.join("daemon.json");
        fs::write(
            &daemon_json,
            format!(
                r#"{{"insecure-registries": ["{TRUSTED}:{PLAIN_PORT}"], "registry-mirrors": ["http://127.0.0.1:{PLAIN_PORT}"],
                    "max-concurrent-downloads": 2}}"#
            ),
        )
        .expect("writing daemon.json");
        vec!["--config-file".into(), daemon_json.display().to_string()]
    });
    sandbox_sh_ok(&sb, &format!("ip addr add {TRUSTED}/32 dev lo && ip addr add {OTHER}/32 dev lo"));
    let certs = sb.file("certs");
    let tls = format!(
        "  tls:\n    certificate: {}\n    key: {}\n    clientcas:\n      - {}\n",
        certs.join("server.crt").display(),
        certs.join("server.key").display(),
        certs.join("ca.crt").display()
    );
    let _tls_registry = Registry::start_at(&sb, "0.0.0.0", TLS_PORT, &tls);
    let _plain_registry = Registry::start_at(&sb, "0.0.0.0", PLAIN_PORT, "");

    let img = images::busybox();
    // skopeo presents the client certificate from the same certs.d layout.
    let skopeo_certs = sb.file("etc").join(format!("certs.d/{TRUSTED}:{TLS_PORT}"));
    let archive = sb.file("box.tar");
    img.save_docker_archive(&["test/box:1"], &archive).expect("writing a test image archive");
    common::registry::skopeo(
        &sb,
        &format!(
            "copy --dest-cert-dir {} docker-archive:{} docker://{TRUSTED}:{TLS_PORT}/test/box:1",
            skopeo_certs.display(),
            archive.display()
        ),
    );
    push_to(&sb, &img, &format!("{TRUSTED}:{PLAIN_PORT}"), "test/box:1");
    push_to(&sb, &img, &format!("{TRUSTED}:{PLAIN_PORT}"), "library/busybox:latest");

    // HTTPS, verified with certs.d's CA, with the client certificate the registry demands.
    let tls_name = format!("{TRUSTED}:{TLS_PORT}/test/box:1");
    let out = sb.berth_ok(&["pull", &tls_name]);
    assert!(out.contains(&format!("Status: Downloaded newer image for {tls_name}")), "{out}");
    assert_eq!(sb.inspect(&tls_name)["Id"], img.id());
    assert_eq!(sb.berth_ok(&["run", "--rm", &tls_name, "echo", "over tls"]).trim(), "over tls");
    sb.berth_ok(&["rmi", &tls_name]);
    // The docker CLI's pull goes the same way through berth.
    let out = sb.docker_ok(&["pull", &tls_name]);
    assert!(out.contains("Pull complete"), "{out}");

    // The same registry under another address has no certs.d: its CA is unknown.
    let before = sb.image_ids();
    let out = sb.berth_fails(&["pull", &format!("{OTHER}:{TLS_PORT}/test/box:1")]);
    assert!(
        out.stderr.contains("x509: certificate signed by unknown authority")
            && out.stderr.contains(&format!("certs.d/{OTHER}:{TLS_PORT}/ca.crt")),
        "{}",
        out.describe()
    );

    // Plain HTTP: allowed for the registry daemon.json declares insecure ...
    let plain_name = format!("{TRUSTED}:{PLAIN_PORT}/test/box:1");
    sb.berth_ok(&["pull", &plain_name]);
    assert_eq!(sb.inspect(&plain_name)["Id"], img.id());
    // ... and refused, in Docker's words, for the same registry under a name that is not.
    let out = sb.docker(&["pull", &format!("{OTHER}:{PLAIN_PORT}/test/box:1")]);
    assert!(
        !out.success() && out.stderr.contains("http: server gave HTTP response to HTTPS client") && out.stderr.contains("--insecure-registry"),
        "{}",
        out.describe()
    );
    assert!(!sb.image_ids().iter().any(|id| !before.contains(id) && *id != img.id()), "a failed pull added an image");

    // A Docker Hub name comes from the mirror (no other way out of the sandbox).
    let out = sb.berth_ok(&["pull", "busybox"]);
    assert!(out.contains("Status: Downloaded newer image for busybox:latest"), "{out}");
    let busybox = sb.inspect("busybox");
    assert_eq!(busybox["Id"], img.id());
    let digests = busybox["RepoDigests"].as_array().cloned().unwrap_or_default();
    assert!(digests.iter().any(|d| d.as_str().is_some_and(|d| d.starts_with("busybox@sha256:"))), "{busybox}");
}

#[test]
fn a_bad_daemon_json_stops_the_daemon_with_its_words() {
    let dir = tempfile::tempdir().expect("tempdir");
    let start = |json: &str, extra: &[&str]| {
        let file = dir.path().join("daemon.json");
        fs::write(&file, json).expect("writing daemon.json");
        let mut cmd = Command::new(BERTH);
        cmd.arg("daemon")
            .arg("--config-file")
            .arg(&file)
            .arg("--root")
            .arg(dir.path().join("root"))
            .arg("--run")
            .arg(dir.path().join("run"))
            .args(extra)
            .env_remove("BERTH_HOST");
        let out = run(cmd, None);
        assert!(!out.success(), "the daemon started with {json}: {}", out.describe());
        out.stderr
    };
    let err = start(r#"{"insecure-registry": ["x:5000"]}"#, &[]);
    assert!(err.contains("don't match any configuration option berth supports: insecure-registry"), "{err}");
    assert!(err.contains("daemon.json"), "the error names the file: {err}");
    let err = start(r#"{"storage-driver": "vfs"}"#, &["--storage-driver", "overlay"]);
    assert!(err.contains("specified both as a flag and in the configuration file: storage-driver"), "{err}");
    let err = start(r#"{"registry-mirrors": ["mirror.example"]}"#, &[]);
    assert!(err.contains("invalid mirror"), "{err}");
    // Refused before anything was made.
    assert!(!dir.path().join("root").exists() && !dir.path().join("run").exists());
    let missing = Command::new(BERTH).args(["daemon", "--config-file", "/nonexistent/daemon.json"]).output().expect("running berth");
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success() && err.contains("cannot read the configuration file /nonexistent/daemon.json"), "{err}");
}
