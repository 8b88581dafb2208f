//! wire::compress: the MySQL compressed protocol toward a client (CLIENT_COMPRESS with zlib,
//! CLIENT_ZSTD_COMPRESSION_ALGORITHM with zstd), as a byte stream under `PacketConn`.
//!
//! Each compressed frame is a 7-byte header — compressed length (3 bytes), the compressed
//! sequence id, uncompressed length (3 bytes; 0: the payload is stored as it is) — and a
//! payload that holds any slice of the plain packet stream: a frame may carry several
//! packets or part of one. Reads take one frame at a time and yield its plain bytes; writes
//! gather plain bytes and send a frame at every flush or when `FRAME_BYTES` are pending, so
//! memory stays bounded however large the packets or results are. The compressed sequence id
//! restarts with every command the client sends (its first frame has id 0); replies go on
//! from the id after the client's last frame.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Stream;

/// Frame header: compressed length, sequence id, uncompressed length.
const HEADER: usize = 7;
/// Largest length a 3-byte field holds.
const MAX_FIELD: usize = 0xFF_FFFF;
/// Plain bytes gathered before a frame is sent without waiting for a flush.
pub const FRAME_BYTES: usize = 256 * 1024;
/// Payloads shorter than this are sent stored (what the server does: compressing them
/// costs more than it saves).
const MIN_COMPRESS: usize = 50;
/// Smallest read from the socket.
const READ_BYTES: usize = 16 * 1024;
/// zlib level: the fastest (the server uses 6; on a LAN the CPU matters more than the
/// last bytes, and the ratio on rows is close).
const ZLIB_LEVEL: u32 = 1;
/// zstd level when the client names none (the server's default).
pub const ZSTD_DEFAULT_LEVEL: i32 = 3;

/// The algorithm a client chose in its handshake response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Zlib,
    Zstd(i32),
}

/// A client stream in the compressed protocol.
pub struct Compressed {
    inner: Stream,
    algorithm: Algorithm,
    /// Bytes read from the socket and not yet decoded into frames.
    raw: BytesMut,
    /// Plain bytes of decoded frames not yet read.
    plain: BytesMut,
    /// Plain bytes written and not yet framed.
    pending: BytesMut,
    /// Framed bytes not yet written to the socket.
    out: BytesMut,
    /// Sequence id of the next frame sent.
    seq: u8,
    zstd: Option<zstd::bulk::Compressor<'static>>,
    zlib: Option<flate2::Compress>,
    seqs: Seqs,
}

/// Packet sequence ids under compression. The backend numbers packets as the plain
/// protocol does; a compressed server instead restarts the packet numbering from the frame
/// numbering whenever it has read from the client, and so do clients (a LOCAL INFILE's data
/// after a result, a long command over several frames). Packets toward the client are
/// renumbered the server's way, packets from it back the plain way.
#[derive(Default)]
struct Seqs {
    /// The next id in the plain numbering (what the backend sends or expects next).
    plain_next: u8,
    /// The next id toward the client.
    out: u8,
    /// A client packet was read since the last packet out: numbering restarts.
    restart: bool,
    write: Cursor,
    read: Cursor,
}

/// Where a byte stream is in its packets: header bytes gathered, payload bytes left.
#[derive(Default)]
struct Cursor {
    header: [u8; 4],
    have: usize,
    left: usize,
}

impl Cursor {
    /// Feeds `bytes` through, calling `renumber` on each whole header (which may change its
    /// sequence id) and `emit` on everything in order.
    fn feed(
        &mut self,
        mut bytes: &[u8],
        mut renumber: impl FnMut(&mut [u8; 4]),
        mut emit: impl FnMut(&[u8]),
    ) {
        while !bytes.is_empty() {
            if self.left > 0 {
                let k = self.left.min(bytes.len());
                emit(&bytes[..k]);
                self.left -= k;
                bytes = &bytes[k..];
                continue;
            }
            let k = (4 - self.have).min(bytes.len());
            self.header[self.have..self.have + k].copy_from_slice(&bytes[..k]);
            self.have += k;
            bytes = &bytes[k..];
            if self.have == 4 {
                renumber(&mut self.header);
                emit(&self.header);
                let h = self.header;
                self.left = usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16;
                self.have = 0;
            }
        }
    }
}

