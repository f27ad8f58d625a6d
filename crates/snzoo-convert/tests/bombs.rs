//! Hostile inputs built to exhaust memory or time: each must end in a clear error, quickly.
//! (The binary's tests measure the peak memory of the same files: crates/snzoo/tests/hostile.rs.)

use std::io::{Cursor, Write};
use std::time::{Duration, Instant};

use snzoo_convert::pickle::{read_pickle, read_pickle_limited, PersistentIds, PickleError, PickleLimits};
use snzoo_convert::{read_torch_checkpoint_from, CheckpointError};

fn pickle(body: impl IntoIterator<Item = u8>) -> Vec<u8> {
    let mut data = vec![0x80, 2];
    data.extend(body);
    data.push(b'.');
    data
}

fn limit_of(e: &PickleError) -> &'static str {
    match e {
        PickleError::Limit { what, .. } => what,
        other => panic!("expected a limit error, got {other}"),
    }
}

/// A zip checkpoint whose `data.pkl` is deflated: `n` NONE opcodes inflate from a few KB.
fn deflate_bomb(n: usize) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let deflated = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("archive/data.pkl", deflated).unwrap();
    zip.write_all(&[0x80, 2]).unwrap();
    let chunk = vec![b'N'; 1 << 20];
    for _ in 0..n / chunk.len() {
        zip.write_all(&chunk).unwrap();
    }
    zip.write_all(b".").unwrap();
    zip.finish().unwrap().into_inner()
}

#[test]
fn a_deflated_pickle_cannot_inflate_beyond_the_file() {
    let data = deflate_bomb(64 << 20);
    assert!(data.len() < 1 << 20, "the bomb is small: {} bytes", data.len());
    let t = Instant::now();
    let e = read_torch_checkpoint_from(Cursor::new(data)).unwrap_err();
    match e {
        CheckpointError::Pickle(p) => assert_eq!(limit_of(&p), "bytes"),
        other => panic!("{other}"),
    }
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn stack_objects_and_items_are_bounded() {
    // Two million NONEs on the stack.
    let e = read_pickle(&mut Cursor::new(pickle(std::iter::repeat_n(b'N', 2_000_000))), PersistentIds::Refuse).unwrap_err();
    assert_eq!(limit_of(&e), "stack entries");
    // Three million nested 1-tuples: one object each.
    let mut body = vec![b')'];
    body.extend(std::iter::repeat_n(0x85u8, 3_000_000));
    let e = read_pickle(&mut Cursor::new(pickle(body)), PersistentIds::Refuse).unwrap_err();
    assert_eq!(limit_of(&e), "objects");
    // One list that NONEs are appended to, ten million times.
    let mut body = vec![b']'];
    for _ in 0..10_000_000 {
        body.extend([b'N', b'a']);
    }
    let e = read_pickle(&mut Cursor::new(pickle(body)), PersistentIds::Refuse).unwrap_err();
    assert_eq!(limit_of(&e), "container items");
    // The same object appended to itself through the memo does not escape the count either.
    let mut body = vec![b']', 0x94];
    for _ in 0..10_000_000 {
        body.extend([b'h', 0, b'a']);
    }
    let e = read_pickle(&mut Cursor::new(pickle(body)), PersistentIds::Refuse).unwrap_err();
    assert_eq!(limit_of(&e), "container items");
    // Memo indices far beyond anything written.
    let e = read_pickle(&mut Cursor::new(pickle([b'N', b'r', 0xff, 0xff, 0xff, 0x7f])), PersistentIds::Refuse).unwrap_err();
    assert!(matches!(e, PickleError::Malformed { .. }), "{e}");
    // Bytes: a reader limit is a limit.
    let limits = PickleLimits { bytes: 100, ..PickleLimits::default() };
    let e = read_pickle_limited(&mut Cursor::new(pickle(std::iter::repeat_n(b'N', 200))), PersistentIds::Refuse, limits).unwrap_err();
    assert_eq!(limit_of(&e), "bytes");
}

/// A dict with many keys is built in linear time (a repeated key still replaces its value).
#[test]
fn large_dicts_are_fast() {
    let n = 300_000u32;
    let mut body = vec![b'}', b'('];
    for i in 0..n {
        body.push(b'J');
        body.extend((i % (n - 1)).to_le_bytes()); // the last key repeats the first
        body.push(b'J');
        body.extend(i.to_le_bytes());
    }
    body.push(b'u');
    let t = Instant::now();
    let p = read_pickle(&mut Cursor::new(pickle(body)), PersistentIds::Refuse).unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let d = p.dict(p.root.as_ref().unwrap()).unwrap();
    assert_eq!(d.len(), n as usize - 1);
    assert_eq!(d[0].1, snzoo_convert::pickle::Value::Int(n as i64 - 1));
}
