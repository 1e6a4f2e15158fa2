//! The on-disk format of a log segment.
//!
//! A segment is one file, `<first index, 20 digits>.seg`, in the tenant's directory:
//!
//! ```text
//! "KBAUDIT1" | header length u32 LE | header CRC-32 u32 LE | header
//! header  = tenant length u16 LE | tenant | first index u64 LE | created (unix ms) i64 LE
//!           | frontier count u8 | frontier hashes (32 bytes each)
//! record  = kind u8 | payload length u32 LE | CRC-32 of kind, length and payload u32 LE | payload
//! ```
//!
//! Records are events (the API server's JSON of one event, byte for byte as received) and signed tree
//! heads. The frontier in the header is the Merkle tree's state before the segment's first event, so the
//! segments before it can be deleted by retention and every later tree head still checks.

use crate::head::SignedHead;
use crate::merkle::Frontier;

/// The first bytes of every segment.
pub const MAGIC: &[u8; 8] = b"KBAUDIT1";
/// The largest record payload accepted when reading (an event is far smaller).
pub const MAX_RECORD: usize = 16 << 20;
/// Bytes of framing before each record's payload.
pub const RECORD_OVERHEAD: usize = 9;

/// What a record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Event = 1,
    Head = 2,
}

/// A segment's header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub tenant: String,
    pub first_index: u64,
    pub created_ms: i64,
    pub frontier: Frontier,
}

/// Why a segment could not be read past some point.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("not a KubeBid audit segment (bad magic)")]
    Magic,
    #[error("the header is cut short")]
    ShortHeader,
    #[error("the header's checksum does not match")]
    HeaderChecksum,
    #[error("the header is malformed: {0}")]
    Header(&'static str),
    #[error("record at byte {offset} is cut short (a torn write)")]
    Torn { offset: usize },
    #[error("record at byte {offset}: checksum mismatch")]
    Checksum { offset: usize },
    #[error("record at byte {offset}: unknown kind {kind}")]
    UnknownKind { offset: usize, kind: u8 },
    #[error("record at byte {offset}: length {len} is over the limit")]
    TooLong { offset: usize, len: usize },
    #[error("record at byte {offset}: malformed tree head")]
    BadHead { offset: usize },
}

impl FormatError {
    /// Whether the damage is an incomplete last record, which a crash leaves behind.
    #[must_use]
    pub fn is_torn(&self) -> bool {
        matches!(self, Self::Torn { .. })
    }
}

/// The file name of the segment starting at `first_index`.
#[must_use]
pub fn file_name(first_index: u64) -> String {
    format!("{first_index:020}.seg")
}

