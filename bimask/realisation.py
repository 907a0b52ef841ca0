"""How a Bi-Mask layer's backward permutation pi is realised (``perm_realisation``), by name.

The backward mask groups W's rows by pi, so the input-gradient GEMM needs its K axis (dY's
columns) in pi order:

- ``gather`` (the default, the paper's method): pi is searched in the forward every
  ``perm_every`` steps and a backend gathers dY (in its kernel, or as a separate op).
- ``physical`` (a *different method*): every ``perm_every`` steps, between optimizer steps,
  pi is searched and W's rows (bias, masks, optimizer state) are reordered by it, together with
  the input columns of the Linear that consumes this layer's output through elementwise ops
  only (Linear -> GELU/ReLU/Dropout... -> Linear). pi is then the identity, so no gather is
  needed. The dense function is unchanged, but the consumer's forward N:M groups run along the
  columns that moved, so its grouping and so its masks change: accuracy is measured by
  ``bimask.compare`` (method ``bimask-physical``), not assumed. See :mod:`bimask.physical`.
"""

from __future__ import annotations

PERM_REALISATIONS: dict[str, str] = {
    "gather": "pi searched in the forward; the backward gathers dY into pi order (the paper's)",
    "physical": (
        "every perm_every steps W's rows and the consuming Linear's input columns are reordered "
        "by pi, so pi is the identity (a different method: the consumer's masks change)"
    ),
}


def check_realisation(layer, name: str, uses_permutation: bool, method: str) -> None:
    """A ValueError when ``layer`` (a sparse layer being set up) cannot use realisation ``name``.

    Only a SparseLinear with the stock forward and a method with a permutation (bimask) can be
    physical; whether its consumer is known is decided on the model (:mod:`bimask.physical`)."""
    if name not in PERM_REALISATIONS:
        raise ValueError(
            f"unknown perm_realisation {name!r}; choose one of {sorted(PERM_REALISATIONS)}"
        )
    if name != "physical":
        return
    kind = type(layer).__name__
    if not uses_permutation:
        raise ValueError(
            f"{kind} with method {method!r} cannot use perm_realisation='physical': it "
            "reorders rows by the Bi-Mask permutation and this method has none; use 'gather'"
        )
    from bimask.layers import SparseLinear  # here: layers.py imports this module

    if not isinstance(layer, SparseLinear):
        raise ValueError(
            f"{kind} cannot use perm_realisation='physical': only Linear layers can be "
            "reordered with their consumer (Linear -> elementwise -> Linear); a convolution's "
            "or attention projection's consumer is not a Linear. Use 'gather'"
        )
