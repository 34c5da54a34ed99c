//! A user logs in to private registries and pulls from them: Debian's
//! `docker-registry` (distribution 2.8) with `auth: htpasswd` (basic auth)
//! and with `auth: token` (a token issuer written in the test signs the
//! JWTs the registry checks), through the docker CLI and berth's CLI.
//! Credentials live in the sandbox's `DOCKER_CONFIG/config.json`.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::images::{self, TestImage};
use common::registry::{skopeo, Registry, PORT};
use common::token_issuer::{TokenIssuer, PASSWORD, REFRESH_TOKEN, USER};
use common::net::sandbox_sh_ok as sh;
use common::Sandbox;

/// A registry with `auth: htpasswd` for alice:secret (bcrypt, as the registry requires).
fn htpasswd_registry(sb: &Sandbox) -> Registry {
    let htpasswd = sb.file("htpasswd");
    let line = sh(sb, &format!("htpasswd -Bbn {USER} {PASSWORD}"));
    fs::write(&htpasswd, line.trim()).expect("writing the htpasswd file");
    Registry::start_with(sb, &format!("auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n", htpasswd.display()))
}

/// Puts `img` into the registry as alice (skopeo, the second client).
fn push_as_alice(sb: &Sandbox, img: &TestImage, name: &str) {
    let archive = sb.file(&format!("{}.tar", name.replace(['/', ':'], "_")));
    img.save_docker_archive(&[name], &archive).expect("writing a test image archive");
    skopeo(
        sb,
        &format!(
            "copy --dest-tls-verify=false --dest-creds {USER}:{PASSWORD} docker-archive:{} docker://localhost:{PORT}/{name}",
            archive.display()
        ),
    );
}

/// The client config as JSON (`null` when there is no file).
fn config_json(sb: &Sandbox) -> serde_json::Value {
    match fs::read(sb.docker_config().join("config.json")) {
        Ok(bytes) => serde_json::from_slice(&bytes).expect("config.json is JSON"),
        Err(_) => serde_json::Value::Null,
    }
}

fn stdin_file(sb: &Sandbox, name: &str, text: &str) -> std::path::PathBuf {
    let path = sb.file(name);
    fs::write(&path, text).expect("writing a stdin file");
    path
}

#[test]
fn docker_cli_logs_in_pulls_a_private_image_and_logs_out() {
    let sb = Sandbox::start();
    let _registry = htpasswd_registry(&sb);
    let img = images::busybox();
    push_as_alice(&sb, &img, "test/private:1");
    let name = format!("localhost:{PORT}/test/private:1");

    let out = sb.docker(&["pull", &name]);
    assert!(!out.success(), "a private image pulled without credentials:\n{}", out.describe());
    assert!(
        out.stderr.contains(&format!("Get \"http://localhost:{PORT}/v2/test/private/manifests/1\": no basic auth credentials")),
        "{}",
        out.describe()
    );

    let out = sb.docker(&["login", "-u", USER, "-p", "wrong", &format!("localhost:{PORT}")]);
    assert!(!out.success(), "{}", out.describe());
    assert!(
        out.stderr.contains(&format!(
            "Error response from daemon: login attempt to http://localhost:{PORT}/v2/ failed with status: 401 Unauthorized"
        )),
        "{}",
        out.describe()
    );
    assert!(config_json(&sb)["auths"].get(format!("localhost:{PORT}")).is_none(), "a failed login stored something: {}", config_json(&sb));

    let password = stdin_file(&sb, "password", &format!("{PASSWORD}\n"));
    let out = sb.docker_stdin(&["login", "-u", USER, "--password-stdin", &format!("localhost:{PORT}")], &password);
    assert!(out.success() && out.stdout.contains("Login Succeeded"), "{}", out.describe());
    assert!(config_json(&sb)["auths"].get(format!("localhost:{PORT}")).is_some(), "{}", config_json(&sb));

    let out = sb.docker_ok(&["pull", &name]);
    assert!(out.contains(&format!("Status: Downloaded newer image for {name}")), "{out}");
    assert_eq!(sb.inspect(&name)["Id"], img.id(), "the pulled image is the pushed one");

    let out = sb.docker_ok(&["logout", &format!("localhost:{PORT}")]);
    assert!(out.contains(&format!("Removing login credentials for localhost:{PORT}")), "{out}");
    assert!(config_json(&sb)["auths"].get(format!("localhost:{PORT}")).is_none(), "{}", config_json(&sb));
    sb.docker_ok(&["rmi", &name]);
    let out = sb.docker(&["pull", &name]);
    assert!(!out.success() && out.stderr.contains("no basic auth credentials"), "{}", out.describe());
}

