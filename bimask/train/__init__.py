"""End-to-end sparse training: ``python -m bimask.train --help``."""

from bimask.train.config import TrainConfig
from bimask.train.loop import train

__all__ = ["TrainConfig", "train"]
