//! backup::stream: the plaintext dump stream inside the encrypted chunks — a compact,
//! length-prefixed binary record format. Values are the bytes MySQL sends in the text
//! protocol (protected columns: their ciphertext as stored), so NULL, binary data and 4-byte
//! UTF-8 round-trip exactly.
//!
//! ```text
//! stream   = "MVDUMP1\n" record* 'Z'
//! record   = 'B' str(database) str(charset) str(collation)
//!          | 'T' str(table) str(create table) varint(n) str(column)*n   then rows:
//!          | 'R' cell*n           cell = varint(0) for NULL | varint(len + 1) bytes
//!          | 'E' varint(rows)     end of the current table
//!          | 'V' str(view) str(create view)
//!          | 'G' str(trigger) str(sql_mode) str(create trigger)
//!          | 'P' str(PROCEDURE|FUNCTION) str(routine) str(sql_mode) str(create routine)
//! str      = varint(len) bytes;  varint = unsigned LEB128 (at most 10 bytes)
//! ```

use super::Error;

pub const STREAM_MAGIC: &[u8; 8] = b"MVDUMP1\n";
/// A single value larger than this is refused when reading (MySQL's own cap is 1 GiB).
pub const MAX_VALUE_BYTES: u64 = 1 << 30;

pub const TAG_DATABASE: u8 = b'B';
pub const TAG_TABLE: u8 = b'T';
pub const TAG_ROW: u8 = b'R';
pub const TAG_END_TABLE: u8 = b'E';
pub const TAG_VIEW: u8 = b'V';
pub const TAG_TRIGGER: u8 = b'G';
pub const TAG_ROUTINE: u8 = b'P';
pub const TAG_END: u8 = b'Z';

pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s);
}

pub fn put_cell(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        None => put_varint(out, 0),
        Some(b) => {
            put_varint(out, b.len() as u64 + 1);
            out.extend_from_slice(b);
        }
    }
}

/// One record as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Database {
        name: String,
        charset: String,
        collation: String,
    },
    Table {
        name: String,
        create: String,
        columns: Vec<String>,
    },
    Row(Vec<Option<Vec<u8>>>),
    EndTable {
        rows: u64,
    },
    View {
        name: String,
        create: String,
    },
    Trigger {
        name: String,
        sql_mode: String,
        create: String,
    },
    Routine {
        kind: String,
        name: String,
        sql_mode: String,
        create: String,
    },
    End,
}

/// Reads records from plaintext arriving in pieces (decrypted chunks). Never panics on
/// malformed input: every length is checked against what is there.
#[derive(Default)]
pub struct Decoder {
    buf: Vec<u8>,
    pos: usize,
    started: bool,
    /// Columns of the table whose rows are being read.
    columns: Option<usize>,
    ended: bool,
}

/// Not enough bytes yet.
struct Short;

fn malformed(what: &str) -> Error {
    Error::Format(format!("dump stream: {what}"))
}

impl Decoder {
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The next complete record, None when more bytes are needed.
    pub fn next_record(&mut self) -> Result<Option<Record>, Error> {
        if self.ended {
            if self.pos < self.buf.len() {
                return Err(malformed("bytes after the end record"));
            }
            return Ok(None);
        }
        if !self.started {
            if self.buf.len() - self.pos < STREAM_MAGIC.len() {
                return Ok(None);
            }
            if &self.buf[self.pos..self.pos + STREAM_MAGIC.len()] != STREAM_MAGIC {
                return Err(malformed("bad magic"));
            }
            self.pos += STREAM_MAGIC.len();
            self.started = true;
        }
        let mut at = self.pos;
        match self.parse(&mut at) {
            Ok(r) => {
                self.pos = at;
                if matches!(r, Record::End) {
                    self.ended = true;
                }
                Ok(Some(r))
            }
            Err(Ok(Short)) => Ok(None),
            Err(Err(e)) => Err(e),
        }
    }

