//! The client side of hijacked streams (`run`, `attach`, `exec`, `start -a`):
//! the local terminal in raw mode while a tty is attached, stdin copied to the
//! container with a half-close at EOF, and output either raw (tty) or split
//! from Docker's 8-byte frames onto stdout and stderr.

use std::io::{IsTerminal, Read, Write};
use std::os::fd::AsFd;

use anyhow::{Context, Result};
use nix::sys::termios::{self, SetArg, Termios};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::client::Client;

/// Puts the local terminal in raw mode and restores it when dropped (on
/// every exit path, errors included).
pub struct RawTerminal {
    saved: Termios,
}

impl RawTerminal {
    /// Raw mode on stdin if it is a terminal; `None` otherwise.
    pub fn enable() -> Result<Option<RawTerminal>> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Ok(None);
        }
        let saved = termios::tcgetattr(stdin.as_fd()).context("cannot read the terminal's settings")?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).context("cannot put the terminal in raw mode")?;
        Ok(Some(RawTerminal { saved }))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// The local terminal's size (rows, columns), from stdout or stdin.
pub fn terminal_size() -> Option<(u16, u16)> {
    for fd in [libc::STDOUT_FILENO, libc::STDIN_FILENO] {
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: TIOCGWINSZ writes one winsize into the struct we own.
        let rc = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
        if rc == 0 && ws.ws_row > 0 && ws.ws_col > 0 {
            return Some((ws.ws_row, ws.ws_col));
        }
    }
    None
}

/// Sends the terminal size to `resize_path` (`/containers/x/resize` or
/// `/exec/x/resize`) now and on every SIGWINCH until the returned task is aborted.
pub fn follow_terminal_size(client: &Client, resize_path: String) -> tokio::task::JoinHandle<()> {
    let client = client.clone();
    tokio::spawn(async move {
        let send = |size: (u16, u16)| {
            let path = format!("{resize_path}?h={}&w={}", size.0, size.1);
            let client = client.clone();
            async move {
                // A resize can race the process start; a failure here is harmless.
                let _ = client.call(hyper::Method::POST, &path, super::client::empty(), None).await;
            }
        };
        if let Some(size) = terminal_size() {
            send(size).await;
        }
        let Ok(mut winch) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()) else {
            return;
        };
        while winch.recv().await.is_some() {
            if let Some(size) = terminal_size() {
                send(size).await;
            }
        }
    })
}

/// Forwards the signals a user sends to the CLI (Ctrl-C, `kill`) to the
/// container, as docker's `--sig-proxy` does, until the task is aborted.
pub fn proxy_signals(client: &Client, container: String) -> tokio::task::JoinHandle<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let client = client.clone();
    tokio::spawn(async move {
        let kinds = [
            (SignalKind::interrupt(), "SIGINT"),
            (SignalKind::terminate(), "SIGTERM"),
            (SignalKind::hangup(), "SIGHUP"),
            (SignalKind::quit(), "SIGQUIT"),
            (SignalKind::user_defined1(), "SIGUSR1"),
            (SignalKind::user_defined2(), "SIGUSR2"),
        ];
        let (tx, mut rx) = tokio::sync::mpsc::channel::<&'static str>(8);
        for (kind, name) in kinds {
            let Ok(mut stream) = signal(kind) else { continue };
            let tx = tx.clone();
            tokio::spawn(async move {
                while stream.recv().await.is_some() {
                    if tx.send(name).await.is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        while let Some(name) = rx.recv().await {
            let path = format!("/containers/{container}/kill?signal={name}");
            // The container may have exited meanwhile; nothing to report then.
            let _ = client.call(hyper::Method::POST, &path, super::client::empty(), None).await;
        }
    })
}

/// Splits Docker's multiplexed frames onto stdout and stderr.
#[derive(Default)]
pub struct Demux {
    buf: Vec<u8>,
}

impl Demux {
    /// Feeds bytes; returns complete (stream, payload) frames.
    pub fn push(&mut self, data: &[u8]) -> Vec<(u8, Vec<u8>)> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        loop {
            if self.buf.len() < 8 {
                break;
            }
            let len = u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]) as usize;
            if self.buf.len() < 8 + len {
                break;
            }
            let kind = self.buf[0];
            let payload = self.buf[8..8 + len].to_vec();
            self.buf.drain(..8 + len);
            out.push((kind, payload));
        }
        out
    }
}

/// Writes one output chunk to stdout (stream 0/1) or stderr (2).
fn write_out(kind: u8, data: &[u8]) -> std::io::Result<()> {
    if kind == 2 {
        let mut e = std::io::stderr().lock();
        e.write_all(data)?;
        e.flush()
    } else {
        let mut o = std::io::stdout().lock();
        o.write_all(data)?;
        o.flush()
    }
}

/// Copies a stream's output to the local stdout/stderr until it ends.
pub async fn copy_output<R: AsyncRead + Unpin>(mut reader: R, tty: bool) -> Result<()> {
    let mut demux = Demux::default();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            // The daemon closing an upgraded connection can surface as a reset.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(()),
            Err(e) => return Err(e).context("reading the container's output"),
        };
        let written = if tty {
            write_out(1, &buf[..n])
        } else {
            demux.push(&buf[..n]).into_iter().try_for_each(|(kind, payload)| write_out(kind, &payload))
        };
        match written {
            Ok(()) => {}
            // The reader went away (`logs | head`): stop quietly, as a process killed by SIGPIPE would.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(e).context("writing the container's output"),
        }
    }
}

/// Reads local stdin on a plain thread (a tokio stdin read would keep the
/// runtime from shutting down while it blocks) and hands chunks over.
fn stdin_chunks() -> tokio::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    rx
}

/// Runs a hijacked stream: stdin (if `with_stdin`) to the container, half-closed
/// at EOF; output to the local stdout/stderr. Returns when the output ends.
pub async fn pump<S>(stream: S, tty: bool, with_stdin: bool) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (reader, mut writer) = tokio::io::split(stream);
    let input = if with_stdin {
        let mut chunks = stdin_chunks();
        Some(tokio::spawn(async move {
            while let Some(chunk) = chunks.recv().await {
                if writer.write_all(&chunk).await.is_err() {
                    return;
                }
                let _ = writer.flush().await;
            }
            let _ = writer.shutdown().await;
        }))
    } else {
        // No input: the write half is not needed (dropping it sends no EOF).
        drop(writer);
        None
    };
    let result = copy_output(reader, tty).await;
    if let Some(task) = input {
        task.abort();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_split_across_reads() {
        let mut d = Demux::default();
        let mut data = vec![1, 0, 0, 0, 0, 0, 0, 3];
        data.extend_from_slice(b"hi\n");
        data.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 2, b'e']);
        let first = d.push(&data[..5]);
        assert!(first.is_empty());
        let second = d.push(&data[5..]);
        assert_eq!(second, vec![(1, b"hi\n".to_vec())]);
        let third = d.push(b"\n");
        assert_eq!(third, vec![(2, b"e\n".to_vec())]);
    }
}
