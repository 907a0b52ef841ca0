// CUTLASS 3.x's sm90 structured-sparse GEMM (TMA + wgmma.sp, warp-specialised), one config per
// build, behind a C ABI that Python loads with ctypes (kernels/cutlass_lib.py).
//
//   D (M x N, row-major, leading dim ldd) = A_sparse (M x K, 2:4 along K) . B^T
//   B: N x K, K contiguous (leading dim ldb): CUTLASS's "column-major K x N" B.
//
// The same contract as this project's own kernels (kernels/format.py), so the suite feeds both
// the same operands. A reaches the GEMM compressed by CUTLASS's own device compressor
// (``..._compress``) into the layout the mainloop reads: values (M x K/2, packed) and metadata
// (CUTLASS's reordered E layout, which depends on the tile's K: one compress per build).
//
// Tunables (-D, one shared library per config; kernels/registry.py lists the values):
//   TILE_M, TILE_N, TILE_K      CTA tile
//   CLUSTER_M, CLUSTER_N        thread-block cluster (TMA multicast of B along M, A along N)
//   SCHEDULE                    0 KernelTmaWarpSpecialized (one tile per CTA), 1 ...Pingpong,
//                               2 ...Cooperative (persistent; the two 2:4-capable in CUTLASS)
//   EPILOGUE                    0 NoSmemWarpSpecialized (direct stores), 1 TMA store epilogue
//   STREAM_K                    1: the stream-K tile scheduler (cooperative only), 0: default
//   DTYPE_BF16, OUT_F32         inputs bf16 (else fp16); output fp32 (else the input dtype)
// Run-time (arguments of the entry, no rebuild): raster order, swizzle, stream-K splits.
//
// Every entry returns a status (kernels/cutlass_lib.py STATUS); none aborts or prints. The
// argument checks run before any CUDA call, so they work on a host without a driver.

#include <cstdint>
#include <type_traits>

#include "cute/tensor.hpp"
#include "cutlass/cutlass.h"
#include "cutlass/epilogue/collective/collective_builder.hpp"
#include "cutlass/gemm/collective/collective_builder.hpp"
#include "cutlass/gemm/device/gemm_universal_adapter.h"
#include "cutlass/gemm/dispatch_policy.hpp"
#include "cutlass/gemm/kernel/gemm_universal.hpp"
#include "cutlass/transform/device/transform_universal_adapter.hpp"
#include "cutlass/transform/kernel/sparse_gemm_compressor.hpp"
#include "cutlass/util/packed_stride.hpp"
#include "cutlass/version.h"

#ifndef TILE_M
#define TILE_M 128
#endif
#ifndef TILE_N
#define TILE_N 128
#endif
#ifndef TILE_K
#define TILE_K 64
#endif
#ifndef CLUSTER_M
#define CLUSTER_M 1
#endif
#ifndef CLUSTER_N
#define CLUSTER_N 1
#endif
#ifndef SCHEDULE
#define SCHEDULE 2
#endif
#ifndef EPILOGUE
#define EPILOGUE 1
#endif
#ifndef STREAM_K
#define STREAM_K 0
#endif
#ifndef DTYPE_BF16
#define DTYPE_BF16 1
#endif
#ifndef OUT_F32
#define OUT_F32 0
#endif

#define EXPORT extern "C" __attribute__((visibility("default")))

