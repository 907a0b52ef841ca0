from torch import nn


class MLP(nn.Sequential):
    """784 -> 256 -> 256 -> classes."""

    def __init__(self, num_classes: int = 10, width: int = 256):
        super().__init__(
            nn.Flatten(),
            nn.Linear(28 * 28, width),
            nn.ReLU(),
            nn.Linear(width, width),
            nn.ReLU(),
            nn.Linear(width, num_classes),
        )
