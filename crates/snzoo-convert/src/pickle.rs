//! A pickle reader that executes nothing.
//!
//! It understands the pickle opcodes of protocols 0–5 that `torch.save` and Python's `pickle` emit
//! for checkpoints, and builds a tree of plain [`Value`]s. A `GLOBAL` is looked up in a fixed list of
//! names that a checkpoint legitimately needs ([`Global`]); any other name — `os.system`,
//! `builtins.eval`, a user class — is refused at once with [`PickleError::ForbiddenGlobal`]. The
//! allowed callables are *interpreted* by this module (an `OrderedDict` becomes a dict, a
//! `_rebuild_tensor_v2` call becomes a [`TensorRef`]); no Python object is ever constructed.
//!
//! Containers live in an arena ([`Pickle::objects`]) and values refer to them by index, so sharing
//! through the memo costs nothing, mutation after memoisation behaves as in Python, and dropping a
//! hostile, deeply nested structure cannot overflow the stack.

use std::io::Read;

use crate::DType;

/// Errors raised while reading a pickle stream.
#[derive(Debug, thiserror::Error)]
pub enum PickleError {
    #[error("pickle data ends early (truncated file?) while reading {0}")]
    Truncated(&'static str),
    #[error("I/O error while reading pickle data")]
    Io(#[from] std::io::Error),
    #[error("pickle refers to the global `{module}.{name}`, which a checkpoint has no reason to contain; refusing to load it")]
    ForbiddenGlobal { module: String, name: String },
    #[error("unsupported pickle opcode 0x{opcode:02x} at byte {position}")]
    UnsupportedOpcode { opcode: u8, position: u64 },
    #[error("malformed pickle at byte {position}: {message}")]
    Malformed { position: u64, message: String },
    #[error("pickle exceeds the reader's limit of {limit} {what} at byte {position} (a hostile or corrupt file?)")]
    Limit { what: &'static str, limit: u64, position: u64 },
}

/// Bounds on what one pickle may make the reader hold. A checkpoint's pickle describes its
/// tensors in a few hundred bytes each: these limits are far above any real checkpoint (ResNet-152
/// with its optimizer state needs a few thousand objects) and keep a hostile file's cost to a few
/// hundred MB of memory, whatever its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PickleLimits {
    /// Bytes of pickle data read (the opcodes and their arguments).
    pub bytes: u64,
    /// Values on the machine's stack at once.
    pub stack: usize,
    /// Containers and interpreted objects ([`Pickle::objects`]).
    pub objects: usize,
    /// Values held in containers, summed over all of them.
    pub items: usize,
    /// The highest memo index.
    pub memo: usize,
    /// Bytes of strings and byte strings, summed.
    pub text_bytes: u64,
}

impl Default for PickleLimits {
    fn default() -> Self {
        Self { bytes: 1 << 30, stack: 1 << 20, objects: 1 << 20, items: 1 << 23, memo: 1 << 20, text_bytes: 256 << 20 }
    }
}

/// A reference into the object arena of a [`Pickle`].
pub type ObjId = usize;

/// A pickled value. Scalars are inline; containers and interpreted objects live in the arena.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer too large for `i64` (little-endian two's complement bytes, as in `LONG1`).
    BigInt(Vec<u8>),
    Float(f64),
    Str(std::rc::Rc<str>),
    Bytes(std::rc::Rc<[u8]>),
    /// One of the allowed globals (a class or function), not yet called.
    Global(Global),
    Obj(ObjId),
}

/// The interpreted objects held in the arena.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// Python dict or `collections.OrderedDict`; insertion order is kept, a repeated key replaces.
    Dict(Vec<(Value, Value)>),
    Set(Vec<Value>),
    /// A storage met through a persistent id (boxed, like the tensor: the arena's entries stay
    /// small, which matters when a hostile pickle fills it).
    Storage(Box<StorageRef>),
    Tensor(Box<TensorRef>),
    /// `numpy.dtype(...)`: the type string and its byte order (from the `BUILD` state).
    NumpyDtype {
        descr: String,
        big_endian: bool,
    },
}

/// The globals a checkpoint may name. Everything else is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Global {
    OrderedDict,
    RebuildTensor,
    RebuildTensorV2,
    RebuildParameter,
    /// `torch.FloatStorage` and friends (also `torch.cuda.FloatStorage` in very old files).
    StorageType(DType),
    /// `_codecs.encode(str, 'latin1')`: how protocol 2 spells `bytes`.
    CodecsEncode,
    NumpyScalar,
    NumpyDtype,
}