impl Compressed {
    /// Wraps a stream; `early`: bytes already read past the login (compressed ones).
    pub fn new(inner: Stream, algorithm: Algorithm, early: BytesMut) -> io::Result<Self> {
        let zstd = match algorithm {
            Algorithm::Zstd(level) => Some(zstd::bulk::Compressor::new(level)?),
            Algorithm::Zlib => None,
        };
        Ok(Self {
            inner,
            algorithm,
            raw: early,
            plain: BytesMut::new(),
            pending: BytesMut::new(),
            out: BytesMut::new(),
            seq: 0,
            zstd,
            zlib: None,
            seqs: Seqs::default(),
        })
    }

    pub fn inner(&self) -> &Stream {
        &self.inner
    }

    /// Decodes one whole frame from `raw` into `plain`. Ok(false): more bytes are needed.
    fn decode(&mut self) -> io::Result<bool> {
        if self.raw.len() < HEADER {
            return Ok(false);
        }
        let h = &self.raw[..HEADER];
        let len = usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16;
        let seq = h[3];
        let plain_len = usize::from(h[4]) | usize::from(h[5]) << 8 | usize::from(h[6]) << 16;
        if self.raw.len() < HEADER + len {
            self.raw.reserve(HEADER + len - self.raw.len());
            return Ok(false);
        }
        self.raw.advance(HEADER);
        let body = self.raw.split_to(len);
        if plain_len == 0 {
            self.take_in(&body);
        } else {
            // The declared length bounds the output: a frame cannot inflate past it.
            let out = match self.algorithm {
                Algorithm::Zlib => inflate(&body, plain_len)?,
                Algorithm::Zstd(_) => zstd::bulk::decompress(&body, plain_len)
                    .map_err(|_| bad("zstd frame does not decompress"))?,
            };
            if out.len() != plain_len {
                return Err(bad("compressed frame is not its declared length"));
            }
            self.take_in(&out);
        }
        self.seq = seq.wrapping_add(1);
        if self.raw.is_empty() && self.raw.capacity() > 4 * FRAME_BYTES {
            self.raw = BytesMut::new();
        }
        Ok(true)
    }

    /// Plain bytes from the client, renumbered the plain way: a command starts at 0, every
    /// other packet follows the last one either side sent.
    fn take_in(&mut self, bytes: &[u8]) {
        let Self { seqs, plain, .. } = self;
        let Seqs {
            plain_next,
            restart,
            read,
            ..
        } = seqs;
        read.feed(
            bytes,
            |h| {
                if h[3] != 0 {
                    h[3] = *plain_next;
                }
                *plain_next = h[3].wrapping_add(1);
                *restart = true;
            },
            |b| plain.extend_from_slice(b),
        );
    }

    /// Plain bytes toward the client, renumbered the compressed server's way.
    fn take_out(&mut self, bytes: &[u8]) {
        let frame_seq = self.seq;
        let Self { seqs, pending, .. } = self;
        let Seqs {
            plain_next,
            out,
            restart,
            write,
            ..
        } = seqs;
        write.feed(
            bytes,
            |h| {
                *plain_next = h[3].wrapping_add(1);
                if *restart {
                    *out = frame_seq;
                    *restart = false;
                }
                h[3] = *out;
                *out = out.wrapping_add(1);
            },
            |b| pending.extend_from_slice(b),
        );
    }

    /// Frames up to `FRAME_BYTES` of pending plain bytes into `out`.
    fn frame(&mut self) -> io::Result<()> {
        let take = self.pending.len().min(FRAME_BYTES).min(MAX_FIELD);
        let chunk = self.pending.split_to(take);
        let packed = if chunk.len() < MIN_COMPRESS {
            None
        } else {
            let packed = match (&mut self.zstd, self.algorithm) {
                (Some(z), _) => z.compress(&chunk)?,
                (None, _) => deflate_with(self.zlib.get_or_insert_with(new_deflater), &chunk)?,
            };
            // Stored when compression does not pay (already compressed or random data).
            (packed.len() < chunk.len()).then_some(packed)
        };
        let (body, plain_len): (&[u8], usize) = match &packed {
            Some(p) => (p, chunk.len()),
            None => (&chunk, 0),
        };
        self.out.reserve(HEADER + body.len());
        self.out.put_uint_le(body.len() as u64, 3);
        self.out.put_u8(self.seq);
        self.out.put_uint_le(plain_len as u64, 3);
        self.out.extend_from_slice(body);
        self.seq = self.seq.wrapping_add(1);
        if self.pending.is_empty() && self.pending.capacity() > 4 * FRAME_BYTES {
            self.pending = BytesMut::new();
        }
        Ok(())
    }