namespace {

using namespace cute;
namespace gc = cutlass::gemm::collective;
namespace ec = cutlass::epilogue::collective;

using Element = cute::conditional_t<DTYPE_BF16, cutlass::bfloat16_t, cutlass::half_t>;
using ElementOut = cute::conditional_t<OUT_F32, float, Element>;
using Accumulator = float;
constexpr int kAlignIn = 16 / sizeof(Element);      // TMA: 16-byte rows
constexpr int kAlignOut = 16 / sizeof(ElementOut);

using Tile = Shape<Int<TILE_M>, Int<TILE_N>, Int<TILE_K>>;
using Cluster = Shape<Int<CLUSTER_M>, Int<CLUSTER_N>, _1>;

// Kernel schedule and the epilogue schedule that goes with it.
template <int S> struct Schedules;
template <> struct Schedules<0> {
  using Kernel = cutlass::gemm::KernelTmaWarpSpecialized;
  using TmaEpilogue = cutlass::epilogue::TmaWarpSpecialized;
};
template <> struct Schedules<1> {
  using Kernel = cutlass::gemm::KernelTmaWarpSpecializedPingpong;
  using TmaEpilogue = cutlass::epilogue::TmaWarpSpecialized;
};
template <> struct Schedules<2> {
  using Kernel = cutlass::gemm::KernelTmaWarpSpecializedCooperative;
  using TmaEpilogue = cutlass::epilogue::TmaWarpSpecializedCooperative;
};
using KernelSchedule = typename Schedules<SCHEDULE>::Kernel;
using EpilogueSchedule = cute::conditional_t<EPILOGUE, typename Schedules<SCHEDULE>::TmaEpilogue,
                                             cutlass::epilogue::NoSmemWarpSpecialized>;
using TileScheduler = cute::conditional_t<STREAM_K, cutlass::gemm::StreamKScheduler, void>;

// No source C (beta = 0): the TMA epilogue takes C = void and spends no shared memory on it;
// the direct-store epilogue takes C as D's type, never read with beta = 0.
using ElementC = cute::conditional_t<EPILOGUE, void, ElementOut>;
using Epilogue = typename ec::CollectiveBuilder<
    cutlass::arch::Sm90, cutlass::arch::OpClassSparseTensorOp, Tile, Cluster,
    ec::EpilogueTileAuto, Accumulator, Accumulator, ElementC, cutlass::layout::RowMajor,
    kAlignOut, ElementOut, cutlass::layout::RowMajor, kAlignOut, EpilogueSchedule>::CollectiveOp;

using Mainloop = typename gc::CollectiveBuilder<
    cutlass::arch::Sm90, cutlass::arch::OpClassSparseTensorOp, Element, cutlass::layout::RowMajor,
    kAlignIn, Element, cutlass::layout::ColumnMajor, kAlignIn, Accumulator, Tile, Cluster,
    gc::StageCountAutoCarveout<static_cast<int>(sizeof(typename Epilogue::SharedStorage))>,
    KernelSchedule>::CollectiveOp;

using Problem = Shape<int, int, int, int>;
using Kernel = cutlass::gemm::kernel::GemmUniversal<Problem, Mainloop, Epilogue, TileScheduler>;
using Gemm = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;

using SparseConfig = typename Mainloop::SparseConfig;
using LayoutA = typename Mainloop::LayoutA;
using LayoutE = typename Mainloop::LayoutE;
using ElementE = typename Mainloop::ElementE;
using StrideB = typename Kernel::StrideB;
using StrideD = typename Kernel::StrideD;
using StrideDenseA = cutlass::gemm::TagToStrideA_t<cutlass::layout::RowMajor>;

using CompressorUtility = cutlass::transform::kernel::StructuredSparseCompressorUtility<
    Problem, Element, cutlass::layout::RowMajor, SparseConfig>;
using Compressor = cutlass::transform::device::TransformUniversalAdapter<
    cutlass::transform::kernel::StructuredSparseCompressor<
        Problem, Element, cutlass::layout::RowMajor, SparseConfig, cutlass::arch::Sm90>>;

using Raster = cutlass::gemm::kernel::detail::RasterOrderOptions;

// Status codes (mirrored in kernels/cutlass_lib.py, which words them for the user).
enum : int {
  kOk = 0,
  kNullPointer = 1,
  kBadSize = 2,         // a size <= 0 or beyond 32 bits
  kBadK = 3,            // K not a multiple of 16 (the compressed A's 16-byte rows)
  kMisaligned = 4,      // a pointer not 16-byte aligned
  kBadLeadingDim = 5,   // ld < row length, or not a multiple of 16 bytes
  kBadSchedule = 6,     // raster / swizzle / splits out of range
  kCannotImplement = 7, // CUTLASS's own can_implement refused
  kSmallWorkspace = 8,
  kInitFailed = 9,      // CUTLASS initialize (workspace, TMA descriptors, smem attribute)
  kLaunchFailed = 10,   // CUTLASS run, or a CUDA error after the launch
  kNoDevice = 11,       // no CUDA device / driver
  kBadN = 12,           // N not a multiple of one 16-byte output row segment
};

constexpr int64_t kIntMax = 2147483647;

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

int check_sizes(int64_t m, int64_t n, int64_t k) {
  if (m <= 0 || n <= 0 || k <= 0 || m > kIntMax || n > kIntMax || k > kIntMax) return kBadSize;
  if (k % 16) return kBadK;
  return kOk;
}

int check_run_options(int raster, int swizzle, int splits) {
  if (raster < 0 || raster > 2) return kBadSchedule;
  if (swizzle != 1 && swizzle != 2 && swizzle != 4 && swizzle != 8) return kBadSchedule;
  if (splits < 1 || splits > 16 || (!STREAM_K && splits != 1)) return kBadSchedule;
  return kOk;
}

// The GEMM's size and layout checks (no pointers, no CUDA).
int check_gemm_shape(int64_t m, int64_t n, int64_t k, int64_t ldb, int64_t ldd) {
  if (int s = check_sizes(m, n, k)) return s;
  if (n % kAlignOut) return kBadN;
  if (ldb < k || ldb % kAlignIn || ldd < n || ldd % kAlignOut) return kBadLeadingDim;
  return kOk;
}

int sm_count_of(int device) {
  static int cached[64] = {0};
  if (device < 0 || device >= 64) return 0;
  if (!cached[device]) {
    int count = 0;
    if (cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) {
      (void)cudaGetLastError();
      return 0;
    }
    cached[device] = count;
  }
  return cached[device];
}

// Stream-K's split count (its scheduler's field; the default schedulers have none).
template <class T, class = void> struct HasSplits : std::false_type {};
template <class T> struct HasSplits<T, std::void_t<decltype(T::splits)>> : std::true_type {};

template <class SchedulerArgs>
void set_splits(SchedulerArgs& scheduler, int splits) {
  if constexpr (HasSplits<SchedulerArgs>::value) {
    scheduler.splits = splits;
  }
}

typename Gemm::Arguments gemm_arguments(const void* a_values, const void* a_meta, const void* b,
                                        void* d, int m, int n, int k, int64_t ldb, int64_t ldd,
                                        int raster, int swizzle, int splits, int device,
                                        int sm_count) {
  Problem problem{m, n, k, 1};
  StrideB stride_b = cute::make_stride(ldb, cute::Int<1>{}, int64_t(0));
  StrideD stride_d = cute::make_stride(ldd, cute::Int<1>{}, int64_t(0));
  typename Gemm::Arguments args{
      cutlass::gemm::GemmUniversalMode::kGemm,
      problem,
      {static_cast<const Element*>(a_values), SparseConfig::fill_layoutA(problem),
       static_cast<const Element*>(b), stride_b, static_cast<const ElementE*>(a_meta),
       SparseConfig::fill_layoutE(problem)},
      {{Accumulator(1), Accumulator(0)},
       static_cast<const ElementOut*>(EPILOGUE ? nullptr : d), stride_d,
       static_cast<ElementOut*>(d), stride_d}};
  args.hw_info.device_id = device;
  args.hw_info.sm_count = sm_count;
  args.scheduler.raster_order = static_cast<Raster>(raster);
  args.scheduler.max_swizzle_size = swizzle;
  set_splits(args.scheduler, splits);
  return args;
}

}  // namespace

