//! Reading Caffe models (`.caffemodel`: a `NetParameter`) and blobs (`.binaryproto`: a
//! `BlobProto`, e.g. a mean image), decoded by prost from the vendored `caffe.proto`.
//!
//! Both layer encodings are read: the current `layer` field (`LayerParameter`, string types)
//! and the legacy `layers` field (`V1LayerParameter`, enum types, named here as the current
//! types are). A blob's shape is its legacy 4-D `num`/`channels`/`height`/`width` when any of
//! them is present (as Caffe's `Blob::FromProto` decides), else its `shape`; its values are
//! `data` (f32) or `double_data` (f64), and their count must match the shape.

use std::path::Path;

use prost::Message;

use crate::proto::caffe as pb;
use crate::{DType, Tensor};

/// Why a Caffe file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum CaffeError {
    #[error(transparent)]
    Fs(#[from] snzoo_fs::FsError),
    #[error("not a Caffe {what}: {source}")]
    Decode { what: &'static str, source: prost::DecodeError },
    #[error("corrupt Caffe file: {0}")]
    Corrupt(String),
}

/// A convolution's geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvParams {
    pub num_output: usize,
    /// (height, width) of the kernel, stride and padding.
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub pad: (usize, usize),
    pub bias_term: bool,
    pub group: usize,
}

/// A pooling layer's geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolParams {
    /// Max pooling (else average).
    pub max: bool,
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub pad: (usize, usize),
    /// Over the whole input.
    pub global: bool,
    /// Caffe's default ceil rounding of the output size (else floor).
    pub ceil: bool,
}

/// One layer of a Caffe net.
#[derive(Debug, Clone, PartialEq)]
pub struct CaffeLayer {
    pub name: String,
    /// The layer type as current Caffe names it (`Convolution`, `BatchNorm`, ...).
    pub kind: String,
    pub bottom: Vec<String>,
    pub top: Vec<String>,
    pub blobs: Vec<Tensor>,
    pub conv: Option<ConvParams>,
    pub pool: Option<PoolParams>,
    /// A `BatchNorm` layer's epsilon (Caffe's default 1e-5 when unset).
    pub bn_eps: Option<f32>,
}

/// A Caffe net.
#[derive(Debug, Clone, PartialEq)]
pub struct CaffeNet {
    pub name: String,
    pub layers: Vec<CaffeLayer>,
    /// Whether the file uses the legacy `layers` field.
    pub legacy: bool,
}

fn corrupt(m: impl Into<String>) -> CaffeError {
    CaffeError::Corrupt(m.into())
}

/// A blob as a tensor (f32, or f64 for `double_data`).
pub fn blob_tensor(b: &pb::BlobProto, what: &str) -> Result<Tensor, CaffeError> {
    let legacy = [b.num, b.channels, b.height, b.width];
    let shape: Vec<usize> = if legacy.iter().any(Option::is_some) {
        legacy
            .iter()
            .map(|d| usize::try_from(d.unwrap_or(0)).map_err(|_| corrupt(format!("{what}: negative dimension {d:?}"))))
            .collect::<Result<_, _>>()?
    } else {
        let dims = b.shape.as_ref().map(|s| s.dim.as_slice()).unwrap_or_default();
        if dims.len() > 32 {
            return Err(corrupt(format!("{what}: {} dimensions", dims.len())));
        }
        dims.iter()
            .map(|&d| usize::try_from(d).map_err(|_| corrupt(format!("{what}: negative dimension {d}"))))
            .collect::<Result<_, _>>()?
    };
    let count = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    let (dtype, n, data) = if !b.double_data.is_empty() {
        (DType::F64, b.double_data.len(), b.double_data.iter().flat_map(|v| v.to_le_bytes()).collect())
    } else {
        (DType::F32, b.data.len(), b.data.iter().flat_map(|v| v.to_le_bytes()).collect())
    };
    if count != Some(n) {
        return Err(corrupt(format!("{what}: shape {shape:?} but {n} values")));
    }
    Ok(Tensor { dtype, shape, data })
}

fn pair(one: Option<u32>, h: Option<u32>, w: Option<u32>, repeated: &[u32], default: u32) -> (usize, usize) {
    let base = one.or(repeated.first().copied()).unwrap_or(default);
    let (h0, w0) = match repeated {
        [a, b, ..] => (*a, *b),
        _ => (base, base),
    };
    (h.unwrap_or(h0) as usize, w.unwrap_or(w0) as usize)
}

fn conv_params(c: &pb::ConvolutionParameter) -> ConvParams {
    ConvParams {
        num_output: c.num_output.unwrap_or(0) as usize,
        kernel: pair(None, c.kernel_h, c.kernel_w, &c.kernel_size, 0),
        stride: pair(None, c.stride_h, c.stride_w, &c.stride, 1),
        pad: pair(None, c.pad_h, c.pad_w, &c.pad, 0),
        bias_term: c.bias_term.unwrap_or(true),
        group: c.group.unwrap_or(1) as usize,
    }
}

