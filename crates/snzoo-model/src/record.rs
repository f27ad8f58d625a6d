//! The state-dict keys and shapes of an architecture, read off the network itself: building it
//! from a `VarBuilder` that records what it is asked for.

use std::sync::Mutex;

use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

use crate::config::{ArchError, ResNetConfig};
use crate::resnet::ResNet;

/// Answers every request with zeros of the asked shape (one element, broadcast: nothing is
/// allocated for the weights) and remembers the requests in order.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<(String, Vec<usize>)>>,
}

impl SimpleBackend for Recorder {
    fn get(&self, s: Shape, name: &str, _: candle_nn::Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        self.seen.lock().expect("recorder lock").push((name.to_string(), s.dims().to_vec()));
        Tensor::zeros((), dtype, dev)?.broadcast_as(s)
    }
    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> Result<Tensor> {
        candle_core::bail!("the recorder cannot answer `{name}` without a shape")
    }
    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

/// Every key the network of `config` reads, with its shape, in the order it reads them.
pub(crate) fn shapes_of(config: &ResNetConfig) -> std::result::Result<Vec<(String, Vec<usize>)>, ArchError> {
    let recorder = std::sync::Arc::new(Recorder::default());
    struct Shared(std::sync::Arc<Recorder>);
    impl SimpleBackend for Shared {
        fn get(&self, s: Shape, name: &str, h: candle_nn::Init, dtype: DType, dev: &Device) -> Result<Tensor> {
            self.0.get(s, name, h, dtype, dev)
        }
        fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> Result<Tensor> {
            self.0.get_unchecked(name, dtype, dev)
        }
        fn contains_tensor(&self, name: &str) -> bool {
            self.0.contains_tensor(name)
        }
    }
    let vb = VarBuilder::from_backend(Box::new(Shared(recorder.clone())), DType::F32, Device::Cpu);
    ResNet::new(config, vb).map_err(|e| ArchError::Build(crate::error_message(&e)))?;
    let seen = std::mem::take(&mut *recorder.seen.lock().expect("recorder lock"));
    Ok(seen)
}
