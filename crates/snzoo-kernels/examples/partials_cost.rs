//! What the per-block moments ([`snzoo_kernels::plane_stats`]) add to the AMX GEMM on ResNet-50's
//! shapes, one thread, B packed beforehand (C stays in cache between repetitions, so this is the
//! arithmetic of the partials, not the wait for C's lines that a forward pass also sees).
//!
//!     cargo run --release -p snzoo-kernels --example partials_cost
use std::mem::MaybeUninit;
use std::time::Instant;

use snzoo_kernels::{gemm_amx, gemm_bf16, plane_stats::Partial};

fn main() {
    if !gemm_amx::available() {
        println!("skipped: this CPU (or OS) gives no AMX tiles");
        return;
    }
    // (M = C_out, K = C_in·k·k, N = H_out·W_out)
    let shapes = [(64, 576, 3136), (256, 64, 3136), (64, 256, 3136), (128, 1152, 784), (512, 128, 784), (1024, 256, 196), (2048, 512, 49)];
    println!("shape (M,K,N)        GEMM µs   + partials µs   added ns per 1024 outputs");
    for &(m, k, n) in &shapes {
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 104729) % 1000) as f32 / 1000.0 - 0.5).collect();
        let mut c = vec![MaybeUninit::<f32>::uninit(); m * n];
        let pa = gemm_amx::PackedA::new(&a, m, k);
        let mut pb = gemm_bf16::AlignedBf16::new();
        gemm_bf16::pack_b_pairs(&b, k, n, n, pa.pairs(), 1, None, &mut pb);
        let mut partials = vec![Partial::default(); m * n.div_ceil(gemm_amx::NB)];
        let reps = ((4e9 / (2.0 * (m * k * n) as f64)) as usize).max(3);
        let mut best = [f64::MAX; 2];
        for _ in 0..3 {
            for (i, with) in [false, true].into_iter().enumerate() {
                let t = Instant::now();
                for _ in 0..reps {
                    gemm_amx::gemm_into_with_partials(&pa, &pb, n, &mut c, n, 1, with.then_some(&mut partials[..]));
                }
                best[i] = best[i].min(t.elapsed().as_secs_f64() / reps as f64);
            }
        }
        let added = (best[1] - best[0]) * 1e9 / (m * n) as f64 * 1024.0;
        println!("{:<20} {:>8.1} {:>15.1} {:>14.0}", format!("({m},{k},{n})"), best[0] * 1e6, best[1] * 1e6, added);
    }
}
