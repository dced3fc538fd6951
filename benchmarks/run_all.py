"""``make bench``: run every ``bench_*.py`` beside this file; each writes its JSON into --out."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--only", nargs="*", help="benchmark names to run (default: all)")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    names = sorted(p.stem for p in HERE.glob("bench_*.py"))
    for name in names:
        if args.only and name not in args.only:
            continue
        print(f"== {name}", flush=True)
        path = importlib.import_module(name).run(args.out)
        print(f"   wrote {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
