//! Compression of inputs and layers, detected by magic number as Docker does.

use std::io::{self, BufReader, Read};

use super::ImageError;

/// How a stream is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    /// Recognised but not supported (named so the error can say which).
    Xz,
    Bzip2,
}

/// The compression `head` (the first bytes of a stream) starts with.
pub fn detect_compression(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Compression::Xz
    } else if head.starts_with(b"BZh") {
        Compression::Bzip2
    } else {
        Compression::None
    }
}

/// Reads up to 6 bytes of `reader` (fewer only at its end) to sniff its compression.
fn sniff(reader: &mut dyn Read) -> io::Result<Vec<u8>> {
    let mut head = vec![0u8; 6];
    let mut got = 0;
    while got < head.len() {
        match reader.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    head.truncate(got);
    Ok(head)
}

type Rewound<R> = io::Chain<io::Cursor<Vec<u8>>, R>;

/// A stream decompressed according to its magic number; `Send` when its input is.
pub enum Decoder<R: Read> {
    Plain(Rewound<R>),
    Gzip(Box<flate2::read::MultiGzDecoder<BufReader<Rewound<R>>>>),
    Zstd(Box<zstd::stream::read::Decoder<'static, BufReader<Rewound<R>>>>),
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Plain(r) => r.read(buf),
            Decoder::Gzip(r) => r.read(buf),
            Decoder::Zstd(r) => r.read(buf),
        }
    }
}

/// `reader` decompressed according to its magic number; `what` names the input in errors.
pub fn decompressed<R: Read>(what: &str, mut reader: R) -> Result<(Compression, Decoder<R>), ImageError> {
    let head = sniff(&mut reader).map_err(|e| ImageError::io(format!("reading {what}"), e))?;
    let kind = detect_compression(&head);
    let whole = io::Cursor::new(head).chain(reader);
    let out = match kind {
        Compression::None => Decoder::Plain(whole),
        // Multi-member, like `gzip -dc`: pigz and friends write several members.
        Compression::Gzip => {
            Decoder::Gzip(Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 20, whole))))
        }
        Compression::Zstd => Decoder::Zstd(Box::new(
            zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(1 << 20, whole))
                .map_err(|e| ImageError::io(format!("starting zstd decompression of {what}"), e))?,
        )),
        Compression::Xz => {
            return Err(ImageError::Unsupported(format!(
                "{what} is xz-compressed; berth reads gzip, zstd or uncompressed tar"
            )))
        }
        Compression::Bzip2 => {
            return Err(ImageError::Unsupported(format!(
                "{what} is bzip2-compressed; berth reads gzip, zstd or uncompressed tar"
            )))
        }
    };
    Ok((kind, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn gzip_zstd_and_plain_are_detected_and_decoded() {
        let data = b"hello layer".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).unwrap();
        let gz = gz.finish().unwrap();
        let zs = zstd::encode_all(&data[..], 1).unwrap();
        for (input, kind) in [(gz, Compression::Gzip), (zs, Compression::Zstd), (data.clone(), Compression::None)] {
            let (k, mut r) = decompressed("test", io::Cursor::new(input)).unwrap();
            assert_eq!(k, kind);
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
            assert_eq!(out, data);
        }
    }

    #[test]
    fn xz_is_refused_by_name() {
        let err = decompressed("input", io::Cursor::new(vec![0xfd, b'7', b'z', b'X', b'Z', 0, 1])).err().unwrap();
        assert!(err.to_string().contains("xz"));
    }

    #[test]
    fn truncated_gzip_is_an_error() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&b"abcdefgh".repeat(10000)).unwrap();
        let mut gz = gz.finish().unwrap();
        gz.truncate(gz.len() / 2);
        let (_, mut r) = decompressed("t", io::Cursor::new(gz)).unwrap();
        let mut out = Vec::new();
        assert!(r.read_to_end(&mut out).is_err());
    }
}
