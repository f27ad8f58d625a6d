//! Reading Lua Torch7 serialized files (`.t7`, `torch.save` of Torch7), e.g. fb.resnet.torch's
//! released models, without Lua.
//!
//! The binary format (torch7 `File.lua`, `generic/Tensor.c`, `generic/Storage.c`), all
//! little-endian:
//!
//! ```text
//! object  = i32 type, then by type:
//!   0 nil     -
//!   1 number  f64
//!   2 string  i32 length, bytes
//!   3 table   i32 reference index; if new: i32 pair count, then (key object, value object)*
//!   4 torch   i32 reference index; if new: the string "V <version>" (absent in legacy files),
//!             the class name string, then the class's data: tensors and storages their own
//!             binary layout, every other class (nn modules) one object holding its fields
//!   5 boolean i32 (0 or 1)
//!   6, 7, 8   Lua functions (bytecode): refused
//! tensor  = i32 rank, i64 sizes[rank], i64 strides[rank], i64 (storage offset + 1), storage object
//! storage = i64 count, count raw elements
//! ```
//!
//! A reference index names an object written earlier in the file (tables and torch objects
//! share one counter), so shared tensors are read once. Nothing is executed: the only classes
//! read are tensors and storages (`torch.FloatTensor`, `torch.CudaTensor` — float32 on disk —
//! and the other element types) and `nn.*`, `cudnn.*` and `cunn.*` modules, whose data is a
//! plain table; any other class is refused by name. Depth, counts and sizes are bounded by the
//! file, so a hostile file gives an error, never a panic or an outsized allocation.

use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

use crate::DType;

/// Why a Torch7 file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum Torch7Error {
    #[error(transparent)]
    Fs(#[from] snzoo_fs::FsError),
    #[error("file ends early (truncated?) at byte {0}")]
    Truncated(usize),
    #[error("corrupt Torch7 file at byte {at}: {message}")]
    Corrupt { at: usize, message: String },
    #[error("Torch7 class `{0}` is not one snzoo reads (tensors, storages and the nn/cudnn layers of convolutional classifiers only)")]
    UnknownClass(String),
    #[error("the file holds a Lua function (type {0}); snzoo never runs code from a file")]
    Function(i32),
}

/// A storage: its element type and little-endian bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Storage {
    pub class: String,
    pub dtype: DType,
    pub data: Vec<u8>,
}

/// A tensor: a strided view of a storage (which may be shared).
#[derive(Debug, Clone, PartialEq)]
pub struct T7Tensor {
    pub class: String,
    pub sizes: Vec<usize>,
    pub strides: Vec<usize>,
    /// 0-based element offset into the storage.
    pub offset: usize,
    /// `None` for an empty tensor without storage.
    pub storage: Option<Rc<Storage>>,
}

impl T7Tensor {
    /// The element count (`usize::MAX` if it overflows; the reader refuses such tensors).
    pub fn numel(&self) -> usize {
        if self.sizes.is_empty() {
            0
        } else {
            self.sizes.iter().try_fold(1usize, |n, &s| n.checked_mul(s)).unwrap_or(usize::MAX)
        }
    }

    pub fn dtype(&self) -> Option<DType> {
        self.storage.as_ref().map(|s| s.dtype)
    }

    /// The elements in row-major order, as a contiguous [`crate::Tensor`].
    pub fn to_contiguous(&self) -> crate::Tensor {
        let Some(storage) = &self.storage else {
            return crate::Tensor { dtype: DType::F32, shape: self.sizes.clone(), data: Vec::new() };
        };
        let es = storage.dtype.size();
        let n = self.numel();
        let mut data = Vec::with_capacity(n * es);
        let rank = self.sizes.len();
        let mut index = vec![0usize; rank];
        for _ in 0..n {
            let at = self.offset + index.iter().zip(&self.strides).map(|(i, s)| i * s).sum::<usize>();
            data.extend_from_slice(&storage.data[at * es..(at + 1) * es]);
            for d in (0..rank).rev() {
                index[d] += 1;
                if index[d] < self.sizes[d] {
                    break;
                }
                index[d] = 0;
            }
        }
        crate::Tensor { dtype: storage.dtype, shape: self.sizes.clone(), data }
    }
}

/// A table: its (key, value) pairs in file order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    pub entries: Vec<(Value, Value)>,
}

