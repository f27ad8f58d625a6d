//! How the inference kernels use the thread pool.
//!
//! In inference every sample of a batch is independent (SN's batch statistics are the running
//! buffers), so [`ResNetSn`](crate::ResNetSn) runs a batch as one task per image on the rayon
//! pool, each image through the whole network on one thread, rather than splitting every layer
//! across threads. That keeps each image's activations in its core's cache and avoids a
//! synchronisation per layer. Inside such a task the kernels run serially: [`serially`] marks the
//! current thread, [`is_serial`] tells a kernel.

use std::cell::Cell;

thread_local! {
    static SERIAL: Cell<bool> = const { Cell::new(false) };
}

/// Whether kernels called on this thread should stay on it.
pub fn is_serial() -> bool {
    SERIAL.with(Cell::get)
}

/// Runs `f` with the kernels it calls kept on the current thread.
pub fn serially<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            SERIAL.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(SERIAL.with(|s| s.replace(true)));
    f()
}
