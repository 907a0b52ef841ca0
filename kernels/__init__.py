"""Sparse GEMM kernels for N:M sparse tensor cores: format, CUDA sources, launchers, registry.

``compress`` / ``decompress`` run on CPU tensors (the reference the GPU compress kernel must
match byte for byte). ``python -m kernels list`` / ``python -m kernels compile`` show and build
the registered variants.
"""

from kernels.format import Compressed, check_sparse_pattern, compress, decompress

__all__ = ["Compressed", "check_sparse_pattern", "compress", "decompress"]
