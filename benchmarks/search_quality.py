"""Run `archlab bench`'s search-quality measurement alone, one search seed at a time,
printing each seed's curves as it finishes (a full run takes most of an hour on a loaded
machine) and the summary `archlab bench` would report at the end, as JSON.

    .venv/bin/python benchmarks/search_quality.py [--quick] > search.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from archlab.benchmarks.search import SEARCH_BUDGETS, search_curves, search_summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    per_seed = []
    started = time.monotonic()
    for seed in range(SEARCH_BUDGETS[args.quick][0]):
        per_seed.append(search_curves(args.quick, seed))
        elapsed = time.monotonic() - started
        print(f"seed {seed} done at {elapsed:.0f} s: {json.dumps(per_seed[-1])}", file=sys.stderr)
    summary = search_summary(args.quick, per_seed)
    summary["search_wall_s"] = round(time.monotonic() - started)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
