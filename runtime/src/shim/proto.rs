//! The shim's socket protocol: one JSON request line per connection, one
//! JSON response line back. After the response to `Attach` or `Exec` the
//! connection carries the stream (raw with a tty, else Docker's 8-byte
//! multiplexed frames); `Wait`/`ExecWait` answer when the process exits.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

use super::{ExecRequest, ExitInfo, ShimState};
use crate::RuntimeError;

/// The socket's name in the state dir.
pub const SOCKET: &str = "shim.sock";
/// The shim's PID file in the state dir.
pub const PID_FILE: &str = "shim.pid";
/// The exit record in the state dir.
pub const EXIT_FILE: &str = "exit.json";
/// The options file in the state dir.
pub const OPTIONS_FILE: &str = "shim.json";
/// The shim's own stderr, for errors that happen after it detached.
pub const LOG_FILE: &str = "shim.log";
/// The environment variable naming the fd on which the shim reports readiness.
pub const READY_FD_ENV: &str = "BERTH_SHIM_READY_FD";
/// Longest request or response line accepted (an exec's process is the largest).
pub const MAX_LINE: usize = 1 << 20;

/// A request to the shim.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Answered with `State`.
    State,
    /// Lets the created container run its command.
    Start,
    /// The connection becomes a stream joined to the container's stdio.
    Attach { stdin: bool, stdout: bool, stderr: bool },
    /// Sets the container's tty size.
    Resize { rows: u16, cols: u16 },
    /// Signals the container's init.
    Kill { signal: i32 },
    /// Answered with `Exit` once the container has exited.
    Wait,
    /// Answered with `Exec`; the connection becomes the process's stream.
    Exec { request: Box<ExecRequest> },
    /// Answered with `Exit` once the exec'd process has exited.
    ExecWait { exec_id: String },
    /// Sets an exec's tty size.
    ExecResize { exec_id: String, rows: u16, cols: u16 },
}

/// The shim's answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    /// Done (for `Attach`: the stream follows).
    Ok,
    /// The container's state.
    State { state: ShimState },
    /// How the container or exec ended.
    Exit { exit: ExitInfo },
    /// The exec'd process's PID; its stream follows.
    Exec { pid: i32 },
    /// The request failed.
    Error(Failure),
}

/// Why a request, or the shim's start, failed.
#[derive(Debug, Serialize, Deserialize)]
pub struct Failure {
    pub message: String,
    /// Set when the user's command cannot run: 127 not found, 126 not
    /// executable. Absent from a shim of an older berth, which then reads as
    /// any other failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_exit_code: Option<i32>,
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure { message, command_exit_code: None }
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Failure {
        Failure::from(message.to_string())
    }
}

impl From<RuntimeError> for Failure {
    fn from(e: RuntimeError) -> Failure {
        Failure { command_exit_code: e.command_exit_code(), message: e.to_string() }
    }
}

/// What the shim tells `spawn` on its ready pipe: the created container, or why not.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ready {
    /// The container process exists (PID), waiting for `Start`.
    Created { pid: i32 },
    /// The shim could not create it and has cleaned up.
    Failed(Failure),
}

/// Writes `value` as one JSON line.
pub fn write_line<T: Serialize>(w: &mut impl Write, value: &T) -> io::Result<()> {
    let mut buf = serde_json::to_vec(value).map_err(io::Error::other)?;
    buf.push(b'\n');
    w.write_all(&buf)
}

/// Reads one JSON line byte by byte, so that nothing after it (the stream
/// that follows `Attach`/`Exec`) is consumed. `Ok(None)` at EOF before any byte.
pub fn read_line<T: for<'de> Deserialize<'de>>(r: &mut impl Read) -> io::Result<Option<T>> {
    let mut buf = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    loop {
        match r.read(&mut byte) {
            Ok(0) if buf.is_empty() => return Ok(None),
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed mid-message")),
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => {
                if buf.len() >= MAX_LINE {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "message too long"));
                }
                buf.push(byte[0]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    serde_json::from_slice(&buf).map(Some).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Docker's multiplexed-stream frame header: stream (1 stdout, 2 stderr), 0, 0, 0, big-endian length.
pub fn frame_header(stream: u8, len: usize) -> [u8; 8] {
    let n = (len as u32).to_be_bytes();
    [stream, 0, 0, 0, n[0], n[1], n[2], n[3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_line_leaves_the_stream_after_it_unread() {
        let mut wire = Vec::new();
        write_line(&mut wire, &Request::Attach { stdin: true, stdout: true, stderr: false }).expect("write");
        wire.extend_from_slice(b"stdin bytes");
        let mut r = &wire[..];
        match read_line::<Request>(&mut r).expect("read") {
            Some(Request::Attach { stdin: true, stdout: true, stderr: false }) => {}
            other => panic!("got {other:?}"),
        }
        assert_eq!(r, b"stdin bytes");
        assert!(read_line::<Request>(&mut &b""[..]).expect("eof").is_none());
        assert!(read_line::<Request>(&mut &b"{\"type\":\"sta"[..]).is_err(), "a torn line is an error");
    }

    #[test]
    fn frame_headers_are_dockers() {
        assert_eq!(frame_header(1, 5), [1, 0, 0, 0, 0, 0, 0, 5]);
        assert_eq!(frame_header(2, 0x0102_0304), [2, 0, 0, 0, 1, 2, 3, 4]);
    }
}
