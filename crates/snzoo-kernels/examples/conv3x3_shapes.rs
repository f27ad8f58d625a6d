//! The 3×3, stride-1 convolutions of ResNet's four stages, f32, both algorithms: im2col + GEMM
//! against Winograd F(4×4, 3×3) (weights transformed beforehand, as the models keep them), ms
//! per image on the kernels' threads (`RAYON_NUM_THREADS=1` for one), and the one-off weight
//! transform. `snzoo_kernels::winograd` takes Winograd where C_in·C_out ≤ 128² (the first two
//! stages); this shows why (in the network the transformed weights of the last two stages would
//! stream from memory for every image: eval/BENCHMARKS.md).
//!
//!     cargo run --release -p snzoo-kernels --example conv3x3_shapes -- [BATCH]
use std::mem::MaybeUninit;
use std::time::Instant;

use snzoo_kernels::winograd::{self, Level, TransformedWeights};

fn main() {
    let n: usize = std::env::args().nth(1).map(|a| a.parse().expect("BATCH: a number")).unwrap_or(1);
    if !Level::detect().vectorised() {
        println!("neither AVX2 nor AVX-512: Winograd runs only in its portable (test) version here");
    }
    let threads = snzoo_kernels::parallel::threads();
    println!("batch {n}, {threads} threads; ms per image (direct = im2col + GEMM)");
    println!("C   H×W      direct    Winograd   ratio   weight transform (ms, once)");
    for (c, hw) in [(64, 56), (128, 28), (256, 14), (512, 7)] {
        let x: Vec<f32> = (0..n * c * hw * hw).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
        let g: Vec<f32> = (0..c * c * 9).map(|i| ((i * 104729) % 1000) as f32 / 1000.0 - 0.5).collect();
        let mut out = vec![MaybeUninit::<f32>::uninit(); n * c * hw * hw];
        let flops = 2.0 * (n * c * c * 9 * hw * hw) as f64;
        let reps = ((3e10 / flops) as usize).max(3);
        let time = |f: &mut dyn FnMut()| {
            f();
            let t = Instant::now();
            for _ in 0..reps {
                f();
            }
            t.elapsed().as_secs_f64() / reps as f64 * 1e3
        };
        let start = Instant::now();
        let u = TransformedWeights::new(Level::detect(), &g, c, c);
        let transform = start.elapsed().as_secs_f64() * 1e3;
        let direct = time(&mut || {
            snzoo_kernels::conv::conv2d_im2col_f32(&x, &g, n, (c, c, hw, hw), 3, 1, 1, &mut out, threads).expect("a valid shape")
        }) / n as f64;
        let wino = time(&mut || winograd::conv3x3(&x, &u, n, (hw, hw), None, &mut out, threads)) / n as f64;
        println!("{c:<4}{hw:>2}×{hw:<4}  {direct:>8.3}  {wino:>9.3}  {:>6.2}   {transform:>8.3}", direct / wino);
    }
}
