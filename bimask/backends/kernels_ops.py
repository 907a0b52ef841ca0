"""The ``kernels`` backend: this project's sparse kernels for SparseLinear (CUDA)."""

from __future__ import annotations

from bimask.backends.base import LayerOps


def kernels_linear(layer) -> LayerOps:
    """This project's sparse kernels for a SparseLinear (CUDA; bfloat16/float16 GEMMs).

    The one place training reaches the kernels package, imported only when a layer asks."""
    from kernels.training import KernelLinearOps

    spec = layer._spec
    return KernelLinearOps(
        pattern=str(layer.pattern),
        sparse_forward=lambda: spec.masks is not None,
        sparse_backward=lambda: spec.backward_nm and not layer.backward_as_forward,
        # no gather where the groups are consecutive rows (a host-side bool, no tensor read)
        perm=lambda: None if layer.perm_is_identity else layer.perm,
    )
