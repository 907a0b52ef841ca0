// C (M x N) = A (M x K) . B^T with B (N x K) K-contiguous, on tensor cores (sm_80+).
// SPARSE=1: A arrives compressed (kernels/format.py): values (MP x KP/2) and fragment-native
//   metadata (MP/32, KP/32, 32) uint32; one mma.sp::ordered_metadata m16n8k32 per 16x8 output
//   tile and 32 dense K, the metadata word of lane l serving two m16 tiles (selector 0 and 1).
//   Built with CUDA older than 12.5 (PTX ISA 8.5) it is plain mma.sp (ptx_features.cuh).
// SPARSE=0: A dense (M x K, leading dimension lda); two mma.sync m16n8k16 per 32 K. Everything
//   else (tiling, cp.async pipeline, epilogue) is the same code, so the two compare like for like.
// Tunables (#defines): BLOCK_M, BLOCK_N, BLOCK_K, WARPS_M, WARPS_N, STAGES, SMEM_PAD, SPLIT_K,
// GATHER_B (B's K axis read through a permutation), LDMATRIX (fragments from shared memory with
// ldmatrix.x4: one instruction per 16x16 A half-tile and per 8x32 B tile, instead of four 32-bit
// loads each), EPI_SMEM (the output tile goes through shared memory and leaves in 16-byte
// vectors along the output's contiguous axis, also when it is written transposed), B_KMAJOR (B
// arrives K x N, N contiguous with leading dimension ldb: K indexes rows, so the permuted gather
// copies whole 16-byte chunks of row perm[k] with cp.async instead of loading 2-byte elements;
// the B tile is then stored K-major and its fragments are loaded transposed), DTYPE_BF16,
// OUT_F32, TRANS_C.
#include "common.cuh"
#include "ptx_features.cuh"

#ifndef BLOCK_M
#define BLOCK_M 128
#endif
#ifndef BLOCK_N
#define BLOCK_N 128
#endif
#ifndef BLOCK_K
#define BLOCK_K 64  // dense K per pipeline stage, a multiple of 32
#endif
#ifndef WARPS_M
#define WARPS_M 2
#endif
#ifndef WARPS_N
#define WARPS_N 2
#endif
#ifndef STAGES
#define STAGES 3
#endif
#ifndef SMEM_PAD
#define SMEM_PAD 8  // elements added to each smem row against bank conflicts
#endif
#ifndef GATHER_B
#define GATHER_B 0
#endif
#ifndef SPARSE
#define SPARSE 1
#endif
#ifndef LDMATRIX
#define LDMATRIX 0
#endif
#ifndef EPI_SMEM
#define EPI_SMEM 0
#endif
#ifndef B_KMAJOR
#define B_KMAJOR 0
#endif
#if EPI_SMEM && SPLIT_K > 1
#error "EPI_SMEM stores whole tiles; split-K adds partial sums atomically (EPI_SMEM=0)"
#endif

#define THREADS (WARPS_M * WARPS_N * 32)
#define WARP_M (BLOCK_M / WARPS_M)
#define WARP_N (BLOCK_N / WARPS_N)
#define MT (WARP_M / 16)
#define NT (WARP_N / 8)
#if SPARSE
#define A_LD (BLOCK_K / 2 + SMEM_PAD)
#define E_WORDS ((BLOCK_M / 32) * (BLOCK_K / 32) * 32)
#else
#define A_LD (BLOCK_K + SMEM_PAD)
#define E_WORDS 4
#endif
#define B_LD (BLOCK_K + SMEM_PAD)
#if B_KMAJOR
#define BN_LD (BLOCK_N + SMEM_PAD)  // the K-major B tile: BLOCK_K rows of BLOCK_N (+ pad)
#define B_ELEMS (BLOCK_K * BN_LD)
#else
#define B_ELEMS (BLOCK_N * B_LD)
#endif
// the staged output tile: rows along the output's contiguous axis, 16 bytes of padding per row
#if TRANS_C
#define CS_ROWS BLOCK_N
#define CS_COLS BLOCK_M
#else
#define CS_ROWS BLOCK_M
#define CS_COLS BLOCK_N
#endif
#define CS_LD (CS_COLS + 16 / (int)sizeof(out_t))

