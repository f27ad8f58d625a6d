//! Property-based fuzzing of the checkpoint reader: arbitrary bytes, and real checkpoints with
//! random byte edits, truncations and insertions, must give `Ok` or `Err` — never a panic, a hang
//! or an allocation the input cannot justify (the test process would abort).
//!
//! Run longer with `PROPTEST_CASES=100000 cargo test -p snzoo-convert --test fuzz --profile fuzz` (release speed, overflow checks on).

use std::io::Cursor;
use std::path::PathBuf;

use proptest::prelude::*;
use snzoo_convert::pickle::{read_pickle, PersistentIds};
use snzoo_convert::read_torch_checkpoint_from;

fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures").join(rel)).unwrap()
}

fn seeds() -> Vec<Vec<u8>> {
    ["checkpoints/storage_cases_legacy.pth", "checkpoints/storage_cases_zip.pth", "hostile/valid_hand_made.pth"]
        .iter()
        .map(|f| fixture(f))
        .collect()
}

#[derive(Debug, Clone)]
enum Edit {
    Set(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        1 => any::<usize>().prop_map(Edit::Truncate),
        1 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..16)).prop_map(|(i, v)| Edit::Insert(i, v)),
        1 => (any::<usize>(), 1usize..32).prop_map(|(i, n)| Edit::Remove(i, n)),
    ]
}

fn apply(mut data: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        if data.is_empty() {
            break;
        }
        match e {
            Edit::Set(i, b) => {
                let n = data.len();
                data[i % n] = *b;
            }
            Edit::Truncate(i) => data.truncate(i % data.len()),
            Edit::Insert(i, v) => {
                let at = i % data.len();
                data.splice(at..at, v.iter().copied());
            }
            Edit::Remove(i, n) => {
                let at = i % data.len();
                let end = (at + n).min(data.len());
                data.drain(at..end);
            }
        }
    }
    data
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn mutated_checkpoints_never_panic(seed in 0usize..3, edits in proptest::collection::vec(edit(), 1..6)) {
        let data = apply(seeds()[seed].clone(), &edits);
        let _ = read_torch_checkpoint_from(Cursor::new(data));
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = read_torch_checkpoint_from(Cursor::new(&data));
        let _ = read_pickle(&mut Cursor::new(&data), PersistentIds::TorchStorages);
    }

    /// Pickle-shaped noise: a protocol header then random opcodes from the set the reader knows.
    #[test]
    fn opcode_soup_never_panics(ops in proptest::collection::vec(
        prop_oneof![
            Just(b'('), Just(b')'), Just(b']'), Just(b'}'), Just(b'a'), Just(b'e'), Just(b's'), Just(b'u'),
            Just(b't'), Just(0x85u8), Just(0x86), Just(0x87), Just(b'R'), Just(b'b'), Just(b'Q'), Just(b'2'),
            Just(b'0'), Just(b'1'), Just(b'N'), Just(0x88), Just(b'K'), Just(b'q'), Just(b'h'), Just(0x94),
            Just(b'.'), any::<u8>()
        ], 0..300)) {
        let mut data = vec![0x80, 2];
        data.extend(ops);
        let _ = read_pickle(&mut Cursor::new(&data), PersistentIds::TorchStorages);
    }
}

/// Deep nesting (a million 1-tuples) must neither overflow the stack when built nor when dropped.
#[test]
fn deep_nesting_is_harmless() {
    let mut data = vec![0x80, 2, b')'];
    data.extend(std::iter::repeat_n(0x85u8, 1_000_000));
    data.push(b'.');
    let p = read_pickle(&mut Cursor::new(&data), PersistentIds::Refuse).unwrap();
    assert_eq!(p.objects.len(), 1_000_001);
}

/// One entry of a generated zip archive.
#[derive(Debug, Clone)]
struct Entry {
    name: String,
    deflate: bool,
    data: Vec<u8>,
}

fn entry_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("archive/data.pkl".to_string()),
        Just("archive/data/0".to_string()),
        Just("archive/data/1".to_string()),
        Just("archive/byteorder".to_string()),
        Just("archive/version".to_string()),
        Just("data.pkl".to_string()),
        Just("a/b/data.pkl".to_string()),
        Just("../../data.pkl".to_string()),
        "[a-z/._]{0,40}",
        "[a-z]{1,200}/data\\.pkl",
    ]
}

/// Entry contents: pieces of a real checkpoint's entries, little-endian floats, or noise.
fn entry_data(real: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let n = real.len();
    prop_oneof![
        (0..n, proptest::collection::vec(edit(), 0..3)).prop_map(move |(i, e)| apply(real[i].clone(), &e)),
        Just(b"little".to_vec()),
        Just(b"big".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..256),
    ]
}

/// The entries of the zip-format storage fixture, as real material for the generator.
fn zip_fixture_entries() -> Vec<Vec<u8>> {
    use std::io::Read;
    let mut archive = zip::ZipArchive::new(Cursor::new(fixture("checkpoints/storage_cases_zip.pth"))).unwrap();
    (0..archive.len())
        .map(|i| {
            let mut v = Vec::new();
            archive.by_index(i).unwrap().read_to_end(&mut v).unwrap();
            v
        })
        .collect()
}

fn build_zip(entries: &[Entry], comment: &str) -> Vec<u8> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let _ = zip.set_comment(comment.to_string());
    for e in entries {
        let method = if e.deflate { zip::CompressionMethod::Deflated } else { zip::CompressionMethod::Stored };
        let options = zip::write::SimpleFileOptions::default().compression_method(method);
        if zip.start_file(e.name.as_str(), options).is_err() {
            continue; // a duplicate name: the writer refuses it
        }
        zip.write_all(&e.data).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// The zip container: archives made of real and made-up entries (names that climb out,
    /// duplicates, long prefixes, deflated storages and pickles), then byte edits anywhere —
    /// the central directory included.
    #[test]
    fn generated_zip_archives_never_panic(
        entries in proptest::collection::vec(
            (entry_name(), any::<bool>(), entry_data(zip_fixture_entries())).prop_map(|(name, deflate, data)| Entry { name, deflate, data }),
            0..6,
        ),
        comment in "[ -~]{0,20}",
        edits in proptest::collection::vec(edit(), 0..4),
        tail in 0usize..200,
    ) {
        let bytes = build_zip(&entries, &comment);
        let _ = read_torch_checkpoint_from(Cursor::new(&bytes));
        let mut edited = apply(bytes.clone(), &edits);
        let _ = read_torch_checkpoint_from(Cursor::new(&edited));
        // Edits near the end hit the central directory and its end records.
        let n = edited.len();
        if n > 0 {
            for (k, e) in edits.iter().enumerate() {
                if let Edit::Set(_, b) = e {
                    let at = n - 1 - (tail + 7 * k) % n;
                    edited[at] = *b;
                }
            }
        }
        let _ = read_torch_checkpoint_from(Cursor::new(&edited));
    }
}
