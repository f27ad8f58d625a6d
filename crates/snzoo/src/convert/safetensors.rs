//! safetensors files with PyTorch names.

use std::path::Path;

use snzoo_convert::{CheckpointInfo, DType, Tensor};

use super::{CheckpointFormat, Probe, StateDict};
use crate::{Error, Result};

/// safetensors files with PyTorch key names (the Hugging Face Hub's, e.g. timm's weights).
pub struct Safetensors;

impl CheckpointFormat for Safetensors {
    fn name(&self) -> &'static str {
        "safetensors"
    }
    fn sniff(&self, probe: &Probe) -> bool {
        probe.head.len() > 8 && probe.head[8] == b'{'
    }
    fn read(&self, path: &Path) -> Result<StateDict> {
        let bytes = snzoo_fs::read_regular(path, u64::MAX)?;
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|source| Error::Safetensors { path: path.to_path_buf(), source })?;
        let mut tensors = Vec::with_capacity(st.len());
        for (name, view) in st.iter() {
            let dtype = DType::from_safetensors(view.dtype())
                .ok_or_else(|| Error::Other(format!("{}: tensor `{name}` has the unsupported dtype {:?}", path.display(), view.dtype())))?;
            tensors.push((name.to_string(), Tensor { dtype, shape: view.shape().to_vec(), data: view.data().to_vec() }));
        }
        // The file's own order is its header's (alphabetical after the dtype): keep the names sorted.
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(StateDict::new(path, "safetensors", tensors, CheckpointInfo::default()))
    }
}
