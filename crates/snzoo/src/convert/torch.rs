//! `torch.save` checkpoints.

use std::path::Path;

use super::{CheckpointFormat, Probe, StateDict};
use crate::{Error, Result};

/// `torch.save` files: the zip format (torch ≥ 1.6) and the legacy format of the SN release.
pub struct TorchSave;

impl CheckpointFormat for TorchSave {
    fn name(&self) -> &'static str {
        "torch.save"
    }
    fn sniff(&self, probe: &Probe) -> bool {
        probe.head.starts_with(b"PK\x03\x04") || probe.head.first() == Some(&0x80)
    }
    fn read(&self, path: &Path) -> Result<StateDict> {
        let ck = snzoo_convert::read_torch_checkpoint(path).map_err(|source| Error::Checkpoint { path: path.to_path_buf(), source })?;
        Ok(StateDict::new(path, format!("torch.save {}", ck.format), ck.tensors, ck.info))
    }
}