static_assert(BLOCK_K % 32 == 0, "BLOCK_K must be a multiple of 32");
static_assert(WARP_M % 32 == 0, "a warp covers whole 32-row metadata tiles");
static_assert(WARP_N % 8 == 0, "a warp covers whole n8 tiles");
static_assert(SMEM_PAD % 8 == 0, "rows must stay 16-byte aligned");

struct Stage {
    elem_t a[BLOCK_M * A_LD];
    elem_t b[B_ELEMS];
    uint32_t e[E_WORDS];
};

__device__ __forceinline__ void mma_sp(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[4],
                                       uint32_t e, int selector) {
    if (selector == 0) {
        asm volatile(
            MMA_SP_OP ".sync.aligned.m16n8k32.row.col.f32." MMA_TYPE "." MMA_TYPE
            ".f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9,%10,%11}, {%0,%1,%2,%3}, %12, 0x0;\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(b[2]),
              "r"(b[3]), "r"(e));
    } else {
        asm volatile(
            MMA_SP_OP ".sync.aligned.m16n8k32.row.col.f32." MMA_TYPE "." MMA_TYPE
            ".f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9,%10,%11}, {%0,%1,%2,%3}, %12, 0x1;\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(b[2]),
              "r"(b[3]), "r"(e));
    }
}

__device__ __forceinline__ void mma_dense(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                          uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32." MMA_TYPE "." MMA_TYPE
        ".f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// ldmatrix.x4: lane 8*j + r gives the address of row r of 8x8 matrix j (16-byte aligned rows);
// register j of lane 4*r + c then holds elements 2c, 2c+1 of row r of matrix j (PTX ISA,
// "Warp-level matrix load instruction: ldmatrix"). With matrix j = the j-th 8 columns of an n8
// B tile, that is the m16n8k32 B fragment (b[j] = rows g, k = 8j + 2t); with matrices (rows 0-7,
// cols 0-7), (rows 8-15, cols 0-7), (rows 0-7, cols 8-15), (rows 8-15, cols 8-15) of a 16x16 A
// tile it is the m16n8k16 A fragment, which is also the sparse m16n8k32's compressed A fragment.
__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const elem_t* p) {
    const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(p));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

// The A fragment of the 16 x 16 tile whose top-left element is ``tile`` (row stride A_LD).
__device__ __forceinline__ void load_a_frag(uint32_t (&af)[4], const elem_t* tile, int lane) {
#if LDMATRIX
    ldsm_x4(af, tile + ((lane % 8) + 8 * ((lane / 8) % 2)) * A_LD + 8 * (lane / 16));
#else
    const int g = lane / 4, t = lane % 4;
    const elem_t* ap = tile + g * A_LD + 2 * t;
    af[0] = *reinterpret_cast<const uint32_t*>(ap);
    af[1] = *reinterpret_cast<const uint32_t*>(ap + 8 * A_LD);
    af[2] = *reinterpret_cast<const uint32_t*>(ap + 8);
    af[3] = *reinterpret_cast<const uint32_t*>(ap + 8 * A_LD + 8);
#endif
}

// ldmatrix.x4.trans: the same addressing, each 8x8 matrix delivered transposed: register j of
// lane 4*r + c holds elements (2c, r) and (2c+1, r) of matrix j.
__device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], const elem_t* p) {
    const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(p));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

// Where the k32 x n8 block of B at (n, k) of a stage starts.
__device__ __forceinline__ const elem_t* b_block(const elem_t* b, int n, int k) {
#if B_KMAJOR
    return b + k * BN_LD + n;
#else
    return b + n * B_LD + k;
#endif
}

