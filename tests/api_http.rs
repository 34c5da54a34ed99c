//! A client speaks the Docker Engine API over the socket directly: ping
//! headers, version negotiation and JSON errors are what Docker clients expect.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use common::Sandbox;

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.0 request (the server closes after the response, so no chunking to undo).
fn request(sb: &Sandbox, method: &str, path: &str) -> Response {
    let mut s = UnixStream::connect(&sb.sock).unwrap_or_else(|e| panic!("connect {}: {e}", sb.sock.display()));
    write!(s, "{method} {path} HTTP/1.0\r\nHost: berth\r\n\r\n").expect("writing request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("reading response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no header end in response:\n{text}"));
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    Response { status, headers, body: body.to_string() }
}

#[test]
fn ping_answers_with_the_headers_the_docker_cli_reads() {
    let sb = Sandbox::start();
    for method in ["GET", "HEAD"] {
        let r = request(&sb, method, "/_ping");
        assert_eq!(r.status, 200, "{method} /_ping");
        assert_eq!(r.header("Api-Version"), Some("1.50"), "{method} /_ping headers: {:?}", r.headers);
        assert_eq!(r.header("Ostype"), Some("linux"));
        assert!(r.header("Builder-Version").is_some(), "Builder-Version header: {:?}", r.headers);
        assert!(r.header("Docker-Experimental").is_some(), "Docker-Experimental header: {:?}", r.headers);
        assert!(r.header("Swarm").is_some(), "Swarm header: {:?}", r.headers);
        if method == "GET" {
            assert_eq!(r.body, "OK");
        }
    }
    assert_eq!(request(&sb, "GET", "/v1.50/_ping").status, 200, "versioned route");
}

#[test]
fn api_versions_outside_1_24_to_1_50_are_a_400_with_a_json_message() {
    let sb = Sandbox::start();
    for path in ["/v1.24/version", "/v1.41/version", "/v1.50/version", "/version"] {
        let r = request(&sb, "GET", path);
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
        let v: serde_json::Value =
            serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{path} JSON ({e}): {}", r.body));
        assert_eq!(v["ApiVersion"], "1.50");
        assert_eq!(v["MinAPIVersion"], "1.24");
    }
    for path in ["/v1.23/version", "/v1.51/version", "/v2.0/info"] {
        let r = request(&sb, "GET", path);
        assert_eq!(r.status, 400, "GET {path}");
        let v: serde_json::Value =
            serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{path} error is JSON ({e}): {}", r.body));
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{path}: {}", r.body);
    }
}

#[test]
fn unknown_images_are_a_404_with_a_json_message() {
    let sb = Sandbox::start();
    let r = request(&sb, "GET", "/v1.50/images/nosuchimage/json");
    assert_eq!(r.status, 404, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("JSON ({e}): {}", r.body));
    let message = v["message"].as_str().unwrap_or_default();
    assert!(message.contains("No such image") && message.contains("nosuchimage"), "message: {message}");
    let r = request(&sb, "DELETE", "/v1.50/images/nosuchimage");
    assert_eq!(r.status, 404, "{}", r.body);
}

#[test]
fn go_clients_bodies_read_as_go_reads_them_and_old_api_versions_get_container_config() {
    let sb = Sandbox::start();
    sb.load_image(&common::images::busybox(), "busybox:latest");

    // docker-compose 1.29 (API 1.41) reads ContainerConfig whenever it recreates a container; dockerd 20.10
    // answers a zero-valued one (and "Container": "") for a loaded image, and from API 1.45 on neither.
    let r = request(&sb, "GET", "/v1.41/images/busybox/json");
    assert_eq!(r.status, 200, "{}", r.body);
    let old: serde_json::Value = serde_json::from_str(&r.body).expect("inspect is JSON");
    assert_eq!(old["Container"], "", "{old}");
    for (key, zero) in [("Hostname", serde_json::json!("")), ("Cmd", serde_json::Value::Null), ("Tty", serde_json::json!(false)), ("Labels", serde_json::Value::Null)] {
        assert_eq!(old["ContainerConfig"][key], zero, "ContainerConfig.{key}: {old}");
    }
    let new: serde_json::Value = serde_json::from_str(&request(&sb, "GET", "/v1.45/images/busybox/json").body).expect("JSON");
    assert!(new.get("ContainerConfig").is_none() && new.get("Container").is_none(), "{new}");

    // `null` where a bool, string or list is expected is the zero value, as Go's decoder reads it.
    let (status, body) = common::net::api_request(
        &sb,
        "POST",
        "/v1.41/containers/create?name=nulls",
        Some(
            r#"{"Image":"busybox","Cmd":["true"],"User":null,"Labels":{"tier":null},"ExposedPorts":{"80/tcp":null},
               "HostConfig":{"Mounts":[{"Type":"volume","Source":"nulldata","Target":"/data","ReadOnly":null}],
                             "PortBindings":null,"Binds":null}}"#,
        ),
    );
    assert_eq!(status, 201, "{body}");
    let c = sb.inspect_container("nulls");
    assert_eq!(c["Config"]["Labels"]["tier"], "", "{c}");
    assert!(c["Config"]["ExposedPorts"].get("80/tcp").is_some(), "{c}");
    assert_eq!(c["Mounts"][0]["Destination"], "/data", "{c}");
    assert_eq!(c["Mounts"][0]["RW"], true, "{c}");
}
