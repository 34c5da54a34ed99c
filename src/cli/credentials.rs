//! The client's stored registry credentials: `$DOCKER_CONFIG/config.json`
//! (default `~/.docker/config.json`), read and written in the docker CLI's
//! format, so `docker login` and `berth login` share one store.
//!
//! `auths: {"<server>": {"auth": base64(user:password)}}` holds them unless
//! `credHelpers` (per registry) or `credsStore` (all) name a helper, then
//! `docker-credential-<name> get|store|erase` keeps them, as the docker CLI
//! does. Every other key of the file is kept as it is. The file is written
//! whole to a temporary file and renamed over, with mode 0600: a crash never
//! leaves half a file, and no one else may read the secrets.
//!
//! Not the `docker_credential` crate: it only reads (login and logout must
//! write and erase with the same key matching), so one small module does both.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use berth_model::auth::{auth_key_hostname, auth_key_of_registry};
use berth_model::{AuthConfig, ImageRef};
use serde_json::{Map, Value};

/// The username a helper stores an identity token under (the docker CLI's convention).
const TOKEN_USERNAME: &str = "<token>";

/// The client config dir: `$DOCKER_CONFIG`, else `~/.docker`.
pub fn config_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).ok_or_else(|| {
        anyhow!("cannot find the client config: neither DOCKER_CONFIG nor HOME is set (set DOCKER_CONFIG to a directory)")
    })?;
    Ok(PathBuf::from(home).join(".docker"))
}

/// `config.json`, as read; what berth does not know is kept untouched.
pub struct ConfigFile {
    path: PathBuf,
    doc: Map<String, Value>,
}

impl ConfigFile {
    /// Reads `config.json` in the client config dir; a missing file is an empty config.
    pub fn load() -> Result<ConfigFile> {
        Self::load_from(&config_dir()?.join("config.json"))
    }

    fn load_from(path: &Path) -> Result<ConfigFile> {
        let doc = match std::fs::read(path) {
            Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Map::new(),
            Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(doc)) => doc,
                Ok(_) => bail!("{} is not a JSON object; fix or remove it", path.display()),
                Err(e) => bail!("{} is not valid JSON ({e}); fix or remove it", path.display()),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        Ok(ConfigFile { path: path.to_path_buf(), doc })
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The credential helper for `key`'s registry: `credHelpers` first, then `credsStore`.
    fn helper_for(&self, key: &str) -> Option<String> {
        let host = auth_key_hostname(key);
        let per_registry = self.doc.get("credHelpers").and_then(Value::as_object).and_then(|helpers| {
            helpers.iter().find(|(k, _)| k.as_str() == key || auth_key_hostname(k) == host).and_then(|(_, v)| v.as_str())
        });
        per_registry
            .or_else(|| self.doc.get("credsStore").and_then(Value::as_str))
            .filter(|h| !h.is_empty())
            .map(str::to_string)
    }

    /// Whether credentials for `key` go to a helper rather than into this file.
    pub fn uses_helper(&self, key: &str) -> bool {
        self.helper_for(key).is_some()
    }

    /// The `auths` entry for `key`: the exact key, else one naming the same host.
    fn auths_key(&self, key: &str) -> Option<String> {
        let auths = self.doc.get("auths").and_then(Value::as_object)?;
        if auths.contains_key(key) {
            return Some(key.to_string());
        }
        let host = auth_key_hostname(key);
        auths.keys().find(|k| auth_key_hostname(k) == host).cloned()
    }

    /// The stored credentials for `key` (`localhost:5000`, or Docker Hub's `https://index.docker.io/v1/`).
    pub fn get(&self, key: &str) -> Result<Option<AuthConfig>> {
        if let Some(helper) = self.helper_for(key) {
            return helper_get(&helper, key);
        }
        let Some(found) = self.auths_key(key) else { return Ok(None) };
        let entry = self.doc.get("auths").and_then(|a| a.get(&found)).cloned().unwrap_or(Value::Null);
        let mut config: AuthConfig = serde_json::from_value(entry)
            .with_context(|| format!("the credentials for {found} in {} are not what the docker CLI writes", self.path.display()))?;
        if let Some((user, password)) = config.username_password() {
            config.username = user;
            config.password = password;
            config.auth.clear();
        }
        config.serveraddress = key.to_string();
        Ok((!config.is_anonymous()).then_some(config))
    }

    /// Stores `config` for `key`, in the helper or in `auths`, and writes the file.
    pub fn store(&mut self, key: &str, config: &AuthConfig) -> Result<()> {
        if let Some(helper) = self.helper_for(key) {
            return helper_store(&helper, key, config);
        }
        let mut entry = Map::new();
        if let Some((user, password)) = config.username_password().filter(|_| config.identitytoken.is_empty()) {
            let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            entry.insert("auth".into(), Value::String(auth));
        } else if !config.identitytoken.is_empty() {
            let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:", config.username));
            entry.insert("auth".into(), Value::String(auth));
            entry.insert("identitytoken".into(), Value::String(config.identitytoken.clone()));
        }
        let auths = self.doc.entry("auths").or_insert_with(|| Value::Object(Map::new()));
        if !auths.is_object() {
            *auths = Value::Object(Map::new());
        }
        if let Some(auths) = auths.as_object_mut() {
            auths.insert(key.to_string(), Value::Object(entry));
        }
        self.save()
    }

    /// Removes what is stored for `key` (in the helper, and every `auths`
    /// entry naming its host) and writes the file.
    pub fn erase(&mut self, key: &str) -> Result<()> {
        if let Some(helper) = self.helper_for(key) {
            helper_erase(&helper, key)?;
        }
        let host = auth_key_hostname(key).to_string();
        if let Some(auths) = self.doc.get_mut("auths").and_then(Value::as_object_mut) {
            auths.retain(|k, _| k != key && auth_key_hostname(k) != host);
        }
        self.save()
    }

    /// Writes the file atomically (temporary file, then rename) with mode 0600.
    fn save(&self) -> Result<()> {
        let dir = self.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut text = Vec::new();
        let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
        let mut ser = serde_json::Serializer::with_formatter(&mut text, formatter);
        serde::Serialize::serialize(&self.doc, &mut ser).context("encoding the client config")?;
        let tmp = dir.join(format!(".config.json.berth-{}", std::process::id()));
        let written = (|| -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
            // An existing temp file keeps its mode through `open`; make sure.
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            f.write_all(&text)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e).with_context(|| format!("cannot write {}", self.path.display()));
        }
        Ok(())
    }
}

