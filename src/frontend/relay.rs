//! frontend::relay: carries one backend response to the client as raw bytes.
//!
//! A small state machine reads only what it must of each packet — the first byte, and the
//! status flags of terminators — to know where the response ends (more results, cursors,
//! LOCAL INFILE). Complete packets are forwarded straight from the backend read buffer in
//! one write per read; packets larger than the peek window are streamed through, so memory
//! per connection stays bounded whatever the row size.

use bytes::Buf;
use mysql_common::constants::StatusFlags;

use super::transform::{self, Cells, Failure, ResultPlan};
use crate::backend::state::{ClientTracking, SessionState};
use crate::policy::Policy;
use crate::sql::analyze::Shape;
use crate::wire::packets::{
    EOF_HEADER, ERR_HEADER, LOCAL_INFILE_HEADER, OK_HEADER, eof_status, lenenc_int, ok_status,
};
use crate::wire::{self, MAX_PAYLOAD_LEN, Packet, PacketConn, header};

/// Queued bytes after which a transformed relay writes to the client.
const FLUSH_BYTES: usize = 64 * 1024;

/// What a transformed relay needs: the policy, the session's role, the keys, and where
/// each result's columns come from.
pub struct Transform<'a> {
    pub policy: &'a Policy,
    pub role: &'a str,
    /// The session's character_set_results (opened text is converted to latin1 for it).
    pub results_charset: Option<&'a str>,
    pub cells: &'a (dyn Cells + Sync),
    /// Rows are in the binary protocol (COM_STMT_EXECUTE).
    pub binary: bool,
    /// Largest row read whole.
    pub row_limit: usize,
    /// The shape of each result, in order (one per statement); None: not transformed.
    pub shapes: &'a [Option<Shape>],
    /// COM_STMT_FETCH: the column definitions (as the backend sent them) of the cursor the
    /// rows come from, and its statement's shape.
    pub fetch: Option<(&'a [Vec<u8>], &'a Shape)>,
    /// Keep the backend's column definitions in `Response::captured_defs` (an execute that
    /// may open a cursor).
    pub capture: bool,
    /// The rows are a `SHOW STATUS` result and the client's leg is compressed: its
    /// `Compression` row says ON, as a direct server would tell a compressed client.
    pub compressed_status: bool,
}

/// Where the session state reported in OK packets goes, and what the client sees of it.
pub struct Tracker<'a> {
    pub state: &'a mut SessionState,
    pub client: &'a ClientTracking,
}

impl Tracker<'_> {
    /// Takes the state an OK packet reports; returns the payload the client gets instead
    /// (None: unchanged).
    fn ok(&mut self, payload: &[u8]) -> Result<Option<Vec<u8>>, Failed> {
        self.state
            .track_ok(payload, self.client)
            .map_err(|_| Failed::Backend(wire::Error::Malformed("session state")))
    }
}

/// Bytes of a packet that must be buffered before it is classified. Terminators and column
/// definitions are far smaller; rows larger than this are streamed.
const PEEK_BYTES: usize = 64 * 1024;
/// A classic EOF packet is shorter than this; a row starting with 0xFE is longer.
const EOF_MAX_LEN: usize = 9;

/// The shape of the response a command gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// COM_QUERY: OK, ERR, LOCAL INFILE request or result sets, possibly several.
    Query,
    /// COM_STMT_EXECUTE: OK, ERR or binary result sets (a cursor ends after the metadata).
    Execute,
    /// COM_STMT_PREPARE: prepare OK with parameter and column definitions, or ERR.
    Prepare,
    /// COM_STMT_FETCH: rows up to EOF, or ERR.
    Fetch,
    /// COM_FIELD_LIST: column definitions up to EOF, or ERR.
    FieldList,
    /// One packet: OK, ERR, EOF or a string (ping, init db, statistics, …).
    Single,
}

/// Which side broke a relay.
#[derive(Debug)]
pub enum Failed {
    Client(wire::Error),
    Backend(wire::Error),
}

