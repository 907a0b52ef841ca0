// Compression into the format of kernels/format.py, on the GPU (it runs every training step).
// nm_compress_topn:   mask + pack in one pass from a dense W: top-N |w| of each group of M along
//                     K (ties to the lower index, as bimask.nm_mask), then 2:4 values + metadata.
// nm_compress_masked: pack an already-masked matrix (kept = nonzero); sets *error when a chunk of
//                     4 holds more than 2 nonzeros.
// One thread per (row, 16-column block); it writes 8 values and one 16-bit metadata half-word.
// Tunables: THREADS_PER_BLOCK, GROUP_N, GROUP_M (the pattern; GROUP_M divides 16 or equals 16),
// DTYPE_BF16.
#include "common.cuh"

#ifndef THREADS_PER_BLOCK
#define THREADS_PER_BLOCK 256
#endif
#ifndef GROUP_N
#define GROUP_N 2
#endif
#ifndef GROUP_M
#define GROUP_M 4
#endif
static_assert(16 % GROUP_M == 0, "groups must tile the 16-column block");

__device__ __forceinline__ float to_float(elem_t x) {
#if DTYPE_BF16
    return __bfloat162float(x);
#else
    return __half2float(x);
#endif
}

// Pack 16 values with their keep flags; returns the 16-bit metadata, writes 8 values.
__device__ __forceinline__ unsigned pack16(const elem_t (&v)[16], const bool (&keep)[16],
                                           elem_t* out, int* error) {
    unsigned meta = 0;
    for (int c = 0; c < 4; ++c) {
        int idx[2] = {0, 1}, n = 0, first = -1;
        for (int j = 0; j < 4; ++j)
            if (keep[4 * c + j]) {
                if (n < 2) idx[n] = j;
                if (first < 0) first = j;
                ++n;
            }
        if (n > 2) atomicOr(error, 1);
        if (n == 1) {  // one kept at `first`: pair it with the lowest other column
            idx[0] = 0;
            idx[1] = first == 0 ? 1 : first;
        } else if (n == 0) {
            idx[0] = 0, idx[1] = 1;
        }
        out[2 * c] = keep[4 * c + idx[0]] ? v[4 * c + idx[0]] : elem_t(0.0f);
        out[2 * c + 1] = keep[4 * c + idx[1]] ? v[4 * c + idx[1]] : elem_t(0.0f);
        meta |= (unsigned)(idx[0] | (idx[1] << 2)) << (4 * c);
    }
    return meta;
}

__device__ __forceinline__ void store_meta(uint16_t* E16, int row, int cb, int KP, unsigned meta) {
    int mt = row / 32, r = row % 32, tile = r / 16, hi = (r % 16) / 8, g = r % 8;
    int kt = cb / 2, half = cb % 2;
    long word = ((long)mt * (KP / 32) + kt) * 32 + g * 4 + tile * 2 + half;
    E16[2 * word + hi] = (uint16_t)meta;  // little endian: low half-word = row g, high = g + 8
}

__device__ __forceinline__ void load16(const elem_t* W, int row, int cb, int rows, int K, int ldw,
                                       elem_t (&v)[16]) {
    for (int j = 0; j < 16; ++j) {
        int col = cb * 16 + j;
        v[j] = (row < rows && col < K) ? W[(long)row * ldw + col] : elem_t(0.0f);
    }
}

// Top-N of each group of M (ties to the lower index), or simply the nonzeros.
template <bool TOP_N>
__device__ __forceinline__ void compress_block(const elem_t* __restrict__ W, int rows, int K,
                                               int ldw, int MP, int KP, elem_t* __restrict__ vals,
                                               uint32_t* __restrict__ E, int* __restrict__ error) {
    long id = (long)blockIdx.x * THREADS_PER_BLOCK + threadIdx.x;
    if (id >= (long)MP * (KP / 16)) return;
    int row = id / (KP / 16), cb = id % (KP / 16);
    elem_t v[16];
    bool keep[16];
    load16(W, row, cb, rows, K, ldw, v);
    for (int j = 0; j < 16; ++j) {
        if (TOP_N) {
            int g0 = (j / GROUP_M) * GROUP_M, rank = 0;
            float a = fabsf(to_float(v[j]));
            for (int i = g0; i < g0 + GROUP_M; ++i) {
                float b = fabsf(to_float(v[i]));
                rank += (b > a) || (b == a && i < j);
            }
            keep[j] = rank < GROUP_N && (row < rows && cb * 16 + j < K);
        } else {
            keep[j] = to_float(v[j]) != 0.0f;
        }
    }
    unsigned meta = pack16(v, keep, vals + (long)row * (KP / 2) + cb * 8, error);
    store_meta(reinterpret_cast<uint16_t*>(E), row, cb, KP, meta);
}

extern "C" __global__ void __launch_bounds__(THREADS_PER_BLOCK)
nm_compress_topn(const elem_t* __restrict__ W, int rows, int K, int ldw, int MP, int KP,
                 elem_t* __restrict__ vals, uint32_t* __restrict__ E, int* __restrict__ error) {
    compress_block<true>(W, rows, K, ldw, MP, KP, vals, E, error);
}

extern "C" __global__ void __launch_bounds__(THREADS_PER_BLOCK)
nm_compress_masked(const elem_t* __restrict__ A, int rows, int K, int lda, int MP, int KP,
                   elem_t* __restrict__ vals, uint32_t* __restrict__ E, int* __restrict__ error) {
    compress_block<false>(A, rows, K, lda, MP, KP, vals, E, error);
}