#[test]
fn berth_logs_in_with_password_stdin_pulls_runs_and_logs_out() {
    let sb = Sandbox::start();
    let _registry = htpasswd_registry(&sb);
    let img = images::busybox();
    push_as_alice(&sb, &img, "test/private:1");
    let name = format!("localhost:{PORT}/test/private:1");
    let server = format!("localhost:{PORT}");
    // Keys berth does not know stay as they are.
    fs::write(sb.docker_config().join("config.json"), r#"{"psFormat": "table {{.ID}}"}"#).expect("writing config.json");

    let before = sb.image_ids();
    let out = sb.berth_fails(&["pull", &name]);
    assert!(
        out.stderr.contains(&format!("Get \"http://localhost:{PORT}/v2/test/private/manifests/1\": no basic auth credentials")),
        "{}",
        out.describe()
    );
    assert_eq!(sb.image_ids(), before, "a refused pull leaves nothing");

    let out = sb.berth_fails(&["login", "-u", USER, "-p", "wrong", &server]);
    assert!(out.stderr.contains("WARNING! Using --password via the CLI is insecure. Use --password-stdin."), "{}", out.describe());
    assert!(
        out.stderr.contains(&format!("login attempt to http://localhost:{PORT}/v2/ failed with status: 401 Unauthorized")),
        "{}",
        out.describe()
    );
    assert_eq!(config_json(&sb), serde_json::json!({"psFormat": "table {{.ID}}"}), "a failed login stores nothing");

    // Docker Hub (no server given) is out of the sandbox's reach: the error names where berth went, nothing stored.
    let out = sb.berth_fails(&["login", "-u", USER, "-p", PASSWORD]);
    assert!(out.stderr.contains("https://registry-1.docker.io/v2/"), "{}", out.describe());
    assert_eq!(config_json(&sb), serde_json::json!({"psFormat": "table {{.ID}}"}), "a failed login stores nothing");

    let password = stdin_file(&sb, "password", &format!("{PASSWORD}\n"));
    let out = sb.berth_stdin(&["login", "-u", USER, "--password-stdin", &server], &password);
    assert!(out.success(), "{}", out.describe());
    assert_eq!(out.stdout.trim(), "Login Succeeded");
    let config = config_json(&sb);
    assert_eq!(config["auths"][&server]["auth"], "YWxpY2U6c2VjcmV0", "base64(alice:secret), as docker stores it: {config}");
    assert_eq!(config["psFormat"], "table {{.ID}}");
    let mode = fs::metadata(sb.docker_config().join("config.json")).expect("config.json exists").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "credentials are readable by their owner only");

    let out = sb.berth_ok(&["pull", &name]);
    assert!(out.contains(&format!("Status: Downloaded newer image for {name}")), "{out}");
    assert_eq!(sb.inspect(&name)["Id"], img.id());
    let ran = sb.berth_ok(&["run", "--rm", &name, "sh", "-c", "echo private-ran"]);
    assert_eq!(ran.trim(), "private-ran");

    // What berth stored, the docker CLI uses (one store for both).
    sb.berth_ok(&["rmi", &name]);
    sb.docker_ok(&["pull", &name]);

    // Pushing takes the same credentials (authorized before the upload, whose body is sent once).
    let pushed = format!("{server}/test/pushed:1");
    sb.berth_ok(&["tag", &name, &pushed]);
    let out = sb.berth_ok(&["push", &pushed]);
    assert!(out.contains("1: digest: sha256:"), "{out}");
    let out = sb.docker_ok(&["push", &pushed]);
    assert!(out.contains("Layer already exists"), "{out}");

    let out = sb.berth_ok(&["logout", &server]);
    assert_eq!(out.trim(), format!("Removing login credentials for {server}"));
    assert_eq!(config_json(&sb), serde_json::json!({"psFormat": "table {{.ID}}", "auths": {}}));
    sb.berth_ok(&["rmi", &name]);
    let out = sb.berth_fails(&["pull", &name]);
    assert!(out.stderr.contains("no basic auth credentials"), "{}", out.describe());
    let out = sb.berth_fails(&["push", &pushed]);
    assert!(out.stderr.contains("no basic auth credentials"), "a push without login is refused: {}", out.describe());
}