// Compile-time facts of this build: tile M/N/K, cluster M/N, schedule, epilogue, stream-K,
// bf16, fp32 out, CUTLASS version, pipeline stages. Returns how many it wrote (at most n).
EXPORT int cutlass_sm90_sparse_config(int* out, int n) {
  const int facts[] = {TILE_M,   TILE_N,     TILE_K,  CLUSTER_M,       CLUSTER_N,
                       SCHEDULE, EPILOGUE,   STREAM_K, DTYPE_BF16,     OUT_F32,
                       CUTLASS_VERSION, Mainloop::DispatchPolicy::Stages};
  int count = 0;
  for (; out && count < n && count < int(sizeof(facts) / sizeof(facts[0])); ++count) {
    out[count] = facts[count];
  }
  return count;
}

// Sizes of the compressed operand for an M x K matrix: values in elements (M x K/2, packed,
// the input dtype) and metadata in bytes (M and K padded to the metadata atom).
EXPORT int cutlass_sm90_sparse_compressed_sizes(int64_t m, int64_t k, int64_t* value_elems,
                                                int64_t* meta_bytes) {
  if (!value_elems || !meta_bytes) return kNullPointer;
  if (int s = check_sizes(m, 1, k)) return s;
  CompressorUtility util(Problem{int(m), 1, int(k), 1},
                         cutlass::make_cute_packed_stride(StrideDenseA{}, make_shape(int(m), int(k), 1)));
  *value_elems = int64_t(util.get_tensorA_m_physical()) * util.get_tensorA_k_physical();
  *meta_bytes = int64_t(util.get_tensor_E_bytes());
  return kOk;
}

// The argument checks of the compress entry, without CUDA.
EXPORT int cutlass_sm90_sparse_compress_check(const void* a, int64_t m, int64_t k, int64_t lda,
                                              const void* values, const void* meta) {
  if (!a || !values || !meta) return kNullPointer;
  if (int s = check_sizes(m, 1, k)) return s;
  if (lda < k || lda % kAlignIn) return kBadLeadingDim;
  if (!aligned16(a) || !aligned16(values) || !aligned16(meta)) return kMisaligned;
  return kOk;
}

