//! wire: MySQL packet framing shared by the client side (frontend) and the backend side.
//!
//! A packet is a 3-byte little-endian payload length, a sequence id and the payload. Payloads
//! of 0xFFFFFF bytes or more are split; a payload of exactly 0xFFFFFF is followed by a
//! continuation. `PacketConn` keeps one read buffer per connection so the relay can forward
//! backend packets as raw bytes without decoding them.

pub mod auth;
pub mod compress;
pub mod handshake;
pub mod packets;
pub mod stream;
pub mod tls;
pub mod types;

use std::io;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub use stream::Stream;

/// Largest payload one physical packet can carry.
pub const MAX_PAYLOAD_LEN: usize = 0xFF_FFFF;
/// Bytes read from a socket in one go when the buffer has no spare room.
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// Errors of the wire layer. They carry sizes and names, never payload bytes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("connection closed by peer")]
    Closed,
    #[error("packet of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge { len: usize, limit: usize },
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    #[error("tls: {0}")]
    Tls(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// One logical packet: the payload with continuations joined, and the sequence ids of the
/// first and the last physical packet it came in (a reply follows the last).
#[derive(Debug)]
pub struct Packet {
    pub first_seq: u8,
    pub seq: u8,
    pub payload: BytesMut,
}

/// A connection that speaks MySQL packets: one read buffer, one write buffer.
pub struct PacketConn {
    stream: Stream,
    pub(crate) rbuf: BytesMut,
    wbuf: Vec<u8>,
}

impl PacketConn {
    pub fn new(stream: Stream) -> Self {
        Self {
            stream,
            rbuf: BytesMut::with_capacity(READ_CHUNK_BYTES),
            wbuf: Vec::with_capacity(READ_CHUNK_BYTES),
        }
    }

    pub fn stream(&self) -> &Stream {
        &self.stream
    }

    /// Hands the stream over for a TLS upgrade, with the bytes read past the last packet
    /// (the start of the TLS handshake, when the peer did not wait).
    pub fn into_parts(self) -> (Stream, BytesMut) {
        (self.stream, self.rbuf)
    }

    /// Reads more bytes into the read buffer. A clean EOF is `Error::Closed`.
    pub async fn fill(&mut self) -> Result<usize> {
        if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK_BYTES / 4 {
            self.rbuf.reserve(READ_CHUNK_BYTES);
        }
        let n = self.stream.read_buf(&mut self.rbuf).await?;
        if n == 0 {
            return Err(Error::Closed);
        }
        Ok(n)
    }

    /// Makes sure at least `n` bytes are buffered.
    pub async fn ensure(&mut self, n: usize) -> Result<()> {
        if self.rbuf.len() < n {
            self.rbuf.reserve(n - self.rbuf.len());
        }
        while self.rbuf.len() < n {
            self.fill().await?;
        }
        Ok(())
    }

    /// Whether a whole single-packet payload is buffered.
    pub fn has_packet(&self) -> bool {
        matches!(self.peek_header(), Some((len, _)) if len < MAX_PAYLOAD_LEN && self.rbuf.len() >= 4 + len)
    }

    /// Length and sequence id of the packet at the front of the buffer (needs 4 bytes).
    pub fn peek_header(&self) -> Option<(usize, u8)> {
        header(&self.rbuf)
    }

    /// Reads one logical packet, joining continuations, refusing payloads over `limit` bytes
    /// before allocating for them.
    pub async fn read_packet(&mut self, limit: usize) -> Result<Packet> {
        let mut payload = BytesMut::new();
        let mut first_seq = None;
        loop {
            self.ensure(4).await?;
            let (len, seq) = self.peek_header().ok_or(Error::Malformed("short header"))?;
            let total = payload.len() + len;
            if total > limit {
                return Err(Error::TooLarge { len: total, limit });
            }
            self.ensure(4 + len).await?;
            let first_seq = *first_seq.get_or_insert(seq);
            self.rbuf.advance(4);
            let part = self.rbuf.split_to(len);
            if payload.is_empty() {
                payload = part;
            } else {
                payload.extend_from_slice(&part);
            }
            if len < MAX_PAYLOAD_LEN {
                return Ok(Packet {
                    first_seq,
                    seq,
                    payload,
                });
            }
        }
    }

    /// Reads and drops one logical packet without holding it whole; returns its first `keep`
    /// bytes (enough to classify it), its length and its last sequence id.
    pub async fn skip_packet(&mut self, keep: usize) -> Result<(Vec<u8>, usize, u8)> {
        let mut head = Vec::new();
        let mut total = 0;
        loop {
            self.ensure(4).await?;
            let (len, seq) = self.peek_header().ok_or(Error::Malformed("short header"))?;
            self.rbuf.advance(4);
            total += len;
            let mut left = len;
            while left > 0 {
                if self.rbuf.is_empty() {
                    self.fill().await?;
                }
                let take = left.min(self.rbuf.len());
                if head.len() < keep {
                    let want = (keep - head.len()).min(take);
                    head.extend_from_slice(&self.rbuf[..want]);
                }
                self.rbuf.advance(take);
                left -= take;
            }
            if len < MAX_PAYLOAD_LEN {
                return Ok((head, total, seq));
            }
        }
    }

    /// Queues a payload as one or more packets starting at `seq`; returns the next sequence id.
    pub fn queue_packet(&mut self, mut seq: u8, payload: &[u8]) -> u8 {
        let mut rest = payload;
        loop {
            let len = rest.len().min(MAX_PAYLOAD_LEN);
            let (chunk, tail) = rest.split_at(len);
            self.wbuf
                .extend_from_slice(&(len as u32).to_le_bytes()[..3]);
            self.wbuf.push(seq);
            self.wbuf.extend_from_slice(chunk);
            seq = seq.wrapping_add(1);
            rest = tail;
            if len < MAX_PAYLOAD_LEN {
                return seq;
            }
        }
    }

    /// Bytes queued and not yet written.
    pub fn buffered(&self) -> usize {
        self.wbuf.len()
    }

    /// Queues and flushes one payload.
    pub async fn write_packet(&mut self, seq: u8, payload: &[u8]) -> Result<u8> {
        let next = self.queue_packet(seq, payload);
        self.flush().await?;
        Ok(next)
    }

    /// Writes raw, already framed bytes (relay), after anything queued.
    pub async fn write_raw(&mut self, bytes: &[u8]) -> Result<()> {
        if !self.wbuf.is_empty() {
            self.flush_queued().await?;
        }
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    async fn flush_queued(&mut self) -> Result<()> {
        self.stream.write_all(&self.wbuf).await?;
        self.wbuf.clear();
        if self.wbuf.capacity() > 4 * READ_CHUNK_BYTES {
            self.wbuf.shrink_to(READ_CHUNK_BYTES);
        }
        Ok(())
    }

    pub async fn flush(&mut self) -> Result<()> {
        if !self.wbuf.is_empty() {
            self.flush_queued().await?;
        }
        self.stream.flush().await?;
        Ok(())
    }

    /// Gives back memory a large packet left behind, so idle connections stay small.
    pub fn shrink_buffers(&mut self) {
        if self.rbuf.is_empty() && self.rbuf.capacity() > 4 * READ_CHUNK_BYTES {
            self.rbuf = BytesMut::with_capacity(READ_CHUNK_BYTES);
        }
    }

    pub async fn shutdown(&mut self) {
        let _ = self.flush().await;
        let _ = self.stream.shutdown().await;
    }
}

/// Parses a packet header from the front of `buf`.
pub fn header(buf: &[u8]) -> Option<(usize, u8)> {
    if buf.len() < 4 {
        return None;
    }
    let len = usize::from(buf[0]) | usize::from(buf[1]) << 8 | usize::from(buf[2]) << 16;
    Some((len, buf[3]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_reads_little_endian_length_and_seq() {
        assert_eq!(header(&[0x01, 0x02, 0x03, 7]), Some((0x030201, 7)));
        assert_eq!(header(&[0x01, 0x02, 0x03]), None);
    }
}