#[test]
fn token_registry_anonymous_and_credentialed_pulls_and_token_refresh() {
    let sb = Sandbox::start();
    // Tokens last 3 s at the registry, but the issuer says 300: berth keeps
    // using a token the registry refuses, and must get a new one on the 401.
    let issuer = TokenIssuer::start(&sb, 3, 300);
    let _registry = Registry::start_with(&sb, &issuer.registry_config());
    let img = images::busybox();
    push_as_alice(&sb, &img, "public/box:1");
    push_as_alice(&sb, &img, "private/box:1");
    let public = format!("localhost:{PORT}/public/box:1");
    let private = format!("localhost:{PORT}/private/box:1");
    let server = format!("localhost:{PORT}");

    // Anonymous: the issuer grants pull of public/* to anyone.
    let out = sb.berth_ok(&["pull", &public]);
    assert!(out.contains(&format!("Status: Downloaded newer image for {public}")), "{out}");
    let anonymous: Vec<_> = issuer.requests().into_iter().filter(|r| r.user.is_none()).collect();
    assert!(
        anonymous.iter().any(|r| r.granted && r.scopes.contains(&"repository:public/box:pull".to_string())),
        "berth asked for no anonymous pull token: {anonymous:?}"
    );

    let out = sb.berth_fails(&["pull", &private]);
    assert!(
        out.stderr.contains(&format!(
            "pull access denied for localhost:{PORT}/private/box, repository does not exist or may require 'docker login'"
        )),
        "{}",
        out.describe()
    );

    let out = sb.berth_fails(&["login", "-u", USER, "-p", "wrong", &server]);
    assert!(out.stderr.contains("invalid username or password"), "the token service's refusal is shown:\n{}", out.describe());
    let password = stdin_file(&sb, "password", &format!("{PASSWORD}\n"));
    let out = sb.berth_stdin(&["login", "-u", USER, "--password-stdin", &server], &password);
    assert!(out.success() && out.stdout.contains("Login Succeeded"), "{}", out.describe());
    // The token service gave an identity token: it is kept instead of the password, as docker keeps it.
    let stored = config_json(&sb)["auths"][&server].clone();
    assert_eq!(stored["identitytoken"], REFRESH_TOKEN, "{stored}");
    assert_eq!(stored["auth"], "YWxpY2U6", "base64(alice:), no password: {stored}");

    // With the identity token: exchanged for an access token by the OAuth2 POST.
    let out = sb.berth_ok(&["pull", &private]);
    assert!(out.contains(&format!("Status: Downloaded newer image for {private}")), "{out}");
    let granted = |scope: &str| {
        issuer.requests().iter().filter(|r| r.granted && r.refresh && r.scopes.iter().any(|s| s == scope)).count()
    };
    let before = granted("repository:private/box:pull");
    assert!(before >= 1, "no token was got with alice's identity token: {:?}", issuer.requests());

    // The cached token has expired at the registry: the next pull is refused
    // (401), gets a fresh token and succeeds.
    std::thread::sleep(std::time::Duration::from_secs(4));
    sb.berth_ok(&["rmi", &private]);
    let out = sb.berth_ok(&["pull", &private]);
    assert!(out.contains(&format!("Status: Downloaded newer image for {private}")), "{out}");
    assert!(granted("repository:private/box:pull") > before, "no new token after the old one expired: {:?}", issuer.requests());

    // The docker CLI through berth: login follows the token flow, pull sends the stored credentials.
    let out = sb.docker_stdin(&["login", "-u", USER, "--password-stdin", &server], &password);
    assert!(out.success() && out.stdout.contains("Login Succeeded"), "{}", out.describe());
    sb.berth_ok(&["rmi", &private]);
    let out = sb.docker_ok(&["pull", &private]);
    assert!(out.contains(&format!("Status: Downloaded newer image for {private}")), "{out}");
}

