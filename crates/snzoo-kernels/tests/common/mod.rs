//! Convolution shapes and test data shared by the kernel tests.

/// (batch, c_in, c_out, h, w, kernel, stride, padding): the ResNet shapes and odd ones.
#[allow(dead_code)] // not every test binary that includes this module uses it
pub type Case = (usize, usize, usize, usize, usize, usize, usize, usize);
#[allow(dead_code)]
pub const CASES: [Case; 10] = [
    (2, 3, 8, 33, 29, 7, 2, 3),
    (1, 16, 16, 14, 14, 3, 1, 1),
    (3, 16, 32, 15, 15, 3, 2, 1),
    (2, 32, 64, 9, 7, 1, 2, 0),
    (2, 8, 24, 10, 10, 1, 1, 0),
    (1, 4, 4, 2, 2, 3, 1, 1),
    (1, 2, 3, 1, 1, 3, 1, 1),
    (2, 3, 5, 5, 6, 7, 2, 3),
    (1, 3, 4, 4, 9, 3, 2, 1),
    (1, 2, 2, 8, 3, 5, 3, 2),
];

/// Deterministic values in [-1, 1) (a linear congruential generator seeded by `seed`).
#[allow(dead_code)] // not every test binary that includes this module uses it
pub fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}
