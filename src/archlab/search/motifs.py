"""Published improvements of sequence models, as edits of a genome: what a researcher tries
on the best architecture so far before random edits. Random edits seldom make them: a
short convolution added before attention is one edit in hundreds of the baseline's, yet
on the default MQAR it scores 5-8x the baseline (docs/llm-brains.md)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from archlab.search.genome import HEADED_MIXERS, Block, Genome
from archlab.search.space import changed

#: an edit: the edited genome and what changed, or None where it does not apply
Edit = Callable[[Genome], tuple[Genome, str] | None]


@dataclass(frozen=True)
class Motif:
    edit: Edit
    #: why it may help, with where it was found
    why: str


def conv_before_attention(genome: Genome) -> tuple[Genome, str] | None:
    """A short causal convolution, with no MLP after it, added before the first attention
    block that does not already follow one."""
    blocks = genome.blocks
    for i, block in enumerate(blocks):
        if block.mixer in HEADED_MIXERS and (i == 0 or blocks[i - 1].mixer != "causal_conv"):
            conv = Block(mixer="causal_conv", channel="none")
            child = changed(genome, blocks=(*blocks[:i], conv, *blocks[i:]))
            return child, f"add block {i + 1} {conv.describe()} before attention"
    return None


def gated_mlps(genome: Genome) -> tuple[Genome, str] | None:
    """Every plain MLP made a gated one."""
    if not any(b.channel == "mlp" for b in genome.blocks):
        return None
    blocks = tuple(
        Block(mixer=b.mixer, channel="gated_mlp" if b.channel == "mlp" else b.channel)
        for b in genome.blocks
    )
    return changed(genome, blocks=blocks), "every mlp channel -> gated_mlp"


#: tried in this order on the best candidate, each once
MOTIFS: tuple[Motif, ...] = (
    Motif(
        conv_before_attention,
        "a short causal convolution before attention hands each position its neighbours' "
        "tokens, so one attention layer can match a key and read what follows it (H3, "
        "Hyena and Based on associative recall; Primer's depthwise convolutions, found by "
        "architecture search on language modelling)",
    ),
    Motif(
        gated_mlps,
        "gated MLPs beat plain ones at equal parameters in transformer language models "
        "(SwiGLU: Shazeer 2020; PaLM and LLaMA use them)",
    ),
)