impl Table {
    /// The value under a string key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries.iter().find(|(k, _)| matches!(k, Value::String(s) if s == key)).map(|(_, v)| v)
    }

    /// The table as a Lua list: its keys exactly the integers 1..=n, each once, with their
    /// values in order; `None` for anything else (a gap, a stray or repeated key), so that a
    /// damaged list is refused rather than read short.
    pub fn as_list(&self) -> Option<Vec<&Value>> {
        let n = self.entries.len();
        let mut items: Vec<Option<&Value>> = vec![None; n];
        for (k, v) in &self.entries {
            match k {
                Value::Number(x) if x.fract() == 0.0 && *x >= 1.0 && *x <= n as f64 => {
                    let slot = &mut items[*x as usize - 1];
                    if slot.replace(v).is_some() {
                        return None;
                    }
                }
                _ => return None,
            }
        }
        items.into_iter().collect()
    }
}

/// An `nn`/`cudnn` module (or other table-backed class): its class name and field table.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub class: String,
    pub version: i64,
    pub fields: Rc<Table>,
}

/// Any value of the file.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Nil,
    Number(f64),
    String(String),
    Bool(bool),
    Table(Rc<Table>),
    Object(Rc<Object>),
    Tensor(Rc<T7Tensor>),
    Storage(Rc<Storage>),
}

impl Value {
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }
    pub fn as_object(&self) -> Option<&Rc<Object>> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }
    pub fn as_tensor(&self) -> Option<&Rc<T7Tensor>> {
        match self {
            Value::Tensor(t) => Some(t),
            _ => None,
        }
    }
    pub fn as_table(&self) -> Option<&Rc<Table>> {
        match self {
            Value::Table(t) => Some(t),
            _ => None,
        }
    }
}

/// Limits of the reader.
const MAX_DEPTH: usize = 512;
const MAX_RANK: usize = 32;

/// The element type of a tensor or storage class (`torch.FloatTensor`, `torch.CudaStorage`, ...).
fn element_type(class: &str) -> Option<(DType, bool)> {
    let (base, tensor) = if let Some(b) = class.strip_suffix("Tensor") { (b, true) } else { (class.strip_suffix("Storage")?, false) };
    let dtype = match base {
        "torch.Float" | "torch.Cuda" => DType::F32,
        "torch.Double" | "torch.CudaDouble" => DType::F64,
        "torch.Half" | "torch.CudaHalf" => DType::F16,
        "torch.Long" | "torch.CudaLong" => DType::I64,
        "torch.Int" | "torch.CudaInt" => DType::I32,
        "torch.Short" | "torch.CudaShort" => DType::I16,
        "torch.Char" | "torch.CudaChar" => DType::I8,
        "torch.Byte" | "torch.CudaByte" => DType::U8,
        _ => return None,
    };
    Some((dtype, tensor))
}

/// The module classes read (in the `nn`, `cudnn` and `cunn` packages): the layers of
/// convolutional classifiers and their containers. Their data is a plain field table.
pub const MODULE_CLASSES: &[&str] = &[
    "Sequential",
    "ConcatTable",
    "Concat",
    "CAddTable",
    "Identity",
    "DataParallelTable",
    "SpatialConvolution",
    "SpatialConvolutionMM",
    "SpatialBatchNormalization",
    "BatchNormalization",
    "ReLU",
    "Threshold",
    "SpatialMaxPooling",
    "SpatialAveragePooling",
    "View",
    "Reshape",
    "Linear",
    "Dropout",
    "SoftMax",
    "LogSoftMax",
];

/// Whether a class whose data is a field table may be read.
fn is_module_class(class: &str) -> bool {
    ["nn.", "cudnn.", "cunn."].iter().any(|p| class.strip_prefix(p).is_some_and(|rest| MODULE_CLASSES.contains(&rest)))
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Objects by reference index; `None` while one is being read (a cycle).
    refs: HashMap<i32, Option<Value>>,
    /// The index the next new table or object must have (File.lua numbers them in order).
    next: i32,
}

