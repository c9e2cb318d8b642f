"""The GPU check of issue 21, one command (under 8 minutes on one GPU):

    python benchmarks/device_check.py --json device.json

On a machine with an NVIDIA GPU it measures the sandbox's overhead on a ~30-s trial of the
MQAR baseline, bf16 against fp32 step time at a GPU-sized setting, step and compile time
with torch.compile, trials per hour with 1, 2, 4 and 8 trials sharing the GPU, and runs the
red team under the strict sandbox with the GPU in every trial. Without a GPU each part says
why it did not run (`--smoke` runs them on the CPU at toy sizes, to check the script
itself). See docs/performance.md for the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from archlab.benchmarks.device import PARTS, device_check


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--smoke", action="store_true", help="toy sizes on the CPU")
    parser.add_argument(
        "--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}"
    )
    args = parser.parse_args()
    parts = tuple(args.parts.split(","))
    if not set(parts) <= set(PARTS):
        parser.error(f"--parts takes {', '.join(PARTS)}")

    def write(result: dict[str, Any]) -> None:  # after each part, to keep what was measured
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")

    result = device_check(smoke=args.smoke, parts=parts, done=write)
    print(json.dumps(result, indent=2))
    failed = [name for name, part in result.items() if isinstance(part, dict) and "error" in part]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
