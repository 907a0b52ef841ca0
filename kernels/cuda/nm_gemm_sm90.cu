// C (M x N) = A (M x K) . B^T with B (N x K) K-contiguous, on Hopper's warpgroup MMA (sm_90a).
// SPARSE=1: A arrives in the same compressed format as the sm_80 kernel (kernels/format.py):
//   values (MP x KP/2) and fragment-native metadata (MP/32, KP/32, 32) uint32. One
//   wgmma.mma_async.sp m64nNk32 per m64 tile and 32 dense K, A and B read from shared memory
//   through matrix descriptors, the metadata from a register (sparsity selector 0).
// SPARSE=0: A dense (M x K, leading dimension lda); two wgmma m64nNk16 per 32 K. Everything else
//   is the same code, so the two compare like for like.
//
// Shared memory holds every operand tile K-major without swizzle: 8 rows x 16 bytes make one
// "core matrix" (128 contiguous bytes); the core matrices of one 8-row group follow each other
// along K every LBO bytes, the 8-row groups every SBO bytes. SMEM_PAD=1 leaves 16 bytes between
// the core matrices of a row group (LBO = 144), so the 8 threads that copy 8 consecutive 16-byte
// chunks of one global row hit 8 different bank quads instead of one.
//
// The metadata word of a warp: wgmma takes the 16 rows of warp w (rows 16w..16w+15 of the m64
// tile) with the layout of mma.sp m16n8k32, lanes 4g+0 and 4g+1 holding dense columns 0..15 and
// 16..31 of rows g (low 16 bits) and g+8 (high 16 bits) under selector 0. In the fragment-native
// format those are lanes 4g + 2*(w%2) + {0,1} of the 32-row word block: a lane remap, no new format.
// Metadata of rows past MP or columns past KP is filled with 0x4444 (indices 0 and 1, a valid code
// for a zero chunk) instead of zeros, because an m64 tile may straddle the padded rows and the
// all-zero code 0b0000 is invalid.
//
// Pipeline: STAGES shared-memory stages filled by cp.async, STAGES-1-INFLIGHT tiles loading ahead;
// each K tile is one committed group of wgmmas, and INFLIGHT groups stay in flight across tiles
// (wgmma.wait_group INFLIGHT). The sparse path needs INFLIGHT = 0 (see the static_assert). A K
// tile's wgmmas are issued before the copies of the tile AHEAD tiles later, so the address
// arithmetic of those copies runs while the tensor cores work.
//
// TMA=1: warp-specialised. Warpgroup 0 is the producer: one thread loads each K tile with the
// tensor copy engine (cp.async.bulk.tensor, A and B through tensor maps the host encodes and
// passes by value as __grid_constant__ parameters; the metadata rows by plain bulk copies) into
// STAGES stages, each with a "full" mbarrier (the copies' bytes complete it) and an "empty" one
// (every consumer thread arrives when its wgmmas have read the stage). Warpgroups 1..WARPGROUPS
// consume: wait for full, read the metadata words, issue the wgmmas, wait for them, arrive on
// empty. With two consumer warpgroups the producer gives its registers up (setmaxnreg). Tiles
// are K-major with the copy engine's 32/64/128-byte swizzle (the widest a tile row allows,
// 128 bytes wide atoms side by side along K beyond that), which the wgmma descriptors name
// (layout type, SBO = 8 rows of the swizzle width); a k-step inside a swizzle atom advances the
// descriptor's start address. Edges: the copy engine zero-fills rows and columns outside the
// tensors; metadata outside is written as 0x4444 before the stage is armed. No in-kernel gather
// (the copy engine cannot gather rows on Hopper): the gather variant keeps TMA=0.
// Tunables (#defines): BLOCK_M, BLOCK_N (the wgmma N: 64, 128 or 256), BLOCK_K, WARPGROUPS,
// STAGES, INFLIGHT, SMEM_PAD (0/1), SPLIT_K, GATHER_B, TMA, DTYPE_BF16, OUT_F32, TRANS_C.
#include "common.cuh"