// The B fragment (k32 x n8) of the block at ``tile``: b[r] = B[k = 8r + 2t, +1][n = g].
#if B_KMAJOR
// K-major tile (row stride BN_LD, N along a row): matrix j = rows k 8j..8j+7, read transposed
__device__ __forceinline__ void load_b_frag(uint32_t (&bf)[4], const elem_t* tile, int lane) {
#if LDMATRIX
    ldsm_x4_trans(bf, tile + lane * BN_LD);
#else
    const int g = lane / 4, t = lane % 4;
    const uint16_t* bp = reinterpret_cast<const uint16_t*>(tile) + (2 * t) * BN_LD + g;
#pragma unroll
    for (int r = 0; r < 4; ++r)
        bf[r] = uint32_t(bp[8 * r * BN_LD]) | (uint32_t(bp[(8 * r + 1) * BN_LD]) << 16);
#endif
}
#else
// N-major tile (row stride B_LD, K along a row)
__device__ __forceinline__ void load_b_frag(uint32_t (&bf)[4], const elem_t* tile, int lane) {
#if LDMATRIX
    ldsm_x4(bf, tile + (lane % 8) * B_LD + 8 * (lane / 8));
#else
    const elem_t* bp = tile + (lane / 4) * B_LD + 2 * (lane % 4);
#pragma unroll
    for (int r = 0; r < 4; ++r) bf[r] = *reinterpret_cast<const uint32_t*>(bp + 8 * r);
#endif
}
#endif

// Issue the loads of one K tile (dense columns k0 .. k0+BLOCK_K) into a stage.
__device__ __forceinline__ void load_tile(Stage& s, const elem_t* __restrict__ A_vals,
                                          const uint32_t* __restrict__ E,
                                          const elem_t* __restrict__ B, const int* __restrict__ perm,
                                          int M, int N, int K, int MP, int KP, int lda, int ldb,
                                          int m0, int n0, int k0) {
    const int tid = threadIdx.x;
#if SPARSE
    // A values: BLOCK_M rows x BLOCK_K/2 elements, 8 elements per 16-byte chunk
    constexpr int A_CHUNKS = BLOCK_M * (BLOCK_K / 16);
    for (int c = tid; c < A_CHUNKS; c += THREADS) {
        int r = c / (BLOCK_K / 16), col = (c % (BLOCK_K / 16)) * 8;
        bool ok = (m0 + r < MP) && (k0 / 2 + col < KP / 2);
        const elem_t* src = ok ? A_vals + (long)(m0 + r) * (KP / 2) + k0 / 2 + col : A_vals;
        cp_async16(&s.a[r * A_LD + col], src, ok);
    }
    // metadata: the (BLOCK_M/32) x (BLOCK_K/32) words-of-32 this block needs, 4 words per chunk
    constexpr int E_CHUNKS = E_WORDS / 4;
    for (int c = tid; c < E_CHUNKS; c += THREADS) {
        int w = c * 4, mt = w / ((BLOCK_K / 32) * 32), kt = (w / 32) % (BLOCK_K / 32), lane = w % 32;
        int gmt = m0 / 32 + mt, gkt = k0 / 32 + kt;
        bool ok = (gmt < MP / 32) && (gkt < KP / 32);
        const uint32_t* src = ok ? E + ((long)gmt * (KP / 32) + gkt) * 32 + lane : E;
        cp_async16(&s.e[w], src, ok);
    }
#else
    // dense A: BLOCK_M rows x BLOCK_K elements (K a multiple of 8: whole 16-byte chunks)
    constexpr int A_CHUNKS = BLOCK_M * (BLOCK_K / 8);
    for (int c = tid; c < A_CHUNKS; c += THREADS) {
        int r = c / (BLOCK_K / 8), col = (c % (BLOCK_K / 8)) * 8;
        bool ok = (m0 + r < M) && (k0 + col < K);
        const elem_t* src = ok ? A_vals + (long)(m0 + r) * lda + k0 + col : A_vals;
        cp_async16(&s.a[r * A_LD + col], src, ok);
    }
#endif
    // B beyond K is zero-filled: padding in A is zero, and 0 * garbage could be NaN
#if B_KMAJOR
    // B is K x N: row k (row perm[k] when gathering) gives BLOCK_N/8 whole 16-byte chunks; a
    // chunk at N's edge reads what is there and zero-fills the rest
    constexpr int N_CHUNKS = BLOCK_N / 8;
    for (int c = tid; c < BLOCK_K * N_CHUNKS; c += THREADS) {
        int kk = c / N_CHUNKS, col = (c % N_CHUNKS) * 8;
        int k = k0 + kk, n = n0 + col;
        bool ok = (k < K) && (n < N);
#if GATHER_B
        int row = ok ? perm[k] : 0;
#else
        int row = k;
#endif
        cp_async16_n(&s.b[kk * BN_LD + col], ok ? B + (long)row * ldb + n : B,
                     ok ? min(16, (N - n) * 2) : 0);
    }
#elif GATHER_B
    // B columns through the permutation: element loads, no 16-byte vectors along K
    for (int i = tid; i < BLOCK_N * BLOCK_K; i += THREADS) {
        int r = i / BLOCK_K, kk = i % BLOCK_K;
        bool ok = (n0 + r < N) && (k0 + kk < K);
        s.b[r * B_LD + kk] = ok ? B[(long)(n0 + r) * ldb + perm[k0 + kk]] : elem_t(0.0f);
    }
#else
    constexpr int B_CHUNKS = BLOCK_N * (BLOCK_K / 8);
    for (int c = tid; c < B_CHUNKS; c += THREADS) {
        int r = c / (BLOCK_K / 8), col = (c % (BLOCK_K / 8)) * 8;
        bool ok = (n0 + r < N) && (k0 + col < K);
        const elem_t* src = ok ? B + (long)(n0 + r) * ldb + k0 + col : B;
        cp_async16(&s.b[r * B_LD + col], src, ok);
    }
#endif
}