    /// Writes `out` to the socket until it is empty.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.out.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out.advance(n);
        }
        if self.out.capacity() > 4 * FRAME_BYTES {
            self.out = BytesMut::new();
        }
        Poll::Ready(Ok(()))
    }
}

/// Bytes still missing of the frame at the front of `raw` (a header's worth when unknown).
fn frame_left(raw: &[u8]) -> usize {
    if raw.len() < HEADER {
        return HEADER - raw.len();
    }
    let len = usize::from(raw[0]) | usize::from(raw[1]) << 8 | usize::from(raw[2]) << 16;
    (HEADER + len).saturating_sub(raw.len())
}

fn bad(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

#[cfg(test)]
fn deflate(data: &[u8]) -> io::Result<Vec<u8>> {
    deflate_with(&mut new_deflater(), data)
}

fn new_deflater() -> flate2::Compress {
    flate2::Compress::new(flate2::Compression::new(ZLIB_LEVEL), true)
}

/// One zlib stream of `data`, with a compressor kept across frames (its state is large:
/// making one per frame costs more than compressing a small frame).
fn deflate_with(c: &mut flate2::Compress, data: &[u8]) -> io::Result<Vec<u8>> {
    c.reset();
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    loop {
        let consumed = c.total_in() as usize;
        let status = c
            .compress_vec(&data[consumed..], &mut out, flate2::FlushCompress::Finish)
            .map_err(|_| bad("zlib compression failed"))?;
        match status {
            flate2::Status::StreamEnd => return Ok(out),
            _ => out.reserve(out.capacity().max(64)),
        }
    }
}

/// Inflates a zlib stream that must come to exactly `len` bytes; refuses to go past it.
fn inflate(data: &[u8], len: usize) -> io::Result<Vec<u8>> {
    let mut d = flate2::Decompress::new(true);
    let mut out = Vec::with_capacity(len);
    loop {
        let consumed = d.total_in() as usize;
        let status = d
            .decompress_vec(&data[consumed..], &mut out, flate2::FlushDecompress::Finish)
            .map_err(|_| bad("zlib frame does not decompress"))?;
        match status {
            flate2::Status::StreamEnd if out.len() == len => return Ok(out),
            flate2::Status::StreamEnd => {
                return Err(bad("compressed frame is not its declared length"));
            }
            _ if out.len() >= len => {
                // Full: the stream must end here, with no more output.
                let mut probe = Vec::with_capacity(1);
                let consumed = d.total_in() as usize;
                return match d.decompress_vec(
                    &data[consumed..],
                    &mut probe,
                    flate2::FlushDecompress::Finish,
                ) {
                    Ok(flate2::Status::StreamEnd) if probe.is_empty() => Ok(out),
                    _ => Err(bad("compressed frame is not its declared length")),
                };
            }
            _ if d.total_in() as usize >= data.len() => {
                return Err(bad("zlib frame ends early"));
            }
            _ => {}
        }
    }
}

impl AsyncRead for Compressed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.plain.is_empty() {
                let n = this.plain.len().min(buf.remaining());
                buf.put_slice(&this.plain[..n]);
                this.plain.advance(n);
                if this.plain.is_empty() && this.plain.capacity() > 4 * FRAME_BYTES {
                    this.plain = BytesMut::new();
                }
                return Poll::Ready(Ok(()));
            }
            if this.decode()? {
                continue;
            }
            let before = this.raw.len();
            // One read's worth of room (the frame's whole length is reserved in `decode`,
            // so this never reallocates mid-frame); zeroing it keeps the code safe and costs
            // no more than the copy.
            let want = frame_left(&this.raw).clamp(READ_BYTES, 4 * READ_BYTES);
            this.raw.resize(before + want, 0);
            let polled = {
                let mut rb = ReadBuf::new(&mut this.raw[before..]);
                Pin::new(&mut this.inner)
                    .poll_read(cx, &mut rb)
                    .map_ok(|()| rb.filled().len())
            };
            let n = match polled {
                Poll::Ready(Ok(n)) => n,
                other => {
                    this.raw.truncate(before);
                    return other.map_ok(|_| ());
                }
            };
            this.raw.truncate(before + n);
            if n == 0 {
                // EOF: clean between frames, otherwise a cut frame.
                return if before == 0 {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()))
                };
            }
        }
    }
}

