"""A minimal hand-written candidate for the token tasks (mqar, the MAD suite, charlm):

    archlab eval examples/candidate.py --task mqar

archlab calls `build_model(spec)` and trains the module it returns with the task's fixed
recipe. `spec` is the task's model contract: `spec.vocab_size` and `spec.seq_len`
(`spec["vocab_size"]` reads the same). The model maps token ids, a LongTensor of shape
(batch, seq_len), to logits of shape (batch, seq_len, vocab_size), and must be causal: the
logits at a position may depend on that token and the ones before it, never on later ones
(archlab checks). Here: one layer of causal self-attention.
"""

import torch
from torch import nn


class Model(nn.Module):
    def __init__(self, vocab_size: int, seq_len: int, width: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, width)
        self.position = nn.Embedding(seq_len, width)
        self.attention = nn.MultiheadAttention(width, num_heads=1, batch_first=True)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        x = self.embed(tokens) + self.position(torch.arange(length, device=tokens.device))
        # True above the diagonal: no position attends to a later one
        future = torch.ones(length, length, dtype=torch.bool, device=tokens.device).triu(1)
        mixed, _ = self.attention(x, x, x, attn_mask=future, need_weights=False)
        return self.head(self.norm(x + mixed))


def build_model(spec):
    return Model(spec.vocab_size, spec["seq_len"])
