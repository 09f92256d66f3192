"""The architecture of the bundled default teacher: a small BatchNorm CNN for 28x28 digits."""
from __future__ import annotations

from torch import nn

ARCHITECTURE = "digit_cnn"


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int) -> list[nn.Module]:
    # No conv bias: the BatchNorm right after it has its own shift.
    return [
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class DigitCNN(nn.Module):
    """Four conv-BN-ReLU blocks (28 -> 14 -> 7 by stride), global average pool, linear head.

    Small on purpose (61k parameters, 3.7 MMACs per image): synthesis runs thousands of
    forward/backward passes through the teacher on a CPU. Global pooling lets it accept any input
    size, but it was trained on 28x28.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_conv_bn_relu(in_channels, width, stride=1),
            *_conv_bn_relu(width, 2 * width, stride=2),
            *_conv_bn_relu(2 * width, 4 * width, stride=2),
            *_conv_bn_relu(4 * width, 4 * width, stride=1),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4 * width, num_classes)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))
