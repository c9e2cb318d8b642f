"""Trivial MQAR candidate: an embedding and an MLP applied to each token on its own."""

from torch import nn


def build_model(spec) -> nn.Module:  # spec: the task's spec object
    d_model = 64
    return nn.Sequential(
        nn.Embedding(spec.vocab_size, d_model),
        nn.Linear(d_model, 4 * d_model),
        nn.GELU(),
        nn.Linear(4 * d_model, d_model),
        nn.LayerNorm(d_model),
        nn.Linear(d_model, spec.vocab_size),
    )