#if EPI_SMEM
// The block's output tile through shared memory (the pipeline's stages, free once every warp is
// past the main loop): each thread puts its accumulators at their place in the tile, laid out
// with the output's contiguous axis along a shared row; then the block writes whole 16-byte
// vectors of consecutive output elements (the columns of C, or its rows when TRANS_C writes
// C^T). A vector that would cross the matrix's edge, or a C whose rows are not 16-byte
// aligned, is written element by element.
__device__ __forceinline__ void store_tile_via_smem(const float (&acc)[MT][NT][4],
                                                    unsigned char* smem_raw, out_t* __restrict__ C,
                                                    int M, int N, int ldc, int m0, int n0, int wm,
                                                    int wn, int g, int t) {
    out_t* cs = reinterpret_cast<out_t*>(smem_raw);
    __syncthreads();  // every warp has read its last stage
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int j = 0; j < NT; ++j)
#pragma unroll
            for (int v = 0; v < 4; ++v) {
                const int r = wm * WARP_M + i * 16 + g + 8 * (v / 2);  // tile row (along M)
                const int c = wn * WARP_N + j * 8 + 2 * t + (v % 2);   // tile column (along N)
#if TRANS_C
                cs[c * CS_LD + r] = to_out(acc[i][j][v]);
#else
                cs[r * CS_LD + c] = to_out(acc[i][j][v]);
#endif
            }
    __syncthreads();
    constexpr int VEC = 16 / (int)sizeof(out_t);  // output elements per 16-byte vector
    constexpr int CHUNKS = CS_COLS / VEC;
#if TRANS_C
    const int row0 = n0, col0 = m0, rows = N, cols = M;  // C^T: N rows of M contiguous outputs
#else
    const int row0 = m0, col0 = n0, rows = M, cols = N;
#endif
    const bool aligned = (ldc % VEC == 0) && ((reinterpret_cast<size_t>(C) & 15) == 0);
    for (int x = threadIdx.x; x < CS_ROWS * CHUNKS; x += THREADS) {
        const int r = x / CHUNKS, c = (x % CHUNKS) * VEC;
        if (row0 + r >= rows) continue;
        const out_t* src = &cs[r * CS_LD + c];
        out_t* dst = C + (long)(row0 + r) * ldc + col0 + c;
        if (aligned && col0 + c + VEC <= cols) {
            *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(src);
        } else {
            for (int e = 0; e < VEC && col0 + c + e < cols; ++e) dst[e] = src[e];
        }
    }
}
#endif

