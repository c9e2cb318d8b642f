"""Tests for archlab.search.genome: validation, keys, and the rendered torch modules."""

from __future__ import annotations

import ast
import importlib.util
import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
import torch
from pydantic import ValidationError

from archlab.search.genome import (
    CHANNELS,
    MIXERS,
    Block,
    Genome,
    baseline_genome,
    count_params,
    render,
)

VOCAB, SEQ = 32, 16
_counter = itertools.count()


def load(source: str, directory: Path) -> ModuleType:
    """Import rendered source from a file, as the sandbox would."""
    name = f"rendered_{next(_counter)}"
    path = directory / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(genome: Genome, directory: Path, vocab: int = VOCAB, seq: int = SEQ) -> torch.nn.Module:
    torch.manual_seed(0)
    model = load(render(genome), directory).build_model(
        SimpleNamespace(vocab_size=vocab, seq_len=seq)
    )
    assert isinstance(model, torch.nn.Module)
    return model


def small_chunks(model: torch.nn.Module, size: int = 5) -> None:
    """Force the multi-chunk (and right-padding) path of linear attention at short lengths."""
    for module in model.modules():
        if type(module).__name__ == "LinearAttention":
            setattr(module, "chunk_size", size)  # noqa: B010 (torch Module attribute typing)


def two_block(mixer: str, channel: str, **kw: object) -> Genome:
    return Genome.model_validate(
        {"d_model": 32, "n_heads": 2, "blocks": [{"mixer": mixer, "channel": channel}] * 2, **kw}
    )


# -- every primitive renders to a working, causal model ----------------------------------------

_COMBOS = [
    (m, c, norm, res)
    for (m, c), (norm, res) in zip(
        itertools.product(MIXERS, CHANNELS),
        itertools.cycle(itertools.product(("layernorm", "rmsnorm"), ("pre_norm", "post_norm"))),
        strict=False,
    )
]


@pytest.mark.parametrize(("mixer", "channel", "norm", "residual"), _COMBOS)
def test_rendered_model_shape_backward_causal(
    mixer: str, channel: str, norm: str, residual: str, tmp_path: Path
) -> None:
    genome = two_block(mixer, channel, norm=norm, residual=residual)
    model = build(genome, tmp_path)
    small_chunks(model)
    gen = torch.Generator().manual_seed(1)
    x = torch.randint(0, VOCAB, (3, SEQ), generator=gen)

    logits = model(x)
    assert logits.shape == (3, SEQ, VOCAB)
    assert torch.isfinite(logits).all()

    logits.float().pow(2).mean().backward()
    params = dict(model.named_parameters())
    assert sum(p.numel() for p in params.values()) == count_params(genome, VOCAB, SEQ)
    for name, p in params.items():
        assert p.grad is not None, f"{name} gets no gradient"
        assert torch.isfinite(p.grad).all(), name

    with torch.no_grad():
        for t in (0, 4, 9, SEQ - 2):
            changed = x.clone()
            changed[:, t + 1 :] = torch.randint(0, VOCAB, (3, SEQ - t - 1), generator=gen)
            assert not torch.equal(changed, x)
            diff = (model(changed)[:, : t + 1] - logits[:, : t + 1]).abs().max().item()
            assert diff <= 1e-5, f"{mixer}: position <= {t} depends on the future ({diff})"
            # ... and the future part does change, so the check is not vacuous
            assert (model(changed)[:, t + 1 :] - logits[:, t + 1 :]).abs().max() > 1e-6