/// How a relayed response ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Complete; status flags of the last OK/EOF (None after an ERR).
    Done(Option<StatusFlags>),
    /// The backend asked for a local file; the client's file packets go next.
    LocalInfile,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    ResultStart,
    ColumnDefs(u64),
    ColumnsEof,
    Rows,
    PrepareStart,
    PrepareDefs { left: u64, then_columns: u64 },
    PrepareEof { then_columns: u64 },
    DefsUntilEof,
    Single,
}

enum Step {
    More,
    End(End),
}

/// Where a response stands; it lives across LOCAL INFILE round trips.
pub struct Response {
    phase: Phase,
    allow_infile: bool,
    /// The previous physical packet was full: the next one continues it.
    continuation: bool,
    /// Bytes of a large packet still to stream through.
    stream_left: usize,
    /// Sequence id the next packet to the client would carry.
    next_seq: u8,
    /// Column definitions of the last result set, when `Transform::capture` asked for them.
    pub captured_defs: Option<Vec<Vec<u8>>>,
    /// The packet `step` just classified is an OK that reports session state changes.
    state_ok: bool,
    /// Index of the result (statement) being relayed, and whether one has begun.
    result: usize,
    started: bool,
    /// The next packet answers a LOCAL INFILE upload (same statement).
    after_infile: bool,
    /// The response left an insert id, warnings or an error, which the next statement may
    /// ask its connection about (a multiplexed session keeps the connection for it).
    pub trace: bool,
}

impl Response {
    pub fn new(expect: Expect) -> Self {
        let phase = match expect {
            Expect::Query | Expect::Execute => Phase::ResultStart,
            Expect::Prepare => Phase::PrepareStart,
            Expect::Fetch => Phase::Rows,
            Expect::FieldList => Phase::DefsUntilEof,
            Expect::Single => Phase::Single,
        };
        Self {
            phase,
            allow_infile: expect == Expect::Query,
            continuation: false,
            stream_left: 0,
            next_seq: 1,
            captured_defs: None,
            state_ok: false,
            result: 0,
            started: false,
            after_infile: false,
            trace: false,
        }
    }

    /// The sequence id for a packet myveil could add now, or None when the client is in the
    /// middle of a packet and nothing may be added.
    pub fn next_seq(&self) -> Option<u8> {
        (self.stream_left == 0 && !self.continuation).then_some(self.next_seq)
    }

    /// Classifies one whole packet of the response (the fuzz targets' entry): whether more
    /// packets follow.
    pub fn classify(&mut self, payload: &[u8]) -> Result<bool, wire::Error> {
        Ok(matches!(self.step(payload, payload.len())?, Step::More))
    }