#ifndef BLOCK_M
#define BLOCK_M 128
#endif
#ifndef BLOCK_N
#define BLOCK_N 128
#endif
#ifndef BLOCK_K
#define BLOCK_K 64
#endif
#ifndef WARPGROUPS
#define WARPGROUPS 1
#endif
#ifndef STAGES
#define STAGES 4
#endif
#ifndef SMEM_PAD
#define SMEM_PAD 1
#endif
#ifndef GATHER_B
#define GATHER_B 0
#endif
#ifndef INFLIGHT
#define INFLIGHT 0  // wgmma groups left in flight across K tiles (0 or 1; the sparse path: 0)
#endif
#ifndef SPARSE
#define SPARSE 1
#endif
#ifndef TMA
#define TMA 0  // 1: copy-engine loads by a producer warpgroup (warp specialisation)
#endif

#if TMA
#define THREADS ((WARPGROUPS + 1) * 128)  // warpgroup 0 produces, 1..WARPGROUPS consume
#else
#define THREADS (WARPGROUPS * 128)
#endif
#define WG_ROWS (BLOCK_M / WARPGROUPS)
#define MT (WG_ROWS / 64)  // m64 tiles per warpgroup
#define ACC (BLOCK_N / 2)  // fp32 accumulators per thread per m64 tile
#define LBO (128 + 16 * SMEM_PAD)
#define AHEAD (STAGES - 1 - INFLIGHT)  // K tiles loaded ahead of the one computed on
#if SPARSE
#define A_CHUNKS_K (BLOCK_K / 16)  // 16-byte chunks of a compressed row per K tile
#define E_WORDS ((BLOCK_M / 32) * (BLOCK_K / 32) * 32)
#else
#define A_CHUNKS_K (BLOCK_K / 8)
#define E_WORDS 4
#endif
#define B_CHUNKS_K (BLOCK_K / 8)
#define SBO_A (A_CHUNKS_K * LBO)
#define SBO_B (B_CHUNKS_K * LBO)
#define A_BYTES ((BLOCK_M / 8) * SBO_A)
#define B_BYTES ((BLOCK_N / 8) * SBO_B)
#define STAGE_BYTES (A_BYTES + B_BYTES + E_WORDS * 4)

static_assert(BLOCK_K % 32 == 0, "BLOCK_K must be a multiple of 32");
static_assert(BLOCK_M % (64 * WARPGROUPS) == 0, "each warpgroup takes whole m64 tiles");
static_assert(BLOCK_N == 64 || BLOCK_N == 128 || BLOCK_N == 256, "BLOCK_N is the wgmma N");
static_assert(MT * ACC <= 128, "at most 128 fp32 accumulators per thread");
static_assert(INFLIGHT == 0 || INFLIGHT == 1, "INFLIGHT is 0 or 1");
static_assert(AHEAD >= 1, "STAGES must leave at least one tile loading ahead");
// The sparse wgmma reads its metadata register while in flight, and the next tile's metadata
// goes into the same registers: ptxas then serializes every wgmma (C7513/C7515). CUTLASS's sm90
// sparse mainloop keeps no group in flight either (K_PIPE_MMAS = 0).
static_assert(!(SPARSE && INFLIGHT), "the sparse path waits for its wgmmas every K tile");
static_assert(SMEM_PAD == 0 || SMEM_PAD == 1, "SMEM_PAD is 0 or 1 (16 bytes)");
static_assert(STAGE_BYTES % 16 == 0, "stages stay 16-byte aligned");

