"""Small models for 28x28 inputs; every width is a multiple of 16 so all patterns up to 1:16 fit."""

from __future__ import annotations

from torch import nn

from bimask.models.cnn import ResNetSmall
from bimask.models.mlp import MLP
from bimask.models.vit import TinyViT

MODELS = {"cnn": ResNetSmall, "mlp": MLP, "vit": TinyViT}
DEFAULT_OPTIMIZER = {"cnn": "sgd", "mlp": "sgd", "vit": "adamw"}


def build_model(name: str, num_classes: int = 10) -> nn.Module:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    return MODELS[name](num_classes)