    /// Classifies one logical packet from its first bytes and its length.
    fn step(&mut self, head: &[u8], len: usize) -> Result<Step, wire::Error> {
        let first = *head.first().unwrap_or(&OK_HEADER);
        let is_eof = first == EOF_HEADER && len < EOF_MAX_LEN;
        self.state_ok = first == OK_HEADER
            && matches!(self.phase, Phase::ResultStart | Phase::Single)
            && ok_status(head)
                .is_some_and(|s| s.contains(StatusFlags::SERVER_SESSION_STATE_CHANGED));
        // 0xFF never starts a column count, definition or row: it is an ERR wherever it is.
        if first == ERR_HEADER {
            self.trace = true;
            return Ok(Step::End(End::Done(None)));
        }
        let ok = first == OK_HEADER && matches!(self.phase, Phase::ResultStart | Phase::Single);
        if ok && crate::wire::packets::ok_leaves_trace(head)
            || is_eof
                && matches!(self.phase, Phase::Rows | Phase::ColumnsEof)
                && crate::wire::packets::eof_warnings(head)
        {
            self.trace = true;
        }
        let step = match self.phase {
            Phase::ResultStart => match first {
                OK_HEADER => self.after_terminator(ok_status(head)),
                LOCAL_INFILE_HEADER if self.allow_infile => Step::End(End::LocalInfile),
                _ => {
                    let (columns, _) =
                        lenenc_int(head).ok_or(wire::Error::Malformed("column count"))?;
                    self.phase = Phase::ColumnDefs(columns);
                    Step::More
                }
            },
            Phase::ColumnDefs(left) => {
                self.phase = if left <= 1 {
                    Phase::ColumnsEof
                } else {
                    Phase::ColumnDefs(left - 1)
                };
                Step::More
            }
            Phase::ColumnsEof => {
                if !is_eof {
                    return Err(wire::Error::Malformed(
                        "expected EOF after column definitions",
                    ));
                }
                let status = eof_status(head);
                if status.is_some_and(|s| s.contains(StatusFlags::SERVER_STATUS_CURSOR_EXISTS)) {
                    Step::End(End::Done(status))
                } else {
                    self.phase = Phase::Rows;
                    Step::More
                }
            }
            Phase::Rows if is_eof => self.after_terminator(eof_status(head)),
            Phase::Rows => Step::More,
            Phase::PrepareStart => {
                let field = |at: usize| {
                    head.get(at..at + 2)
                        .map(|b| u64::from(u16::from_le_bytes([b[0], b[1]])))
                        .ok_or(wire::Error::Malformed("prepare OK"))
                };
                let (columns, params) = (field(5)?, field(7)?);
                self.phase = Phase::PrepareDefs {
                    left: params,
                    then_columns: columns,
                };
                self.next_prepare_group()
            }
            Phase::PrepareDefs { left, then_columns } => {
                self.phase = if left <= 1 {
                    Phase::PrepareEof { then_columns }
                } else {
                    Phase::PrepareDefs {
                        left: left - 1,
                        then_columns,
                    }
                };
                Step::More
            }
            Phase::PrepareEof { then_columns } => {
                self.phase = Phase::PrepareDefs {
                    left: then_columns,
                    then_columns: 0,
                };
                self.next_prepare_group()
            }
            Phase::DefsUntilEof if is_eof => Step::End(End::Done(eof_status(head))),
            Phase::DefsUntilEof => Step::More,
            Phase::Single => Step::End(End::Done(match first {
                OK_HEADER => ok_status(head),
                EOF_HEADER if is_eof => eof_status(head),
                _ => None,
            })),
        };
        Ok(step)
    }

