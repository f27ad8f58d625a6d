//! The table ("SSTable") format of LevelDB, in which TensorFlow writes V1 checkpoints and the
//! `.index` file of V2 bundles (tensorflow/core/lib/io/table_format.txt).
//!
//! ```text
//! [data block 1] ... [data block N] [meta-index block] [index block] [footer: 48 bytes]
//! block   = entries, restart offsets (u32 each), restart count (u32), then a 5-byte trailer:
//!           compression type (0 none, 1 snappy) and the masked crc32c of contents + type
//! entry   = varint32 shared key bytes, varint32 unshared bytes, varint32 value length,
//!           unshared key bytes, value
//! footer  = meta-index handle, index handle (varint64 offset and size each), zero padding to
//!           40 bytes, magic 0xdb4775248b80fb57 (little-endian)
//! ```
//!
//! The index block maps a separator key to the handle of each data block; reading every entry
//! means walking the index in order. Hand-written because no kept crate reads this format from
//! memory with the checks a hostile file needs (every offset, length and crc is verified; a
//! snappy block may not expand beyond what its compressed size allows).

use std::borrow::Cow;

/// The footer's magic number.
pub const MAGIC: u64 = 0xdb47_7524_8b80_fb57;
const FOOTER_LEN: usize = 48;
const TRAILER_LEN: usize = 5;

/// Why a table cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    #[error("not a TensorFlow table (no table footer magic at the end of the file)")]
    NotATable,
    #[error("corrupt table: {0}")]
    Corrupt(String),
    #[error("unsupported table: {0}")]
    Unsupported(String),
}

fn corrupt(m: impl Into<String>) -> TableError {
    TableError::Corrupt(m.into())
}

/// Reads a varint of at most `max_bytes` bytes at `*pos`.
fn varint(buf: &[u8], pos: &mut usize, max_bytes: usize, what: &str) -> Result<u64, TableError> {
    let mut v = 0u64;
    for i in 0..max_bytes {
        let b = *buf.get(*pos).ok_or_else(|| corrupt(format!("{what} runs past its block")))?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(corrupt(format!("{what} is a varint longer than {max_bytes} bytes")))
}

fn varint32(buf: &[u8], pos: &mut usize, what: &str) -> Result<usize, TableError> {
    let v = varint(buf, pos, 5, what)?;
    u32::try_from(v).map(|v| v as usize).map_err(|_| corrupt(format!("{what} {v} does not fit 32 bits")))
}

/// Where a block lies in the file (its trailer follows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHandle {
    pub offset: u64,
    pub size: u64,
}

impl BlockHandle {
    /// Decodes a handle (two varint64s) at `*pos`.
    pub fn decode(buf: &[u8], pos: &mut usize) -> Result<Self, TableError> {
        let offset = varint(buf, pos, 10, "block offset")?;
        let size = varint(buf, pos, 10, "block size")?;
        Ok(Self { offset, size })
    }
}

/// Whether `file` ends with a table footer.
pub fn is_table(file: &[u8]) -> bool {
    file.len() >= FOOTER_LEN && file[file.len() - 8..] == MAGIC.to_le_bytes()
}

