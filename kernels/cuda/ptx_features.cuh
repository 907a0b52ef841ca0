// PTX features that depend on the CUDA version compiling the kernels (nvcc and NVRTC both define
// __CUDACC_VER_MAJOR__ / __CUDACC_VER_MINOR__). Plain preprocessor logic, no CUDA headers, so a
// host preprocessor can check it (tests/test_kernel_ptx_guard.py).
#pragma once

// mma.sp::ordered_metadata is PTX ISA 8.5, CUDA 12.5+. Before that only plain mma.sp exists: it
// reads the same metadata (ours is ordered anyway, the two kept indices of each 4 increasing) but
// the PTX ISA warns it may be slower on some targets and deprecates it. -DMMA_SP_ORDERED=0|1
// overrides the choice.
#ifndef MMA_SP_ORDERED
#if defined(__CUDACC_VER_MAJOR__) && \
    (__CUDACC_VER_MAJOR__ > 12 || (__CUDACC_VER_MAJOR__ == 12 && __CUDACC_VER_MINOR__ >= 5))
#define MMA_SP_ORDERED 1
#else
#define MMA_SP_ORDERED 0
#endif
#endif
#if MMA_SP_ORDERED
#define MMA_SP_OP "mma.sp::ordered_metadata"
#else
#define MMA_SP_OP "mma.sp"
#endif