fn pool_params(p: &pb::PoolingParameter) -> PoolParams {
    PoolParams {
        max: p.pool.unwrap_or(0) == pb::pooling_parameter::PoolMethod::Max as i32,
        kernel: pair(p.kernel_size, p.kernel_h, p.kernel_w, &[], 0),
        stride: pair(p.stride, p.stride_h, p.stride_w, &[], 1),
        pad: pair(p.pad, p.pad_h, p.pad_w, &[], 0),
        global: p.global_pooling.unwrap_or(false),
        ceil: p.round_mode.unwrap_or(0) == pb::pooling_parameter::RoundMode::Ceil as i32,
    }
}

/// The current type name of a legacy layer type (as Caffe's `UpgradeV1LayerType`).
fn v1_type_name(t: i32) -> String {
    use pb::v1_layer_parameter::LayerType as L;
    let Ok(t) = L::try_from(t) else { return format!("unknown legacy type {t}") };
    match t {
        L::Absval => "AbsVal",
        L::Accuracy => "Accuracy",
        L::Argmax => "ArgMax",
        L::Bnll => "BNLL",
        L::Concat => "Concat",
        L::ContrastiveLoss => "ContrastiveLoss",
        L::Convolution => "Convolution",
        L::Deconvolution => "Deconvolution",
        L::Data => "Data",
        L::Dropout => "Dropout",
        L::DummyData => "DummyData",
        L::EuclideanLoss => "EuclideanLoss",
        L::Eltwise => "Eltwise",
        L::Exp => "Exp",
        L::Flatten => "Flatten",
        L::Hdf5Data => "HDF5Data",
        L::Hdf5Output => "HDF5Output",
        L::HingeLoss => "HingeLoss",
        L::Im2col => "Im2col",
        L::ImageData => "ImageData",
        L::InfogainLoss => "InfogainLoss",
        L::InnerProduct => "InnerProduct",
        L::Lrn => "LRN",
        L::MemoryData => "MemoryData",
        L::MultinomialLogisticLoss => "MultinomialLogisticLoss",
        L::Mvn => "MVN",
        L::Pooling => "Pooling",
        L::Power => "Power",
        L::Relu => "ReLU",
        L::Sigmoid => "Sigmoid",
        L::SigmoidCrossEntropyLoss => "SigmoidCrossEntropyLoss",
        L::Silence => "Silence",
        L::Softmax => "Softmax",
        L::SoftmaxLoss => "SoftmaxWithLoss",
        L::Split => "Split",
        L::Slice => "Slice",
        L::Tanh => "TanH",
        L::WindowData => "WindowData",
        L::Threshold => "Threshold",
        L::None => "None",
    }
    .to_string()
}

fn blobs(name: &str, blobs: &[pb::BlobProto]) -> Result<Vec<Tensor>, CaffeError> {
    blobs.iter().enumerate().map(|(i, b)| blob_tensor(b, &format!("layer `{name}` blob {i}"))).collect()
}

