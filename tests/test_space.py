"""The genome space and its cost limits come from the task's shape and the hardware."""

from __future__ import annotations

import json
import random
from pathlib import Path

from typer.testing import CliRunner

from archlab.cli import app
from archlab.search import operators
from archlab.search.genome import Block, Genome
from archlab.search.space import REFERENCE, SearchSpace
from archlab.tasks.mqar import MQAR


def _draws(space: SearchSpace, n: int = 200) -> list[Genome]:
    rng = random.Random(0)
    return [operators.random_genome(rng, 50, space) for _ in range(n)]


def test_the_reference_shape_on_a_cpu_is_the_measured_space() -> None:
    assert SearchSpace.for_task(MQAR(vocab_size=256, seq_len=128)) == REFERENCE


def test_a_bigger_vocabulary_keeps_every_draw_within_the_tasks_parameter_limit() -> None:
    """At vocab 8192 the embeddings of a width-128 model alone pass MQAR's 2M parameters:
    the reference space, blind to the vocabulary, draws genomes the trial would refuse;
    the task's space narrows them."""
    task = MQAR(vocab_size=8192, seq_len=128)
    space = SearchSpace.for_task(task)
    assert space.max_params == task.max_params
    assert any(space.params(g) > task.max_params for g in _draws(REFERENCE))
    assert all(space.params(g) <= task.max_params for g in _draws(space))


def test_a_smaller_shape_keeps_the_parameters_besides_the_embeddings() -> None:
    """At the widest width, what is left of the budget besides the embeddings and head is
    the same at vocab 64, length 32 as at the reference shape."""
    space = SearchSpace.for_task(MQAR(vocab_size=64, seq_len=32))
    widest = Genome(d_model=128, blocks=(Block(mixer="softmax_attention", channel="mlp"),))
    left = space.max_params - space.params(widest)
    assert left == REFERENCE.max_params - REFERENCE.params(widest)
    assert space.max_params < REFERENCE.max_params


def test_longer_sequences_make_attention_costlier_relative_to_recurrence() -> None:
    attention = Genome(d_model=64, blocks=(Block(mixer="softmax_attention", channel="mlp"),) * 3)
    recurrent = Genome(d_model=64, blocks=(Block(mixer="gated_recurrence", channel="mlp"),) * 3)
    long = SearchSpace.for_task(MQAR(vocab_size=256, seq_len=1024, num_kv_pairs=8))
    assert long.relative_cost(attention) > REFERENCE.relative_cost(attention)
    assert long.relative_cost(recurrent) < REFERENCE.relative_cost(recurrent)


def test_a_gpu_widens_the_space_and_tasks_json_states_it(tmp_path: Path) -> None:
    gpu = SearchSpace.for_task(MQAR(vocab_size=256, seq_len=128), gpus=1)
    assert gpu.d_models[-1] == 256 and gpu.max_params > REFERENCE.max_params
    assert max(g.d_model for g in _draws(gpu)) > REFERENCE.d_models[-1]
    config = tmp_path / "archlab.toml"
    config.write_text(
        "[executor]\ngpus_per_trial = 1\n[tasks.mqar]\nvocab_size = 256\nseq_len = 128\n"
    )
    result = CliRunner().invoke(app, ["--config", str(config), "tasks", "--json"])
    assert result.exit_code == 0, result.output
    (mqar,) = (t for t in json.loads(result.output) if t["name"] == "mqar")
    assert mqar["search_space"] == gpu.describe()
    assert mqar["search_space"]["d_models"][-1] == 256
