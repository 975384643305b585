"""Kept for old commands: runs `python -m semcache.bench scale` with the same flags.

    python -m benchmarks.cache_bench [--entries 100000] [--lookups 2000] [--vectors wordnet|random]

``--json PATH`` becomes ``--out`` PATH's folder (the report is named scale-VECTORS-SIZE.json there).
"""

from __future__ import annotations

import sys
from pathlib import Path

from semcache.bench.cli import main as bench


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--json" in args:
        i = args.index("--json")
        args[i:i + 2] = ["--out", str(Path(args[i + 1]).parent)]
    if "--entries" not in args:
        args += ["--entries", "100000"]
    return bench(["scale", *args])


if __name__ == "__main__":
    sys.exit(main())
