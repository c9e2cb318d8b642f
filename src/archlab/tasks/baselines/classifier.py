"""Baseline: a small convolutional network over the tokens laid out as a square image."""

import math

import torch
from torch import nn


class ConvClassifier(nn.Module):
    def __init__(self, vocab_size: int, seq_len: int, num_classes: int, width: int = 32) -> None:
        super().__init__()
        self.side = math.isqrt(seq_len)
        assert self.side**2 == seq_len, "the tokens must form a square image"
        self.embed = nn.Embedding(vocab_size, 16)
        self.features = nn.Sequential(
            nn.Conv2d(16, width, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.GELU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens).transpose(1, 2)  # (batch, channels, pixels)
        x = x.reshape(x.shape[0], -1, self.side, self.side)
        return self.head(self.features(x))


def build_model(spec) -> nn.Module:
    return ConvClassifier(spec.vocab_size, spec.seq_len, spec.num_classes)
