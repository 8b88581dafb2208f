//! wire::compress: the MySQL compressed protocol toward a client (CLIENT_COMPRESS with zlib,
//! CLIENT_ZSTD_COMPRESSION_ALGORITHM with zstd), as a byte stream under `PacketConn`.
//!
//! Each compressed frame is a 7-byte header — compressed length (3 bytes), the compressed
//! sequence id, uncompressed length (3 bytes; 0: the payload is stored as it is) — and a
//! payload that holds any slice of the plain packet stream: a frame may carry several
//! packets or part of one. Reads take one frame at a time and yield its plain bytes. Writes
//! gather whole packets and send a frame at every flush or when `FRAME_BYTES` are pending;
//! a frame ends where a packet ends (a packet larger than a frame gets a frame of its own,
//! split only where a frame's 16 MiB length field ends), as the server's frames do: some
//! clients read at most one more frame for a packet (Connector/Python), and take a stored
//! frame for a single packet. Memory stays bounded: a frame's worth of small packets, or
//! one packet (≤ 16 MiB). The compressed sequence id restarts with every command the client
//! sends (its first frame has id 0); replies go on from the id after the client's last frame.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use std::collections::VecDeque;

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
    /// Offsets in `pending` where a whole packet ends, in order.
    ends: VecDeque<usize>,
    /// `pending` starts inside a packet (the rest of one split at the 16 MiB field limit).
    mid_packet: bool,
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
/// numbering whenever it has read from the client or flushed (`net_flush` syncs them), and
/// clients rely on it: mysql_async expects a result that starts a frame to be numbered
/// from that frame, and clients number a LOCAL INFILE's data or a long command after
/// their frames. So a packet that starts a frame toward the client takes the frame's id
/// (the rest follow it), and packets from the client are renumbered back the plain way.
#[derive(Default)]
struct Seqs {
    /// The next id in the plain numbering (what the backend sends or expects next).
    plain_next: u8,
    /// The next id toward the client, for a packet that does not start a frame.
    out: u8,
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
    /// sequence id) and `emit` on everything in order, with `true` where a packet ends.
    fn feed(
        &mut self,
        mut bytes: &[u8],
        mut renumber: impl FnMut(&mut [u8; 4]),
        mut emit: impl FnMut(&[u8], bool),
    ) {
        while !bytes.is_empty() {
            if self.left > 0 {
                let k = self.left.min(bytes.len());
                self.left -= k;
                emit(&bytes[..k], self.left == 0);
                bytes = &bytes[k..];
                continue;
            }
            let k = (4 - self.have).min(bytes.len());
            self.header[self.have..self.have + k].copy_from_slice(&bytes[..k]);
            self.have += k;
            bytes = &bytes[k..];
            if self.have == 4 {
                renumber(&mut self.header);
                let h = self.header;
                self.left = usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16;
                emit(&self.header, self.left == 0);
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
            ends: VecDeque::new(),
            mid_packet: false,
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
            plain_next, read, ..
        } = seqs;
        read.feed(
            bytes,
            |h| {
                if h[3] != 0 {
                    h[3] = *plain_next;
                }
                *plain_next = h[3].wrapping_add(1);
            },
            |b, _| plain.extend_from_slice(b),
        );
    }

    /// Plain bytes toward the client (renumbered as they are framed).
    fn take_out(&mut self, bytes: &[u8]) {
        let Self {
            seqs,
            pending,
            ends,
            ..
        } = self;
        let Seqs {
            plain_next, write, ..
        } = seqs;
        write.feed(
            bytes,
            |h| *plain_next = h[3].wrapping_add(1),
            |b, end| {
                pending.extend_from_slice(b);
                if end {
                    ends.push_back(pending.len());
                }
            },
        );
    }

    /// How many pending bytes the next frame takes, if one is due: whole packets up to
    /// `FRAME_BYTES` once that much is pending (or at a flush), a larger whole packet on its
    /// own, and a packet longer than a frame can hold cut at that length. A packet still
    /// arriving waits (`all`: at shutdown, everything goes).
    fn next_frame(&self, flush: bool, all: bool) -> Option<usize> {
        let first = self.ends.front().copied();
        // Called after every write: nothing is due while less than a frame is pending.
        if !flush
            && !all
            && self.pending.len() < FRAME_BYTES
            && first.is_none_or(|e| e <= FRAME_BYTES)
        {
            return None;
        }
        let fits = self.ends.partition_point(|&e| e <= FRAME_BYTES);
        let fit = fits.checked_sub(1).and_then(|i| self.ends.get(i));
        match (fit, first) {
            (Some(&e), _) if flush || self.pending.len() >= FRAME_BYTES => Some(e),
            (None, Some(first)) => Some(first.min(MAX_FIELD)),
            (None, None) if self.pending.len() >= MAX_FIELD => Some(MAX_FIELD),
            _ if all && !self.pending.is_empty() => Some(self.pending.len().min(MAX_FIELD)),
            _ => None,
        }
    }

    /// Frames the next `take` pending plain bytes into `out`.
    fn frame(&mut self, take: usize) -> io::Result<()> {
        let mut chunk = self.pending.split_to(take);
        // Packet ids the compressed server's way: a packet that starts the frame and ends
        // in it takes the frame's id, the others follow. (One that goes on into the next
        // frame does not: mysql_common accepts a synced id only from the frame where the
        // packet ends.)
        let first = self.ends.front().copied();
        let sync = !self.mid_packet && first.is_some_and(|e| e <= take);
        let single = !self.mid_packet && first == Some(take);
        let mut next = if sync { self.seq } else { self.seqs.out };
        let mut renumber = |at: usize| {
            if let Some(id) = chunk.get_mut(at + 3) {
                *id = next;
                next = next.wrapping_add(1);
            }
        };
        if !self.mid_packet {
            renumber(0);
        }
        // The packets ending in this frame: the next one starts where each ends.
        let mut at_end = false;
        while let Some(&e) = self.ends.front()
            && e <= take
        {
            self.ends.pop_front();
            if e < take {
                renumber(e);
            } else {
                at_end = true;
            }
        }
        self.seqs.out = next;
        for e in &mut self.ends {
            *e -= take;
        }
        // A frame cut inside a packet: the next one starts inside it.
        self.mid_packet = !at_end;
        // Stored only for a single whole packet that compression does not shrink (short, or
        // already compressed or random data): a reader may take a stored frame for one
        // packet. Anything else is compressed even when that does not pay, unless the
        // result would not fit the length field.
        let packed = if single && chunk.len() < MIN_COMPRESS {
            None
        } else {
            let packed = match (&mut self.zstd, self.algorithm) {
                (Some(z), _) => z.compress(&chunk)?,
                (None, _) => deflate_with(self.zlib.get_or_insert_with(new_deflater), &chunk)?,
            };
            let pays = packed.len() < chunk.len();
            (packed.len() <= MAX_FIELD && (pays || !single)).then_some(packed)
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

    /// Sends every whole packet pending (`all`: a packet cut short too). A packet still
    /// arriving stays: the client cannot use part of one, and it goes in one frame.
    fn flush_frames(&mut self, cx: &mut Context<'_>, all: bool) -> Poll<io::Result<()>> {
        loop {
            ready!(self.drain(cx))?;
            match self.next_frame(true, all) {
                Some(take) => self.frame(take)?,
                None => break,
            }
        }
        Pin::new(&mut self.inner).poll_flush(cx)
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
        // Up to a frame's worth, or the rest of a packet larger than that (up to what one
        // frame holds).
        let room = if this.pending.len() < FRAME_BYTES {
            FRAME_BYTES - this.pending.len()
        } else {
            MAX_FIELD.saturating_sub(this.pending.len()).max(1)
        };
        let n = buf.len().min(room);
        this.take_out(&buf[..n]);
        while let Some(take) = this.next_frame(false, false) {
            this.frame(take)?;
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.flush_frames(cx, false)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.flush_frames(cx, true))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
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

    /// Frames every whole pending packet, as a flush does.
    fn frame_all(c: &mut Compressed) {
        while let Some(take) = c.next_frame(true, false) {
            c.frame(take).expect("frame");
        }
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
        assert_eq!(sent(&mut c), [(1, vec![1, 2, 3, 4])]);
        // The client numbers its file packets after its frame numbering (2, 3): the backend
        // gets them as the plain protocol numbers them (5, 6).
        client_frame(&mut c, 2, &[2, 3]);
        assert_eq!(seqs_of(&c.plain.split()), [5, 6]);
        // The backend's OK (plain 7) goes out numbered after the client's frame (3), even
        // when it arrives in pieces.
        let mut ok = vec![1, 0, 0, 7, 0];
        c.take_out(&ok[..2]);
        c.take_out(&ok.split_off(2));
        assert_eq!(sent(&mut c), [(3, vec![3])]);
        // A new command starts at 0 again, and its answer follows its frame (0 → 1).
        client_frame(&mut c, 0, &[0]);
        assert_eq!(seqs_of(&c.plain.split()), [0]);
        // A result, flushed while the backend runs the next statement: the next result
        // starts a frame and takes its id (as the server's flush syncs the ids).
        c.take_out(&packets(&[vec![9], vec![1], vec![2], vec![0xFE]])[5..]);
        frame_all(&mut c);
        c.take_out(&packets(&[vec![9], vec![9], vec![9], vec![9], vec![0]])[20..]);
        assert_eq!(sent(&mut c), [(1, vec![1, 2, 3]), (2, vec![2])]);
    }

    /// Frames everything pending and decodes what went out: (frame id, packet ids).
    fn sent(c: &mut Compressed) -> Vec<(u8, Vec<u8>)> {
        frame_all(c);
        let wire = c.out.split();
        let mut bytes: &[u8] = &wire;
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let len =
                usize::from(bytes[0]) | usize::from(bytes[1]) << 8 | usize::from(bytes[2]) << 16;
            let plain = frames(&bytes[..HEADER + len], Algorithm::Zlib);
            out.push((bytes[3], seqs_of(&plain)));
            bytes = &bytes[HEADER + len..];
        }
        out
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

    /// The frames of `wire`: (stored, id, plain bytes).
    fn frame_list(mut bytes: &[u8], algorithm: Algorithm) -> Vec<(bool, u8, Vec<u8>)> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let len =
                usize::from(bytes[0]) | usize::from(bytes[1]) << 8 | usize::from(bytes[2]) << 16;
            let at = HEADER + len;
            out.push((
                bytes[4..7] == [0, 0, 0],
                bytes[3],
                frames(&bytes[..at], algorithm),
            ));
            bytes = &bytes[at..];
        }
        out
    }

    /// `n` bytes that do not compress (a linear congruential stream from `state`).
    fn noise(state: &mut u64, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                *state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                (*state >> 56) as u8
            })
            .collect()
    }

