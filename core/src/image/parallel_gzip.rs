//! gzip on every core, for layers a push must compress (pigz's scheme).
//!
//! `docker push` spends most of its time in Go's single-threaded gzip. Here
//! the input is cut into blocks that worker threads deflate at once; each
//! block is primed with the 32 KiB before it (deflate's window), so the
//! ratio stays within a fraction of a percent of one-thread gzip, and ends
//! with a sync flush, so the blocks concatenate into one deflate stream. The
//! result is one ordinary gzip member (any gunzip, Go's included, reads it),
//! and the same input always gives the same bytes: its digest can be kept.
//! The CRC is computed over the input as it is read; memory is bounded by a
//! few blocks per thread, whatever the input's size.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::mpsc;

use flate2::{Compress, Compression, FlushCompress, Status};

/// Input bytes per block: large enough that the per-block flush and
/// dictionary cost nothing measurable, small enough to spread a layer of a
/// few MB over the cores.
const BLOCK: usize = 1 << 20;
/// Deflate's window: what a block is primed with from the one before it.
const WINDOW: usize = 32 << 10;
/// gzip's header: no name, no time (so the bytes depend on the input only), OS unknown.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// The gzip level a push compresses with. zlib's default (6), as
/// `docker push` uses: a registry's clients pay for a bigger blob on every
/// pull, and the time is won back by the cores, not by a cheaper level.
pub const PUSH_LEVEL: u32 = 6;

/// One block for a worker: its number, the window before it, its bytes, whether it is the last.
struct Job {
    index: u64,
    window: Vec<u8>,
    data: Vec<u8>,
    last: bool,
}

