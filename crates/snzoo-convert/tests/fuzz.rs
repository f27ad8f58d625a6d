//! Property-based fuzzing of the checkpoint reader: arbitrary bytes, and real checkpoints with
//! random byte edits, truncations and insertions, must give `Ok` or `Err` — never a panic, a hang
//! or an allocation the input cannot justify (the test process would abort).
//!
//! Run longer with `PROPTEST_CASES=100000 cargo test -p snzoo-convert --test fuzz --release`.

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