    /// A compressed writer over loopback, and the bytes its peer reads until it closes.
    async fn writer_and_peer(
        algorithm: Algorithm,
    ) -> (Compressed, tokio::task::JoinHandle<Vec<u8>>) {
        use tokio::io::AsyncReadExt;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        let peer = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.expect("accept");
            let mut all = Vec::new();
            s.read_to_end(&mut all).await.expect("read");
            all
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let c = Compressed::new(Stream::Plain(tcp), algorithm, BytesMut::new()).expect("new");
        (c, peer)
    }

    #[tokio::test]
    async fn frames_end_where_packets_end() {
        use tokio::io::AsyncWriteExt;
        let mut rng = 11u64;
        let mut noise = |n: usize| noise(&mut rng, n);
        // Rows of a result: small ones, a 1 MiB one (Connector/Python reads one more frame
        // for a packet, no more), incompressible ones, and one at the 16 MiB packet limit
        // with its continuation.
        let mut payloads: Vec<Vec<u8>> =
            (0..3000).map(|i| format!("row {i}").into_bytes()).collect();
        payloads.push(vec![b'r'; 1 << 20]);
        payloads.push(noise(40));
        payloads.push(noise(300));
        payloads.extend((0..500).map(|i| format!("more {i}").into_bytes()));
        payloads.push(noise(MAX_FIELD));
        payloads.push(noise(10));
        payloads.push(b"end".to_vec());
        let sent = packets(&payloads);
        let (mut c, peer) = writer_and_peer(Algorithm::Zlib).await;
        // Written in odd pieces (cutting headers too), with flushes in between: a flush
        // sends whole packets only.
        let mut at = 0;
        let mut step = 1;
        while at < sent.len() {
            let n = step.min(sent.len() - at);
            c.write_all(&sent[at..at + n]).await.expect("write");
            at += n;
            step = (step * 7 + 3) % 70_001;
            if step % 3 == 0 {
                c.flush().await.expect("flush");
            }
        }
        c.shutdown().await.expect("shutdown");
        drop(c);
        let list = frame_list(&peer.await.expect("peer"), Algorithm::Zlib);
        let plain: Vec<u8> = list.iter().flat_map(|(_, _, p)| p.clone()).collect();
        // The same packets (their ids are the frames' business).
        let ids_cleared = |b: &[u8]| {
            let mut b = b.to_vec();
            let mut at = 0;
            while at + 4 <= b.len() {
                b[at + 3] = 0;
                at += 4
                    + (usize::from(b[at])
                        | usize::from(b[at + 1]) << 8
                        | usize::from(b[at + 2]) << 16);
            }
            b
        };
        assert!(
            ids_cleared(&plain) == ids_cleared(&sent),
            "the packets arrive as sent"
        );
        // Where each packet starts and ends, in frames.
        let mut bounds = vec![0usize];
        for (_, _, p) in &list {
            bounds.push(bounds.last().expect("bound") + p.len());
        }
        let frame_of = |offset: usize| bounds.partition_point(|&b| b <= offset) - 1;
        let mut offset = 0;
        let mut expected = 0u8;
        let mut starts = Vec::new();
        while offset < sent.len() {
            starts.push(offset);
            let len = usize::from(sent[offset])
                | usize::from(sent[offset + 1]) << 8
                | usize::from(sent[offset + 2]) << 16;
            let (first, last) = (frame_of(offset), frame_of(offset + 4 + len - 1));
            // mysql_common's rule: an id follows the last one, or is the id of the frame
            // where the packet ends (the server synced its ids at a flush).
            let id = plain[offset + 3];
            assert!(
                id == expected || id == list[last].1,
                "packet at {offset}: id {id}, expected {expected} or {}",
                list[last].1
            );
            expected = id.wrapping_add(1);
            assert_eq!(first, frame_of(offset + 3), "a header is never cut");
            if len + 4 <= MAX_FIELD {
                assert_eq!(first, last, "a packet of {len} bytes in one frame");
            } else {
                assert_eq!(last, first + 1, "a packet over 16 MiB in two frames");
            }
            offset += 4 + len;
        }
        for (i, (stored, _, p)) in list.iter().enumerate() {
            if *stored && p.len() != MAX_FIELD {
                // (A 16 MiB cut of random data does not compress into a frame's length field.)
                let len = usize::from(p[0]) | usize::from(p[1]) << 8 | usize::from(p[2]) << 16;
                assert_eq!(p.len(), 4 + len, "stored frame {i} is one whole packet");
            }
            if p.len() > FRAME_BYTES {
                let starts = starts.iter().filter(|&&s| frame_of(s) == i).count();
                assert!(
                    starts <= 1,
                    "frame {i} of {} bytes holds {starts} packets",
                    p.len()
                );
            }
        }
        assert!(
            list.iter().any(|(stored, _, _)| *stored),
            "incompressible packets are stored"
        );
        assert!(
            list.len() < 40,
            "small packets share frames: {}",
            list.len()
        );
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
        use tokio::io::AsyncWriteExt;
        for algorithm in [Algorithm::Zlib, Algorithm::Zstd(3)] {
            let (mut c, peer) = writer_and_peer(algorithm).await;
            // Small, compressible, incompressible and larger than a frame.
            let noise = noise(&mut 7u64, 100_000);
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
