"""Published improvements of sequence models, as edits of a genome: what a researcher tries
on the best architecture so far before random edits. Random edits seldom make them: a
short convolution added before attention is one edit in hundreds of the baseline's, yet
on the default MQAR it scores 5-8x the baseline (docs/llm-brains.md); and once a few
candidates are scored a random width change moves at most 32 channels at the same MLP
ratio, where the widest model the budget allows is often the best of a proxy's fixed
steps."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from archlab.search.genome import HEADED_MIXERS, Block, Genome
from archlab.search.operators import with_width
from archlab.search.space import SearchSpace, changed

#: an edit within a search space: the edited genome and what changed, or None where it
#: does not apply
Edit = Callable[[Genome, SearchSpace], tuple[Genome, str] | None]


@dataclass(frozen=True)
class Motif:
    edit: Edit
    #: why it may help, with where it was found
    why: str


def conv_before_attention(genome: Genome, space: SearchSpace) -> tuple[Genome, str] | None:
    """A short causal convolution, with no MLP after it, added before the first attention
    block that does not already follow one."""
    blocks = genome.blocks
    for i, block in enumerate(blocks):
        if block.mixer in HEADED_MIXERS and (i == 0 or blocks[i - 1].mixer != "causal_conv"):
            conv = Block(mixer="causal_conv", channel="none")
            child = changed(genome, blocks=(*blocks[:i], conv, *blocks[i:]))
            return child, f"add block {i + 1} {conv.describe()} before attention"
    return None


def gated_mlps(genome: Genome, space: SearchSpace) -> tuple[Genome, str] | None:
    """Every plain MLP made a gated one."""
    if not any(b.channel == "mlp" for b in genome.blocks):
        return None
    blocks = tuple(
        Block(mixer=b.mixer, channel="gated_mlp" if b.channel == "mlp" else b.channel)
        for b in genome.blocks
    )
    return changed(genome, blocks=blocks), "every mlp channel -> gated_mlp"


def widest(genome: Genome, space: SearchSpace) -> tuple[Genome, str] | None:
    """The widest residual stream of the space that keeps the genome within its budget,
    at a lower MLP ratio where that is what fits (heads kept where the width allows
    them); None if none is wider than the genome's."""
    for d in sorted(space.d_models, reverse=True):
        if d <= genome.d_model:
            return None
        wide, change = with_width(genome, d)
        ratios = range(genome.mlp_ratio, 0, -1) if genome.uses_mlp_ratio else (genome.mlp_ratio,)
        for ratio in ratios:
            child = changed(wide, mlp_ratio=ratio)
            if space.within_budget(child):
                if ratio != genome.mlp_ratio:
                    change += f", mlp_ratio {genome.mlp_ratio} -> {ratio}"
                return child, change
    return None


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
    Motif(
        widest,
        "at a fixed number of training steps a bigger model reaches a lower loss (larger "
        "models are more sample-efficient, and their shape matters little: Kaplan et al. "
        "2020), and a proxy trial trains every candidate for the same steps; a wider "
        "residual stream feeds every layer, a wider MLP only its own",
    ),
)
