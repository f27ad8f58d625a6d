//! Checking counts against the machine before any work: threads, batch sizes, memory.
//!
//! Every command that takes `--threads` or `--batch-size` checks them here, so that a typo
//! (`--threads 20000`, `--batch-size 100000`) is a clear error instead of minutes of thrashing or
//! an allocation the machine cannot make.

use crate::{Error, Result};

/// How many threads per core a command may ask for.
pub const THREADS_PER_CORE: usize = 4;

/// The cores this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `--threads`: the default is every core; at most [`THREADS_PER_CORE`] × cores.
pub fn threads(requested: Option<usize>) -> Result<usize> {
    let cores = cores();
    let max = THREADS_PER_CORE * cores;
    match requested {
        None => Ok(cores),
        Some(0) => Err(Error::invalid("--threads must be at least 1")),
        Some(n) if n > max => Err(Error::invalid(format!(
            "--threads {n}: this machine has {cores} core{}; at most {max} threads ({THREADS_PER_CORE} per core) are allowed",
            if cores == 1 { "" } else { "s" }
        ))),
        Some(n) => Ok(n),
    }
}

/// `--batch-size`: at least 1.
pub fn batch_size(n: usize) -> Result<usize> {
    if n == 0 {
        return Err(Error::invalid("--batch-size must be at least 1"));
    }
    Ok(n)
}

/// Memory this process can still use, in bytes: the kernel's `MemAvailable`, capped by the
/// cgroup's `memory.max` where one is set. `None` where neither can be read.
pub fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        let line = s.lines().find(|l| l.starts_with("MemAvailable:"))?;
        line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
    });
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok().and_then(|s| s.trim().parse::<u64>().ok()).map(|max| {
        let used = std::fs::read_to_string("/sys/fs/cgroup/memory.current").ok().and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(0);
        max.saturating_sub(used)
    });
    match (meminfo, cgroup) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Refuses work whose estimated memory `bytes` exceeds what the machine has.
pub fn check_memory(what: &str, bytes: u64) -> Result<()> {
    if let Some(avail) = available_memory() {
        if bytes > avail {
            return Err(Error::invalid(format!(
                "{what} needs about {:.1} GB of memory, but only {:.1} GB are available; use a smaller --batch-size",
                bytes as f64 / 1e9,
                avail as f64 / 1e9
            )));
        }
    }
    Ok(())
}

/// Bytes of one normalized 3×`crop`×`crop` f32 input.
pub fn input_bytes(crop: usize) -> u64 {
    (3 * crop * crop * 4) as u64
}

/// An estimate of the working memory of one image's forward pass through an SN ResNet of stem
/// width `width` at `crop`×`crop`: the stem's im2col matrix (147 rows at half resolution) and a
/// few activations of the widest early layers, in f32.
pub fn forward_bytes_per_image(width: usize, crop: usize) -> u64 {
    let half = crop.div_ceil(2) as u64;
    4 * (3 * (crop as u64).pow(2) + half * half * (147 + 8 * width as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_counts_are_refused_with_the_reason() {
        assert_eq!(threads(None).unwrap(), cores());
        assert_eq!(threads(Some(1)).unwrap(), 1);
        let e = threads(Some(20_000)).unwrap_err().to_string();
        assert!(e.contains("--threads 20000") && e.contains("core"), "{e}");
        assert!(threads(Some(0)).is_err());
        assert!(batch_size(0).is_err());
        assert!(check_memory("a test", u64::MAX).unwrap_err().to_string().contains("GB"));
        assert!(check_memory("a test", 1).is_ok());
    }
}