impl Global {
    /// Looks a `module.name` pair up in the allow-list.
    pub fn resolve(module: &str, name: &str) -> Result<Global, PickleError> {
        let storage = |name: &str| -> Option<DType> {
            Some(match name {
                "FloatStorage" => DType::F32,
                "DoubleStorage" => DType::F64,
                "HalfStorage" => DType::F16,
                "BFloat16Storage" => DType::BF16,
                "LongStorage" => DType::I64,
                "IntStorage" => DType::I32,
                "ShortStorage" => DType::I16,
                "CharStorage" => DType::I8,
                "ByteStorage" | "UntypedStorage" => DType::U8,
                "BoolStorage" => DType::Bool,
                _ => return None,
            })
        };
        let found = match (module, name) {
            ("collections", "OrderedDict") => Some(Global::OrderedDict),
            ("torch._utils", "_rebuild_tensor") => Some(Global::RebuildTensor),
            ("torch._utils", "_rebuild_tensor_v2") => Some(Global::RebuildTensorV2),
            ("torch._utils", "_rebuild_parameter") => Some(Global::RebuildParameter),
            ("torch" | "torch.cuda", n) => storage(n).map(Global::StorageType),
            ("_codecs", "encode") => Some(Global::CodecsEncode),
            ("numpy.core.multiarray" | "numpy._core.multiarray", "scalar") => Some(Global::NumpyScalar),
            ("numpy", "dtype") => Some(Global::NumpyDtype),
            _ => None,
        };
        found.ok_or_else(|| PickleError::ForbiddenGlobal { module: module.to_string(), name: name.to_string() })
    }
}

/// A storage as named by a persistent id: `('storage', type, key, location, numel[, view])`.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageRef {
    pub key: String,
    pub dtype: DType,
    pub location: String,
    /// Number of elements of the (root) storage as declared in the pickle.
    pub numel: u64,
    /// Legacy-format storage views: element offset into the root storage.
    pub view_offset: u64,
}

/// A tensor: a strided view of a storage.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    pub storage: StorageRef,
    /// In elements, already including any legacy storage-view offset.
    pub offset: u64,
    pub shape: Vec<u64>,
    pub stride: Vec<u64>,
}

/// The result of reading one pickle: the arena and the top-level value.
#[derive(Debug, Default)]
pub struct Pickle {
    pub objects: Vec<Object>,
    pub root: Option<Value>,
}

impl Pickle {
    pub fn object(&self, value: &Value) -> Option<&Object> {
        match value {
            Value::Obj(id) => self.objects.get(*id),
            _ => None,
        }
    }

    /// The entries of a dict value, or `None` when the value is not a dict.
    pub fn dict(&self, value: &Value) -> Option<&[(Value, Value)]> {
        match self.object(value) {
            Some(Object::Dict(items)) => Some(items),
            _ => None,
        }
    }

    /// The entry of a dict under a string key.
    pub fn dict_get<'a>(&'a self, value: &Value, key: &str) -> Option<&'a Value> {
        self.dict(value)?.iter().find(|(k, _)| matches!(k, Value::Str(s) if &**s == key)).map(|(_, v)| v)
    }

    pub fn tensor(&self, value: &Value) -> Option<&TensorRef> {
        match self.object(value) {
            Some(Object::Tensor(t)) => Some(t),
            _ => None,
        }
    }

    fn items(&self, value: &Value) -> Option<&[Value]> {
        match self.object(value) {
            Some(Object::Tuple(v)) | Some(Object::List(v)) => Some(v),
            _ => None,
        }
    }
}

/// How persistent ids are turned into values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersistentIds {
    /// A plain pickle: any persistent id is an error.
    Refuse,
    /// `torch.save` storages: `('storage', type, key, location, numel[, view_metadata])`.
    TorchStorages,
}

enum Item {
    Value(Value),
    Mark,
}

/// Reads exactly one pickle (up to and including its `STOP`) from `reader`.
///
/// Memory use is bounded by the bytes actually read: length prefixes are never trusted for
/// allocation.
pub fn read_pickle<R: Read>(reader: &mut R, persistent: PersistentIds) -> Result<Pickle, PickleError> {
    read_pickle_limited(reader, persistent, PickleLimits::default())
}

