//! How the inference kernels use the thread pool.
//!
//! In inference every sample of a batch is independent (SN's batch statistics are the running
//! buffers), so `snzoo_model::ResNet` runs a batch as one task per share of a few images on the
//! rayon pool, each share through the whole network on one thread (the first stages image by
//! image, the later ones on the share at once), rather than splitting every layer across
//! threads. That keeps the activations in the core's cache and avoids a synchronisation per
//! layer. Inside such a task the kernels run serially: [`serially`] marks the
//! current thread, [`is_serial`] and [`threads`] tell a kernel. A single image (or anything run
//! outside [`serially`]) has each kernel split over [`threads`] parts by [`run_parts`], whose
//! helper threads stay awake between the kernels (see `spin_pool`).
//!
//! Also the kernels' shared plumbing: their f32 operands as contiguous slices, and output buffers
//! that are not zeroed before the kernel writes them.

use std::cell::Cell;
use std::mem::MaybeUninit;

use candle_core::{CpuStorage, Layout};

thread_local! {
    static SERIAL: Cell<bool> = const { Cell::new(false) };
}

/// Threads a kernel called here may use: 1 inside [`serially`], else as many as the rayon pool
/// has (`--threads`).
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

/// Runs `f` compiled for AVX2 where the CPU has it (the portable code otherwise): the
/// elementwise passes (moments, affine maps, residual sums) are written as plain loops
/// over lanes, which the default x86-64 target compiles to SSE2. `f` and what it calls inline
/// into the AVX2 copy; the operations and their order are the same (Rust never contracts
/// a·b + c into an FMA), so both give the same bits. (AVX-512 CPUs run the AVX2 copy too.)
#[inline(always)]
pub(crate) fn wide<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        static AVX2: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        if *AVX2
            .get_or_init(|| std::arch::is_x86_feature_detected!("avx2") && std::env::var_os("SNZOO_AVX2_PASSES").is_none_or(|v| v != "0"))
        {
            // SAFETY: the CPU has AVX2 (checked above).
            return unsafe { avx2(f) };
        }
    }
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

/// Calls `f` on up to `threads` consecutive ranges covering 0..len, spread over [`run_parts`].
pub(crate) fn split_range(threads: usize, len: usize, f: impl Fn(std::ops::Range<usize>) + Sync) {
    let parts = threads.clamp(1, len.max(1));
    run_parts(parts, |part| f(len * part / parts..len * (part + 1) / parts));
}

/// Splits `data` into up to `threads` runs of whole chunks of `chunk` elements and calls
/// `f(first chunk's index, run)` on each, at once ([`run_parts`]).
pub(crate) fn chunks_mut<T: Send>(threads: usize, data: &mut [T], chunk: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    let chunks = data.len().div_ceil(chunk.max(1));
    let parts = threads.clamp(1, chunks.max(1));
    let mut runs = Vec::with_capacity(parts);
    let mut rest = data;
    for part in 0..parts {
        let (first, end) = (chunks * part / parts, chunks * (part + 1) / parts);
        let (run, tail) = rest.split_at_mut(((end - first) * chunk).min(rest.len()));
        runs.push((first, std::sync::Mutex::new(Some(run))));
        rest = tail;
    }
    run_parts(parts, |part| {
        let (first, run) = &runs[part];
        let run = run.lock().unwrap_or_else(|e| e.into_inner()).take().expect("each run is taken once");
        f(*first, run)
    });
}

/// Calls `f(0)`, …, `f(parts − 1)` at once: part 0 on the calling thread, the others on the
/// kernels' own helper threads ([`spin_pool`]). Returns when all have returned; a panic in any
/// part is raised here after all have finished.
pub fn run_parts(parts: usize, f: impl Fn(usize) + Sync) {
    if parts <= 1 {
        if parts == 1 {
            f(0);
        }
        return;
    }
    spin_pool::run(parts, &f);
}

/// The helper threads of the kernels' parallel sections.
///
/// A batch-1 forward pass makes a few hundred parallel sections of a fraction of a millisecond
/// each. On rayon's pool each one woke a sleeping worker through the kernel (futex wake,
/// context switch: 10–15 % of the CPU time in the scheduler by `perf`, and the waker waits
/// meanwhile); two threads ran ResNet-50 only 1.27× as fast as one. These helpers instead spin
/// for a while after each section (then yield, then sleep), so the next section finds them
/// awake. One caller at a time uses them; a section started while they are busy (another
/// thread's forward pass, or a section inside a section) runs its parts on its own thread.
mod spin_pool {
    use std::cell::UnsafeCell;
    use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
    use std::sync::{Arc, Mutex, OnceLock};
    use std::thread::Thread;
    use std::time::{Duration, Instant};

    /// How long a helper stays awake after its last part: spinning, then yielding its core.
    const SPIN: Duration = Duration::from_micros(100);
    const YIELD: Duration = Duration::from_micros(2000);

    const IDLE: u8 = 0;
    const POSTED: u8 = 1;
    const DONE: u8 = 2;
    const PANICKED: u8 = 3;