impl<'a> Reader<'a> {
    fn corrupt(&self, message: impl Into<String>) -> Torch7Error {
        Torch7Error::Corrupt { at: self.pos, message: message.into() }
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], Torch7Error> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or(Torch7Error::Truncated(self.buf.len()))?;
        let b = &self.buf[self.pos..end];
        self.pos = end;
        Ok(b)
    }

    fn i32(&mut self) -> Result<i32, Torch7Error> {
        Ok(i32::from_le_bytes(self.bytes(4)?.try_into().expect("4 bytes")))
    }

    fn i64(&mut self) -> Result<i64, Torch7Error> {
        Ok(i64::from_le_bytes(self.bytes(8)?.try_into().expect("8 bytes")))
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn string(&mut self) -> Result<String, Torch7Error> {
        let n = self.i32()?;
        let n = usize::try_from(n).map_err(|_| self.corrupt(format!("string of length {n}")))?;
        if n > self.remaining() {
            return Err(Torch7Error::Truncated(self.buf.len()));
        }
        let b = self.bytes(n)?;
        Ok(String::from_utf8_lossy(b).into_owned())
    }

    fn object(&mut self, depth: usize) -> Result<Value, Torch7Error> {
        if depth > MAX_DEPTH {
            return Err(self.corrupt(format!("objects nested deeper than {MAX_DEPTH}")));
        }
        let kind = self.i32()?;
        match kind {
            0 => Ok(Value::Nil),
            1 => Ok(Value::Number(f64::from_le_bytes(self.bytes(8)?.try_into().expect("8 bytes")))),
            2 => Ok(Value::String(self.string()?)),
            5 => match self.i32()? {
                0 => Ok(Value::Bool(false)),
                1 => Ok(Value::Bool(true)),
                b => Err(self.corrupt(format!("boolean {b}"))),
            },
            3 | 4 => {
                let index = self.i32()?;
                if let Some(seen) = self.refs.get(&index) {
                    return seen.clone().ok_or_else(|| self.corrupt(format!("object {index} refers to itself (a cycle)")));
                }
                if index != self.next {
                    return Err(self
                        .corrupt(format!("a reference to object {index}, which is neither defined nor the next new one ({})", self.next)));
                }
                self.next += 1;
                self.refs.insert(index, None);
                let v = if kind == 3 { Value::Table(Rc::new(self.table(depth)?)) } else { self.torch(depth)? };
                self.refs.insert(index, Some(v.clone()));
                Ok(v)
            }
            6..=8 => Err(Torch7Error::Function(kind)),
            k => Err(self.corrupt(format!("unknown object type {k}"))),
        }
    }

    fn table(&mut self, depth: usize) -> Result<Table, Torch7Error> {
        let n = self.i32()?;
        // Each pair takes at least two 4-byte type tags.
        let n =
            usize::try_from(n).ok().filter(|&n| n <= self.remaining() / 8).ok_or_else(|| self.corrupt(format!("table of {n} entries")))?;
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            let k = self.object(depth + 1)?;
            let v = self.object(depth + 1)?;
            entries.push((k, v));
        }
        Ok(Table { entries })
    }

    fn torch(&mut self, depth: usize) -> Result<Value, Torch7Error> {
        let first = self.string()?;
        let (version, class) = match first.strip_prefix("V ") {
            Some(v) => (v.trim().parse::<i64>().map_err(|_| self.corrupt(format!("version string `{first}`")))?, self.string()?),
            None => (0, first),
        };
        if let Some((dtype, is_tensor)) = element_type(&class) {
            return if is_tensor {
                self.tensor(class, dtype, depth)
            } else {
                self.storage(class, dtype).map(|s| Value::Storage(Rc::new(s)))
            };
        }
        if !is_module_class(&class) {
            return Err(Torch7Error::UnknownClass(class));
        }
        match self.object(depth + 1)? {
            Value::Table(fields) => Ok(Value::Object(Rc::new(Object { class, version, fields }))),
            _ => Err(self.corrupt(format!("`{class}` is not followed by its field table"))),
        }
    }

    fn storage(&mut self, class: String, dtype: DType) -> Result<Storage, Torch7Error> {
        let n = self.i64()?;
        let bytes = usize::try_from(n).ok().and_then(|n| n.checked_mul(dtype.size())).filter(|&b| b <= self.remaining());
        let bytes =
            bytes.ok_or_else(|| self.corrupt(format!("`{class}` of {n} elements does not fit the {} bytes left", self.remaining())))?;
        Ok(Storage { class, dtype, data: self.bytes(bytes)?.to_vec() })
    }

    fn tensor(&mut self, class: String, dtype: DType, depth: usize) -> Result<Value, Torch7Error> {
        let rank = self.i32()?;
        let rank =
            usize::try_from(rank).ok().filter(|&r| r <= MAX_RANK).ok_or_else(|| self.corrupt(format!("`{class}` of rank {rank}")))?;
        let dims = |this: &mut Self, what: &str| -> Result<Vec<usize>, Torch7Error> {
            (0..rank)
                .map(|_| this.i64().and_then(|v| usize::try_from(v).map_err(|_| this.corrupt(format!("`{class}` {what} {v}")))))
                .collect()
        };
        let sizes = dims(self, "size")?;
        let strides = dims(self, "stride")?;
        let offset = self.i64()?;
        let offset = usize::try_from(offset)
            .ok()
            .and_then(|o| o.checked_sub(1))
            .ok_or_else(|| self.corrupt(format!("`{class}` storage offset {offset}")))?;
        let storage = match self.object(depth + 1)? {
            Value::Nil => None,
            Value::Storage(s) => Some(s),
            _ => return Err(self.corrupt(format!("`{class}` without a storage"))),
        };
        if sizes.iter().try_fold(1usize, |n, &s| n.checked_mul(s)).is_none() {
            return Err(self.corrupt(format!("`{class}` of sizes {sizes:?}: the element count overflows")));
        }
        let t = T7Tensor { class: class.clone(), sizes, strides, offset, storage };
        let n = t.numel();
        if n > 0 {
            let Some(s) = &t.storage else { return Err(self.corrupt(format!("`{class}` of {n} elements without a storage"))) };
            if s.dtype != dtype {
                return Err(self.corrupt(format!("`{class}` over a `{}`", s.class)));
            }
            let last = t
                .sizes
                .iter()
                .zip(&t.strides)
                .try_fold(t.offset, |acc, (&size, &stride)| (size - 1).checked_mul(stride).and_then(|x| acc.checked_add(x)));
            let len = s.data.len() / dtype.size();
            if last.is_none_or(|l| l >= len) {
                return Err(self.corrupt(format!(
                    "`{class}` of sizes {:?} strides {:?} offset {} reaches past its storage of {len} elements",
                    t.sizes, t.strides, t.offset
                )));
            }
        }
        Ok(Value::Tensor(Rc::new(t)))
    }
}

