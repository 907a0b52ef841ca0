// Shared helpers for the GEMM kernels: element type, cp.async, output conversion.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#ifdef __CUDACC_RTC__  // NVRTC has no libc headers
typedef unsigned int uint32_t;
typedef unsigned short uint16_t;
typedef unsigned long long uint64_t;
#else
#include <stdint.h>
#endif

#ifndef DTYPE_BF16
#define DTYPE_BF16 1
#endif
#if DTYPE_BF16
typedef __nv_bfloat16 elem_t;
#define MMA_TYPE "bf16"
#else
typedef __half elem_t;
#define MMA_TYPE "f16"
#endif

#ifndef OUT_F32
#define OUT_F32 0
#endif
#ifndef TRANS_C
#define TRANS_C 0  // 1: write C transposed (N x M, leading dimension ldc)
#endif
#ifndef SPLIT_K
#define SPLIT_K 1  // >1: grid.z slices of K, partial sums atomically added (needs OUT_F32)
#endif
#if SPLIT_K > 1 && !OUT_F32
#error "SPLIT_K > 1 accumulates atomically and needs OUT_F32=1"
#endif
#if OUT_F32
typedef float out_t;
__device__ __forceinline__ out_t to_out(float x) { return x; }
#else
typedef elem_t out_t;
#if DTYPE_BF16
__device__ __forceinline__ out_t to_out(float x) { return __float2bfloat16(x); }
#else
__device__ __forceinline__ out_t to_out(float x) { return __float2half(x); }
#endif
#endif

// 16-byte asynchronous global -> shared copy; pred == false zero-fills the destination.
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool pred) {
    unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
    int bytes = pred ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem), "r"(bytes));
}
// The same with the first `bytes` (0..16) of the chunk read and the rest zero-filled.
__device__ __forceinline__ void cp_async16_n(void* smem, const void* gmem, int bytes) {
    unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem), "r"(bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

// split-K: the K tiles [begin, begin + count) of this block's slice (blockIdx.z of SPLIT_K) of the
// k_extent columns, in tiles of block_k
struct KRange {
    int begin, count;
};
__device__ __forceinline__ KRange split_k_range(int k_extent, int block_k) {
    const int k_tiles = (k_extent + block_k - 1) / block_k;
    const int per_split = (k_tiles + SPLIT_K - 1) / SPLIT_K;
    const int begin = blockIdx.z * per_split;
    return {begin, max(0, min(k_tiles, begin + per_split) - begin)};
}

// Store one accumulator element; split-K partial sums are added atomically into fp32 output.
__device__ __forceinline__ void store_out(out_t* C, int row, int col, int M, int N, int ldc,
                                          float v) {
    if (row >= M || col >= N) return;
#if TRANS_C
    long idx = (long)col * ldc + row;
#else
    long idx = (long)row * ldc + col;
#endif
#if SPLIT_K > 1
    atomicAdd(reinterpret_cast<float*>(C) + idx, v);
#else
    C[idx] = to_out(v);
#endif
}