    /// A part handed to a helper: the section's closure (lifetime erased; the poster waits for
    /// DONE before the closure can go away) and the part's index.
    type Job = (*const (dyn Fn(usize) + Sync), usize);

    struct Slot {
        state: AtomicU8,
        parked: AtomicBool,
        job: UnsafeCell<Option<Job>>,
        thread: OnceLock<Thread>,
    }

    // SAFETY: `job` is written by the poster only while the state is IDLE and read by the
    // helper only after it sees POSTED (release/acquire on `state`); the closure is Sync.
    unsafe impl Sync for Slot {}
    unsafe impl Send for Slot {}

    /// The helpers' slots, one per helper thread (started on demand, never stopped).
    static SLOTS: Mutex<Vec<Arc<Slot>>> = Mutex::new(Vec::new());

    fn helper(slot: Arc<Slot>) {
        let _ = slot.thread.set(std::thread::current());
        loop {
            let idle_since = Instant::now();
            while slot.state.load(Ordering::Acquire) != POSTED {
                let idle = idle_since.elapsed();
                if idle < SPIN {
                    std::hint::spin_loop();
                } else if idle < YIELD {
                    std::thread::yield_now();
                } else {
                    slot.parked.store(true, Ordering::SeqCst);
                    if slot.state.load(Ordering::SeqCst) != POSTED {
                        std::thread::park();
                    }
                    slot.parked.store(false, Ordering::SeqCst);
                }
            }
            // SAFETY: POSTED was seen with acquire ordering: the job is written and stays
            // alive until this slot reports DONE or PANICKED.
            let (f, part) = unsafe { (*slot.job.get()).take().expect("a posted job") };
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe { (*f)(part) }));
            slot.state.store(if result.is_ok() { DONE } else { PANICKED }, Ordering::Release);
        }
    }

    /// Waits for the posted parts ([`Wait::finish`], or on drop when part 0 unwinds), so that
    /// the closure outlives them.
    struct Wait<'a> {
        slots: &'a [Arc<Slot>],
        finished: bool,
    }

    impl Wait<'_> {
        /// Waits for every posted part; whether one panicked.
        fn finish(&mut self) -> bool {
            self.finished = true;
            let mut panicked = false;
            for slot in self.slots {
                let mut spins = 0u32;
                loop {
                    match slot.state.load(Ordering::Acquire) {
                        DONE => break,
                        PANICKED => {
                            panicked = true;
                            break;
                        }
                        _ if spins < 1 << 16 => {
                            spins += 1;
                            std::hint::spin_loop();
                        }
                        _ => std::thread::yield_now(),
                    }
                }
                slot.state.store(IDLE, Ordering::Relaxed);
            }
            panicked
        }
    }

    impl Drop for Wait<'_> {
        fn drop(&mut self) {
            if !self.finished {
                self.finish();
            }
        }
    }

    pub(super) fn run(parts: usize, f: &(dyn Fn(usize) + Sync)) {
        let Ok(mut slots) = SLOTS.try_lock() else {
            // Busy (another caller, or a section inside a section): this thread does all parts
            // (each one, as the helpers would, before a panic is raised).
            let mut first_panic = None;
            for part in 0..parts {
                if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(part))) {
                    first_panic.get_or_insert(payload);
                }
            }
            if let Some(payload) = first_panic {
                std::panic::resume_unwind(payload);
            }
            return;
        };
        while slots.len() < parts - 1 {
            let slot = Arc::new(Slot {
                state: AtomicU8::new(IDLE),
                parked: AtomicBool::new(false),
                job: UnsafeCell::new(None),
                thread: OnceLock::new(),
            });
            let for_helper = slot.clone();
            let spawned = std::thread::Builder::new().name("snzoo-kernels".into()).spawn(move || helper(for_helper));
            if spawned.is_err() {
                break;
            }
            slots.push(slot);
        }
        let helpers = &slots[..(parts - 1).min(slots.len())];
        // SAFETY: the lifetime of `f` is erased only for the duration of this call: `wait`
        // below returns (or unwinds) only after every helper has finished its part.
        let job: *const (dyn Fn(usize) + Sync) = unsafe { std::mem::transmute(f) };
        for (i, slot) in helpers.iter().enumerate() {
            // SAFETY: the slot is IDLE (every earlier caller waited for it), so its helper
            // does not read the job now.
            unsafe { *slot.job.get() = Some((job, i + 1)) };
            slot.state.store(POSTED, Ordering::SeqCst);
            if slot.parked.load(Ordering::SeqCst) {
                if let Some(t) = slot.thread.get() {
                    t.unpark();
                }
            }
        }
        let mut wait = Wait { slots: helpers, finished: false };
        f(0);
        // Parts the helpers could not take (a helper thread failed to start) run here.
        (helpers.len() + 1..parts).for_each(f);
        if wait.finish() {
            panic!("a parallel kernel section panicked");
        }
    }
}