/// Decodes a Torch7 file's first object.
pub fn parse_t7(bytes: &[u8]) -> Result<Value, Torch7Error> {
    let mut r = Reader { buf: bytes, pos: 0, refs: HashMap::new(), next: 1 };
    r.object(0)
}

/// Reads a `.t7` file.
pub fn read_t7(path: &Path) -> Result<Value, Torch7Error> {
    parse_t7(&snzoo_fs::read_regular(path, u64::MAX)?)
}

/// Whether a file starting with `head` looks like a binary Torch7 file holding a torch object
/// or a table (type 4 or 3, reference index 1).
pub fn sniff(head: &[u8]) -> bool {
    head.len() >= 8 && (head[..4] == [4, 0, 0, 0] || head[..4] == [3, 0, 0, 0]) && head[4..8] == [1, 0, 0, 0]
}

#[cfg(test)]
pub(crate) mod tests {

    #[test]
    fn lists_with_gaps_or_stray_keys_are_not_lists() {
        let t = |keys: &[f64]| Table { entries: keys.iter().map(|&k| (Value::Number(k), Value::Bool(true))).collect() };
        assert_eq!(t(&[2.0, 1.0, 3.0]).as_list().map(|v| v.len()), Some(3));
        assert_eq!(t(&[]).as_list().map(|v| v.len()), Some(0));
        for bad in [&[1.0, 3.0][..], &[1.0, 1.0], &[1.0, 2.5], &[0.0, 1.0], &[1.0, 2.0, 9.0]] {
            assert!(t(bad).as_list().is_none(), "{bad:?}");
        }
        let mut s = t(&[1.0]);
        s.entries.push((Value::String("n".into()), Value::Bool(true)));
        assert!(s.as_list().is_none());
    }
    use super::*;

    /// A minimal writer for tests.
    #[derive(Default)]
    pub(crate) struct W(pub Vec<u8>, pub i32);

    impl W {
        pub fn i32(&mut self, v: i32) -> &mut Self {
            self.0.extend_from_slice(&v.to_le_bytes());
            self
        }
        pub fn i64(&mut self, v: i64) -> &mut Self {
            self.0.extend_from_slice(&v.to_le_bytes());
            self
        }
        pub fn str(&mut self, s: &str) -> &mut Self {
            self.i32(s.len() as i32);
            self.0.extend_from_slice(s.as_bytes());
            self
        }
        pub fn string(&mut self, s: &str) -> &mut Self {
            self.i32(2).str(s)
        }
        pub fn number(&mut self, v: f64) -> &mut Self {
            self.i32(1);
            self.0.extend_from_slice(&v.to_le_bytes());
            self
        }
        pub fn new_index(&mut self) -> i32 {
            self.1 += 1;
            self.1
        }
        /// A torch object header: type, index, version, class.
        pub fn torch(&mut self, class: &str) -> &mut Self {
            let i = self.new_index();
            self.i32(4).i32(i).str("V 1").str(class)
        }
        pub fn table(&mut self, n: i32) -> &mut Self {
            let i = self.new_index();
            self.i32(3).i32(i).i32(n)
        }
        pub fn float_tensor(&mut self, sizes: &[i64], values: &[f32]) -> &mut Self {
            self.torch("torch.FloatTensor").i32(sizes.len() as i32);
            let mut strides = vec![1i64; sizes.len()];
            for d in (0..sizes.len().saturating_sub(1)).rev() {
                strides[d] = strides[d + 1] * sizes[d + 1];
            }
            sizes.iter().for_each(|&s| {
                self.i64(s);
            });
            strides.iter().for_each(|&s| {
                self.i64(s);
            });
            self.i64(1).torch("torch.FloatStorage").i64(values.len() as i64);
            values.iter().for_each(|v| self.0.extend_from_slice(&v.to_le_bytes()));
            self
        }
    }