/// Decodes a `NetParameter` (a `.caffemodel`).
pub fn parse_caffemodel(bytes: &[u8]) -> Result<CaffeNet, CaffeError> {
    let net = pb::NetParameter::decode(bytes).map_err(|source| CaffeError::Decode { what: "model (NetParameter)", source })?;
    let legacy = net.layer.is_empty() && !net.layers.is_empty();
    let mut layers = Vec::new();
    for l in &net.layer {
        let name = l.name.clone().unwrap_or_default();
        let kind = l.r#type.clone().unwrap_or_default();
        layers.push(CaffeLayer {
            blobs: blobs(&name, &l.blobs)?,
            conv: l.convolution_param.as_ref().filter(|_| kind == "Convolution").map(conv_params),
            pool: l.pooling_param.as_ref().map(pool_params).or_else(|| (kind == "Pooling").then(|| pool_params(&Default::default()))),
            bn_eps: (kind == "BatchNorm").then(|| l.batch_norm_param.as_ref().and_then(|p| p.eps).unwrap_or(1e-5)),
            bottom: l.bottom.clone(),
            top: l.top.clone(),
            name,
            kind,
        });
    }
    for l in &net.layers {
        let name = l.name.clone().unwrap_or_default();
        let kind = v1_type_name(l.r#type.unwrap_or(0));
        layers.push(CaffeLayer {
            blobs: blobs(&name, &l.blobs)?,
            conv: l.convolution_param.as_ref().filter(|_| kind == "Convolution").map(conv_params),
            pool: l.pooling_param.as_ref().map(pool_params).or_else(|| (kind == "Pooling").then(|| pool_params(&Default::default()))),
            bn_eps: None,
            bottom: l.bottom.clone(),
            top: l.top.clone(),
            name,
            kind,
        });
    }
    if layers.is_empty() {
        return Err(corrupt("the net has no layers (not a .caffemodel?)"));
    }
    Ok(CaffeNet { name: net.name.unwrap_or_default(), layers, legacy })
}

/// Reads a `.caffemodel`.
pub fn read_caffemodel(path: &Path) -> Result<CaffeNet, CaffeError> {
    parse_caffemodel(&snzoo_fs::read_regular(path, u64::MAX)?)
}

/// Decodes a `BlobProto` (a `.binaryproto`).
pub fn parse_binaryproto(bytes: &[u8]) -> Result<Tensor, CaffeError> {
    let b = pb::BlobProto::decode(bytes).map_err(|source| CaffeError::Decode { what: "blob (BlobProto)", source })?;
    let t = blob_tensor(&b, "blob")?;
    if t.numel() == 0 {
        return Err(corrupt("the blob is empty (not a .binaryproto?)"));
    }
    Ok(t)
}

/// Reads a `.binaryproto` blob (e.g. a mean image, `[1, C, H, W]`).
pub fn read_binaryproto(path: &Path) -> Result<Tensor, CaffeError> {
    parse_binaryproto(&snzoo_fs::read_regular(path, 1 << 30)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(shape: &[i64], data: Vec<f32>) -> pb::BlobProto {
        pb::BlobProto { shape: Some(pb::BlobShape { dim: shape.to_vec() }), data, ..Default::default() }
    }

    #[test]
    fn both_layer_encodings() {
        let conv = pb::ConvolutionParameter {
            num_output: Some(2),
            kernel_size: vec![3],
            stride: vec![2],
            pad: vec![1],
            bias_term: Some(false),
            ..Default::default()
        };
        let net = pb::NetParameter {
            name: Some("n".into()),
            layer: vec![pb::LayerParameter {
                name: Some("conv1".into()),
                r#type: Some("Convolution".into()),
                blobs: vec![blob(&[2, 1, 3, 3], vec![0.5; 18])],
                convolution_param: Some(conv.clone()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let got = parse_caffemodel(&net.encode_to_vec()).unwrap();
        assert!(!got.legacy);
        let l = &got.layers[0];
        assert_eq!((l.name.as_str(), l.kind.as_str()), ("conv1", "Convolution"));
        assert_eq!(l.blobs[0].shape, vec![2, 1, 3, 3]);
        assert_eq!(l.conv, Some(ConvParams { num_output: 2, kernel: (3, 3), stride: (2, 2), pad: (1, 1), bias_term: false, group: 1 }));

        // The legacy encoding, with legacy 4-D blobs.
        let old = pb::NetParameter {
            layers: vec![pb::V1LayerParameter {
                name: Some("conv1".into()),
                r#type: Some(pb::v1_layer_parameter::LayerType::Convolution as i32),
                blobs: vec![pb::BlobProto {
                    num: Some(2),
                    channels: Some(1),
                    height: Some(3),
                    width: Some(3),
                    data: vec![0.5; 18],
                    ..Default::default()
                }],
                convolution_param: Some(conv),
                ..Default::default()
            }],
            ..Default::default()
        };
        let got_old = parse_caffemodel(&old.encode_to_vec()).unwrap();
        assert!(got_old.legacy);
        assert_eq!(got_old.layers[0].blobs, l.blobs);
        assert_eq!(got_old.layers[0].kind, "Convolution");
    }

    #[test]
    fn blob_shapes() {
        // Legacy fields win over `shape` when present.
        let b = pb::BlobProto {
            num: Some(1),
            channels: Some(2),
            height: Some(1),
            width: Some(2),
            shape: Some(pb::BlobShape { dim: vec![9] }),
            data: vec![1.0; 4],
            ..Default::default()
        };
        assert_eq!(blob_tensor(&b, "b").unwrap().shape, vec![1, 2, 1, 2]);
        // Count mismatches and negative sizes are refused.
        assert!(blob_tensor(&blob(&[3], vec![1.0; 2]), "b").is_err());
        assert!(blob_tensor(&blob(&[-1], vec![]), "b").is_err());
        assert!(blob_tensor(&blob(&[1 << 40, 1 << 40], vec![]), "b").is_err());
        let d = pb::BlobProto { shape: Some(pb::BlobShape { dim: vec![2] }), double_data: vec![1.5, -2.0], ..Default::default() };
        assert_eq!(blob_tensor(&d, "b").unwrap().to_f64_vec(), vec![1.5, -2.0]);
        assert!(parse_binaryproto(b"\xff\xff").is_err());
    }
}
