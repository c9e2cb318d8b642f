"""Trivial MQAR candidate: token embedding plus two short causal depthwise convolutions.

It sees only the last few tokens, so it cannot look a key up from the context."""

import torch
from torch import nn


class ConvBlock(nn.Module):
    def __init__(self, d_model: int, kernel: int) -> None:
        super().__init__()
        self.kernel = kernel
        self.norm = nn.LayerNorm(d_model)
        self.conv = nn.Conv1d(d_model, d_model, kernel, groups=d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x).transpose(1, 2)
        h = nn.functional.pad(h, (self.kernel - 1, 0))  # left pad only: strictly causal
        x = x + self.conv(h).transpose(1, 2)
        return x + self.mlp(x)


class ConvNet(nn.Module):
    def __init__(self, vocab_size: int, d_model: int = 64, kernel: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.blocks = nn.ModuleList(ConvBlock(d_model, kernel) for _ in range(2))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def build_model(spec) -> nn.Module:  # spec: the task's spec object
    return ConvNet(spec.vocab_size)