impl AsyncWrite for Compressed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.out.is_empty() {
            // Back-pressure: a frame waits for the socket before more plain bytes are taken.
            ready!(this.drain(cx))?;
        }
        let room = (FRAME_BYTES - this.pending.len().min(FRAME_BYTES)).max(1);
        let n = buf.len().min(room);
        this.take_out(&buf[..n]);
        if this.pending.len() >= FRAME_BYTES {
            this.frame()?;
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            ready!(this.drain(cx))?;
            if this.pending.is_empty() {
                break;
            }
            this.frame()?;
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Payloads as plain packets numbered 0, 1, … (each under 16 MiB).
    fn packets(payloads: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for (seq, p) in payloads.iter().enumerate() {
            out.extend_from_slice(&(p.len() as u32).to_le_bytes()[..3]);
            out.push(seq as u8);
            out.extend_from_slice(p);
        }
        out
    }

    /// The sequence ids of the whole packets in `bytes`.
    fn seqs_of(mut bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        while bytes.len() >= 4 {
            let len =
                usize::from(bytes[0]) | usize::from(bytes[1]) << 8 | usize::from(bytes[2]) << 16;
            out.push(bytes[3]);
            bytes = &bytes[4 + len..];
        }
        out
    }

    /// A client frame (stored) with packets numbered `seqs`.
    fn client_frame(c: &mut Compressed, frame_seq: u8, seqs: &[u8]) {
        let mut plain = Vec::new();
        for &s in seqs {
            plain.extend_from_slice(&[1, 0, 0, s, b'd']);
        }
        c.raw.put_uint_le(plain.len() as u64, 3);
        c.raw.put_u8(frame_seq);
        c.raw.put_uint_le(0, 3);
        c.raw.extend_from_slice(&plain);
        assert!(c.decode().expect("decodes"));
    }

    #[tokio::test]
    async fn packets_are_renumbered_the_compressed_way_and_back() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let tcp = tokio::net::TcpStream::connect(l.local_addr().expect("addr"))
            .await
            .expect("connect");
        let mut c =
            Compressed::new(Stream::Plain(tcp), Algorithm::Zlib, BytesMut::new()).expect("new");
        // A multi-statement query (frame 0): a result (plain 1..3), then a LOCAL INFILE
        // request (4), all in frame 1.
        client_frame(&mut c, 0, &[0]);
        assert_eq!(seqs_of(&c.plain.split()), [0]);
        c.take_out(&packets(&[vec![1], vec![2], vec![3], vec![4], vec![0xFB]])[5..]);
        assert_eq!(seqs_of(&c.pending), [1, 2, 3, 4]);
        c.frame().expect("frame");
        // The client numbers its file packets after its frame numbering (2, 3): the backend
        // gets them as the plain protocol numbers them (5, 6).
        client_frame(&mut c, 2, &[2, 3]);
        assert_eq!(seqs_of(&c.plain.split()), [5, 6]);
        // The backend's OK (plain 7) goes out numbered after the client's frame (3).
        let mut ok = vec![1, 0, 0, 7, 0];
        let at = c.pending.len();
        c.take_out(&ok[..2]);
        c.take_out(&ok.split_off(2));
        assert_eq!(seqs_of(&c.pending[at..]), [3]);
        // A new command starts at 0 again, and its answer follows its frame (0 → 1).
        c.frame().expect("frame");
        client_frame(&mut c, 0, &[0]);
        assert_eq!(seqs_of(&c.plain.split()), [0]);
        let at = c.pending.len();
        c.take_out(&[1, 0, 0, 1, 0]);
        assert_eq!(seqs_of(&c.pending[at..]), [1]);
    }

    fn frames(mut bytes: &[u8], algorithm: Algorithm) -> Vec<u8> {
        let mut plain = Vec::new();
        while !bytes.is_empty() {
            let len =
                usize::from(bytes[0]) | usize::from(bytes[1]) << 8 | usize::from(bytes[2]) << 16;
            let plain_len =
                usize::from(bytes[4]) | usize::from(bytes[5]) << 8 | usize::from(bytes[6]) << 16;
            let body = &bytes[HEADER..HEADER + len];
            if plain_len == 0 {
                plain.extend_from_slice(body);
            } else {
                match algorithm {
                    Algorithm::Zlib => plain.extend(inflate(body, plain_len).expect("test step")),
                    Algorithm::Zstd(_) => {
                        plain.extend(zstd::bulk::decompress(body, plain_len).expect("test step"))
                    }
                }
            }
            bytes = &bytes[HEADER + len..];
        }
        plain
    }

    #[test]
    fn inflate_refuses_frames_longer_or_shorter_than_declared() {
        let data = vec![b'a'; 10_000];
        let packed = deflate(&data).expect("test step");
        assert_eq!(inflate(&packed, 10_000).expect("test step"), data);
        assert!(inflate(&packed, 9_999).is_err(), "longer than declared");
        assert!(inflate(&packed, 10_001).is_err(), "shorter than declared");
        assert!(inflate(&packed[..packed.len() / 2], 10_000).is_err(), "cut");
        assert!(inflate(b"not zlib at all", 100).is_err());
    }

    #[test]
    fn random_frames_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for _ in 0..5_000 {
            let len = rng.random_range(0..200);
            let body: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            let _ = inflate(&body, rng.random_range(1..1000));
            let _ = zstd::bulk::decompress(&body, rng.random_range(1..1000));
        }
    }

    #[tokio::test]
    async fn writes_become_frames_that_decode_to_the_same_bytes() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        for algorithm in [Algorithm::Zlib, Algorithm::Zstd(3)] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("test step");
            let addr = listener.local_addr().expect("test step");
            let peer = tokio::spawn(async move {
                let (mut s, _) = listener.accept().await.expect("test step");
                let mut all = Vec::new();
                s.read_to_end(&mut all).await.expect("test step");
                all
            });
            let tcp = tokio::net::TcpStream::connect(addr)
                .await
                .expect("test step");
            let mut c =
                Compressed::new(Stream::Plain(tcp), algorithm, BytesMut::new()).expect("test step");
            // Small, compressible, incompressible and larger than a frame.
            let mut rng = 7u64;
            let noise: Vec<u8> = (0..100_000)
                .map(|_| {
                    rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (rng >> 56) as u8
                })
                .collect();
            let sent = packets(&[
                b"tiny".to_vec(),
                vec![b'x'; 3 * FRAME_BYTES + 17],
                noise,
                Vec::new(),
            ]);
            c.write_all(&sent[..8]).await.expect("test step");
            c.flush().await.expect("test step");
            c.write_all(&sent[8..]).await.expect("test step");
            c.shutdown().await.expect("test step");
            drop(c);
            let wire = peer.await.expect("test step");
            assert!(wire.len() < sent.len(), "{algorithm:?} compressed nothing");
            assert_eq!(frames(&wire, algorithm), sent, "{algorithm:?}");
        }
    }

    #[tokio::test]
    async fn a_reader_gets_back_what_a_writer_framed_and_refuses_bombs_and_cuts() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        async fn pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("test step");
            let a = tokio::net::TcpStream::connect(l.local_addr().expect("test step"));
            let (a, b) = tokio::join!(a, l.accept());
            (a.expect("test step"), b.expect("test step").0)
        }
        for algorithm in [Algorithm::Zlib, Algorithm::Zstd(1)] {
            let (a, b) = pair().await;
            let mut w =
                Compressed::new(Stream::Plain(a), algorithm, BytesMut::new()).expect("test step");
            let mut r =
                Compressed::new(Stream::Plain(b), algorithm, BytesMut::new()).expect("test step");
            let sent = packets(&[(0..(2 * FRAME_BYTES + 999))
                .map(|i| (i % 251) as u8)
                .collect()]);
            let writer = tokio::spawn(async move {
                w.write_all(&sent).await.expect("test step");
                w.shutdown().await.expect("test step");
                sent
            });
            let mut got = Vec::new();
            r.read_to_end(&mut got).await.expect("test step");
            assert_eq!(got, writer.await.expect("test step"), "{algorithm:?}");
        }
        // A frame that inflates past its declared length, and one cut short, are errors.
        let big = deflate(&vec![0u8; 1 << 20]).expect("test step");
        let mut bomb = Vec::new();
        bomb.put_uint_le(big.len() as u64, 3);
        bomb.put_u8(0);
        bomb.put_uint_le(100, 3);
        bomb.extend_from_slice(&big);
        for wire in [bomb.clone(), bomb[..bomb.len() / 2].to_vec()] {
            let (mut a, b) = pair().await;
            let mut r = Compressed::new(Stream::Plain(b), Algorithm::Zlib, BytesMut::new())
                .expect("test step");
            a.write_all(&wire).await.expect("test step");
            drop(a);
            let mut got = Vec::new();
            assert!(r.read_to_end(&mut got).await.is_err());
            assert!(got.len() <= 100);
        }
    }
}