#if TMA
static_assert(!GATHER_B, "the copy engine cannot gather rows: the gather variant keeps TMA=0");
static_assert(INFLIGHT == 0, "TMA: each consumer waits for its wgmmas before releasing a stage");
// bytes of one tile row per K tile, the swizzle width that row takes, and the swizzle atoms
// (SW bytes wide, 8 rows a repeat) side by side along K
#define A_ROW_BYTES (SPARSE ? BLOCK_K : 2 * BLOCK_K)  // compressed A: BLOCK_K/2 values a row
#define B_ROW_BYTES (2 * BLOCK_K)
#define SW_OF(rb) ((rb) >= 128 ? 128 : (rb))
#define A_SW SW_OF(A_ROW_BYTES)
#define B_SW SW_OF(B_ROW_BYTES)
#define A_ATOMS (A_ROW_BYTES / A_SW)
#define B_ATOMS (B_ROW_BYTES / B_SW)
#define TA_BYTES (BLOCK_M * A_ROW_BYTES)
#define TB_BYTES (BLOCK_N * B_ROW_BYTES)
#define TE_BYTES (SPARSE ? E_WORDS * 4 : 0)
#define TSTAGE_BYTES (((TA_BYTES + TB_BYTES + TE_BYTES) + 1023) / 1024 * 1024)  // 1024-aligned
#define E_KT (BLOCK_K / 32)  // metadata k blocks per K tile
static_assert(A_SW >= 32 && B_SW >= 32, "a tile row is at least 32 bytes (BLOCK_K >= 32)");
static_assert(TA_BYTES % 1024 == 0 && TB_BYTES % 1024 == 0, "swizzle atoms stay 1024-aligned");
static_assert(BLOCK_M <= 256 && BLOCK_N <= 256, "a copy-engine box has at most 256 rows");
#endif

#if BLOCK_N == 64
#define WG_D "{" \
    "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
    "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31" \
    "}"
#define WG_A "%32"
#define WG_B "%33"
#define WG_E "%34"
#elif BLOCK_N == 128
#define WG_D "{" \
    "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
    "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, " \
    "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
    "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63" \
    "}"
#define WG_A "%64"
#define WG_B "%65"
#define WG_E "%66"
#else
#define WG_D "{" \
    "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
    "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, " \
    "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
    "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, " \
    "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, " \
    "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, " \
    "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, " \
    "%111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, " \
    "%125, %126, %127" \
    "}"
#define WG_A "%128"
#define WG_B "%129"
#define WG_E "%130"
#endif

#define F8(i) "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), \
              "+f"(d[i + 4]), "+f"(d[i + 5]), "+f"(d[i + 6]), "+f"(d[i + 7])
#define F32(i) F8(i), F8(i + 8), F8(i + 16), F8(i + 24)
#if BLOCK_N == 64
#define WG_OUT F32(0)
#elif BLOCK_N == 128
#define WG_OUT F32(0), F32(32)
#else
#define WG_OUT F32(0), F32(32), F32(64), F32(96)
#endif
#define XSTR(x) #x
#define STR(x) XSTR(x)
#define WG_SHAPE_SP "m64n" STR(BLOCK_N) "k32"
#define WG_SHAPE_DENSE "m64n" STR(BLOCK_N) "k16"

// A shared-memory matrix descriptor: start address, LBO and SBO in 16-byte units, no swizzle.
__device__ __forceinline__ uint64_t smem_desc(const void* p, uint32_t sbo) {
    uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(p));
    return (uint64_t)((addr & 0x3FFFF) >> 4) | ((uint64_t)(LBO >> 4) << 16) |
           ((uint64_t)(sbo >> 4) << 32);
}

// Byte offset of 16-byte chunk c (along K) of row r in a core-matrix tile.
__device__ __forceinline__ int cm_offset(int r, int c, int sbo) {
    return (r >> 3) * sbo + c * LBO + (r & 7) * 16;
}

#if TMA
// A tensor map as the driver encodes it (CUtensorMap: 128 bytes, 64-byte aligned); kernels.tma
// fills it on the host.
struct __align__(64) TmaMap {
    unsigned long long opaque[16];
};

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// A K-major tile with the SW-byte swizzle: layout type (1: 128 B, 2: 64 B, 3: 32 B), LBO unused
// (16 bytes), SBO = 8 rows x SW bytes; the start address may sit inside a swizzle atom (a k-step).
template <int SW>
__device__ __forceinline__ uint64_t sw_desc(const void* p) {
    constexpr uint64_t layout = SW == 128 ? 1 : (SW == 64 ? 2 : 3);
    return (uint64_t)((smem_u32(p) & 0x3FFFF) >> 4) | ((uint64_t)1 << 16) |
           ((uint64_t)((8 * SW) >> 4) << 32) | (layout << 62);
}

