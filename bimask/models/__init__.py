"""Small models for 28x28 inputs; every width is a multiple of 16 so all patterns up to 1:16 fit."""

from __future__ import annotations

import functools

from torch import nn

from bimask.models.cnn import ResNetSmall
from bimask.models.mlp import MLP
from bimask.models.vit import TinyViT

# cnn_small: the ResNet at half width (16, 32, 64), about 2x faster on a CPU; it is the model of
# bimask.compare's standard profile (full Fashion-MNIST within 2 hours on 2 cores)
MODELS = {
    "cnn": ResNetSmall,
    "cnn_small": functools.partial(ResNetSmall, widths=(16, 32, 64)),
    "mlp": MLP,
    "vit": TinyViT,
}
DEFAULT_OPTIMIZER = {"cnn": "sgd", "cnn_small": "sgd", "mlp": "sgd", "vit": "adamw"}


def build_model(name: str, num_classes: int = 10) -> nn.Module:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    return MODELS[name](num_classes)
