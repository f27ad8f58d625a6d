// SwitchNorm2d inference on CUDA: the GPU version of crate::fused::SwitchNormInference.
// Built to PTX by build.rs (feature `cuda`); launched from fused.rs.
//
// Input x: contiguous (N, C, HW) f32.
//   sn_moments:  one block per (n, c) plane: mean and unbiased variance (two passes over the
//                plane, partial sums combined in double), written as double.
//   sn_affine:   one block per sample n: the layer moments from the instance moments, the mixed
//                statistics, folded into scale/shift per (n, c).
//   sn_apply:    y = x * scale + shift (then max(y, 0) when relu), one thread per element.

#define BLOCK 256

__device__ double block_sum(double v, double *shared) {
    // Warp reduction, then the warps' partial sums through shared memory.
    for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffff, v, off);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    v = (threadIdx.x < (blockDim.x >> 5)) ? shared[lane] : 0.0;
    if (warp == 0) {
        for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffff, v, off);
    }
    if (threadIdx.x == 0) shared[0] = v;
    __syncthreads();
    double r = shared[0];
    __syncthreads();
    return r;
}

extern "C" __global__ void sn_moments(const float *x, int hw, double *mean_out, double *var_out) {
    __shared__ double shared[32];
    const float *plane = x + (size_t)blockIdx.x * hw;
    float s = 0.0f;
    for (int i = threadIdx.x; i < hw; i += blockDim.x) s += plane[i];
    double mean = block_sum((double)s, shared) / hw;
    float m = (float)mean, ss = 0.0f;
    for (int i = threadIdx.x; i < hw; i += blockDim.x) {
        float d = plane[i] - m;
        ss += d * d;
    }
    double var = block_sum((double)ss, shared) / (hw - 1);
    if (threadIdx.x == 0) {
        mean_out[blockIdx.x] = mean;
        var_out[blockIdx.x] = var;
    }
}

// mix: mean_mix[0..3] then var_mix[0..3] (IN, LN, BN), as double.
extern "C" __global__ void sn_affine(const double *mean_in, const double *var_in, int c, const double *mix,
                                     const float *running_mean, const float *running_var, const float *weight,
                                     const float *bias, double eps, float *scale, float *shift) {
    __shared__ double shared[32];
    const double *m = mean_in + (size_t)blockIdx.x * c;
    const double *v = var_in + (size_t)blockIdx.x * c;
    double sm = 0.0, st = 0.0;
    for (int ch = threadIdx.x; ch < c; ch += blockDim.x) {
        sm += m[ch];
        st += v[ch] + m[ch] * m[ch];
    }
    double mean_ln = block_sum(sm, shared) / c;
    double var_ln = block_sum(st, shared) / c - mean_ln * mean_ln;
    for (int ch = threadIdx.x; ch < c; ch += blockDim.x) {
        double mean = mix[0] * m[ch] + mix[1] * mean_ln + mix[2] * (double)running_mean[ch];
        double var = mix[3] * v[ch] + mix[4] * var_ln + mix[5] * (double)running_var[ch];
        double sc = (double)weight[ch] / sqrt(var + eps);
        scale[(size_t)blockIdx.x * c + ch] = (float)sc;
        shift[(size_t)blockIdx.x * c + ch] = (float)((double)bias[ch] - mean * sc);
    }
}

extern "C" __global__ void sn_apply(const float *x, size_t len, int hw, const float *scale, const float *shift,
                                    int relu, float *y) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= len) return;
    size_t nc = i / hw;
    float v = x[i] * scale[nc] + shift[nc];
    y[i] = relu ? fmaxf(v, 0.0f) : v;
}
