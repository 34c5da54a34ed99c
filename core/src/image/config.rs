//! Image configs berth writes itself (`import`) and the Dockerfile-style
//! `--change` instructions applied to them.

use serde_json::{json, Map, Value};

use crate::error::EngineError;

/// Splits `s` into words at unquoted whitespace, removing quotes and
/// backslash escapes the way the Dockerfile parser does for ENV and LABEL.
fn words(s: &str, what: &str) -> Result<Vec<String>, EngineError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, '"') | (None, '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => cur.push(c),
            (_, '\\') => {
                in_word = true;
                match chars.next() {
                    Some(n) => cur.push(n),
                    None => cur.push('\\'),
                }
            }
            (_, c) => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if quote.is_some() {
        return Err(EngineError::InvalidArgument(format!("{what}: unmatched quote in {s:?}")));
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// `KEY=VALUE ...` pairs, or the legacy `KEY VALUE` form when the first word has no `=`.
fn pairs(args: &str, what: &str) -> Result<Vec<(String, String)>, EngineError> {
    let ws = words(args, what)?;
    if ws.is_empty() {
        return Err(EngineError::InvalidArgument(format!("{what} requires at least one argument")));
    }
    if !ws[0].contains('=') {
        let (key, rest) = args.trim().split_once(char::is_whitespace).ok_or_else(|| {
            EngineError::InvalidArgument(format!("{what} requires KEY=VALUE or KEY VALUE, got {args:?}"))
        })?;
        return Ok(vec![(key.to_string(), rest.trim().to_string())]);
    }
    ws.into_iter()
        .map(|w| match w.split_once('=') {
            Some(("", _)) => Err(EngineError::InvalidArgument(format!("{what}: empty name in {w:?}"))),
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => Err(EngineError::InvalidArgument(format!("{what}: {w:?} is not KEY=VALUE"))),
        })
        .collect()
}

/// The exec form (`["a", "b"]`) as a list, or the shell form run by `/bin/sh -c`.
fn command(args: &str) -> Vec<String> {
    let t = args.trim();
    if t.starts_with('[') {
        if let Ok(v) = serde_json::from_str::<Vec<String>>(t) {
            return v;
        }
    }
    vec!["/bin/sh".into(), "-c".into(), t.to_string()]
}

fn obj<'a>(config: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = config.entry(key.to_string()).or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    match slot {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

/// Applies Dockerfile instructions (`CMD ["sh"]`, `ENV A=b`, ...) to a
/// container config object (the image config's `config`), as
/// `docker import --change` and `docker commit --change` do.
pub fn apply_changes(config: &mut Map<String, Value>, changes: &[String]) -> Result<(), EngineError> {
    for change in changes {
        let change = change.trim();
        if change.is_empty() {
            continue;
        }
        let (instr, args) = match change.split_once(char::is_whitespace) {
            Some((i, a)) => (i, a.trim()),
            None => (change, ""),
        };
        let upper = instr.to_ascii_uppercase();
        let needs_args = |name: &str| {
            if args.is_empty() {
                Err(EngineError::InvalidArgument(format!("{name} requires at least one argument")))
            } else {
                Ok(())
            }
        };
        match upper.as_str() {
            "CMD" => {
                needs_args("CMD")?;
                config.insert("Cmd".into(), json!(command(args)));
            }
            "ENTRYPOINT" => {
                needs_args("ENTRYPOINT")?;
                config.insert("Entrypoint".into(), json!(command(args)));
            }
            "ENV" => {
                let mut env: Vec<String> = config
                    .get("Env")
                    .and_then(|v| v.as_array())
                    .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
                    .unwrap_or_default();
                for (k, v) in pairs(args, "ENV")? {
                    let entry = format!("{k}={v}");
                    match env.iter_mut().find(|e| e.split_once('=').map(|(ek, _)| ek) == Some(k.as_str())) {
                        Some(e) => *e = entry,
                        None => env.push(entry),
                    }
                }
                config.insert("Env".into(), json!(env));
            }
            "LABEL" => {
                for (k, v) in pairs(args, "LABEL")? {
                    obj(config, "Labels").insert(k, Value::String(v));
                }
            }
            "WORKDIR" => {
                needs_args("WORKDIR")?;
                let dir = if args.starts_with('/') {
                    args.to_string()
                } else {
                    let base = config.get("WorkingDir").and_then(|v| v.as_str()).unwrap_or("/");
                    format!("{}/{}", base.trim_end_matches('/'), args)
                };
                config.insert("WorkingDir".into(), Value::String(dir));
            }
            "USER" => {
                needs_args("USER")?;
                config.insert("User".into(), Value::String(args.to_string()));
            }
            "STOPSIGNAL" => {
                needs_args("STOPSIGNAL")?;
                config.insert("StopSignal".into(), Value::String(args.to_string()));
            }
            "EXPOSE" => {
                needs_args("EXPOSE")?;
                for p in words(args, "EXPOSE")? {
                    let (port, proto) = p.split_once('/').unwrap_or((&p, "tcp"));
                    let proto = proto.to_ascii_lowercase();
                    let valid_port = |s: &str| s.parse::<u16>().is_ok_and(|n| n > 0);
                    let ok_range = match port.split_once('-') {
                        Some((a, b)) => valid_port(a) && valid_port(b),
                        None => valid_port(port),
                    };
                    if !ok_range || !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
                        return Err(EngineError::InvalidArgument(format!(
                            "EXPOSE: invalid port {p:?} (expected PORT[/tcp|udp|sctp])"
                        )));
                    }
                    obj(config, "ExposedPorts").insert(format!("{port}/{proto}"), json!({}));
                }
            }
            "VOLUME" => {
                needs_args("VOLUME")?;
                let vols = match serde_json::from_str::<Vec<String>>(args) {
                    Ok(v) => v,
                    Err(_) => words(args, "VOLUME")?,
                };
                for v in vols {
                    if v.is_empty() {
                        return Err(EngineError::InvalidArgument("VOLUME specified can not be an empty string".into()));
                    }
                    obj(config, "Volumes").insert(v, json!({}));
                }
            }
            "ONBUILD" => {
                return Err(EngineError::InvalidArgument(
                    "ONBUILD is not supported in --change: berth does not build images from this one yet".into(),
                ))
            }
            "HEALTHCHECK" => {
                return Err(EngineError::InvalidArgument("HEALTHCHECK is not supported in --change yet".into()))
            }
            _ => return Err(EngineError::InvalidArgument(format!("{instr} is not a valid change command"))),
        }
    }
    Ok(())
}

/// The config of an imported one-layer image, as `docker import` writes it.
pub(crate) fn import_config(
    os: &str,
    arch: &str,
    variant: Option<&str>,
    container_config: Map<String, Value>,
    diff_id: &berth_model::Digest,
    created: &str,
    comment: &str,
) -> Vec<u8> {
    let mut c = json!({
        "architecture": arch,
        "comment": comment,
        "config": Value::Object(container_config),
        "created": created,
        "history": [{ "created": created, "comment": comment }],
        "os": os,
        "rootfs": { "type": "layers", "diff_ids": [diff_id.to_string()] },
    });
    if let (Some(v), Some(m)) = (variant, c.as_object_mut()) {
        m.insert("variant".into(), Value::String(v.to_string()));
    }
    // serde_json writes object keys sorted, so the same input gives the same image ID.
    serde_json::to_vec(&c).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(changes: &[&str]) -> Result<Map<String, Value>, EngineError> {
        let mut m = Map::new();
        apply_changes(&mut m, &changes.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
        Ok(m)
    }

    #[test]
    fn cmd_and_entrypoint_in_both_forms() {
        let m = apply(&[r#"CMD ["sh", "-c", "echo hi"]"#, "ENTRYPOINT /bin/init --flag"]).unwrap();
        assert_eq!(m["Cmd"], json!(["sh", "-c", "echo hi"]));
        assert_eq!(m["Entrypoint"], json!(["/bin/sh", "-c", "/bin/init --flag"]));
    }

    #[test]
    fn env_label_workdir_user_expose_volume_stopsignal() {
        let m = apply(&[
            r#"ENV A=1 B="two words""#,
            "ENV LEGACY some value",
            "ENV A=3",
            r#"LABEL org.example="x y" z=1"#,
            "WORKDIR /app",
            "WORKDIR sub",
            "USER 1000:1000",
            "EXPOSE 80 53/udp",
            r#"VOLUME ["/data"]"#,
            "VOLUME /logs /cache",
            "STOPSIGNAL SIGTERM",
        ])
        .unwrap();
        assert_eq!(m["Env"], json!(["A=3", "B=two words", "LEGACY=some value"]));
        assert_eq!(m["Labels"], json!({"org.example": "x y", "z": "1"}));
        assert_eq!(m["WorkingDir"], json!("/app/sub"));
        assert_eq!(m["User"], json!("1000:1000"));
        assert_eq!(m["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
        assert_eq!(m["Volumes"], json!({"/data": {}, "/logs": {}, "/cache": {}}));
        assert_eq!(m["StopSignal"], json!("SIGTERM"));
    }

    #[test]
    fn unknown_and_onbuild_are_refused_clearly() {
        let e = apply(&["FOO bar"]).unwrap_err();
        assert_eq!(e.to_string(), "FOO is not a valid change command");
        assert_eq!(e.kind(), crate::error::ErrorKind::InvalidArgument);
        assert!(apply(&["ONBUILD RUN x"]).unwrap_err().to_string().contains("ONBUILD"));
        assert!(apply(&["EXPOSE 99999"]).is_err());
        assert!(apply(&["CMD"]).is_err());
    }
}
