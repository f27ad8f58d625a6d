//! Property-based fuzzing of weights files: the safetensors header and the architecture
//! metadata snzoo records in it. Every file must open as the architecture its tensors are, or
//! give an error — never a panic, a hang or an allocation the file cannot justify (a metadata
//! entry such as `layers = "10000000,1,1,1"` once built ten million blocks).
//!
//! Run longer with `PROPTEST_CASES=1000000 cargo test -p snzoo --test fuzz_weights --profile fuzz` (release speed, overflow checks on).

use std::collections::HashMap;
use std::sync::OnceLock;

use candle_core::Device;
use proptest::prelude::*;
use snzoo::weights::Weights;

mod common;
use common::fixture;

/// The tiny model converted, as (tensors, metadata, the file's bytes).
type Converted = (Vec<(String, snzoo_convert::Tensor)>, HashMap<String, String>, Vec<u8>);

fn converted() -> &'static Converted {
    static C: OnceLock<Converted> = OnceLock::new();
    C.get_or_init(|| {
        let c = snzoo::convert::convert_checkpoint(&fixture("models/tiny-resnet50v1-sn.pth"), None).unwrap();
        let bytes = snzoo_convert::serialize_safetensors(&c.tensors, &c.metadata).unwrap();
        (c.tensors, c.metadata, bytes)
    })
}

fn open(bytes: &[u8]) -> Result<snzoo::snzoo_model::ResNetConfig, snzoo::Error> {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), bytes).unwrap();
    Weights::open(f.path(), &Device::Cpu).map(|w| w.config)
}

fn metadata_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("10000000,1,1,1".to_string()),
        Just("3,4,6,3".to_string()),
        Just("1,1,1,1".to_string()),
        Just("18446744073709551615,1,1,1".to_string()),
        Just("0,0,0,0".to_string()),
        Just("v1".to_string()),
        Just("v2".to_string()),
        Just("bottleneck".to_string()),
        Just("basic".to_string()),
        Just("true".to_string()),
        Just("false".to_string()),
        Just("batch".to_string()),
        Just("switchable".to_string()),
        Just("slim".to_string()),
        Just("msra".to_string()),
        Just("fbtorch".to_string()),
        Just("4".to_string()),
        Just("1000".to_string()),
        Just("18446744073709551615".to_string()),
        "[0-9]{1,25}",
        "[ -~]{0,30}",
    ]
}

fn metadata_key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("arch".to_string()),
        Just("version".to_string()),
        Just("block".to_string()),
        Just("layers".to_string()),
        Just("width".to_string()),
        Just("using_bn".to_string()),
        Just("num_classes".to_string()),
        Just("norm".to_string()),
        Just("style".to_string()),
        "[a-z_]{1,12}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Arbitrary architecture metadata over the real tensors: the file opens as the tensors'
    /// architecture (never another) or is refused.
    #[test]
    fn architecture_metadata_never_misleads(changes in proptest::collection::vec((metadata_key(), metadata_value()), 0..6), drop_all in any::<bool>()) {
        let (tensors, metadata, _) = converted();
        let mut meta = if drop_all { HashMap::new() } else { metadata.clone() };
        for (k, v) in changes {
            meta.insert(k, v);
        }
        let bytes = snzoo_convert::serialize_safetensors(tensors, &meta).unwrap();
        if let Ok(config) = open(&bytes) {
            prop_assert_eq!(config.arch_name(), "resnet50v1-sn-w4");
            prop_assert_eq!(config.layers, [3, 4, 6, 3]);
        }
    }

    /// Byte edits of the header (its length, the JSON, shapes and offsets) and of the data.
    #[test]
    fn edited_safetensors_never_panic(edits in proptest::collection::vec((0usize..4096, any::<u8>()), 1..8), cut in proptest::option::of(0usize..8192)) {
        let (_, _, bytes) = converted();
        let mut b = bytes.clone();
        let header = 8 + u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
        for (i, v) in edits {
            let at = if i < 8 { i } else { 8 + i % (header - 8 + 64).min(b.len() - 8) };
            b[at] = v;
        }
        if let Some(c) = cut {
            b.truncate(c.min(b.len()));
        }
        let _ = open(&b);
    }

    /// The other frameworks' checkpoints, edited, through the whole conversion (reader, layout
    /// mapping, architecture checks): a converted network or an error.
    #[test]
    fn edited_framework_checkpoints_never_panic(seed in 0usize..4, edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6), cut in proptest::option::of(any::<usize>())) {
        let (rel, name) = [
            ("frameworks/slim/tiny.ckpt", "m.ckpt"),
            ("frameworks/caffe/tiny.caffemodel", "m.caffemodel"),
            ("frameworks/torch7/tiny.t7", "m.t7"),
            ("frameworks/torch7/tiny_float_oldbn.t7", "m.t7"),
        ][seed];
        let mut b = framework_file(rel).to_vec();
        for (i, v) in edits {
            let n = b.len();
            b[i % n] = v;
        }
        if let Some(c) = cut {
            b.truncate(c % (b.len() + 1));
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, &b).unwrap();
        if let Ok(c) = snzoo::convert::convert_checkpoint(&path, None) {
            prop_assert_eq!(c.config.layers, [2, 1, 2, 1]);
        }
    }
}

fn framework_file(rel: &str) -> &'static [u8] {
    static FILES: OnceLock<std::sync::Mutex<HashMap<String, &'static [u8]>>> = OnceLock::new();
    let mut m = FILES.get_or_init(Default::default).lock().unwrap();
    m.entry(rel.to_string()).or_insert_with(|| Box::leak(std::fs::read(fixture(rel)).unwrap().into_boxed_slice()))
}
