"""Trained weights as they come back from a trial, seen from the trusted side.

The harness writes them into the trial directory as safetensors when the trial asks; the
candidate shares its process, so the file may be anything. It is read like the result:
never through a link, regular files only, size-capped. The safetensors library parses it
(an 8-byte length, a JSON header, raw bytes: nothing in it can run), every tensor is
checked (known dtype, a shape that matches its bytes), and trusted code writes the
tensors out again in canonical form, without the file's own metadata. Nothing is ever
unpickled or torch.load-ed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from archlab.sandbox.harness import WEIGHTS_FILE
from archlab.sandbox.process import UnsafeOutput, read_output

__all__ = ["WEIGHTS_FILE", "WeightsError", "canonical", "read_weights", "weights_cap"]

#: the bytes a parameter may take (float64 at most), and room for buffers and the header
BYTES_PER_PARAM = 8
HEADROOM_BYTES = 16 * 2**20
MAX_TENSORS = 100_000
MAX_NAME = 1000
#: the dtypes torch modules hold, by safetensors name, and their sizes in bytes
DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2,
    "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
}  # fmt: skip


class WeightsError(ValueError):
    """The weights file is missing, oversized, not a plain file, or not valid safetensors."""


def weights_cap(max_params: int) -> int:
    """The largest weights file a task's candidates may send back: every parameter the
    task allows in float64, plus headroom for buffers and the header."""
    return BYTES_PER_PARAM * max_params + HEADROOM_BYTES


def read_weights(trial_dir: Path, cap: int) -> bytes:
    """The trial's weights file, checked and rewritten in canonical form (`canonical`)."""
    try:
        return canonical(read_output(trial_dir / WEIGHTS_FILE, cap, "weights file"))
    except UnsafeOutput as e:
        raise WeightsError(str(e)) from None


def canonical(raw: bytes) -> bytes:
    """`raw` parsed as safetensors and checked, then written again by this code: tensors
    in name order, contiguous, the header padded to 8 bytes, metadata only `format: pt`."""
    if len(raw) < 8:
        raise WeightsError("the weights file is too short to be safetensors")
    header_len = int.from_bytes(raw[:8], "little")
    if header_len > len(raw) - 8:  # a pickle or a zip (torch.save) lands here
        raise WeightsError("the weights file is not safetensors (its header overruns it)")
    import safetensors  # the orchestrator pays its import only where weights come back

    try:
        tensors = safetensors.deserialize(raw)
    except Exception as e:  # whatever the parser says of hostile bytes: not kept
        raise WeightsError(f"the weights file is not valid safetensors: {e}") from None
    if not tensors:
        raise WeightsError("the weights file holds no tensors")
    if len(tensors) > MAX_TENSORS:
        raise WeightsError(f"the weights file holds {len(tensors):,} tensors")
    checked = []
    for name, tensor in tensors:
        dtype, shape, data = tensor.get("dtype"), tensor.get("shape"), tensor.get("data")
        if not isinstance(name, str) or not name or len(name) > MAX_NAME:
            raise WeightsError("a tensor in the weights file has an unusable name")
        if dtype not in DTYPE_BYTES:
            raise WeightsError(f"tensor {name[:80]!r} has dtype {dtype!r}, not one a module holds")
        if not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
            raise WeightsError(f"tensor {name[:80]!r} has a malformed shape")
        if data is None or len(data) != math.prod(shape) * DTYPE_BYTES[dtype]:
            raise WeightsError(f"tensor {name[:80]!r}: its bytes do not match its shape")
        checked.append((name, dtype, shape, bytes(data)))
    return serialize(checked)


def serialize(tensors: list[tuple[str, str, list[int], bytes]]) -> bytes:
    """Safetensors bytes of (name, dtype, shape, data) tensors, in name order."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    ordered = sorted(tensors)
    for name, dtype, shape, data in ordered:
        end = offset + len(data)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, end]}
        offset = end
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # the tensors' bytes start aligned
    return b"".join([len(blob).to_bytes(8, "little"), blob, *(t[3] for t in ordered)])