/// The stored credentials for `image`'s registry, as the docker CLI finds
/// them for a pull. A config that cannot be read is reported and the pull
/// goes on anonymously.
pub fn for_image(image: &ImageRef) -> Option<AuthConfig> {
    let key = auth_key_of_registry(image.registry());
    let found = ConfigFile::load().and_then(|c| c.get(&key));
    match found {
        Ok(found) => found,
        Err(e) => {
            eprintln!("WARNING: cannot read the stored credentials for {key}: {e:#}");
            None
        }
    }
}

/// The `X-Registry-Auth` header for a pull or push of `image`, with the
/// stored credentials of its registry (none when nothing is stored).
pub fn registry_auth_header(image: &ImageRef) -> Option<(&'static str, String)> {
    for_image(image).map(|c| ("X-Registry-Auth", c.to_registry_auth_header()))
}

/// Runs `docker-credential-<helper> <action>` with `input` on stdin; returns its stdout.
fn run_helper(helper: &str, action: &str, input: &str) -> Result<std::process::Output> {
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run the credential helper {program} (named by the client config): is it installed?"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).with_context(|| format!("cannot talk to {program}"))?;
    }
    child.wait_with_output().with_context(|| format!("{program} {action} did not finish"))
}

/// What a helper printed on failure (helpers print their error on stdout).
fn helper_error(out: &std::process::Output) -> String {
    let text = if out.stdout.is_empty() { &out.stderr } else { &out.stdout };
    String::from_utf8_lossy(text).trim().to_string()
}

fn helper_get(helper: &str, key: &str) -> Result<Option<AuthConfig>> {
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    let out = run_helper(helper, "get", key)?;
    if !out.status.success() {
        let message = helper_error(&out);
        // The helper protocol's "nothing stored" answer.
        if message.contains("credentials not found") {
            return Ok(None);
        }
        bail!("docker-credential-{helper} get {key}: {message}");
    }
    let answer: Answer = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("docker-credential-{helper} get {key} answered what is not the helper protocol's JSON"))?;
    let mut config = AuthConfig { serveraddress: key.to_string(), ..Default::default() };
    if answer.username == TOKEN_USERNAME {
        config.identitytoken = answer.secret;
    } else {
        config.username = answer.username;
        config.password = answer.secret;
    }
    Ok((!config.is_anonymous()).then_some(config))
}

fn helper_store(helper: &str, key: &str, config: &AuthConfig) -> Result<()> {
    let (username, secret) = if config.identitytoken.is_empty() {
        config.username_password().unwrap_or_default()
    } else {
        (TOKEN_USERNAME.to_string(), config.identitytoken.clone())
    };
    let input = serde_json::json!({"ServerURL": key, "Username": username, "Secret": secret}).to_string();
    let out = run_helper(helper, "store", &input)?;
    if !out.status.success() {
        bail!("error storing credentials - err: docker-credential-{helper} store: {}", helper_error(&out));
    }
    Ok(())
}

fn helper_erase(helper: &str, key: &str) -> Result<()> {
    let out = run_helper(helper, "erase", key)?;
    if !out.status.success() && !helper_error(&out).contains("credentials not found") {
        bail!("docker-credential-{helper} erase {key}: {}", helper_error(&out));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_and_logout_keep_the_rest_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"psFormat":"table {{.ID}}","auths":{"other.example":{"auth":"eDp5"}}}"#).unwrap();
        let mut config = ConfigFile::load_from(&path).unwrap();
        let alice = AuthConfig { username: "alice".into(), password: "secret".into(), ..Default::default() };
        config.store("localhost:5000", &alice).unwrap();
        let written: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(written["auths"]["localhost:5000"]["auth"], "YWxpY2U6c2VjcmV0");
        assert_eq!(written["psFormat"], "table {{.ID}}");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);

        let again = ConfigFile::load_from(&path).unwrap();
        let got = again.get("http://localhost:5000/v2/").unwrap().unwrap();
        assert_eq!(got.username_password(), Some(("alice".into(), "secret".into())));
        assert_eq!(again.get("elsewhere:5000").unwrap(), None);

        let mut again = again;
        again.erase("localhost:5000").unwrap();
        let written: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(written["auths"], serde_json::json!({"other.example": {"auth": "eDp5"}}));
        assert_eq!(written["psFormat"], "table {{.ID}}");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("config.json")], "no temporary file is left");
    }

    #[test]
    fn a_missing_helper_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"credHelpers":{"localhost:5000":"berth-test-missing"}}"#).unwrap();
        let config = ConfigFile::load_from(&path).unwrap();
        let err = format!("{:#}", config.get("localhost:5000").unwrap_err());
        assert!(err.contains("docker-credential-berth-test-missing"), "{err}");
        assert_eq!(config.get("other:5000").unwrap(), None, "other registries are not the helper's");
    }
}