    fn parse(&mut self, at: &mut usize) -> Result<Record, Result<Short, Error>> {
        let tag = *self.buf.get(*at).ok_or(Ok(Short))?;
        *at += 1;
        if self.columns.is_some() && !matches!(tag, TAG_ROW | TAG_END_TABLE) {
            return Err(Err(malformed("table not ended")));
        }
        let r = match tag {
            TAG_DATABASE => Record::Database {
                name: self.text(at)?,
                charset: self.text(at)?,
                collation: self.text(at)?,
            },
            TAG_TABLE => {
                let name = self.text(at)?;
                let create = self.text(at)?;
                let n = self.varint(at)?;
                if n == 0 || n > 4096 {
                    return Err(Err(malformed("impossible column count")));
                }
                let mut columns = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    columns.push(self.text(at)?);
                }
                self.columns = Some(columns.len());
                Record::Table {
                    name,
                    create,
                    columns,
                }
            }
            TAG_ROW => {
                let n = self.columns.ok_or(Err(malformed("row outside a table")))?;
                let mut row = Vec::with_capacity(n);
                for _ in 0..n {
                    let len = self.varint(at)?;
                    if len == 0 {
                        row.push(None);
                    } else {
                        row.push(Some(self.bytes(at, len - 1)?.to_vec()));
                    }
                }
                Record::Row(row)
            }
            TAG_END_TABLE => {
                if self.columns.is_none() {
                    return Err(Err(malformed("table end outside a table")));
                }
                let rows = self.varint(at)?;
                self.columns = None;
                Record::EndTable { rows }
            }
            TAG_VIEW => Record::View {
                name: self.text(at)?,
                create: self.text(at)?,
            },
            TAG_TRIGGER => Record::Trigger {
                name: self.text(at)?,
                sql_mode: self.text(at)?,
                create: self.text(at)?,
            },
            TAG_ROUTINE => Record::Routine {
                kind: self.text(at)?,
                name: self.text(at)?,
                sql_mode: self.text(at)?,
                create: self.text(at)?,
            },
            TAG_END => Record::End,
            _ => return Err(Err(malformed("unknown record"))),
        };
        Ok(r)
    }

    fn varint(&self, at: &mut usize) -> Result<u64, Result<Short, Error>> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = *self.buf.get(*at).ok_or(Ok(Short))?;
            *at += 1;
            if i == 9 && b > 1 {
                return Err(Err(malformed("varint overflow")));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Err(malformed("varint too long")))
    }

    fn bytes(&self, at: &mut usize, len: u64) -> Result<&[u8], Result<Short, Error>> {
        if len > MAX_VALUE_BYTES {
            return Err(Err(malformed("value too large")));
        }
        let len = len as usize;
        if self.buf.len() - *at < len {
            return Err(Ok(Short));
        }
        let b = &self.buf[*at..*at + len];
        *at += len;
        Ok(b)
    }

    fn text(&self, at: &mut usize) -> Result<String, Result<Short, Error>> {
        let len = self.varint(at)?;
        let b = self.bytes(at, len)?;
        String::from_utf8(b.to_vec()).map_err(|_| Err(malformed("name is not UTF-8")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut s = STREAM_MAGIC.to_vec();
        s.push(TAG_DATABASE);
        put_str(&mut s, b"db");
        put_str(&mut s, b"utf8mb4");
        put_str(&mut s, b"utf8mb4_general_ci");
        s.push(TAG_TABLE);
        put_str(&mut s, "t😀".as_bytes());
        put_str(&mut s, b"CREATE TABLE x");
        put_varint(&mut s, 3);
        for c in ["a", "b", "c"] {
            put_str(&mut s, c.as_bytes());
        }
        s.push(TAG_ROW);
        put_cell(&mut s, None);
        put_cell(&mut s, Some(b""));
        put_cell(&mut s, Some(&vec![0xff; 300]));
        s.push(TAG_END_TABLE);
        put_varint(&mut s, 1);
        s.push(TAG_VIEW);
        put_str(&mut s, b"v");
        put_str(&mut s, b"CREATE VIEW v");
        s.push(TAG_END);
        s
    }

    #[test]
    fn varints() {
        for v in [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            let d = Decoder {
                buf: b,
                ..Decoder::default()
            };
            let mut at = 0;
            assert_eq!(d.varint(&mut at).ok(), Some(v));
        }
    }

    #[test]
    fn records_round_trip_byte_by_byte() {
        let s = sample();
        let mut d = Decoder::default();
        let mut got = Vec::new();
        for b in &s {
            d.feed(&[*b]);
            while let Some(r) = d.next_record().expect("valid") {
                got.push(r);
            }
        }
        assert!(d.ended());
        assert_eq!(got.len(), 6);
        assert_eq!(
            got[2],
            Record::Row(vec![None, Some(Vec::new()), Some(vec![0xff; 300])])
        );
        assert!(matches!(&got[1], Record::Table { name, .. } if name == "t😀"));
    }

    #[test]
    fn malformed_streams_are_errors_not_panics() {
        let s = sample();
        for i in 0..s.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut t = s.clone();
                t[i] ^= flip;
                let mut d = Decoder::default();
                d.feed(&t);
                // Either an error or records; never a panic.
                while let Ok(Some(_)) = d.next_record() {}
            }
        }
        let mut d = Decoder::default();
        d.feed(b"MVDUMP1\nR\x00");
        assert!(d.next_record().is_err(), "row outside a table");
    }
}