/// The contents of the block at `h`, checked against its trailer and decompressed.
fn block(file: &[u8], h: BlockHandle) -> Result<Cow<'_, [u8]>, TableError> {
    let start = usize::try_from(h.offset).map_err(|_| corrupt("block offset too large"))?;
    let size = usize::try_from(h.size).map_err(|_| corrupt("block size too large"))?;
    let end = start
        .checked_add(size)
        .filter(|e| e.checked_add(TRAILER_LEN).is_some_and(|t| t <= file.len()))
        .ok_or_else(|| corrupt(format!("block at {start} of {size} bytes runs past the end of the file ({} bytes)", file.len())))?;
    let contents = &file[start..end];
    let kind = file[end];
    let stored = u32::from_le_bytes(file[end + 1..end + 5].try_into().expect("4 bytes"));
    let crc = crc32c::crc32c_append(crc32c::crc32c(contents), &[kind]);
    let masked = (crc.rotate_right(15)).wrapping_add(0xa282_ead8);
    if masked != stored {
        return Err(corrupt(format!("block at {start}: checksum mismatch (stored {stored:#010x}, computed {masked:#010x})")));
    }
    match kind {
        0 => Ok(Cow::Borrowed(contents)),
        1 => {
            let n = snap::raw::decompress_len(contents).map_err(|e| corrupt(format!("block at {start}: snappy: {e}")))?;
            // Snappy expands at most ~21× (a 3-byte copy emits 64 bytes); more is a lie.
            if n > contents.len().saturating_mul(32).saturating_add(1 << 16) {
                return Err(corrupt(format!("block at {start}: claims {n} bytes from {} compressed", contents.len())));
            }
            let out = snap::raw::Decoder::new().decompress_vec(contents).map_err(|e| corrupt(format!("block at {start}: snappy: {e}")))?;
            Ok(Cow::Owned(out))
        }
        k => Err(TableError::Unsupported(format!("block at {start} has compression type {k} (known: 0 none, 1 snappy)"))),
    }
}

/// Calls `f(key, value)` for every entry of one block, in order.
fn block_entries<E: From<TableError>>(b: &[u8], mut f: impl FnMut(&[u8], &[u8]) -> Result<(), E>) -> Result<(), E> {
    if b.len() < 4 {
        return Err(corrupt("block shorter than its restart count").into());
    }
    let restarts = u32::from_le_bytes(b[b.len() - 4..].try_into().expect("4 bytes")) as usize;
    let limit = restarts
        .checked_mul(4)
        .and_then(|r| (b.len() - 4).checked_sub(r))
        .ok_or_else(|| corrupt(format!("block of {} bytes cannot hold {restarts} restart offsets", b.len())))?;
    let mut key: Vec<u8> = Vec::new();
    let mut pos = 0;
    while pos < limit {
        let entries = &b[..limit];
        let shared = varint32(entries, &mut pos, "shared key length")?;
        let unshared = varint32(entries, &mut pos, "key length")?;
        let value_len = varint32(entries, &mut pos, "value length")?;
        if shared > key.len() {
            return Err(corrupt(format!("entry shares {shared} bytes with a {}-byte previous key", key.len())).into());
        }
        let key_end = pos.checked_add(unshared).filter(|&e| e <= limit).ok_or_else(|| corrupt("key runs past its block"))?;
        let value_end = key_end.checked_add(value_len).filter(|&e| e <= limit).ok_or_else(|| corrupt("value runs past its block"))?;
        key.truncate(shared);
        key.extend_from_slice(&entries[pos..key_end]);
        f(&key, &entries[key_end..value_end])?;
        pos = value_end;
    }
    Ok(())
}

