"""`archlab export CANDIDATE -o DIR`: a candidate with what it learnt, ready to use outside
archlab. DIR gets `model.py` (the module, importing only torch: `standalone`),
`weights.safetensors` (its kept weights, checked against the memory's record), `load.py`
(builds the module with the task's spec and loads the weights; runnable as it is) and a
`README.md` saying what they are."""

from __future__ import annotations

import inspect
import json
import pprint
from pathlib import Path
from typing import Any

from archlab.errors import ArchlabError
from archlab.memory import weights as kept_weights
from archlab.memory.store import Memory
from archlab.records import plan_title
from archlab.report import standalone
from archlab.sandbox.harness import Spec

#: what an export writes into its directory
BUNDLE_FILES = ("model.py", "weights.safetensors", "load.py", "README.md")

_LOAD_PY = '''"""Build archlab candidate @CID@ and load its trained weights.

    python load.py        # builds it, loads the weights, runs it once on random tokens

It needs torch and safetensors (pip install torch safetensors). From your own code:

    from load import load_model
    model = load_model()  # in eval mode; load_model("cuda") puts it on a GPU
    logits = model(tokens)  # tokens: a LongTensor (batch, @SEQ_LEN@) of ids below @VOCAB@
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import torch
from safetensors.torch import load_model as load_weights

HERE = Path(__file__).resolve().parent
#: what build_model(spec) saw when it was trained (task @TASK@)
SPEC = @SPEC@


@SPEC_CLASS@


def load_model(device: str = "cpu") -> torch.nn.Module:
    found = importlib.util.spec_from_file_location("archlab_candidate", HERE / "model.py")
    assert found is not None and found.loader is not None
    module = importlib.util.module_from_spec(found)
    found.loader.exec_module(module)
    model = module.build_model(Spec(**SPEC))
    # strict: every tensor of the module comes from the file, and the file has no other
    load_weights(model, HERE / "weights.safetensors")
    return model.to(device).eval()


if __name__ == "__main__":
    model = load_model()
    tokens = torch.randint(0, SPEC["vocab_size"], (2, SPEC["seq_len"]))
    with torch.no_grad():
        logits = model(tokens)
    finite = bool(torch.isfinite(logits).all())
    print(f"logits of shape {tuple(logits.shape)}, all finite: {finite}")
'''


def load_example(candidate: dict[str, Any], spec: dict[str, Any]) -> str:
    """load.py for the candidate, its spec written in as a Python literal."""
    fields = {
        "@CID@": candidate["candidate_id"],
        "@TASK@": candidate["task"],
        "@SEQ_LEN@": str(spec.get("seq_len")),
        "@VOCAB@": str(spec.get("vocab_size")),
        "@SPEC@": pprint.pformat(spec, sort_dicts=True),
        "@SPEC_CLASS@": inspect.getsource(Spec).rstrip(),  # as the harness gives it
    }
    text = _LOAD_PY
    for key, value in fields.items():
        text = text.replace(key, value)
    return text


def _readme(candidate: dict[str, Any], run: dict[str, Any], record: dict[str, Any]) -> str:
    cid = candidate["candidate_id"]
    score = "-" if candidate["score"] is None else f"{candidate['score']:.4f}"
    seeds = (candidate["seeds"] or {}).get("n", 1)
    params = f"{candidate['n_params']:,}" if candidate["n_params"] else "-"
    return (
        f"# archlab candidate {cid}\n\n"
        f"Task `{candidate['task']}` (fingerprint `{candidate['task_fingerprint']}`), run "
        f"`{run['run_id']}`: {candidate['status']}, score {score} over {seeds} seed(s), "
        f"{params} parameters.\n\n"
        f"Plan: {plan_title(candidate['plan'] or {}) or '-'}\n\n"
        "- `model.py`: the module; `build_model(spec)` returns the model. It imports only "
        "torch.\n"
        f"- `weights.safetensors`: its trained weights, from trial `{record['trial_id']}` "
        f"({record['bytes']:,} bytes, sha256 `{record['sha256']}`). Safetensors holds "
        "tensors and a JSON header, nothing that runs.\n"
        "- `load.py`: builds the module with the task's spec and loads the weights. "
        "`python load.py` runs it once; `from load import load_model` gives you the model.\n\n"
        "The spec `build_model` saw:\n\n"
        f"```json\n{json.dumps(record['spec'], indent=2, sort_keys=True)}\n```\n\n"
        "Inputs are token ids, a LongTensor of shape (batch, seq_len); the outputs are "
        "logits.\n"
    )


def why_no_weights(memory: Memory, candidate: dict[str, Any]) -> str:
    """Why a candidate has no kept weights, in words."""
    cid = candidate["candidate_id"]
    if candidate["status"] == "duplicate" and candidate["duplicate_of"]:
        return f"candidate {cid} repeats {candidate['duplicate_of']}: export that one"
    for trial in memory.trials(cid):
        if trial["stage"] == "proxy" and (trial["message"] or "").startswith("weights not"):
            return f"candidate {cid} has no weights: its proxy trial's {trial['message']}"
    return (
        f"candidate {cid} has no kept weights: only candidates promoted to the confirm "
        f"stage keep theirs (it is {candidate['status']}); `-o FILE.py` writes its module alone"
    )


def _target(out_dir: Path, force: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ArchlabError(f"{out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise ArchlabError(
            f"{out_dir} is not empty: name a new or empty directory, or add --force to "
            f"overwrite {', '.join(BUNDLE_FILES)} in it"
        )


def export_bundle(memory: Memory, candidate_id: str, out_dir: Path, force: bool = False) -> str:
    """Write the candidate's module, weights, load.py and README into `out_dir` (new or
    empty, or with `force` any directory, whose other files are left alone); return the
    candidate's full id. Nothing is written unless everything can be."""
    candidate = memory.get_candidate(candidate_id)
    record = kept_weights.weights_of(memory, candidate["candidate_id"])
    if record is None:
        raise ArchlabError(why_no_weights(memory, candidate))
    run = memory.get_run(candidate["run_id"])
    module = standalone(candidate, run)  # refuses code that needs more than torch
    data = kept_weights.stored_bytes(memory, record)
    _target(out_dir, force)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "model.py").write_text(module)
    (out_dir / "weights.safetensors").write_bytes(data)
    (out_dir / "load.py").write_text(load_example(candidate, record["spec"]))
    (out_dir / "README.md").write_text(_readme(candidate, run, record))
    return str(candidate["candidate_id"])
