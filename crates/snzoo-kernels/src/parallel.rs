//! How the inference kernels use the thread pool.
//!
//! In inference every sample of a batch is independent (SN's batch statistics are the running
//! buffers), so `snzoo_model::ResNet` runs a batch as one task per image on the rayon
//! pool, each image through the whole network on one thread, rather than splitting every layer
//! across threads. That keeps each image's activations in its core's cache and avoids a
//! synchronisation per layer. Inside such a task the kernels run serially: [`serially`] marks the
//! current thread, [`is_serial`] and [`threads`] tell a kernel.
//!
//! Also the kernels' shared plumbing: their f32 operands as contiguous slices, and output buffers
//! that are not zeroed before the kernel writes them.

use std::cell::Cell;
use std::mem::MaybeUninit;

use candle_core::{CpuStorage, Layout};

thread_local! {
    static SERIAL: Cell<bool> = const { Cell::new(false) };
}

/// Threads a kernel called here may use: 1 inside [`serially`], else the rayon pool's.
pub fn threads() -> usize {
    if is_serial() {
        1
    } else {
        rayon::current_num_threads()
    }
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

/// A kernel's f32 operand as one contiguous slice; an error naming the kernel otherwise.
pub(crate) fn contiguous_f32<'a>(kernel: &str, s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&v[a..b]),
        _ => candle_core::bail!("{kernel} needs contiguous f32 operands"),
    }
}

/// A buffer of `len` f32 for a kernel's output, without zeroing it first: `fill` gets the
/// uninitialised elements and must write every one of them.
///
/// # Safety
/// `fill` writes all `len` elements (through the slice or a pointer derived from it).
pub(crate) unsafe fn output_buffer(len: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut v = Vec::with_capacity(len);
    fill(&mut v.spare_capacity_mut()[..len]);
    // SAFETY: the caller's contract: all `len` elements are initialised.
    unsafe { v.set_len(len) };
    v
}

/// Calls `f` on up to `threads` consecutive ranges covering 0..len, on the rayon pool when there
/// is more than one.
pub(crate) fn split_range(threads: usize, len: usize, f: impl Fn(std::ops::Range<usize>) + Sync) {
    let parts = threads.clamp(1, len.max(1));
    if parts == 1 {
        f(0..len);
        return;
    }
    rayon::scope(|s| {
        for part in 0..parts {
            let f = &f;
            s.spawn(move |_| f(len * part / parts..len * (part + 1) / parts));
        }
    });
}