/// [`read_pickle`] within the given [`PickleLimits`].
pub fn read_pickle_limited<R: Read>(reader: &mut R, persistent: PersistentIds, limits: PickleLimits) -> Result<Pickle, PickleError> {
    Machine {
        reader,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: Vec::new(),
        pickle: Pickle::default(),
        persistent,
        limits,
        items: 0,
        text_bytes: 0,
        dict_index: std::collections::HashMap::new(),
    }
    .run()
}

/// A hashable stand-in for a dict key, so that `SETITEM` finds an existing key in O(1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum DictKey {
    None,
    Bool(bool),
    Int(i64),
    BigInt(Vec<u8>),
    Float(u64),
    Str(std::rc::Rc<str>),
    Bytes(std::rc::Rc<[u8]>),
    Global(String),
    Obj(ObjId),
}

impl DictKey {
    fn of(v: &Value) -> DictKey {
        match v {
            Value::None => DictKey::None,
            Value::Bool(b) => DictKey::Bool(*b),
            Value::Int(i) => DictKey::Int(*i),
            Value::BigInt(b) => DictKey::BigInt(b.clone()),
            Value::Float(f) => DictKey::Float(f.to_bits()),
            Value::Str(s) => DictKey::Str(s.clone()),
            Value::Bytes(b) => DictKey::Bytes(b.clone()),
            Value::Global(g) => DictKey::Global(format!("{g:?}")),
            Value::Obj(id) => DictKey::Obj(*id),
        }
    }
}

struct Machine<'r, R: Read> {
    reader: &'r mut R,
    pos: u64,
    stack: Vec<Item>,
    /// Positions of the marks on `stack`, innermost last.
    marks: Vec<usize>,
    memo: Vec<Option<Value>>,
    pickle: Pickle,
    persistent: PersistentIds,
    limits: PickleLimits,
    /// Values put into containers so far.
    items: usize,
    text_bytes: u64,
    /// Key → position in each dict that has been written to.
    dict_index: std::collections::HashMap<ObjId, std::collections::HashMap<DictKey, usize>>,
}