/// The first index a segment file name stands for.
#[must_use]
pub fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Encodes a header, magic included.
#[must_use]
pub fn encode_header(h: &Header) -> Vec<u8> {
    let mut body = Vec::with_capacity(64 + h.frontier.hashes().len() * 32);
    let tenant = h.tenant.as_bytes();
    let tlen = u16::try_from(tenant.len()).unwrap_or(u16::MAX);
    body.extend_from_slice(&tlen.to_le_bytes());
    body.extend_from_slice(&tenant[..usize::from(tlen)]);
    body.extend_from_slice(&h.first_index.to_le_bytes());
    body.extend_from_slice(&h.created_ms.to_le_bytes());
    // A u64's frontier has at most 64 hashes.
    body.push(u8::try_from(h.frontier.hashes().len()).unwrap_or(u8::MAX));
    for hash in h.frontier.hashes() {
        body.extend_from_slice(hash);
    }
    let mut out = Vec::with_capacity(16 + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&len32(body.len()).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Reads the header; returns it and the offset of the first record.
pub fn decode_header(bytes: &[u8]) -> Result<(Header, usize), FormatError> {
    if bytes.len() < 16 {
        return Err(if bytes.starts_with(&MAGIC[..bytes.len().min(8)]) {
            FormatError::ShortHeader
        } else {
            FormatError::Magic
        });
    }
    if &bytes[..8] != MAGIC {
        return Err(FormatError::Magic);
    }
    let len = read_u32(bytes, 8) as usize;
    let crc = read_u32(bytes, 12);
    let body = bytes.get(16..16 + len).ok_or(FormatError::ShortHeader)?;
    if crc32fast::hash(body) != crc {
        return Err(FormatError::HeaderChecksum);
    }
    let mut r = Cursor { b: body, at: 0 };
    let tlen = usize::from(u16::from_le_bytes(
        r.array().ok_or(FormatError::Header("tenant"))?,
    ));
    let tenant = std::str::from_utf8(r.take(tlen).ok_or(FormatError::Header("tenant"))?)
        .map_err(|_| FormatError::Header("tenant is not UTF-8"))?
        .to_owned();
    let first_index = u64::from_le_bytes(r.array().ok_or(FormatError::Header("first index"))?);
    let created_ms = i64::from_le_bytes(r.array().ok_or(FormatError::Header("created"))?);
    let count = r.take(1).ok_or(FormatError::Header("frontier"))?[0];
    let mut hashes = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        hashes.push(r.array::<32>().ok_or(FormatError::Header("frontier"))?);
    }
    let frontier = Frontier::from_parts(first_index, hashes).ok_or(FormatError::Header(
        "the frontier does not fit the first index",
    ))?;
    if r.at != body.len() {
        return Err(FormatError::Header("trailing bytes"));
    }
    Ok((
        Header {
            tenant,
            first_index,
            created_ms,
            frontier,
        },
        16 + len,
    ))
}

/// Reads only the header of the segment at `path` (not its records): the header and where records start.
///
/// # Errors
/// The file cannot be read (outer), or its header is damaged (inner).
pub fn read_header(
    path: &std::path::Path,
) -> std::io::Result<Result<(Header, usize), FormatError>> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(path)?;
    let mut head = [0u8; 16];
    if let Err(e) = f.read_exact(&mut head) {
        return if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Ok(Err(FormatError::ShortHeader))
        } else {
            Err(e)
        };
    }
    let len = read_u32(&head, 8) as usize;
    // A header holds a tenant name and at most 64 hashes: anything far larger is damage, not a header.
    if len > 64 * 1024 {
        return Ok(Err(FormatError::Header("header length is out of range")));
    }
    let mut bytes = head.to_vec();
    bytes.resize(16 + len, 0);
    if let Err(e) = f.read_exact(&mut bytes[16..]) {
        return if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Ok(Err(FormatError::ShortHeader))
        } else {
            Err(e)
        };
    }
    Ok(decode_header(&bytes))
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N).and_then(|s| s.try_into().ok())
    }
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

/// Appends one framed record to `out`.
pub fn encode_record(kind: Kind, payload: &[u8], out: &mut Vec<u8>) {
    let len = len32(payload.len()).to_le_bytes();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&[kind as u8]);
    crc.update(&len);
    crc.update(payload);
    out.reserve(RECORD_OVERHEAD + payload.len());
    out.push(kind as u8);
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(payload);
}

/// One record read back.
#[derive(Debug)]
pub enum Record<'a> {
    Event(&'a [u8]),
    Head(SignedHead),
}

/// Iterates over the records of a segment's bytes, from `start` (after the header). Stops with the error
/// at the first damaged record; [`Records::offset`] is then where the good part ends.
pub struct Records<'a> {
    bytes: &'a [u8],
    at: usize,
    failed: bool,
}

impl<'a> Records<'a> {
    #[must_use]
    pub fn new(bytes: &'a [u8], start: usize) -> Self {
        Self {
            bytes,
            at: start,
            failed: false,
        }
    }