/// Compresses `input` into `out` as one gzip member at `level`, on `threads`
/// worker threads. Returns the number of input bytes.
pub fn gzip_parallel<W: Write + Send>(input: &mut dyn Read, out: &mut W, threads: usize, level: u32) -> io::Result<u64> {
    let threads = threads.max(1);
    out.write_all(&HEADER)?;
    // Blocks read but not yet written: the reader takes a token per block,
    // the writer gives it back, so a slow block never lets the rest pile up.
    let in_flight = 2 * threads + 1;
    let (tokens_back, tokens) = mpsc::sync_channel::<()>(in_flight);
    for _ in 0..in_flight {
        tokens_back.send(()).map_err(|_| io::Error::other("the compression pipeline closed"))?;
    }
    let (jobs_tx, jobs_rx) = mpsc::sync_channel::<Job>(threads);
    let jobs_rx = std::sync::Mutex::new(jobs_rx);
    let (done_tx, done_rx) = mpsc::channel::<(u64, io::Result<Vec<u8>>)>();

    std::thread::scope(|scope| -> io::Result<u64> {
        for _ in 0..threads {
            let (jobs_rx, done_tx) = (&jobs_rx, done_tx.clone());
            scope.spawn(move || {
                let mut deflate = Compress::new(Compression::new(level), false);
                loop {
                    let job = match jobs_rx.lock().unwrap_or_else(|e| e.into_inner()).recv() {
                        Ok(job) => job,
                        Err(_) => break,
                    };
                    let result = deflate_block(&mut deflate, &job);
                    if done_tx.send((job.index, result)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done_tx);
        // The writer: blocks back in order, then the trailer.
        let writer = scope.spawn(move || -> io::Result<&mut W> {
            let mut waiting: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
            let mut next = 0u64;
            for (index, result) in done_rx.iter() {
                waiting.insert(index, result?);
                while let Some(block) = waiting.remove(&next) {
                    out.write_all(&block)?;
                    next += 1;
                    // The reader may have finished and dropped its end.
                    let _ = tokens_back.send(());
                }
            }
            if !waiting.is_empty() {
                return Err(io::Error::other("a compressed block went missing"));
            }
            Ok(out)
        });
        let read = read_blocks(input, &tokens, &jobs_tx);
        // Workers stop once the jobs channel is closed and empty; the writer once they have.
        drop(jobs_tx);
        let written = writer.join().map_err(|_| io::Error::other("the compression writer panicked"))?;
        let (crc, total) = read?;
        let out = written?;
        out.write_all(&crc.to_le_bytes())?;
        out.write_all(&(total as u32).to_le_bytes())?;
        Ok(total)
    })
}

/// Reads `input` block by block into jobs; returns its CRC-32 and length.
fn read_blocks(input: &mut dyn Read, tokens: &mpsc::Receiver<()>, jobs: &mpsc::SyncSender<Job>) -> io::Result<(u32, u64)> {
    let mut crc = crc32fast::Hasher::new();
    let mut total = 0u64;
    let mut window: Vec<u8> = Vec::new();
    let mut current = read_full(input)?;
    let mut index = 0u64;
    loop {
        // One block ahead, to know which block is the last (it ends the stream).
        let next = if current.len() == BLOCK { read_full(input)? } else { Vec::new() };
        let last = next.is_empty();
        crc.update(&current);
        total += current.len() as u64;
        let next_window = current[current.len().saturating_sub(WINDOW)..].to_vec();
        tokens.recv().map_err(|_| io::Error::other("the compression writer stopped"))?;
        jobs.send(Job { index, window, data: current, last })
            .map_err(|_| io::Error::other("the compression workers stopped"))?;
        if last {
            return Ok((crc.finalize(), total));
        }
        window = next_window;
        current = next;
        index += 1;
    }
}

/// Up to `BLOCK` bytes of `input` (fewer only at its end).
fn read_full(input: &mut dyn Read) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; BLOCK];
    let mut got = 0;
    while got < BLOCK {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    buf.truncate(got);
    Ok(buf)
}

/// Deflates one block: primed with its window, ended by a sync flush (or the
/// stream's end for the last block), so the blocks' outputs concatenate.
fn deflate_block(deflate: &mut Compress, job: &Job) -> io::Result<Vec<u8>> {
    deflate.reset();
    if !job.window.is_empty() {
        deflate.set_dictionary(&job.window).map_err(io::Error::other)?;
    }
    let flush = if job.last { FlushCompress::Finish } else { FlushCompress::Sync };
    let mut out = Vec::with_capacity(job.data.len() + job.data.len() / 8 + 1024);
    let start = deflate.total_in();
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(64 << 10);
        }
        let consumed = (deflate.total_in() - start) as usize;
        let status = deflate.compress_vec(&job.data[consumed..], &mut out, flush).map_err(io::Error::other)?;
        let all_in = (deflate.total_in() - start) as usize == job.data.len();
        match (flush, status) {
            (FlushCompress::Finish, Status::StreamEnd) => return Ok(out),
            // A sync flush is complete when it left room unused in the output.
            (FlushCompress::Sync, _) if all_in && out.len() < out.capacity() => return Ok(out),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        // A single-member reader: the output must be one gzip member.
        flate2::read::GzDecoder::new(data).read_to_end(&mut out).unwrap();
        out
    }

    fn compress(input: &[u8], threads: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let n = gzip_parallel(&mut &input[..], &mut out, threads, PUSH_LEVEL).unwrap();
        assert_eq!(n, input.len() as u64);
        out
    }

    #[test]
    fn any_size_round_trips_through_one_gzip_member() {
        let text: Vec<u8> = (0..3 * BLOCK + 12345).map(|i| b"layer bytes, repeated; "[i % 23] ^ (i / 7919) as u8).collect();
        for len in [0, 1, 100, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK, text.len()] {
            let input = &text[..len];
            let gz = compress(input, 3);
            assert_eq!(gunzip(&gz), input, "length {len}");
        }
    }

    #[test]
    fn the_bytes_depend_on_the_input_only() {
        let input: Vec<u8> = (0..5 * BLOCK / 2).map(|i| (i * 31 % 251) as u8).collect();
        assert_eq!(compress(&input, 1), compress(&input, 4), "the thread count must not change the blob's digest");
    }

    #[test]
    fn priming_with_the_window_keeps_the_ratio_of_one_stream() {
        // Repeats 64 KiB apart across block boundaries: without the window each block would start cold.
        let unit: Vec<u8> = (0..40_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        let input: Vec<u8> = unit.iter().cycle().take(4 * BLOCK).copied().collect();
        let ours = compress(&input, 2).len();
        let mut single = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(PUSH_LEVEL));
        single.write_all(&input).unwrap();
        let single = single.finish().unwrap().len();
        assert!(ours < single + single / 50 + 64, "parallel {ours} bytes vs one stream {single}");
    }

    #[test]
    fn a_read_error_fails_the_compression() {
        struct Broken(usize);
        impl Read for Broken {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("disk gone"));
                }
                let n = buf.len().min(self.0);
                self.0 -= n;
                Ok(n)
            }
        }
        let err = gzip_parallel(&mut Broken(3 * BLOCK), &mut Vec::new(), 2, 1).unwrap_err();
        assert!(err.to_string().contains("disk gone"), "{err}");
    }
}