// Byte kb along the rows of a ROWS-row tile of SW-wide atoms, at row `row` (a multiple of 8).
template <int SW, int ROWS>
__device__ __forceinline__ const unsigned char* sw_at(const unsigned char* tile, int row, int kb) {
    return tile + (kb / SW) * (ROWS * SW) + row * SW + kb % SW;
}

__device__ __forceinline__ void mbar_init(uint64_t* bar, uint32_t count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_u32(bar)), "r"(count));
}
__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_u32(bar)) : "memory");
}
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_u32(bar)),
                 "r"(bytes)
                 : "memory");
}
// Wait until the phase of parity `parity` has completed (a fresh barrier: parity 1 has).
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
    uint32_t done = 0;
    while (!done) {
        asm volatile(
            "{\n .reg .pred p;\n"
            " mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
            " selp.u32 %0, 1, 0, p;\n}\n"
            : "=r"(done)
            : "r"(smem_u32(bar)), "r"(parity)
            : "memory");
    }
}
// One box of a 2-D tensor map (inner coordinate c0 in elements, row c1) into shared memory.
__device__ __forceinline__ void tma_load_2d(void* dst, const TmaMap* map, uint64_t* bar, int c0,
                                            int c1) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes"
        " [%0], [%1, {%3, %4}], [%2];\n" ::"r"(smem_u32(dst)),
        "l"(reinterpret_cast<uint64_t>(map)), "r"(smem_u32(bar)), "r"(c0), "r"(c1)
        : "memory");
}
// `bytes` (a multiple of 16) contiguous bytes, 16-byte aligned at both ends.
__device__ __forceinline__ void bulk_load(void* dst, const void* src, uint32_t bytes,
                                          uint64_t* bar) {
    asm volatile(
        "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n"
        ::"r"(smem_u32(dst)), "l"(src), "r"(bytes), "r"(smem_u32(bar))
        : "memory");
}
#endif

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() {
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// shared memory written by the generic proxy (cp.async, plain stores), read by wgmma next
__device__ __forceinline__ void fence_proxy_async() {
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// keeps the compiler from moving accumulator definitions into a wgmma pipeline stage
template <int R>
__device__ __forceinline__ void fence_acc(float (&d)[R][ACC]) {
#pragma unroll
    for (int i = 0; i < R; ++i)
#pragma unroll
        for (int v = 0; v < ACC; ++v) asm volatile("" : "+f"(d[i][v])::"memory");
}

__device__ __forceinline__ void wgmma_sp(float (&d)[ACC], uint64_t da, uint64_t db, uint32_t e) {
    asm volatile("wgmma.mma_async.sp.sync.aligned." WG_SHAPE_SP ".f32." MMA_TYPE "." MMA_TYPE " "
                 WG_D ", " WG_A ", " WG_B ", " WG_E ", 0, 1, 1, 1, 0, 0;\n"
                 : WG_OUT
                 : "l"(da), "l"(db), "r"(e));
}

__device__ __forceinline__ void wgmma_dense(float (&d)[ACC], uint64_t da, uint64_t db) {
    asm volatile("wgmma.mma_async.sync.aligned." WG_SHAPE_DENSE ".f32." MMA_TYPE "." MMA_TYPE " "
                 WG_D ", " WG_A ", " WG_B ", 1, 1, 1, 0, 0;\n"
                 : WG_OUT
                 : "l"(da), "l"(db));
}

// cp.async ROWS x CHUNKS 16-byte chunks of a K-contiguous global matrix (rows row0.., elements
// kofs.. of each row) into a core-matrix tile; rows >= n_rows and elements >= k_extent read as 0.
template <int ROWS, int CHUNKS>
__device__ __forceinline__ void load_rows(unsigned char* dst, int sbo, const elem_t* src, int ld,
                                          int row0, int n_rows, int kofs, int k_extent) {
    for (int c = threadIdx.x; c < ROWS * CHUNKS; c += THREADS) {
        int r = c / CHUNKS, ch = c % CHUNKS;
        bool ok = (row0 + r < n_rows) && (kofs + ch * 8 < k_extent);
        cp_async16(dst + cm_offset(r, ch, sbo), ok ? src + (long)(row0 + r) * ld + kofs + ch * 8 : src,
                   ok);
    }
}

// Issue the loads of one K tile (dense columns k0 .. k0+BLOCK_K) into a stage.
__device__ __forceinline__ void load_tile(unsigned char* st, const elem_t* __restrict__ A,
                                          const uint32_t* __restrict__ E,
                                          const elem_t* __restrict__ B, const int* __restrict__ perm,
                                          int M, int N, int K, int MP, int KP, int lda, int ldb,
                                          int m0, int n0, int k0) {
    const int tid = threadIdx.x;
    unsigned char* sa = st;
    unsigned char* sb = st + A_BYTES;
#if SPARSE
    uint32_t* se = reinterpret_cast<uint32_t*>(st + A_BYTES + B_BYTES);
    // compressed A: MP x KP/2 values, row-major
    load_rows<BLOCK_M, A_CHUNKS_K>(sa, SBO_A, A, KP / 2, m0, MP, k0 / 2, KP / 2);
    for (int c = tid; c < E_WORDS / 4; c += THREADS) {
        int w = c * 4, mt = w / ((BLOCK_K / 32) * 32), kt = (w / 32) % (BLOCK_K / 32), lane = w % 32;
        int gmt = m0 / 32 + mt, gkt = k0 / 32 + kt;
        if ((gmt < MP / 32) && (gkt < KP / 32)) {
            cp_async16(&se[w], E + ((long)gmt * (KP / 32) + gkt) * 32 + lane, true);
        } else {  // indices {0, 1} for every chunk: valid metadata for the zero padding
            *reinterpret_cast<uint4*>(&se[w]) = make_uint4(0x44444444u, 0x44444444u, 0x44444444u,
                                                           0x44444444u);
        }
    }
#else
    load_rows<BLOCK_M, A_CHUNKS_K>(sa, SBO_A, A, lda, m0, M, k0, K);
#endif
    // B beyond K is zero-filled: padding in A is zero, and 0 * garbage could be NaN
#if GATHER_B
    for (int i = tid; i < BLOCK_N * BLOCK_K; i += THREADS) {
        int r = i / BLOCK_K, kk = i % BLOCK_K;
        bool ok = (n0 + r < N) && (k0 + kk < K);
        *reinterpret_cast<elem_t*>(sb + cm_offset(r, kk / 8, SBO_B) + (kk % 8) * 2) =
            ok ? B[(long)(n0 + r) * ldb + perm[k0 + kk]] : elem_t(0.0f);
    }
#else
    load_rows<BLOCK_N, B_CHUNKS_K>(sb, SBO_B, B, ldb, n0, N, k0, K);
#endif
}

#if SPARSE
// The metadata words this thread's wgmmas take from a stage (``se``), for the warpgroup whose
// rows start at row0: warp wi's 16 rows of each m64 tile, lanes 4g + 2*(wi%2) + {0,1} of their
// 32-row word block (see the top of this file).
__device__ __forceinline__ void load_meta(uint32_t (&e)[MT][BLOCK_K / 32], const uint32_t* se,
                                          int row0, int wi, int g, int t) {
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int ks = 0; ks < BLOCK_K / 32; ++ks) {
            int row = row0 + i * 64 + 16 * wi;  // this warp's 16 rows
            e[i][ks] = se[((row / 32) * (BLOCK_K / 32) + ks) * 32 + 4 * g + 2 * (wi & 1) + (t & 1)];
        }
}
#endif

// A warpgroup's accumulators (rows row0 .. row0 + WG_ROWS, columns n0 .. n0 + BLOCK_N) to C. The
// m64nN layout: warp wi holds rows 16*wi + g (+8) of each m64 tile, columns 8j + 2t (+1).
__device__ __forceinline__ void store_acc(const float (&acc)[MT][ACC], out_t* __restrict__ C,
                                          int row0, int n0, int M, int N, int ldc, int wi, int g,
                                          int t) {
#pragma unroll
    for (int i = 0; i < MT; ++i) {
        int row = row0 + i * 64 + 16 * wi + g;
#pragma unroll
        for (int j = 0; j < BLOCK_N / 8; ++j) {
            int col = n0 + j * 8 + 2 * t;
            store_out(C, row, col, M, N, ldc, acc[i][4 * j + 0]);
            store_out(C, row, col + 1, M, N, ldc, acc[i][4 * j + 1]);
            store_out(C, row + 8, col, M, N, ldc, acc[i][4 * j + 2]);
            store_out(C, row + 8, col + 1, M, N, ldc, acc[i][4 * j + 3]);
        }
    }
}

#if !TMA
extern "C" __global__ void __launch_bounds__(THREADS, 1)
nm_gemm_wgmma(const elem_t* __restrict__ A, const uint32_t* __restrict__ E,
              const elem_t* __restrict__ B, const int* __restrict__ perm, out_t* __restrict__ C,
              int M, int N, int K, int MP, int KP, int lda, int ldb, int ldc) {
    extern __shared__ __align__(128) unsigned char smem_raw[];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int wg = warp / 4, wi = warp % 4;  // warpgroup, warp inside it
    const int g = lane / 4, t = lane % 4;
    const int m0 = blockIdx.y * BLOCK_M, n0 = blockIdx.x * BLOCK_N;
    const KRange kr = split_k_range(SPARSE ? KP : K, BLOCK_K);
    const int kt_begin = kr.begin, n_tiles = kr.count;

    float acc[MT][ACC];
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int v = 0; v < ACC; ++v) acc[i][v] = 0.0f;

    // prologue: AHEAD tiles in flight (one stage is computed on, INFLIGHT more held by wgmma)
#pragma unroll
    for (int s = 0; s < AHEAD; ++s) {
        if (s < n_tiles)
            load_tile(smem_raw + s * STAGE_BYTES, A, E, B, perm, M, N, K, MP, KP, lda, ldb, m0,
                      n0, (kt_begin + s) * BLOCK_K);
        cp_async_commit();
    }
    for (int it = 0; it < n_tiles; ++it) {
        cp_async_wait<AHEAD - 1>();  // this thread's copies of tile `it` have landed
        fence_proxy_async();         // ... and are visible to the async proxy (wgmma)
        __syncthreads();  // everyone's copies; every warpgroup is done with tile it-1-INFLIGHT

        // the wgmmas of tile `it` go first, so that the tensor cores work while this thread
        // computes the next tile's addresses and issues its copies (into the stage of tile
        // it-1-INFLIGHT, which the __syncthreads above made free)
        const unsigned char* st = smem_raw + (it % STAGES) * STAGE_BYTES;
        const unsigned char* sa = st + (wg * WG_ROWS / 8) * SBO_A;
        const unsigned char* sb = st + A_BYTES;
#if SPARSE
        const uint32_t* se = reinterpret_cast<const uint32_t*>(st + A_BYTES + B_BYTES);
        uint32_t e[MT][BLOCK_K / 32];
        load_meta(e, se, wg * WG_ROWS, wi, g, t);
#endif
        fence_acc(acc);
        wgmma_fence();
#pragma unroll
        for (int ks = 0; ks < BLOCK_K / 32; ++ks) {
#pragma unroll
            for (int i = 0; i < MT; ++i) {
#if SPARSE
                // compressed A: 64 rows x 16 values = 2 chunks per 32 dense K; B: 4 chunks
                uint64_t da = smem_desc(sa + (i * 64 / 8) * SBO_A + (2 * ks) * LBO, SBO_A);
                uint64_t db = smem_desc(sb + (4 * ks) * LBO, SBO_B);
                wgmma_sp(acc[i], da, db, e[i][ks]);
#else
#pragma unroll
                for (int h = 0; h < 2; ++h) {  // two k16 halves of the 32-wide step
                    uint64_t da = smem_desc(sa + (i * 64 / 8) * SBO_A + (4 * ks + 2 * h) * LBO, SBO_A);
                    uint64_t db = smem_desc(sb + (4 * ks + 2 * h) * LBO, SBO_B);
                    wgmma_dense(acc[i], da, db);
                }
#endif
            }
        }
        wgmma_commit();

        int next = it + AHEAD;
        if (next < n_tiles)
            load_tile(smem_raw + (next % STAGES) * STAGE_BYTES, A, E, B, perm, M, N, K, MP, KP,
                      lda, ldb, m0, n0, (kt_begin + next) * BLOCK_K);
        cp_async_commit();

        wgmma_wait<INFLIGHT>();  // tile it-INFLIGHT is done: its stage may be refilled
        fence_acc(acc);
    }
    wgmma_wait<0>();
    fence_acc(acc);
    cp_async_wait<0>();

    store_acc(acc, C, m0 + wg * WG_ROWS, n0, M, N, ldc, wi, g, t);
}

