//! Property-based fuzzing of the TensorFlow, Caffe and Torch7 readers: real files with random
//! edits, and TensorFlow tables re-sealed around edited records (so that edits get past the
//! block checksums into the protos and the slice assembly), must give `Ok` or `Err` — never a
//! panic, a hang or an allocation the input cannot justify.
//!
//! Run longer with `PROPTEST_CASES=100000 cargo test -p snzoo-convert --test fuzz_frameworks --profile fuzz` (release speed, overflow checks on).

use std::path::PathBuf;

use proptest::prelude::*;
use prost::Message;
use snzoo_convert::proto::tensorflow as pb;
use snzoo_convert::tensorflow::{read_v1, table};
use snzoo_convert::{caffe, torch7};

fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/frameworks").join(rel)).unwrap()
}

#[derive(Debug, Clone)]
enum Edit {
    Set(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    /// A 4- or 8-byte little-endian integer overwritten with an extreme value.
    Int(usize, u64),
}

fn edit() -> impl Strategy<Value = Edit> {
    let extreme = prop_oneof![Just(0u64), Just(u64::MAX), Just(i32::MAX as u64), Just(i64::MAX as u64), Just(1 << 31), any::<u64>()];
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        1 => any::<usize>().prop_map(Edit::Truncate),
        1 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..16)).prop_map(|(i, v)| Edit::Insert(i, v)),
        1 => (any::<usize>(), 1usize..32).prop_map(|(i, n)| Edit::Remove(i, n)),
        2 => (any::<usize>(), extreme).prop_map(|(i, v)| Edit::Int(i, v)),
    ]
}

fn apply(mut data: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        if data.is_empty() {
            break;
        }
        let n = data.len();
        match e {
            Edit::Set(i, b) => data[i % n] = *b,
            Edit::Truncate(i) => data.truncate(i % n),
            Edit::Insert(i, v) => {
                let at = i % n;
                data.splice(at..at, v.iter().copied());
            }
            Edit::Remove(i, k) => {
                let at = i % n;
                data.drain(at..(at + k).min(n));
            }
            Edit::Int(i, v) => {
                let width = if v >> 32 == 0 { 4 } else { 8 };
                let at = i % n;
                let end = (at + width).min(n);
                data[at..end].copy_from_slice(&v.to_le_bytes()[..end - at]);
            }
        }
    }
    data
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A table of `entries` (one data block, optionally snappy), checksums correct.
fn seal(entries: &[(Vec<u8>, Vec<u8>)], snappy: bool) -> Vec<u8> {
    let mut file = Vec::new();
    let block = |file: &mut Vec<u8>, entries: &[(Vec<u8>, Vec<u8>)], compress: bool| -> (u64, u64) {
        let mut b = Vec::new();
        for (k, v) in entries {
            varint(&mut b, 0);
            varint(&mut b, k.len() as u64);
            varint(&mut b, v.len() as u64);
            b.extend_from_slice(k);
            b.extend_from_slice(v);
        }
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        let (contents, kind) = if compress { (snap::raw::Encoder::new().compress_vec(&b).unwrap(), 1u8) } else { (b, 0u8) };
        let at = file.len() as u64;
        file.extend_from_slice(&contents);
        file.push(kind);
        let crc = crc32c::crc32c_append(crc32c::crc32c(&contents), &[kind]);
        file.extend_from_slice(&crc.rotate_right(15).wrapping_add(0xa282_ead8).to_le_bytes());
        (at, contents.len() as u64)
    };
    let data = block(&mut file, entries, snappy);
    let meta = block(&mut file, &[], false);
    let mut handle = Vec::new();
    varint(&mut handle, data.0);
    varint(&mut handle, data.1);
    let index = block(&mut file, &[(vec![0xff], handle)], false);
    let mut footer = Vec::new();
    for (o, s) in [meta, index] {
        varint(&mut footer, o);
        varint(&mut footer, s);
    }
    footer.resize(40, 0);
    footer.extend_from_slice(&table::MAGIC.to_le_bytes());
    file.extend_from_slice(&footer);
    file
}

/// The records of a V1 checkpoint fixture.
fn records(rel: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    table::for_each_entry::<table::TableError>(&fixture(rel), |k, v| {
        out.push((k.to_vec(), v.to_vec()));
        Ok(())
    })
    .unwrap();
    out
}