// CUTLASS's device compressor: A (M x K row-major, leading dim lda, at most 2 nonzeros in every
// aligned 4 along K) -> values + metadata (sizes from ..._compressed_sizes). The caller
// guarantees the pattern (the compressor keeps nonzeros: a group of 4 with 3 overflows).
EXPORT int cutlass_sm90_sparse_compress(const void* a, int64_t m, int64_t k, int64_t lda,
                                        void* values, void* meta, void* stream) {
  if (int s = cutlass_sm90_sparse_compress_check(a, m, k, lda, values, meta)) return s;
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) {
    (void)cudaGetLastError();
    return kNoDevice;
  }
  Problem problem{int(m), 1, int(k), 1};
  StrideDenseA stride_a = cute::make_stride(lda, cute::Int<1>{}, int64_t(0));
  typename Compressor::Arguments args{problem, {a, stride_a, values, meta}, {}};
  args.hw_info.device_id = device;
  args.hw_info.sm_count = sm_count_of(device);
  Compressor op;
  if (op.can_implement(args) != cutlass::Status::kSuccess) return kCannotImplement;
  if (op.initialize(args, nullptr, static_cast<cudaStream_t>(stream)) != cutlass::Status::kSuccess)
    return kInitFailed;
  if (op.run(static_cast<cudaStream_t>(stream)) != cutlass::Status::kSuccess) return kLaunchFailed;
  return cudaGetLastError() == cudaSuccess ? kOk : kLaunchFailed;
}

// The GEMM's argument checks (pointers, sizes, leading dims, run options), without CUDA.
EXPORT int cutlass_sm90_sparse_check(const void* a_values, const void* a_meta, const void* b,
                                     const void* d, int64_t m, int64_t n, int64_t k, int64_t ldb,
                                     int64_t ldd, int raster, int swizzle, int splits) {
  if (!a_values || !a_meta || !b || !d) return kNullPointer;
  if (int s = check_gemm_shape(m, n, k, ldb, ldd)) return s;
  if (!aligned16(a_values) || !aligned16(a_meta) || !aligned16(b) || !aligned16(d))
    return kMisaligned;
  return check_run_options(raster, swizzle, splits);
}

// Our checks plus CUTLASS's can_implement for this problem (host only, no CUDA).
EXPORT int cutlass_sm90_sparse_can_implement(int64_t m, int64_t n, int64_t k, int64_t ldb,
                                             int64_t ldd, int raster, int swizzle, int splits) {
  if (int s = check_gemm_shape(m, n, k, ldb, ldd)) return s;
  if (int s = check_run_options(raster, swizzle, splits)) return s;
  auto args = gemm_arguments(nullptr, nullptr, nullptr, nullptr, int(m), int(n), int(k), ldb, ldd,
                             raster, swizzle, splits, 0, 1);
  return Gemm::can_implement(args) == cutlass::Status::kSuccess ? kOk : kCannotImplement;
}

// Device workspace the GEMM needs for this problem (stream-K partials; else usually 0).
EXPORT int cutlass_sm90_sparse_workspace_size(int64_t m, int64_t n, int64_t k, int64_t ldb,
                                              int64_t ldd, int raster, int swizzle, int splits,
                                              int64_t* bytes) {
  if (!bytes) return kNullPointer;
  if (int s = check_gemm_shape(m, n, k, ldb, ldd)) return s;
  if (int s = check_run_options(raster, swizzle, splits)) return s;
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) {
    (void)cudaGetLastError();
    return kNoDevice;
  }
  auto args = gemm_arguments(nullptr, nullptr, nullptr, nullptr, int(m), int(n), int(k), ldb, ldd,
                             raster, swizzle, splits, device, sm_count_of(device));
  *bytes = int64_t(Gemm::get_workspace_size(args));
  return kOk;
}

// D = A_sparse . B^T on ``stream``. a_values / a_meta from ..._compress of this build.
EXPORT int cutlass_sm90_sparse_gemm(const void* a_values, const void* a_meta, const void* b,
                                    void* d, int64_t m, int64_t n, int64_t k, int64_t ldb,
                                    int64_t ldd, int raster, int swizzle, int splits,
                                    void* workspace, int64_t workspace_bytes, void* stream) {
  if (int s = cutlass_sm90_sparse_check(a_values, a_meta, b, d, m, n, k, ldb, ldd, raster,
                                        swizzle, splits))
    return s;
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) {
    (void)cudaGetLastError();
    return kNoDevice;
  }
  auto args = gemm_arguments(a_values, a_meta, b, d, int(m), int(n), int(k), ldb, ldd, raster,
                             swizzle, splits, device, sm_count_of(device));
  if (Gemm::can_implement(args) != cutlass::Status::kSuccess) return kCannotImplement;
  size_t need = Gemm::get_workspace_size(args);
  if (need && (!workspace || workspace_bytes < int64_t(need))) return kSmallWorkspace;
  Gemm gemm;
  auto s = static_cast<cudaStream_t>(stream);
  if (gemm.initialize(args, workspace, s) != cutlass::Status::kSuccess) return kInitFailed;
  if (gemm.run(s) != cutlass::Status::kSuccess) return kLaunchFailed;
  return cudaGetLastError() == cudaSuccess ? kOk : kLaunchFailed;
}