#else  // TMA: a producer warpgroup feeds the consumers through mbarriers

extern "C" __global__ void __launch_bounds__(THREADS, 1)
nm_gemm_wgmma(const elem_t* __restrict__ A, const uint32_t* __restrict__ E,
              const elem_t* __restrict__ B, const int* __restrict__ perm, out_t* __restrict__ C,
              int M, int N, int K, int MP, int KP, int lda, int ldb, int ldc,
              const __grid_constant__ TmaMap map_a, const __grid_constant__ TmaMap map_b) {
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    // the swizzle atoms need 1024-byte aligned tiles: the host allocates 1 KB more to align by
    unsigned char* smem = smem_raw + ((1024u - (smem_u32(smem_raw) & 1023u)) & 1023u);
    uint64_t* full = reinterpret_cast<uint64_t*>(smem + STAGES * TSTAGE_BYTES);
    uint64_t* empty = full + STAGES;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int wg = warp / 4, wi = warp % 4;  // warpgroup, warp inside it
    const int m0 = blockIdx.y * BLOCK_M, n0 = blockIdx.x * BLOCK_N;
    const KRange kr = split_k_range(SPARSE ? KP : K, BLOCK_K);
    const int kt_begin = kr.begin, n_tiles = kr.count;

    if (threadIdx.x == 0) {
        for (int s = 0; s < STAGES; ++s) {
            mbar_init(&full[s], 1);                  // the producer's arrive, then the bytes
            mbar_init(&empty[s], WARPGROUPS * 128);  // every consumer thread
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();

    if (wg == 0) {  // the producer warpgroup: one thread issues every copy
#if WARPGROUPS == 2
        asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n" ::: "memory");
#endif
        if (warp == 0 && lane == 0) {
            for (int it = 0; it < n_tiles; ++it) {
                const int s = it % STAGES;
                mbar_wait(&empty[s], ((it / STAGES) & 1) ^ 1);  // its previous use is read
                unsigned char* st = smem + s * TSTAGE_BYTES;
                const int k0 = (kt_begin + it) * BLOCK_K;
                uint32_t bytes = TA_BYTES + TB_BYTES;  // whole boxes count, zero-filled or not
#if SPARSE
                uint32_t* se = reinterpret_cast<uint32_t*>(st + TA_BYTES + TB_BYTES);
                const int gk0 = k0 / 32;
                const int valid_kt = max(0, min(E_KT, KP / 32 - gk0));
                for (int mt = 0; mt < BLOCK_M / 32; ++mt) {
                    const int have = (m0 / 32 + mt < MP / 32) ? valid_kt : 0;
                    for (int w = have * 32; w < E_KT * 32; w += 4)  // outside: indices {0, 1}
                        *reinterpret_cast<uint4*>(&se[mt * E_KT * 32 + w]) =
                            make_uint4(0x44444444u, 0x44444444u, 0x44444444u, 0x44444444u);
                    bytes += have * 128;
                }
#endif
                mbar_arrive_expect_tx(&full[s], bytes);  // releases the stores above too
#pragma unroll
                for (int a = 0; a < A_ATOMS; ++a)
                    tma_load_2d(st + a * (BLOCK_M * A_SW), &map_a, &full[s],
                                (SPARSE ? k0 / 2 : k0) + a * (A_SW / 2), m0);
#pragma unroll
                for (int a = 0; a < B_ATOMS; ++a)
                    tma_load_2d(st + TA_BYTES + a * (BLOCK_N * B_SW), &map_b, &full[s],
                                k0 + a * (B_SW / 2), n0);
#if SPARSE
                for (int mt = 0; mt < BLOCK_M / 32; ++mt) {
                    const int gmt = m0 / 32 + mt;
                    if (gmt < MP / 32 && valid_kt > 0)
                        bulk_load(&se[mt * E_KT * 32], E + ((long)gmt * (KP / 32) + gk0) * 32,
                                  valid_kt * 128, &full[s]);
                }
#endif
            }
        }
    } else {  // the consumer warpgroups
#if WARPGROUPS == 2
        asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n" ::: "memory");
#endif
        const int wc = wg - 1;  // consumer index: rows wc * WG_ROWS ..
        const int g = lane / 4, t = lane % 4;
        float acc[MT][ACC];
#pragma unroll
        for (int i = 0; i < MT; ++i)
#pragma unroll
            for (int v = 0; v < ACC; ++v) acc[i][v] = 0.0f;

        for (int it = 0; it < n_tiles; ++it) {
            const int s = it % STAGES;
            mbar_wait(&full[s], (it / STAGES) & 1);  // the copies (and metadata fills) landed
            const unsigned char* ta = smem + s * TSTAGE_BYTES;
            const unsigned char* tb = ta + TA_BYTES;
#if SPARSE
            const uint32_t* se = reinterpret_cast<const uint32_t*>(tb + TB_BYTES);
            uint32_t e[MT][BLOCK_K / 32];
            load_meta(e, se, wc * WG_ROWS, wi, g, t);
#endif
            fence_acc(acc);
            wgmma_fence();
#pragma unroll
            for (int ks = 0; ks < BLOCK_K / 32; ++ks) {
#pragma unroll
                for (int i = 0; i < MT; ++i) {
                    const int row = wc * WG_ROWS + i * 64;
#if SPARSE
                    // compressed A: 16 values (32 bytes) a row per 32 dense K; B: 64 bytes
                    uint64_t da = sw_desc<A_SW>(sw_at<A_SW, BLOCK_M>(ta, row, ks * 32));
                    uint64_t db = sw_desc<B_SW>(sw_at<B_SW, BLOCK_N>(tb, 0, ks * 64));
                    wgmma_sp(acc[i], da, db, e[i][ks]);
#else
#pragma unroll
                    for (int h = 0; h < 2; ++h) {  // two k16 halves (32 bytes each)
                        uint64_t da = sw_desc<A_SW>(sw_at<A_SW, BLOCK_M>(ta, row, ks * 64 + h * 32));
                        uint64_t db = sw_desc<B_SW>(sw_at<B_SW, BLOCK_N>(tb, 0, ks * 64 + h * 32));
                        wgmma_dense(acc[i], da, db);
                    }
#endif
                }
            }
            wgmma_commit();
            wgmma_wait<0>();
            fence_acc(acc);
            mbar_arrive(&empty[s]);  // this thread's wgmmas have read the stage
        }

        store_acc(acc, C, m0 + wc * WG_ROWS, n0, M, N, ldc, wi, g, t);
    }
}
#endif  // TMA