def test_shorter_inputs_allowed_longer_rejected(tmp_path: Path) -> None:
    model = build(baseline_genome(), tmp_path)
    assert model(torch.zeros(2, SEQ // 2, dtype=torch.long)).shape == (2, SEQ // 2, VOCAB)
    with pytest.raises(ValueError, match="exceeds seq_len"):
        model(torch.zeros(1, SEQ + 1, dtype=torch.long))


def test_causal_conv_receptive_field_is_kernel(tmp_path: Path) -> None:
    genome = Genome(d_model=32, blocks=(Block(mixer="causal_conv", channel="none"),), conv_kernel=3)
    model = build(genome, tmp_path)
    x = torch.randint(0, VOCAB, (2, SEQ))
    changed = x.clone()
    changed[:, 5] = (x[:, 5] + 1) % VOCAB
    with torch.no_grad():
        diff = (model(changed) - model(x)).abs().amax(dim=(0, 2))
    assert diff[:5].max() == 0  # before the change
    assert (diff[5:8] > 0).all()  # positions 5, 6, 7 see token 5 through the kernel
    assert diff[8:].max() == 0  # beyond the kernel's reach


def _primitives(tmp_path: Path) -> ModuleType:
    blocks = tuple(Block(mixer=m, channel="gated_mlp") for m in MIXERS)
    return load(render(Genome(d_model=32, n_heads=2, blocks=blocks)), tmp_path)


def test_linear_scan_matches_sequential_recurrence(tmp_path: Path) -> None:
    mod = _primitives(tmp_path)
    torch.manual_seed(0)
    for t in (1, 2, 7, 16, 33):
        a = torch.rand(2, t, 5)
        b = torch.randn(2, t, 5)
        h = torch.zeros(2, 5)
        expected = []
        for i in range(t):
            h = a[:, i] * h + b[:, i]
            expected.append(h)
        assert torch.allclose(mod.linear_scan(a, b), torch.stack(expected, dim=1), atol=1e-5)


def test_linear_attention_chunking_matches_quadratic_reference(tmp_path: Path) -> None:
    mod = _primitives(tmp_path)
    torch.manual_seed(0)
    attn = mod.LinearAttention(32, 2)
    x = torch.randn(2, 13, 32)
    with torch.no_grad():
        full = attn(x)  # one chunk (chunk_size 64 > 13)
        attn.chunk_size = 4  # four chunks, the last one padded
        chunked = attn(x)
        q, k, v = attn.qkv(x).view(2, 13, 3, 2, 16).permute(2, 0, 3, 1, 4)
        q, k = torch.nn.functional.elu(q) + 1, torch.nn.functional.elu(k) + 1
        w = (q @ k.transpose(-1, -2)).tril()
        ref = (w @ v) / w.sum(-1, keepdim=True)
        ref = attn.out_proj(ref.transpose(1, 2).reshape(2, 13, 32))
    assert torch.allclose(full, ref, atol=1e-5)
    assert torch.allclose(chunked, ref, atol=1e-5)


# -- the rendered source ---------------------------------------------------------------------


def test_render_is_deterministic_and_canonical() -> None:
    g = Genome(
        d_model=48,
        n_heads=3,
        blocks=(
            Block(mixer="linear_attention", channel="gated_mlp"),
            Block(mixer="causal_conv", channel="none"),
        ),
        norm="rmsnorm",
        conv_kernel=5,
    )
    src = render(g)
    assert src == render(g)
    assert src == render(Genome.model_validate(json.loads(g.model_dump_json())))
    # conv_kernel is unused without a causal_conv block: same key, byte-identical source
    a = two_block("softmax_attention", "mlp", conv_kernel=3)
    b = two_block("softmax_attention", "mlp", conv_kernel=7)
    assert a != b and a.key() == b.key() and render(a) == render(b)
    # a hyperparameter that is used changes both
    c = two_block("softmax_attention", "mlp", mlp_ratio=2)
    assert c.key() != a.key() and render(c) != render(a)


def test_render_emits_only_used_primitives_and_imports_only_torch() -> None:
    src = render(baseline_genome())
    classes = {n.name for n in ast.parse(src).body if isinstance(n, ast.ClassDef)}
    assert classes == {"CausalSelfAttention", "MLP", "Layer", "LanguageModel"}
    everything = Genome(
        d_model=32,
        n_heads=2,
        blocks=tuple(Block(mixer=m, channel=c) for m, c in zip(MIXERS, CHANNELS * 2, strict=False)),
        norm="rmsnorm",
    )
    tree = ast.parse(render(everything))
    classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    assert classes >= {"LinearAttention", "CausalConv", "GatedRecurrence", "GatedMLP", "RMSNorm"}
    for source in (src, render(everything)):
        imported = set()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                imported.add((node.module or "").split(".")[0])
        assert imported <= {"torch", "math"}
        assert "def build_model(spec)" in source


def _ruff() -> str | None:
    candidate = Path(sys.executable).parent / "ruff"
    return str(candidate) if candidate.exists() else shutil.which("ruff")


@pytest.mark.skipif(_ruff() is None, reason="ruff not installed")
def test_rendered_source_passes_ruff(tmp_path: Path) -> None:
    ruff = _ruff()
    assert ruff is not None
    genomes = [baseline_genome()] + [two_block(m, c, norm=n, residual=r) for m, c, n, r in _COMBOS]
    for i, g in enumerate(genomes):
        (tmp_path / f"m{i}.py").write_text(render(g))
    common = ["--isolated", "--line-length", "100", "--target-version", "py311"]
    check = subprocess.run(
        [ruff, "check", *common, "--select", "E,F,W,I,B,UP,SIM,RUF", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    fmt = subprocess.run(
        [ruff, "format", *common, "--check", str(tmp_path)], capture_output=True, text=True
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


# -- the genome model ------------------------------------------------------------------------


def test_baseline_is_the_small_transformer() -> None:
    g = baseline_genome()
    assert (g.d_model, g.n_heads, g.norm, g.residual) == (64, 1, "layernorm", "pre_norm")
    assert g.blocks == (Block(mixer="softmax_attention", channel="mlp"),) * 2
    assert g.describe() == "d64 h1 ln pre mlp4 [softmax_attention+mlp, softmax_attention+mlp]"


def test_describe_mentions_only_used_hyperparameters() -> None:
    g = Genome(
        d_model=64,
        blocks=(
            Block(mixer="softmax_attention", channel="gated_mlp"),
            Block(mixer="causal_conv", channel="mlp"),
        ),
        norm="rmsnorm",
        mlp_ratio=3,
        conv_kernel=5,
    )
    expected = "d64 h1 rms pre mlp3 k5 [softmax_attention+gated_mlp, causal_conv+mlp]"
    assert g.describe() == expected
    bare = Genome(d_model=32, n_heads=2, blocks=(Block(mixer="causal_conv", channel="none"),))
    assert bare.describe() == "d32 h1 ln pre k4 [causal_conv+none]"


def test_json_round_trip_and_key() -> None:
    g = Genome(
        d_model=96,
        n_heads=6,
        blocks=(
            Block(mixer="gated_recurrence", channel="mlp"),
            Block(mixer="softmax_attention", channel="gated_mlp"),
        ),
        norm="rmsnorm",
        residual="post_norm",
        mlp_ratio=2,
    )
    data = json.loads(json.dumps(g.model_dump(mode="json")))
    assert isinstance(data["blocks"], list)
    back = Genome.model_validate(data)
    assert back == g and back.key() == g.key()
    assert Genome.model_validate_json(g.model_dump_json()) == g
    key = json.loads(g.key())
    assert list(key) == sorted(key) and key["d_model"] == 96 and key["n_heads"] == 6
    assert " " not in g.key()


_VALID: dict[str, object] = {
    "d_model": 64,
    "n_heads": 2,
    "blocks": [{"mixer": "softmax_attention", "channel": "mlp"}],
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"n_heads": 3}, "does not divide"),
        ({"blocks": []}, "at least 1"),
        ({"blocks": [{"mixer": "mamba", "channel": "mlp"}]}, "softmax_attention"),
        ({"blocks": [{"mixer": "causal_conv", "channel": "moe"}]}, "gated_mlp"),
        ({"blocks": [{"mixer": "causal_conv"}]}, "channel"),
        ({"blocks": [{"mixer": "causal_conv", "channel": "mlp", "x": 1}]}, "Extra inputs"),
        ({"blocks": [{"mixer": "causal_conv", "channel": "mlp"}] * 7}, "at most 6"),
        ({"d_model": 72}, "multiple of 16"),
        ({"d_model": 16, "n_heads": 1}, "greater than or equal to 32"),
        ({"d_model": 272, "n_heads": 1}, "less than or equal to 256"),
        ({"n_heads": 0}, "greater than or equal to 1"),
        ({"d_model": 256, "n_heads": 16}, "less than or equal to 8"),
        ({"mlp_ratio": 5}, "less than or equal to 4"),
        ({"conv_kernel": 1}, "greater than or equal to 2"),
        ({"conv_kernel": 9}, "less than or equal to 8"),
        ({"norm": "batchnorm"}, "layernorm"),
        ({"residual": "sandwich"}, "pre_norm"),
        ({"d_model": "64"}, "valid integer"),
        ({"d_model": 64.0}, "valid integer"),
        ({"n_heads": True}, "valid integer"),
        ({"dropout": 0.1}, "Extra inputs"),
    ],
)
def test_validation_rejects(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Genome.model_validate({**_VALID, **change})


def test_genome_is_frozen_and_hashable() -> None:
    g = Genome.model_validate(_VALID)
    with pytest.raises(ValidationError):
        g.d_model = 32
    assert len({g, Genome.model_validate(_VALID)}) == 1


def test_count_params_matches_built_model(tmp_path: Path) -> None:
    g = Genome(
        d_model=80,
        n_heads=5,
        blocks=tuple(Block(mixer=m, channel=c) for m, c in zip(MIXERS, CHANNELS * 2, strict=False)),
        mlp_ratio=3,
        conv_kernel=6,
    )
    model = build(g, tmp_path, vocab=256, seq=128)
    assert sum(p.numel() for p in model.parameters()) == count_params(g, 256, 128)


def test_rendered_model_classifies_when_the_spec_has_classes(tmp_path: Path) -> None:
    module = load(render(baseline_genome()), tmp_path)
    model = module.build_model(SimpleNamespace(vocab_size=17, seq_len=64, num_classes=10))
    logits = model(torch.randint(0, 17, (3, 64)))
    assert logits.shape == (3, 10)
    logits.sum().backward()