/// A random `SavedTensorSlices` record: metadata or a slice of a tensor.
fn slice_record() -> impl Strategy<Value = pb::SavedTensorSlices> {
    let dims = proptest::collection::vec(prop_oneof![0i64..5, Just(-1), Just(i64::MAX), Just(1 << 40)], 0..4);
    let extent = (prop_oneof![0i64..5, Just(-1), Just(i64::MAX)], proptest::option::of(prop_oneof![0i64..5, Just(-1), Just(i64::MAX)]));
    let extents = proptest::collection::vec(extent, 0..4);
    let dtype = prop_oneof![Just(1), Just(2), Just(3), Just(7), Just(9), Just(10), Just(14), Just(19), -1i32..30];
    let name = prop_oneof![Just("a".to_string()), Just("b/c".to_string()), "[a-c]{0,3}"];
    (name, dims, extents, dtype, proptest::collection::vec(any::<f32>(), 0..40), any::<bool>()).prop_map(
        |(name, dims, extents, dtype, values, meta)| {
            let slice = pb::TensorSliceProto {
                extent: extents
                    .iter()
                    .map(|&(start, len)| pb::tensor_slice_proto::Extent {
                        start,
                        has_length: len.map(pb::tensor_slice_proto::extent::HasLength::Length),
                    })
                    .collect(),
            };
            if meta {
                let shape = pb::TensorShapeProto {
                    dim: dims.iter().map(|&size| pb::tensor_shape_proto::Dim { size, name: String::new() }).collect(),
                    unknown_rank: false,
                };
                pb::SavedTensorSlices {
                    meta: Some(pb::SavedTensorSliceMeta {
                        tensor: vec![pb::SavedSliceMeta { name, shape: Some(shape), r#type: dtype, slice: vec![slice] }],
                        versions: None,
                    }),
                    data: None,
                }
            } else {
                let data = pb::TensorProto {
                    float_val: values.clone(),
                    int64_val: values.iter().map(|v| *v as i64).collect(),
                    ..Default::default()
                };
                pb::SavedTensorSlices { meta: None, data: Some(pb::SavedSlice { name, slice: Some(slice), data: Some(data) }) }
            }
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Raw edits of V1 checkpoints: the table layer (footer, handles, trailers, crc).
    #[test]
    fn edited_tf_v1_files_never_panic(seed in 0usize..2, edits in proptest::collection::vec(edit(), 1..6)) {
        let file = fixture(["slim/partitioned.ckpt", "slim/tiny.ckpt"][seed]);
        let _ = read_v1(&apply(file, &edits));
    }

    /// Edited records re-sealed into valid tables (plain or snappy): the protos and slices.
    #[test]
    fn resealed_tf_v1_records_never_panic(record in 0usize..64, edits in proptest::collection::vec(edit(), 1..4), snappy in any::<bool>()) {
        let mut recs = records("slim/partitioned.ckpt");
        let i = record % recs.len();
        recs[i].1 = apply(recs[i].1.clone(), &edits);
        if let Ok(ck) = read_v1(&seal(&recs, snappy)) {
            for (_, t) in &ck.tensors {
                prop_assert_eq!(t.data.len(), t.numel() * t.dtype.size());
            }
        }
    }

    /// Generated metadata and slices: shapes, extents and dtypes of every kind.
    #[test]
    fn generated_tf_v1_tables_never_panic(recs in proptest::collection::vec(slice_record(), 1..6), snappy in any::<bool>()) {
        let entries: Vec<(Vec<u8>, Vec<u8>)> = recs.iter().enumerate().map(|(i, r)| {
            let key = if r.meta.is_some() && i == 0 { Vec::new() } else { vec![i as u8 + 1] };
            (key, r.encode_to_vec())
        }).collect();
        let file = seal(&entries, snappy);
        if let Ok(ck) = read_v1(&file) {
            for (_, t) in &ck.tensors {
                prop_assert_eq!(t.data.len(), t.numel() * t.dtype.size());
                prop_assert!(t.data.len() <= 8 * file.len());
            }
        }
    }

    #[test]
    fn edited_caffe_files_never_panic(seed in 0usize..3, edits in proptest::collection::vec(edit(), 1..6)) {
        let file = fixture(["caffe/tiny.caffemodel", "caffe/tiny_v1layers.caffemodel", "caffe/mean.binaryproto"][seed]);
        let data = apply(file, &edits);
        let _ = caffe::parse_caffemodel(&data);
        let _ = caffe::parse_binaryproto(&data);
    }

    #[test]
    fn edited_torch7_files_never_panic(seed in 0usize..6, edits in proptest::collection::vec(edit(), 1..6)) {
        let file = fixture(["torch7/tiny.t7", "torch7/tiny_float_oldbn.t7", "torch7/formats/shared.t7", "torch7/formats/scalars.t7", "torch7/formats/double_long.t7", "torch7/formats/legacy.t7"][seed]);
        let _ = torch7::parse_t7(&apply(file, &edits));
    }

    #[test]
    fn arbitrary_bytes_never_panic_any_reader(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = read_v1(&data);
        let _ = caffe::parse_caffemodel(&data);
        let _ = caffe::parse_binaryproto(&data);
        let _ = torch7::parse_t7(&data);
        let _ = snzoo_convert::tensorflow::ordered_code::decode_slice_key(&data);
    }
}