/// Calls `f(key, value)` for every entry of the table in `file`, in key order.
pub fn for_each_entry<E: From<TableError>>(file: &[u8], mut f: impl FnMut(&[u8], &[u8]) -> Result<(), E>) -> Result<(), E> {
    if !is_table(file) {
        return Err(TableError::NotATable.into());
    }
    let footer = &file[file.len() - FOOTER_LEN..];
    let mut pos = 0;
    let _meta_index = BlockHandle::decode(footer, &mut pos)?;
    let index = BlockHandle::decode(footer, &mut pos)?;
    if pos > FOOTER_LEN - 8 {
        return Err(corrupt("footer handles overlap the magic").into());
    }
    let index = block(file, index)?;
    block_entries(&index, |_, handle| {
        let mut p = 0;
        let h = BlockHandle::decode(handle, &mut p)?;
        let data = block(file, h)?;
        block_entries(&data, &mut f)
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn put_varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// A block of `entries` (no key sharing, one restart), with its trailer, compressed or not.
    fn write_block(file: &mut Vec<u8>, entries: &[(&[u8], &[u8])], snappy: bool) -> BlockHandle {
        let mut b = Vec::new();
        for (k, v) in entries {
            put_varint(&mut b, 0);
            put_varint(&mut b, k.len() as u64);
            put_varint(&mut b, v.len() as u64);
            b.extend_from_slice(k);
            b.extend_from_slice(v);
        }
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        let (contents, kind) = if snappy { (snap::raw::Encoder::new().compress_vec(&b).unwrap(), 1u8) } else { (b, 0u8) };
        let h = BlockHandle { offset: file.len() as u64, size: contents.len() as u64 };
        file.extend_from_slice(&contents);
        file.push(kind);
        let crc = crc32c::crc32c_append(crc32c::crc32c(&contents), &[kind]);
        file.extend_from_slice(&crc.rotate_right(15).wrapping_add(0xa282_ead8).to_le_bytes());
        h
    }

    /// A table of the given blocks of entries (each entry's key must sort after the last).
    pub(crate) fn write_table(blocks: &[Entries], snappy: bool) -> Vec<u8> {
        let mut file = Vec::new();
        let mut index: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for entries in blocks {
            let e: Vec<(&[u8], &[u8])> = entries.iter().map(|(k, v)| (k.as_slice(), v.as_slice())).collect();
            let h = write_block(&mut file, &e, snappy);
            let mut hv = Vec::new();
            put_varint(&mut hv, h.offset);
            put_varint(&mut hv, h.size);
            index.push((entries.last().map(|(k, _)| k.clone()).unwrap_or_default(), hv));
        }
        let meta = write_block(&mut file, &[], false);
        let e: Vec<(&[u8], &[u8])> = index.iter().map(|(k, v)| (k.as_slice(), v.as_slice())).collect();
        let idx = write_block(&mut file, &e, false);
        let mut footer = Vec::new();
        for h in [meta, idx] {
            put_varint(&mut footer, h.offset);
            put_varint(&mut footer, h.size);
        }
        footer.resize(40, 0);
        footer.extend_from_slice(&MAGIC.to_le_bytes());
        file.extend_from_slice(&footer);
        file
    }

    type Entries = Vec<(Vec<u8>, Vec<u8>)>;

    fn read_all(file: &[u8]) -> Result<Entries, TableError> {
        let mut out = Vec::new();
        for_each_entry::<TableError>(file, |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn round_trip_plain_and_snappy() {
        let blocks =
            vec![vec![(b"".to_vec(), b"meta".to_vec()), (b"a".to_vec(), vec![7u8; 1000])], vec![(b"b/c".to_vec(), b"xyz".to_vec())]];
        for snappy in [false, true] {
            let t = write_table(&blocks, snappy);
            let got = read_all(&t).unwrap();
            assert_eq!(got, blocks.concat());
        }
    }

    #[test]
    fn corruption_is_detected() {
        let t = write_table(&[vec![(b"k".to_vec(), b"value".to_vec())]], false);
        // A flipped byte in a data block fails its checksum.
        let mut bad = t.clone();
        bad[5] ^= 1;
        assert!(matches!(read_all(&bad), Err(TableError::Corrupt(m)) if m.contains("checksum")));
        // Truncation loses the footer.
        assert_eq!(read_all(&t[..t.len() - 1]), Err(TableError::NotATable));
        // A footer pointing past the end.
        let mut bad = t.clone();
        let n = bad.len();
        bad[n - 48 + 2] = 0x7f;
        assert!(read_all(&bad).is_err());
    }

    /// A key that shares more bytes than the previous key has is refused.
    #[test]
    fn overlong_shared_prefix() {
        let mut b = Vec::new();
        put_varint(&mut b, 3);
        put_varint(&mut b, 0);
        put_varint(&mut b, 0);
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        let r = block_entries::<TableError>(&b, |_, _| Ok(()));
        assert!(matches!(r, Err(TableError::Corrupt(m)) if m.contains("shares 3")));
    }
}