    /// Relays a response that may carry protected columns: whole packets, column definitions
    /// held until all are in and rewritten, rows transformed. A failure (denied column, cell
    /// that does not open) becomes an error packet for this statement; the rest of the
    /// backend's response is read and dropped, and the session goes on.
    pub async fn relay_transformed(
        &mut self,
        backend: &mut PacketConn,
        client: &mut PacketConn,
        t: &Transform<'_>,
        tracker: &mut Tracker<'_>,
    ) -> Result<End, Failed> {
        let mut shift: u8 = 0;
        let mut held: Vec<Packet> = Vec::new();
        // One buffer for every transformed text row of the response.
        let mut row_buf: Vec<u8> = Vec::new();
        let mut plan: Option<(ResultPlan<'_>, Vec<u8>)> = None;
        if let Some((defs, shape)) = t.fetch {
            // Rows of an open cursor: the plan comes from the definitions its execute sent.
            let mut defs = defs.to_vec();
            let original = transform::original_types(&defs).unwrap_or_default();
            match transform::plan(
                &mut defs,
                t.policy,
                t.role,
                shape,
                t.results_charset,
                t.cells,
            ) {
                Ok(p) => plan = p.map(|p| (p, original)),
                Err(f) => return self.fail(backend, client, 1, &f, tracker).await,
            }
        }
        loop {
            let pkt = flushing(client, backend.read_packet(t.row_limit))
                .await?
                .map_err(Failed::Backend)?;
            let before = self.phase;
            if before == Phase::ResultStart {
                // A new result: the next statement's (they are counted across LOCAL INFILE
                // round trips, which continue one statement).
                if self.started && !self.after_infile {
                    self.result += 1;
                }
                self.started = true;
                self.after_infile = false;
            }
            let result = self.result;
            let step = self
                .step(&pkt.payload, pkt.payload.len())
                .map_err(Failed::Backend)?;
            let in_defs = matches!(self.phase, Phase::ColumnDefs(_))
                || (matches!(before, Phase::ColumnDefs(_)) && self.phase == Phase::ColumnsEof);
            if in_defs && matches!(step, Step::More) {
                held.push(pkt);
                if self.phase != Phase::ColumnsEof {
                    continue;
                }
                let mut defs: Vec<Vec<u8>> = held[1..].iter().map(|p| p.payload.to_vec()).collect();
                let original = transform::original_types(&defs).unwrap_or_default();
                if t.capture {
                    self.captured_defs = Some(defs.clone());
                }
                let planned = match t.shapes.get(result).and_then(Option::as_ref) {
                    Some(shape) => transform::plan(
                        &mut defs,
                        t.policy,
                        t.role,
                        shape,
                        t.results_charset,
                        t.cells,
                    ),
                    None => Ok(None),
                };
                match planned {
                    Err(f) => {
                        return self
                            .fail(
                                backend,
                                client,
                                held[0].first_seq.wrapping_add(shift),
                                &f,
                                tracker,
                            )
                            .await;
                    }
                    Ok(p) => {
                        let first = held.remove(0);
                        emit(client, &first, &first.payload, &mut shift);
                        for (p_, d) in held.iter().zip(&defs) {
                            emit(client, p_, d, &mut shift);
                        }
                        held.clear();
                        plan = p.map(|p| (p, original));
                    }
                }
                continue;
            }
            // A row leaves the phase at Rows; the result's end (an EOF or OK, followed by
            // more results) moves it on and is never a row.
            let is_row =
                before == Phase::Rows && self.phase == Phase::Rows && matches!(step, Step::More);
            let mut in_buf = false;
            let transformed = match (&plan, is_row) {
                (Some((p, original)), true) => {
                    in_buf = true;
                    let r = if t.binary {
                        p.binary_row_into(&pkt.payload, original, t.cells, &mut row_buf)
                    } else {
                        p.text_row_into(&pkt.payload, t.cells, &mut row_buf)
                    }
                    .map(|()| None);
                    match r {
                        Ok(row) => row,
                        Err(f) => {
                            return self
                                .fail(
                                    backend,
                                    client,
                                    pkt.first_seq.wrapping_add(shift),
                                    &f,
                                    tracker,
                                )
                                .await;
                        }
                    }
                }
                (_, false) if pkt.payload.first() == Some(&ERR_HEADER) => {
                    too_narrow(&pkt.payload, t.policy)
                }
                (None, true) if t.compressed_status => compression_on(&pkt.payload),
                _ if self.state_ok => tracker.ok(&pkt.payload)?,
                _ => None,
            };
            let payload = if in_buf {
                &row_buf[..]
            } else {
                transformed.as_deref().unwrap_or(&pkt.payload)
            };
            emit(client, &pkt, payload, &mut shift);
            if self.phase == Phase::ResultStart {
                plan = None;
            }
            if client.buffered() >= FLUSH_BYTES {
                client.flush().await.map_err(Failed::Client)?;
            }
            if let Step::End(e) = step {
                client.flush().await.map_err(Failed::Client)?;
                if e == End::LocalInfile {
                    self.phase = Phase::ResultStart;
                    self.after_infile = true;
                }
                return Ok(e);
            }
        }
    }

    /// Sends the error for a failed result and drops the rest of the backend's response.
    async fn fail(
        &mut self,
        backend: &mut PacketConn,
        client: &mut PacketConn,
        seq: u8,
        f: &Failure,
        tracker: &mut Tracker<'_>,
    ) -> Result<End, Failed> {
        tracing::info!(failure = ?f, "result refused");
        client.queue_packet(seq, &super::error::failure(f).to_payload());
        client.flush().await.map_err(Failed::Client)?;
        loop {
            // The rest is dropped as it streams by; only first bytes are kept, to classify.
            let (head, len, last_seq) = backend
                .skip_packet(PEEK_BYTES)
                .await
                .map_err(Failed::Backend)?;
            let step = self.step(&head, len).map_err(Failed::Backend)?;
            if self.state_ok {
                // The client does not see these results, but the state they report is real.
                if head.len() < len {
                    return Err(Failed::Backend(wire::Error::Malformed("session state")));
                }
                tracker.ok(&head)?;
            }
            match step {
                Step::More => {}
                Step::End(End::LocalInfile) => {
                    // Refuse the file: an empty packet, then the backend answers with an error.
                    backend
                        .write_packet(last_seq.wrapping_add(1), &[])
                        .await
                        .map_err(Failed::Backend)?;
                    self.phase = Phase::ResultStart;
                }
                Step::End(End::Done(_)) => return Ok(End::Done(None)),
            }
        }
    }

    /// After a prepare OK or a group's EOF: the next group, or the end.
    fn next_prepare_group(&mut self) -> Step {
        match self.phase {
            Phase::PrepareDefs {
                left: 0,
                then_columns: 0,
            } => Step::End(End::Done(None)),
            Phase::PrepareDefs {
                left: 0,
                then_columns,
            } => {
                self.phase = Phase::PrepareDefs {
                    left: then_columns,
                    then_columns: 0,
                };
                Step::More
            }
            _ => Step::More,
        }
    }

    fn after_terminator(&mut self, status: Option<StatusFlags>) -> Step {
        if status.is_some_and(|s| s.contains(StatusFlags::SERVER_MORE_RESULTS_EXISTS)) {
            self.phase = Phase::ResultStart;
            Step::More
        } else {
            Step::End(End::Done(status))
        }
    }

    /// Relays backend packets to the client until this response ends. OK packets that
    /// report session state changes are taken out of the stream, read, and rewritten for
    /// the client; everything else is forwarded as raw bytes.
    pub async fn relay(
        &mut self,
        backend: &mut PacketConn,
        client: &mut PacketConn,
        tracker: &mut Tracker<'_>,
    ) -> Result<End, Failed> {
        let mut end = None;
        loop {
            let buf = &backend.rbuf;
            let mut pos = 0;
            // A whole OK packet at `pos` whose state must be read: (payload length, seq).
            let mut state_ok = None;
            while pos < buf.len() {
                if self.stream_left > 0 {
                    let take = self.stream_left.min(buf.len() - pos);
                    pos += take;
                    self.stream_left -= take;
                    continue;
                }
                if end.is_some() {
                    break;
                }
                let Some((len, seq)) = header(&buf[pos..]) else {
                    break;
                };
                let peek = len.min(PEEK_BYTES);
                if buf.len() - pos < 4 + peek {
                    break;
                }
                let step = if self.continuation {
                    self.state_ok = false;
                    Step::More
                } else {
                    self.step(&buf[pos + 4..pos + 4 + peek], len)
                        .map_err(Failed::Backend)?
                };
                self.continuation = len == MAX_PAYLOAD_LEN;
                self.next_seq = seq.wrapping_add(1);
                if let Step::End(e) = step {
                    end = Some(e);
                }
                if self.state_ok && !self.continuation {
                    if len > peek {
                        return Err(Failed::Backend(wire::Error::Malformed("session state")));
                    }
                    state_ok = Some((len, seq));
                    break;
                }
                let available = buf.len() - pos - 4;
                if available >= len {
                    pos += 4 + len;
                } else {
                    pos = buf.len();
                    self.stream_left = len - available;
                }
            }
            if pos > 0 {
                client
                    .write_raw(&backend.rbuf[..pos])
                    .await
                    .map_err(Failed::Client)?;
                backend.rbuf.advance(pos);
            }
            if let Some((len, seq)) = state_ok {
                let rewritten = tracker.ok(&backend.rbuf[4..4 + len])?;
                match rewritten {
                    Some(p) => {
                        client.queue_packet(seq, &p);
                    }
                    None => {
                        client
                            .write_raw(&backend.rbuf[..4 + len])
                            .await
                            .map_err(Failed::Client)?;
                    }
                }
                backend.rbuf.advance(4 + len);
                continue;
            }
            match end {
                Some(e) if self.stream_left == 0 => {
                    client.flush().await.map_err(Failed::Client)?;
                    if e == End::LocalInfile {
                        self.phase = Phase::ResultStart;
                    }
                    return Ok(e);
                }
                _ => {
                    flushing(client, backend.fill())
                        .await?
                        .map_err(Failed::Backend)?;
                }
            }
        }
    }
}

/// A `SHOW STATUS` text row (name, value) with the value `ON` when it is the `Compression`
/// row; None for every other row.
fn compression_on(row: &[u8]) -> Option<Vec<u8>> {
    let (len, at) = lenenc_int(row)?;
    let end = at.checked_add(usize::try_from(len).ok()?)?;
    let name = row.get(at..end)?;
    if !name.eq_ignore_ascii_case(b"Compression") {
        return None;
    }
    let mut out = row[..end].to_vec();
    out.extend_from_slice(b"\x02ON");
    Some(out)
}

/// Queues `payload` for the client in place of `pkt`, keeping sequence ids consistent when
/// the new payload needs a different number of physical packets.
fn emit(client: &mut PacketConn, pkt: &Packet, payload: &[u8], shift: &mut u8) {
    let start = pkt.first_seq.wrapping_add(*shift);
    let next = client.queue_packet(start, payload);
    let written = next.wrapping_sub(start);
    let original = pkt.seq.wrapping_sub(pkt.first_seq).wrapping_add(1);
    *shift = shift.wrapping_add(written.wrapping_sub(original));
}

/// Forwards one physical packet from `from` to `to` without buffering it whole; returns its
/// payload length.
pub async fn forward_packet(from: &mut PacketConn, to: &mut PacketConn) -> wire::Result<usize> {
    from.ensure(4).await?;
    let (len, _) = from
        .peek_header()
        .ok_or(wire::Error::Malformed("short header"))?;
    let mut left = 4 + len;
    loop {
        let take = left.min(from.rbuf.len());
        if take > 0 {
            to.write_raw(&from.rbuf[..take]).await?;
            from.rbuf.advance(take);
            left -= take;
        }
        if left == 0 {
            return Ok(len);
        }
        from.fill().await?;
    }
}

/// Awaits a read from the backend; when it cannot finish at once, first sends the client
/// what is queued for it. The backend is then busy (the next statement of a multi-statement
/// query, a slow row), and what came before reaches the client meanwhile: a compressed
/// client's frames, and rewritten packets, wait for a flush otherwise.
async fn flushing<T>(
    client: &mut PacketConn,
    read: impl std::future::Future<Output = T>,
) -> Result<T, Failed> {
    use std::task::Poll;
    let mut read = std::pin::pin!(read);
    let now = std::future::poll_fn(|cx| {
        Poll::Ready(match read.as_mut().poll(cx) {
            Poll::Ready(r) => Some(r),
            Poll::Pending => None,
        })
    })
    .await;
    match now {
        Some(r) => Ok(r),
        None => {
            client.flush().await.map_err(Failed::Client)?;
            Ok(read.await)
        }
    }
}

/// The backend's "data too long" (1406) for a protected column, as myveil's: the column is
/// too narrow for the envelopes of its values, and what fixes it; and its "incorrect string
/// value" (1366) for an envelope written to a text column that binary storage needs retyped.
/// The server's message names the column only (a 1366's also quotes the first bytes written,
/// ciphertext, which myveil's leaves out); a column the policy does not protect keeps it.
pub(crate) fn too_narrow(payload: &[u8], policy: &Policy) -> Option<Vec<u8>> {
    let code = crate::wire::packets::err_code(payload)?;
    if code != 1406 && code != 1366 && code != 1054 {
        return None;
    }
    let text = String::from_utf8_lossy(payload.get(9..)?);
    if code == 1054 {
        // "Unknown column 'email_bidx' in 'INSERT INTO'": a blind-index column not made yet.
        let name = text.split('\'').nth(1)?;
        let col = policy.columns().iter().find(|c| {
            c.blind_index
                .as_deref()
                .is_some_and(|b| b.eq_ignore_ascii_case(name))
        })?;
        let message = format!(
            "myveil: the blind-index column {name} of {} does not exist yet: add it as `myveil migrate plan` shows (or see `myveil check`)",
            col.scope()
        );
        return Some(crate::wire::packets::ErrorReply::new(1054, b"42S22", message).to_payload());
    }
    let name = if code == 1406 {
        text.split('\'').nth(1)?
    } else {
        // "... for column `db`.`t`.`c` at row 1"
        let named = text.rsplit_once("for column ")?.1;
        named
            .split('`')
            .filter(|s| !s.is_empty() && *s != ".")
            .nth(2)?
    };
    let mut cols = policy
        .columns()
        .iter()
        .filter(|c| c.column.eq_ignore_ascii_case(name));
    let col = cols.next()?;
    if code == 1366 && col.storage != crate::policy::Storage::Binary {
        return None;
    }
    // The same name in several tables: which one the server meant is not in its message.
    let which = if cols.next().is_some() {
        format!("{name} (of a protected table)")
    } else {
        col.scope()
    };
    let unit = match col.storage {
        crate::policy::Storage::Binary => "bytes",
        crate::policy::Storage::Base64 => "characters of base64",
    };
    let message = if code == 1366 {
        format!(
            "myveil: column {which} holds text, and its envelopes are bytes: retype it as `myveil migrate plan` shows (or see `myveil check`)"
        )
    } else {
        format!(
            "myveil: column {which} is too narrow for the envelopes of its values: a {} value is stored in up to {} {unit}; widen it as `myveil migrate plan` shows (or see `myveil check`)",
            col.plain_type.name(),
            crate::backend::schema::stored_size(col)
        )
    };
    let state: &[u8; 5] = if code == 1366 { b"22007" } else { b"22001" };
    Some(crate::wire::packets::ErrorReply::new(code, state, message).to_payload())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::packets::ok_payload;

    fn eof(status: StatusFlags) -> Vec<u8> {
        let mut p = vec![EOF_HEADER, 0, 0];
        p.extend_from_slice(&status.bits().to_le_bytes());
        p
    }

    /// Feeds whole packets and returns the step index at which the response ended.
    fn run(expect: Expect, packets: &[Vec<u8>]) -> Option<(usize, End)> {
        let mut r = Response::new(expect);
        for (i, p) in packets.iter().enumerate() {
            match r.step(p, p.len()).expect("well formed") {
                Step::More => {}
                Step::End(e) => return Some((i, e)),
            }
        }
        None
    }

    const AUTOCOMMIT: StatusFlags = StatusFlags::SERVER_STATUS_AUTOCOMMIT;

    #[test]
    fn result_set_ends_at_eof_after_rows() {
        let packets = vec![
            vec![2],
            b"\x03defcol1".to_vec(),
            b"\x03defcol2".to_vec(),
            eof(AUTOCOMMIT),
            b"\x011\x012".to_vec(),
            vec![0xFB, 0x01, b'x'],
            eof(AUTOCOMMIT),
        ];
        assert_eq!(
            run(Expect::Query, &packets),
            Some((6, End::Done(Some(AUTOCOMMIT))))
        );
    }

    #[test]
    fn more_results_continue_until_the_last_ok() {
        let more = AUTOCOMMIT | StatusFlags::SERVER_MORE_RESULTS_EXISTS;
        let packets = vec![
            vec![1],
            b"\x03def".to_vec(),
            eof(AUTOCOMMIT),
            b"\x011".to_vec(),
            eof(more),
            ok_payload(1, 0, more, 0),
            ok_payload(0, 0, AUTOCOMMIT, 0),
        ];
        assert_eq!(
            run(Expect::Query, &packets),
            Some((6, End::Done(Some(AUTOCOMMIT))))
        );
    }

    #[test]
    fn error_ends_a_response_anywhere() {
        let err = vec![ERR_HEADER, 0x28, 0x04, b'#'];
        assert_eq!(
            run(Expect::Query, std::slice::from_ref(&err)),
            Some((0, End::Done(None)))
        );
        let packets = vec![
            vec![1],
            b"\x03def".to_vec(),
            eof(AUTOCOMMIT),
            b"\x011".to_vec(),
            err,
        ];
        assert_eq!(run(Expect::Query, &packets), Some((4, End::Done(None))));
    }

    #[test]
    fn local_infile_request_only_for_queries() {
        let req = vec![LOCAL_INFILE_HEADER, b'/', b'f'];
        assert_eq!(
            run(Expect::Query, std::slice::from_ref(&req)),
            Some((0, End::LocalInfile))
        );
        // For an execute, 0xFB is a column count of NULL: malformed, never an infile request.
        let mut r = Response::new(Expect::Execute);
        assert!(r.step(&req, req.len()).is_err());
    }

    #[test]
    fn cursor_ends_after_column_definitions() {
        let packets = vec![
            vec![1],
            b"\x03def".to_vec(),
            eof(AUTOCOMMIT | StatusFlags::SERVER_STATUS_CURSOR_EXISTS),
        ];
        assert!(matches!(
            run(Expect::Execute, &packets),
            Some((2, End::Done(_)))
        ));
    }

    #[test]
    fn prepare_reads_param_and_column_groups() {
        let prepare_ok = |cols: u16, params: u16| {
            let mut p = vec![OK_HEADER, 1, 0, 0, 0];
            p.extend_from_slice(&cols.to_le_bytes());
            p.extend_from_slice(&params.to_le_bytes());
            p.extend_from_slice(&[0, 0, 0]);
            p
        };
        let def = b"\x03def".to_vec();
        assert_eq!(
            run(Expect::Prepare, &[prepare_ok(0, 0)]),
            Some((0, End::Done(None)))
        );
        let both = vec![
            prepare_ok(2, 1),
            def.clone(),
            eof(AUTOCOMMIT),
            def.clone(),
            def.clone(),
            eof(AUTOCOMMIT),
        ];
        assert_eq!(run(Expect::Prepare, &both).map(|(i, _)| i), Some(5));
        let cols_only = vec![prepare_ok(1, 0), def.clone(), eof(AUTOCOMMIT)];
        assert_eq!(run(Expect::Prepare, &cols_only).map(|(i, _)| i), Some(2));
        let params_only = vec![prepare_ok(0, 2), def.clone(), def, eof(AUTOCOMMIT)];
        assert_eq!(run(Expect::Prepare, &params_only).map(|(i, _)| i), Some(3));
    }

    #[test]
    fn large_row_starting_with_0xfe_is_a_row_not_eof() {
        let mut r = Response::new(Expect::Fetch);
        let head = [0xFE, 0, 0, 0, 1, 0, 0, 0, 0, b'x'];
        assert!(matches!(r.step(&head, 1 << 24), Ok(Step::More)));
        assert!(matches!(r.step(&eof(AUTOCOMMIT), 5), Ok(Step::End(_))));
    }

    #[test]
    fn random_backend_packets_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for expect in [
            Expect::Query,
            Expect::Execute,
            Expect::Prepare,
            Expect::Fetch,
            Expect::FieldList,
            Expect::Single,
        ] {
            for _ in 0..2_000 {
                let mut r = Response::new(expect);
                for _ in 0..8 {
                    let len = rng.random_range(0..40);
                    let head: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                    match r.step(&head, len) {
                        Ok(Step::More) => {}
                        Ok(Step::End(_)) | Err(_) => break,
                    }
                }
            }
        }
    }
}
