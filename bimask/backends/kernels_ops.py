"""The ``kernels`` backend: this project's sparse kernels for SparseLinear (CUDA)."""

from __future__ import annotations

import weakref

from bimask.backends.base import LayerOps
from bimask.profile import section

_CHECKED: weakref.WeakSet = weakref.WeakSet()  # tuned-configs files whose kernel entries passed


def _config_for(layer):
    """The winner lookup of ``layer.tuned`` for the kernels (None without a file): every
    kernels entry is checked against the kernels' spaces the first time a file is seen, so a
    file tuned with other kernel sources fails when the layer is made, not mid-training."""
    tuned = getattr(layer, "tuned", None)
    if tuned is None:
        return None
    from kernels.training import tuned_kernel_config

    if tuned not in _CHECKED:
        for i, entry in enumerate(tuned.entries):
            if entry.backend == "kernels":
                try:
                    tuned_kernel_config(entry.config)
                except ValueError as err:
                    raise ValueError(
                        f"tuned configs {tuned.where}, entry {i}: {err}; re-tune with these "
                        "kernels and re-export (python -m suite export-tuned RUN --out FILE)"
                    ) from None
        _CHECKED.add(tuned)
    pattern = str(layer.pattern)

    def config_for(pass_, m, n, k, dtype, realisation=None):
        entry = tuned.lookup("kernels", pass_, m, n, k, pattern, dtype, realisation=realisation)
        return None if entry is None else tuned_kernel_config(entry.config)

    return config_for


def kernels_linear(layer) -> LayerOps:
    """This project's sparse kernels for a SparseLinear (CUDA; bfloat16/float16 GEMMs), with
    the layer's tuned configs (``layer.tuned``, :mod:`bimask.tuned`) where it has them.

    The one place training reaches the kernels package, imported only when a layer asks."""
    from kernels.training import KernelLinearOps

    spec = layer._spec
    return KernelLinearOps(
        pattern=str(layer.pattern),
        sparse_forward=lambda: spec.masks is not None,
        sparse_backward=lambda: spec.backward_nm and not layer.backward_as_forward,
        # no gather where the groups are consecutive rows (a host-side bool, no tensor read)
        perm=lambda: None if layer.perm_is_identity else layer.perm,
        config_for=_config_for(layer),
        section=section,  # compressions timed as "compress", not inside the GEMM sections
    )