#[test]
fn a_credential_helper_keeps_what_login_stores_and_pulls_use_it() {
    let sb = Sandbox::start();
    let _registry = htpasswd_registry(&sb);
    let img = images::busybox();
    push_as_alice(&sb, &img, "test/private:1");
    let name = format!("localhost:{PORT}/test/private:1");
    let server = format!("localhost:{PORT}");

    // `docker-credential-berthtest`: the helper protocol over a file, found on PATH as the docker CLI finds helpers.
    let bin = sb.file("helper-bin");
    fs::create_dir_all(&bin).expect("creating the helper's dir");
    let store = sb.file("helper-store.json");
    let helper = bin.join("docker-credential-berthtest");
    fs::write(
        &helper,
        format!(
            "#!/bin/sh\ncase \"$1\" in\n  get) read server; [ -f {s} ] && exec cat {s}; echo 'credentials not found in native keychain'; exit 1;;\n  store) cat > {s};;\n  erase) rm -f {s};;\nesac\n",
            s = store.display()
        ),
    )
    .expect("writing the helper");
    fs::set_permissions(&helper, fs::Permissions::from_mode(0o755)).expect("making the helper executable");
    let path = std::env::var("PATH").unwrap_or_default();
    // Only adds a directory: other tests' commands still find what they found.
    std::env::set_var("PATH", format!("{}:{path}", bin.display()));
    fs::write(sb.docker_config().join("config.json"), r#"{"credsStore": "berthtest"}"#).expect("writing config.json");

    let password = stdin_file(&sb, "password", &format!("{PASSWORD}\n"));
    let out = sb.berth_stdin(&["login", "-u", USER, "--password-stdin", &server], &password);
    assert!(out.success() && out.stdout.contains("Login Succeeded"), "{}", out.describe());
    assert!(!out.stderr.contains("stored unencrypted"), "the helper keeps them, not the file:\n{}", out.describe());
    let kept: serde_json::Value = serde_json::from_slice(&fs::read(&store).expect("the helper stored nothing")).expect("helper JSON");
    assert_eq!(kept, serde_json::json!({"ServerURL": server, "Username": USER, "Secret": PASSWORD}));
    assert!(config_json(&sb)["auths"].get(&server).is_none(), "no password in config.json: {}", config_json(&sb));

    let out = sb.berth_ok(&["pull", &name]);
    assert!(out.contains(&format!("Status: Downloaded newer image for {name}")), "{out}");

    sb.berth_ok(&["logout", &server]);
    assert!(!store.exists(), "logout erased nothing from the helper");
    sb.berth_ok(&["rmi", &name]);
    let out = sb.berth_fails(&["pull", &name]);
    assert!(out.stderr.contains("no basic auth credentials"), "{}", out.describe());
}