impl<R: Read> Machine<'_, R> {
    fn malformed(&self, message: impl Into<String>) -> PickleError {
        PickleError::Malformed { position: self.pos, message: message.into() }
    }

    fn limit(&self, what: &'static str, limit: u64) -> PickleError {
        PickleError::Limit { what, limit, position: self.pos }
    }

    fn check_read(&self, more: u64) -> Result<(), PickleError> {
        if self.pos.saturating_add(more) > self.limits.bytes {
            return Err(self.limit("bytes", self.limits.bytes));
        }
        Ok(())
    }

    /// Accounts for `n` more values held in containers.
    fn count_items(&mut self, n: usize) -> Result<(), PickleError> {
        self.items = self.items.saturating_add(n);
        if self.items > self.limits.items {
            return Err(self.limit("container items", self.limits.items as u64));
        }
        Ok(())
    }

    fn read_exact_n<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], PickleError> {
        self.check_read(N as u64)?;
        let mut buf = [0u8; N];
        self.reader.read_exact(&mut buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => PickleError::Truncated(what),
            _ => PickleError::Io(e),
        })?;
        self.pos += N as u64;
        Ok(buf)
    }

    fn byte(&mut self, what: &'static str) -> Result<u8, PickleError> {
        Ok(self.read_exact_n::<1>(what)?[0])
    }
    fn u16(&mut self) -> Result<u16, PickleError> {
        Ok(u16::from_le_bytes(self.read_exact_n("a 2-byte argument")?))
    }
    fn u32(&mut self) -> Result<u32, PickleError> {
        Ok(u32::from_le_bytes(self.read_exact_n("a 4-byte argument")?))
    }
    fn u64(&mut self) -> Result<u64, PickleError> {
        Ok(u64::from_le_bytes(self.read_exact_n("an 8-byte argument")?))
    }

    /// Reads `len` bytes without trusting `len` for the allocation.
    fn bytes(&mut self, len: u64, what: &'static str) -> Result<Vec<u8>, PickleError> {
        self.check_read(len)?;
        self.text_bytes = self.text_bytes.saturating_add(len);
        if self.text_bytes > self.limits.text_bytes {
            return Err(self.limit("bytes of strings", self.limits.text_bytes));
        }
        let mut buf = Vec::with_capacity(len.min(1 << 16) as usize);
        let got = self.reader.by_ref().take(len).read_to_end(&mut buf)?;
        self.pos += got as u64;
        if (got as u64) < len {
            return Err(PickleError::Truncated(what));
        }
        Ok(buf)
    }

    /// Reads a newline-terminated argument of the text opcodes (bounded length).
    fn line(&mut self) -> Result<String, PickleError> {
        let mut out = Vec::new();
        loop {
            let b = self.byte("a text argument")?;
            if b == b'\n' {
                break;
            }
            if out.len() >= 1 << 16 {
                return Err(self.malformed("text argument longer than 64 KiB"));
            }
            out.push(b);
        }
        String::from_utf8(out).map_err(|_| self.malformed("text argument is not UTF-8"))
    }

    fn string(&mut self, len: u64) -> Result<Value, PickleError> {
        let bytes = self.bytes(len, "a string")?;
        let s = String::from_utf8(bytes).map_err(|_| self.malformed("string is not valid UTF-8"))?;
        Ok(Value::Str(s.into()))
    }

    fn push(&mut self, v: Value) {
        self.stack.push(Item::Value(v));
    }

    fn new_obj(&mut self, o: Object) -> Value {
        self.pickle.objects.push(o);
        Value::Obj(self.pickle.objects.len() - 1)
    }

    fn pop(&mut self) -> Result<Value, PickleError> {
        match self.stack.pop() {
            Some(Item::Value(v)) => Ok(v),
            Some(Item::Mark) => Err(self.malformed("unexpected mark on the stack")),
            None => Err(self.malformed("stack underflow")),
        }
    }

    fn top(&self) -> Result<&Value, PickleError> {
        match self.stack.last() {
            Some(Item::Value(v)) => Ok(v),
            _ => Err(self.malformed("stack underflow")),
        }
    }

    /// Pops everything down to the topmost mark (and the mark).
    fn pop_mark(&mut self) -> Result<Vec<Value>, PickleError> {
        let at = self.marks.pop().ok_or_else(|| self.malformed("no mark on the stack"))?;
        if !matches!(self.stack.get(at), Some(Item::Mark)) {
            return Err(self.malformed("the mark was popped as a value"));
        }
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items
            .into_iter()
            .map(|i| match i {
                Item::Value(v) => v,
                Item::Mark => unreachable!("marks above `at` would be in `marks`"),
            })
            .collect())
    }

    fn memo_put(&mut self, index: usize) -> Result<(), PickleError> {
        if index >= self.limits.memo {
            return Err(self.malformed(format!("memo index {index} too large")));
        }
        let v = self.top()?.clone();
        if self.memo.len() <= index {
            self.memo.resize(index + 1, None);
        }
        self.memo[index] = Some(v);
        Ok(())
    }

    fn memo_get(&mut self, index: usize) -> Result<(), PickleError> {
        let v = self.memo.get(index).and_then(|v| v.clone()).ok_or_else(|| self.malformed(format!("memo index {index} was never set")))?;
        self.push(v);
        Ok(())
    }

    /// The object a container-mutating opcode works on (the value below the popped items).
    fn target(&self) -> Result<ObjId, PickleError> {
        match self.top()? {
            Value::Obj(id) => Ok(*id),
            _ => Err(self.malformed("expected a container on the stack")),
        }
    }

    fn append(&mut self, items: Vec<Value>) -> Result<(), PickleError> {
        self.count_items(items.len())?;
        let id = self.target()?;
        match &mut self.pickle.objects[id] {
            Object::List(v) | Object::Set(v) => {
                v.extend(items);
                Ok(())
            }
            _ => Err(self.malformed("APPEND to something that is not a list")),
        }
    }

    fn set_items(&mut self, items: Vec<Value>) -> Result<(), PickleError> {
        if !items.len().is_multiple_of(2) {
            return Err(self.malformed("SETITEMS with an odd number of items"));
        }
        self.count_items(items.len())?;
        let id = self.target()?;
        let Object::Dict(entries) = &mut self.pickle.objects[id] else {
            return Err(self.malformed("SETITEM on something that is not a dict"));
        };
        let index =
            self.dict_index.entry(id).or_insert_with(|| entries.iter().enumerate().map(|(i, (k, _))| (DictKey::of(k), i)).collect());
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            match index.entry(DictKey::of(&k)) {
                std::collections::hash_map::Entry::Occupied(e) => entries[*e.get()].1 = v,
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(entries.len());
                    entries.push((k, v));
                }
            }
        }
        Ok(())
    }

    fn tuple(&mut self, items: Vec<Value>) -> Result<Value, PickleError> {
        self.count_items(items.len())?;
        Ok(self.new_obj(Object::Tuple(items)))
    }

    /// After each opcode: the stack and the arena within their limits.
    fn check_size(&self) -> Result<(), PickleError> {
        if self.stack.len() > self.limits.stack {
            return Err(self.limit("stack entries", self.limits.stack as u64));
        }
        if self.pickle.objects.len() > self.limits.objects {
            return Err(self.limit("objects", self.limits.objects as u64));
        }
        Ok(())
    }

    fn run(mut self) -> Result<Pickle, PickleError> {
        loop {
            self.check_size()?;
            let at = self.pos;
            let op = self.byte("an opcode")?;
            match op {
                0x80 => {
                    // PROTO
                    let proto = self.byte("the protocol number")?;
                    if proto > 5 {
                        return Err(self.malformed(format!("unknown pickle protocol {proto}")));
                    }
                }
                0x95 => {
                    // FRAME: a length hint only
                    self.u64()?;
                }
                b'.' => {
                    let root = self.pop()?;
                    self.pickle.root = Some(root);
                    return Ok(self.pickle);
                }
                b'(' => {
                    self.marks.push(self.stack.len());
                    self.stack.push(Item::Mark);
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.push(v);
                }
                b'N' => self.push(Value::None),
                0x88 => self.push(Value::Bool(true)),
                0x89 => self.push(Value::Bool(false)),
                b'J' => {
                    let v = i32::from_le_bytes(self.read_exact_n("BININT")?);
                    self.push(Value::Int(v as i64));
                }
                b'K' => {
                    let v = self.byte("BININT1")?;
                    self.push(Value::Int(v as i64));
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(Value::Int(v as i64));
                }
                0x8a | 0x8b => {
                    // LONG1 / LONG4
                    let len = if op == 0x8a { self.byte("LONG1")? as u64 } else { self.u32()? as u64 };
                    let bytes = self.bytes(len, "a long integer")?;
                    self.push(long_from_bytes(bytes));
                }
                b'I' | b'L' => {
                    let line = self.line()?;
                    let text = line.trim_end_matches('L');
                    let v = match text {
                        "00" => Value::Bool(false),
                        "01" => Value::Bool(true),
                        t => Value::Int(t.parse().map_err(|_| self.malformed(format!("bad integer `{t}`")))?),
                    };
                    self.push(v);
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.read_exact_n("BINFLOAT")?);
                    self.push(Value::Float(v));
                }
                b'F' => {
                    let line = self.line()?;
                    let v = line.parse().map_err(|_| self.malformed(format!("bad float `{line}`")))?;
                    self.push(Value::Float(v));
                }
                b'X' => {
                    let len = self.u32()? as u64;
                    let v = self.string(len)?;
                    self.push(v);
                }
                0x8c => {
                    let len = self.byte("SHORT_BINUNICODE")? as u64;
                    let v = self.string(len)?;
                    self.push(v);
                }
                0x8d => {
                    let len = self.u64()?;
                    let v = self.string(len)?;
                    self.push(v);
                }
                b'V' => {
                    let line = self.line()?;
                    self.push(Value::Str(unescape_raw_unicode(&line).into()));
                }
                b'T' | b'U' => {
                    // BINSTRING / SHORT_BINSTRING: Python 2 str, decoded as latin-1 like
                    // `encoding='latin1'` would.
                    let len = if op == b'T' { self.u32()? as u64 } else { self.byte("SHORT_BINSTRING")? as u64 };
                    let bytes = self.bytes(len, "a string")?;
                    self.push(Value::Str(bytes.iter().map(|&b| b as char).collect::<String>().into()));
                }
                b'S' => {
                    let line = self.line()?;
                    let s = line.trim();
                    let inner = s
                        .strip_prefix('\'')
                        .and_then(|s| s.strip_suffix('\''))
                        .or_else(|| s.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
                        .ok_or_else(|| self.malformed("STRING argument is not quoted"))?;
                    self.push(Value::Str(inner.into()));
                }
                b'B' | b'C' | 0x8e | 0x96 => {
                    let len = match op {
                        b'B' => self.u32()? as u64,
                        b'C' => self.byte("SHORT_BINBYTES")? as u64,
                        _ => self.u64()?,
                    };
                    let bytes = self.bytes(len, "bytes")?;
                    self.push(Value::Bytes(bytes.into()));
                }
                b')' => {
                    let v = self.tuple(Vec::new())?;
                    self.push(v);
                }
                b't' => {
                    let items = self.pop_mark()?;
                    let v = self.tuple(items)?;
                    self.push(v);
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    let v = self.tuple(items)?;
                    self.push(v);
                }
                b']' => {
                    let v = self.new_obj(Object::List(Vec::new()));
                    self.push(v);
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.count_items(items.len())?;
                    let v = self.new_obj(Object::List(items));
                    self.push(v);
                }
                b'a' => {
                    let item = self.pop()?;
                    self.append(vec![item])?;
                }
                b'e' | 0x90 => {
                    let items = self.pop_mark()?;
                    self.append(items)?;
                }
                b'}' => {
                    let v = self.new_obj(Object::Dict(Vec::new()));
                    self.push(v);
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let v = self.new_obj(Object::Dict(Vec::new()));
                    self.push(v);
                    self.set_items(items)?;
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    self.set_items(vec![key, value])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?;
                }
                0x8f => {
                    let v = self.new_obj(Object::Set(Vec::new()));
                    self.push(v);
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    self.count_items(items.len())?;
                    let v = self.new_obj(Object::Set(items));
                    self.push(v);
                }
                b'q' => {
                    let i = self.byte("BINPUT")? as usize;
                    self.memo_put(i)?;
                }
                b'r' => {
                    let i = self.u32()? as usize;
                    self.memo_put(i)?;
                }
                b'p' => {
                    let line = self.line()?;
                    let i = line.parse().map_err(|_| self.malformed("bad PUT index"))?;
                    self.memo_put(i)?;
                }
                0x94 => {
                    let i = self.memo.len();
                    self.memo_put(i)?;
                }
                b'h' => {
                    let i = self.byte("BINGET")? as usize;
                    self.memo_get(i)?;
                }
                b'j' => {
                    let i = self.u32()? as usize;
                    self.memo_get(i)?;
                }
                b'g' => {
                    let line = self.line()?;
                    let i = line.parse().map_err(|_| self.malformed("bad GET index"))?;
                    self.memo_get(i)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let g = Global::resolve(&module, &name)?;
                    self.push(Value::Global(g));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Value::Str(module), Value::Str(name)) = (module, name) else {
                        return Err(self.malformed("STACK_GLOBAL needs two strings"));
                    };
                    let g = Global::resolve(&module, &name)?;
                    self.push(Value::Global(g));
                }
                b'R' | 0x81 => {
                    // REDUCE (callable, args) and NEWOBJ (cls, args): both interpreted the same.
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = self.call(callable, args)?;
                    self.push(v);
                }
                0x92 => {
                    // NEWOBJ_EX (cls, args, kwargs): no allowed class takes keyword arguments.
                    let kwargs = self.pop()?;
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    if self.pickle.dict(&kwargs).is_some_and(|d| !d.is_empty()) {
                        return Err(self.malformed("NEWOBJ_EX with keyword arguments"));
                    }
                    let v = self.call(cls, args)?;
                    self.push(v);
                }
                b'b' => {
                    // BUILD: object state. Allowed objects carry nothing we need in their state
                    // (an OrderedDict's `_metadata`, a Parameter's flags), except numpy dtypes,
                    // whose byte order lives there.
                    let state = self.pop()?;
                    let target = self.top()?.clone();
                    self.build(&target, &state)?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = self.persistent_load(pid)?;
                    self.push(v);
                }
                b'P' => {
                    let line = self.line()?;
                    let pid = Value::Str(line.into());
                    let v = self.persistent_load(pid)?;
                    self.push(v);
                }
                _ => return Err(PickleError::UnsupportedOpcode { opcode: op, position: at }),
            }
        }
    }

    fn args(&self, args: &Value, what: &str) -> Result<Vec<Value>, PickleError> {
        self.pickle.items(args).map(|v| v.to_vec()).ok_or_else(|| self.malformed(format!("arguments of {what} are not a tuple")))
    }

    fn call(&mut self, callable: Value, args: Value) -> Result<Value, PickleError> {
        let Value::Global(g) = callable else {
            return Err(self.malformed("call of something that is not an allowed global"));
        };
        match g {
            Global::OrderedDict => {
                let args = self.args(&args, "OrderedDict")?;
                let dict = self.new_obj(Object::Dict(Vec::new()));
                if let Some(pairs) = args.first() {
                    let pairs = self.pickle.items(pairs).map(|v| v.to_vec()).unwrap_or_default();
                    let mut flat = Vec::new();
                    for p in pairs {
                        match self.pickle.items(&p) {
                            Some([k, v]) => flat.extend([k.clone(), v.clone()]),
                            _ => return Err(self.malformed("OrderedDict argument is not a list of pairs")),
                        }
                    }
                    self.stack.push(Item::Value(dict.clone()));
                    self.set_items(flat)?;
                    self.pop()?;
                }
                Ok(dict)
            }
            Global::RebuildTensor | Global::RebuildTensorV2 => {
                let args = self.args(&args, "_rebuild_tensor")?;
                if args.len() < 4 {
                    return Err(self.malformed("_rebuild_tensor needs (storage, offset, size, stride)"));
                }
                let Some(Object::Storage(storage)) = self.pickle.object(&args[0]).cloned() else {
                    return Err(self.malformed("_rebuild_tensor's first argument is not a storage"));
                };
                let offset = self.uint(&args[1], "storage offset")?;
                let shape = self.uint_tuple(&args[2], "size")?;
                let stride = self.uint_tuple(&args[3], "stride")?;
                if shape.len() != stride.len() {
                    return Err(self.malformed("tensor size and stride differ in length"));
                }
                let offset = offset.checked_add(storage.view_offset).ok_or_else(|| self.malformed("storage offset overflows"))?;
                Ok(self.new_obj(Object::Tensor(Box::new(TensorRef { storage: *storage, offset, shape, stride }))))
            }
            Global::RebuildParameter => {
                let args = self.args(&args, "_rebuild_parameter")?;
                match args.first() {
                    Some(v) if self.pickle.tensor(v).is_some() => Ok(v.clone()),
                    _ => Err(self.malformed("_rebuild_parameter's first argument is not a tensor")),
                }
            }
            Global::CodecsEncode => {
                let args = self.args(&args, "_codecs.encode")?;
                match args.as_slice() {
                    [Value::Str(s), Value::Str(enc)] if &**enc == "latin1" || &**enc == "latin-1" => {
                        let bytes: Option<Vec<u8>> = s.chars().map(|c| u8::try_from(c as u32).ok()).collect();
                        let bytes = bytes.ok_or_else(|| self.malformed("latin1 string out of range"))?;
                        Ok(Value::Bytes(bytes.into()))
                    }
                    _ => Err(self.malformed("unsupported _codecs.encode call")),
                }
            }
            Global::NumpyDtype => {
                let args = self.args(&args, "numpy.dtype")?;
                match args.first() {
                    Some(Value::Str(descr)) => Ok(self.new_obj(Object::NumpyDtype { descr: descr.to_string(), big_endian: false })),
                    _ => Err(self.malformed("numpy.dtype without a type string")),
                }
            }
            Global::NumpyScalar => {
                let args = self.args(&args, "numpy scalar")?;
                let (Some(Object::NumpyDtype { descr, big_endian }), Some(Value::Bytes(b))) =
                    (args.first().and_then(|d| self.pickle.object(d)), args.get(1))
                else {
                    return Err(self.malformed("numpy scalar needs (dtype, bytes)"));
                };
                numpy_scalar(descr, *big_endian, b).ok_or_else(|| self.malformed(format!("unsupported numpy scalar `{descr}`")))
            }
            Global::StorageType(_) => Err(self.malformed("storage classes cannot be called")),
        }
    }

    fn build(&mut self, target: &Value, state: &Value) -> Result<(), PickleError> {
        let Value::Obj(id) = target else {
            return Err(self.malformed("BUILD on a plain value"));
        };
        match &self.pickle.objects[*id] {
            Object::NumpyDtype { .. } => {
                // state = (version, byteorder, ...)
                let order = self.pickle.items(state).and_then(|s| s.get(1).cloned());
                if let Object::NumpyDtype { big_endian, .. } = &mut self.pickle.objects[*id] {
                    *big_endian = matches!(order, Some(Value::Str(s)) if &*s == ">");
                }
                Ok(())
            }
            Object::Dict(_) | Object::Tensor(_) => Ok(()),
            _ => Err(self.malformed("BUILD on an object that takes no state")),
        }
    }

    fn uint(&self, v: &Value, what: &str) -> Result<u64, PickleError> {
        match v {
            Value::Int(i) if *i >= 0 => Ok(*i as u64),
            _ => Err(self.malformed(format!("tensor {what} is not a non-negative integer"))),
        }
    }

    fn uint_tuple(&self, v: &Value, what: &str) -> Result<Vec<u64>, PickleError> {
        let items = self.pickle.items(v).ok_or_else(|| self.malformed(format!("tensor {what} is not a tuple")))?;
        if items.len() > 64 {
            return Err(self.malformed(format!("tensor {what} has more than 64 dimensions")));
        }
        items.iter().map(|i| self.uint(i, what)).collect()
    }

    fn persistent_load(&mut self, pid: Value) -> Result<Value, PickleError> {
        if self.persistent == PersistentIds::Refuse {
            return Err(self.malformed("persistent id in a pickle that should have none"));
        }
        let items = self.pickle.items(&pid).map(|v| v.to_vec()).unwrap_or_default();
        let (kind, ty, key, location, numel) = match items.as_slice() {
            [k, t, key, loc, n, ..] => (k, t, key, loc, n),
            _ => return Err(self.malformed("persistent id is not a storage tuple")),
        };
        if !matches!(kind, Value::Str(s) if &**s == "storage") {
            return Err(self.malformed("persistent id of a kind other than 'storage'"));
        }
        let Value::Global(Global::StorageType(dtype)) = ty else {
            return Err(self.malformed("persistent id names no storage type"));
        };
        let key = match key {
            Value::Str(s) => s.to_string(),
            Value::Int(i) => i.to_string(),
            _ => return Err(self.malformed("storage key is not a string")),
        };
        let location = match location {
            Value::Str(s) => s.to_string(),
            _ => String::new(),
        };
        let numel = self.uint(numel, "storage size")?;
        // Legacy files may describe a view: (view_key, offset, view_size) into the root storage.
        let mut view_offset = 0;
        if let Some(view) = items.get(5).filter(|v| **v != Value::None) {
            match self.pickle.items(view) {
                Some([_, off, size]) => {
                    view_offset = self.uint(off, "storage view offset")?;
                    let size = self.uint(size, "storage view size")?;
                    if view_offset.checked_add(size).is_none_or(|end| end > numel) {
                        return Err(self.malformed("storage view reaches outside its storage"));
                    }
                }
                _ => return Err(self.malformed("malformed storage view metadata")),
            }
        }
        Ok(self.new_obj(Object::Storage(Box::new(StorageRef { key, dtype: *dtype, location, numel, view_offset }))))
    }
}

