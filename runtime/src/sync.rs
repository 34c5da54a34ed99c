//! The typed channel between the runtime (parent) and the container process
//! it creates: a SOCK_SEQPACKET socketpair carrying one JSON message per
//! packet. No magic bytes: every step of the hand-shake is a variant here.
//!
//! The child's end is close-on-exec, so a successful execve closes it: the
//! parent reads end-of-stream as "the command is running".

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use serde::{Deserialize, Serialize};

/// One step of the create/start/exec hand-shake.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) enum Msg {
    /// Intermediate -> parent: the container process's PID (in the parent's PID namespace).
    Pid(i32),
    /// Parent -> child: it is in its cgroup; go on with the set-up.
    Continue,
    /// Child -> parent: set up and waiting for `Start`.
    Ready,
    /// Parent -> child: exec the command.
    Start,
    /// Child -> parent: a step failed; the child exits with `exit_code`.
    Error { message: String, exit_code: i32 },
}

/// One end of the socketpair.
pub(crate) struct Channel(pub(crate) OwnedFd);

impl Channel {
    /// A connected pair, both ends close-on-exec.
    pub(crate) fn pair() -> io::Result<(Channel, Channel)> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: fds is a valid out array of two ints.
        let rc = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and are owned here.
        Ok(unsafe { (Channel(OwnedFd::from_raw_fd(fds[0])), Channel(OwnedFd::from_raw_fd(fds[1]))) })
    }

    /// Sends one message (never raises SIGPIPE).
    pub(crate) fn send(&self, msg: &Msg) -> io::Result<()> {
        let bytes = serde_json::to_vec(msg).map_err(io::Error::other)?;
        loop {
            // SAFETY: bytes is a valid buffer of the given length.
            let n = unsafe { libc::send(self.0.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), libc::MSG_NOSIGNAL) };
            if n >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Receives one message; `None` when the other end is closed.
    pub(crate) fn recv(&self) -> io::Result<Option<Msg>> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: buf is a valid writable buffer of the given length.
            let n = unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // The peer exec'd or died with the packet unread.
                if e.raw_os_error() == Some(libc::ECONNRESET) {
                    return Ok(None);
                }
                return Err(e);
            }
            if n == 0 {
                return Ok(None);
            }
            return serde_json::from_slice(&buf[..n as usize]).map(Some).map_err(io::Error::other);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_cross_and_eof_is_none() {
        let (a, b) = Channel::pair().expect("pair");
        a.send(&Msg::Pid(42)).expect("send");
        a.send(&Msg::Error { message: "exec: \"x\": executable file not found in $PATH".into(), exit_code: 127 }).expect("send");
        assert_eq!(b.recv().expect("recv"), Some(Msg::Pid(42)));
        assert!(matches!(b.recv().expect("recv"), Some(Msg::Error { exit_code: 127, .. })));
        drop(a);
        assert_eq!(b.recv().expect("recv"), None);
    }
}