    #[test]
    fn module_with_shared_tensor() {
        let mut w = W::default();
        // nn.Linear{weight = T, bias = T (the same object again), train = false}
        w.torch("nn.Linear").table(3);
        w.string("weight").float_tensor(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        // The tensor was index 3 (module 1, table 2).
        w.string("bias").i32(4).i32(3);
        w.string("train").i32(5).i32(0);
        assert!(sniff(&w.0));
        let v = parse_t7(&w.0).unwrap();
        let m = v.as_object().unwrap();
        assert_eq!((m.class.as_str(), m.version), ("nn.Linear", 1));
        let weight = m.fields.get("weight").unwrap().as_tensor().unwrap();
        assert_eq!(weight.sizes, vec![2, 3]);
        assert_eq!(weight.to_contiguous().to_f64_vec(), vec![1., 2., 3., 4., 5., 6.]);
        assert!(Rc::ptr_eq(weight, m.fields.get("bias").unwrap().as_tensor().unwrap()));
        assert_eq!(m.fields.get("train"), Some(&Value::Bool(false)));
    }

    #[test]
    fn transposed_view() {
        let mut w = W::default();
        w.torch("torch.FloatTensor").i32(2).i64(3).i64(2).i64(1).i64(3).i64(1);
        w.torch("torch.FloatStorage").i64(6);
        [1f32, 2., 3., 4., 5., 6.].iter().for_each(|v| w.0.extend_from_slice(&v.to_le_bytes()));
        let t = parse_t7(&w.0).unwrap().as_tensor().unwrap().to_contiguous();
        assert_eq!(t.to_f64_vec(), vec![1., 4., 2., 5., 3., 6.]);
    }

    #[test]
    fn refusals() {
        let mut w = W::default();
        w.torch("nn.Identity").table(0);
        assert!(parse_t7(&w.0).is_ok());
        let mut w = W::default();
        w.torch("nn.Lambda").table(0);
        assert!(matches!(parse_t7(&w.0), Err(Torch7Error::UnknownClass(c)) if c == "nn.Lambda"));
        let mut w = W::default();
        w.torch("os.execute").table(0);
        assert!(matches!(parse_t7(&w.0), Err(Torch7Error::UnknownClass(c)) if c == "os.execute"));
        let mut w = W::default();
        w.table(1).string("f").i32(6).str("bytecode");
        assert!(matches!(parse_t7(&w.0), Err(Torch7Error::Function(6))));
        // A view reaching past its storage.
        let mut w = W::default();
        w.torch("torch.FloatTensor").i32(1).i64(4).i64(1).i64(1);
        w.torch("torch.FloatStorage").i64(3);
        [1f32, 2., 3.].iter().for_each(|v| w.0.extend_from_slice(&v.to_le_bytes()));
        assert!(matches!(parse_t7(&w.0), Err(Torch7Error::Corrupt { message, .. }) if message.contains("past its storage")));
        // A storage longer than the file.
        let mut w = W::default();
        w.torch("torch.FloatStorage").i64(1 << 40);
        assert!(parse_t7(&w.0).is_err());
        // A table referring to itself.
        let mut w = W::default();
        w.table(1).string("self").i32(3).i32(1);
        assert!(matches!(parse_t7(&w.0), Err(Torch7Error::Corrupt { message, .. }) if message.contains("cycle")));
        // Deep nesting.
        let mut w = W::default();
        for _ in 0..10_000 {
            w.table(1).number(1.0);
        }
        assert!(matches!(parse_t7(&w.0), Err(Torch7Error::Corrupt { message, .. }) if message.contains("deeper")));
        // Truncation anywhere.
        let mut w = W::default();
        w.torch("nn.Linear").table(1).string("weight").float_tensor(&[2], &[1., 2.]);
        for n in 0..w.0.len() {
            assert!(parse_t7(&w.0[..n]).is_err(), "{n}");
        }
    }
}