extern "C" __global__ void __launch_bounds__(THREADS)
nm_gemm(const elem_t* __restrict__ A_vals, const uint32_t* __restrict__ E,
        const elem_t* __restrict__ B, const int* __restrict__ perm, out_t* __restrict__ C,
        int M, int N, int K, int MP, int KP, int lda, int ldb, int ldc) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    Stage* stages = reinterpret_cast<Stage*>(smem_raw);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int g = lane / 4, t = lane % 4;
    const int wm = warp / WARPS_N, wn = warp % WARPS_N;
    const int m0 = blockIdx.y * BLOCK_M, n0 = blockIdx.x * BLOCK_N;
    const KRange kr = split_k_range(SPARSE ? KP : K, BLOCK_K);
    const int kt_begin = kr.begin, n_tiles = kr.count;

    float acc[MT][NT][4];
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int j = 0; j < NT; ++j)
#pragma unroll
            for (int v = 0; v < 4; ++v) acc[i][j][v] = 0.0f;

#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
        if (s < n_tiles)
            load_tile(stages[s], A_vals, E, B, perm, M, N, K, MP, KP, lda, ldb, m0, n0,
                      (kt_begin + s) * BLOCK_K);
        cp_async_commit();
    }
    for (int it = 0; it < n_tiles; ++it) {
        cp_async_wait<STAGES - 2>();
        __syncthreads();
        int next = it + STAGES - 1;
        if (next < n_tiles)
            load_tile(stages[next % STAGES], A_vals, E, B, perm, M, N, K, MP, KP, lda, ldb, m0, n0,
                      (kt_begin + next) * BLOCK_K);
        cp_async_commit();
        const Stage& s = stages[it % STAGES];
#if SPARSE
        const int k0 = (kt_begin + it) * BLOCK_K;
#endif
#pragma unroll
        for (int ks = 0; ks < BLOCK_K / 32; ++ks) {
#if SPARSE
            // past the padded K the zero-filled metadata would read as the invalid code 0b0000
            if (k0 + ks * 32 >= KP) break;  // warp-uniform
#endif
            uint32_t bf[NT][4];
#pragma unroll
            for (int j = 0; j < NT; ++j)
                load_b_frag(bf[j], b_block(s.b, wn * WARP_N + j * 8, ks * 32), lane);
#pragma unroll
            for (int i = 0; i < MT; ++i) {
                const int row = wm * WARP_M + i * 16;
#if SPARSE
                if (m0 + row >= MP) continue;  // whole 16-row tile past the padded rows (uniform)
                // compressed row: 16 values per 32 dense columns; fragment = dense m16n8k16 A's
                uint32_t af[4];
                load_a_frag(af, &s.a[row * A_LD + ks * 16], lane);
                const uint32_t e = s.e[((row / 32) * (BLOCK_K / 32) + ks) * 32 + lane];
#pragma unroll
                for (int j = 0; j < NT; ++j) mma_sp(acc[i][j], af, bf[j], e, (row / 16) & 1);
#else
#pragma unroll
                for (int h = 0; h < 2; ++h) {  // two k16 halves of the 32-wide step
                    uint32_t af[4];
                    load_a_frag(af, &s.a[row * A_LD + ks * 32 + h * 16], lane);
#pragma unroll
                    for (int j = 0; j < NT; ++j) mma_dense(acc[i][j], af, bf[j][2 * h], bf[j][2 * h + 1]);
                }
#endif
            }
        }
    }
    cp_async_wait<0>();

#if EPI_SMEM
    store_tile_via_smem(acc, smem_raw, C, M, N, ldc, m0, n0, wm, wn, g, t);
#else
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int j = 0; j < NT; ++j) {
            int row = m0 + wm * WARP_M + i * 16 + g;
            int col = n0 + wn * WARP_N + j * 8 + 2 * t;
            store_out(C, row, col, M, N, ldc, acc[i][j][0]);
            store_out(C, row, col + 1, M, N, ldc, acc[i][j][1]);
            store_out(C, row + 8, col, M, N, ldc, acc[i][j][2]);
            store_out(C, row + 8, col + 1, M, N, ldc, acc[i][j][3]);
        }
#endif
}