    /// The byte offset just past the last good record.
    #[must_use]
    pub fn offset(&self) -> usize {
        self.at
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<(usize, Record<'a>), FormatError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.at >= self.bytes.len() {
            return None;
        }
        let offset = self.at;
        let rest = &self.bytes[offset..];
        let fail = |this: &mut Self, e| {
            this.failed = true;
            Some(Err(e))
        };
        if rest.len() < RECORD_OVERHEAD {
            return fail(self, FormatError::Torn { offset });
        }
        let kind = rest[0];
        let len = read_u32(rest, 1) as usize;
        if len > MAX_RECORD {
            return fail(self, FormatError::TooLong { offset, len });
        }
        let Some(payload) = rest.get(RECORD_OVERHEAD..RECORD_OVERHEAD + len) else {
            return fail(self, FormatError::Torn { offset });
        };
        let mut crc = crc32fast::Hasher::new();
        crc.update(&rest[..5]);
        crc.update(payload);
        if crc.finalize() != read_u32(rest, 5) {
            return fail(self, FormatError::Checksum { offset });
        }
        let record = match kind {
            1 => Record::Event(payload),
            2 => match SignedHead::decode(payload) {
                Some(h) => Record::Head(h),
                None => return fail(self, FormatError::BadHead { offset }),
            },
            k => return fail(self, FormatError::UnknownKind { offset, kind: k }),
        };
        self.at = offset + RECORD_OVERHEAD + len;
        Some(Ok((offset, record)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::leaf_hash;

    #[test]
    fn header_and_records_round_trip() {
        let mut frontier = Frontier::new();
        for i in 0..5u8 {
            frontier.push(leaf_hash(&[i]));
        }
        let h = Header {
            tenant: "acme".into(),
            first_index: 5,
            created_ms: 1_700_000_000_000,
            frontier,
        };
        let mut bytes = encode_header(&h);
        encode_record(Kind::Event, br#"{"a":1}"#, &mut bytes);
        encode_record(Kind::Event, b"", &mut bytes);
        let (back, start) = decode_header(&bytes).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, h);
        let got: Vec<_> = Records::new(&bytes, start).collect();
        assert_eq!(got.len(), 2);
        assert!(matches!(got[0], Ok((_, Record::Event(p))) if p == br#"{"a":1}"#));
    }

    #[test]
    fn a_torn_or_flipped_record_stops_the_reader_where_the_good_part_ends() {
        let h = Header {
            tenant: "t".into(),
            first_index: 0,
            created_ms: 0,
            frontier: Frontier::new(),
        };
        let mut bytes = encode_header(&h);
        let (_, start) = decode_header(&bytes).unwrap_or_else(|e| panic!("{e}"));
        encode_record(Kind::Event, b"first", &mut bytes);
        let good = bytes.len();
        encode_record(Kind::Event, b"second", &mut bytes);
        let torn = &bytes[..bytes.len() - 2];
        let mut r = Records::new(torn, start);
        assert!(matches!(r.next(), Some(Ok(_))));
        assert!(matches!(r.next(), Some(Err(FormatError::Torn { offset })) if offset == good));
        assert_eq!(r.offset(), good);
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let mut r = Records::new(&flipped, start);
        assert!(matches!(r.next(), Some(Ok(_))));
        assert!(matches!(r.next(), Some(Err(FormatError::Checksum { .. }))));
    }

    #[test]
    fn the_header_alone_is_read_back_and_a_damaged_one_is_named() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join(file_name(0));
        let h = Header {
            tenant: "acme".into(),
            first_index: 0,
            created_ms: 1,
            frontier: Frontier::new(),
        };
        let mut bytes = encode_header(&h);
        encode_record(Kind::Event, b"event", &mut bytes);
        std::fs::write(&path, &bytes).unwrap_or_else(|e| panic!("{e}"));
        let read = read_header(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read, decode_header(&bytes));
        std::fs::write(&path, &bytes[..20]).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            read_header(&path),
            Ok(Err(FormatError::ShortHeader))
        ));
        let mut huge = bytes.clone();
        huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        std::fs::write(&path, &huge).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            read_header(&path),
            Ok(Err(FormatError::Header(_)))
        ));
    }

    #[test]
    fn file_names_sort_by_index_and_parse_back() {
        assert_eq!(parse_file_name(&file_name(42)), Some(42));
        assert!(file_name(9) < file_name(10));
        assert_eq!(parse_file_name("42.seg"), None);
        assert_eq!(parse_file_name("0000000000000000004x.seg"), None);
    }
}