fn long_from_bytes(bytes: Vec<u8>) -> Value {
    if bytes.is_empty() {
        return Value::Int(0);
    }
    if bytes.len() <= 8 {
        let negative = bytes[bytes.len() - 1] & 0x80 != 0;
        let mut buf = if negative { [0xffu8; 8] } else { [0u8; 8] };
        buf[..bytes.len()].copy_from_slice(&bytes);
        Value::Int(i64::from_le_bytes(buf))
    } else {
        Value::BigInt(bytes)
    }
}

/// Decodes the `raw-unicode-escape` argument of the protocol-0 `UNICODE` opcode.
fn unescape_raw_unicode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && matches!(chars.peek(), Some('u') | Some('U')) {
            let n = if chars.next() == Some('u') { 4 } else { 8 };
            let hex: String = chars.by_ref().take(n).collect();
            match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                Some(ch) => out.push(ch),
                None => {
                    out.push('\\');
                    out.push_str(&hex);
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn numpy_scalar(descr: &str, big_endian: bool, b: &[u8]) -> Option<Value> {
    fn arr<const N: usize>(b: &[u8], be: bool) -> Option<[u8; N]> {
        let mut a: [u8; N] = b.try_into().ok()?;
        if be {
            a.reverse();
        }
        Some(a)
    }
    let descr = descr.trim_start_matches(['<', '>', '=', '|']);
    Some(match descr {
        "f8" => Value::Float(f64::from_le_bytes(arr(b, big_endian)?)),
        "f4" => Value::Float(f32::from_le_bytes(arr(b, big_endian)?) as f64),
        "i8" => Value::Int(i64::from_le_bytes(arr(b, big_endian)?)),
        "i4" => Value::Int(i32::from_le_bytes(arr(b, big_endian)?) as i64),
        "b1" => Value::Bool(*b.first()? != 0),
        _ => return None,
    })
}
