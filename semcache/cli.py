"""The cache from a terminal, for people and scripts.

    COMMAND get "TOPIC" [--threshold T] [--json] [--out FILE.png]
    COMMAND stats [--json]
    COMMAND threshold [T]                     (of the embedding space in use)
    COMMAND entries [--limit N] [--json]
    COMMAND delete "PHRASE"
    COMMAND wrong "QUERY" "SERVED PHRASE"
    COMMAND reembed --model NAME [--pairs FILE] [--max-false-hits 0.01] [--apply [--accept-thin]] [--json]

`main` is handed how a cache and an embedder are built, so an application runs these commands
on its own wiring (``prog`` names its command); `python -m semcache` builds them from flags
(`semcache.__main__`). Nothing here reads the environment.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Sequence

from semcache.admin import CacheAdmin
from semcache.cache import SemanticCache
from semcache.errors import SemcacheError
from semcache.interfaces import Embedder

CacheFactory = Callable[[], SemanticCache]
EmbedderFactory = Callable[[str], Embedder]


def add_commands(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The commands, added to ``parser`` (which may carry options of its own)."""
    commands = parser.add_subparsers(dest="command", required=True)

    get = commands.add_parser("get", help="the image for a topic: cached, or generated")
    get.add_argument("topic")
    get.add_argument("--threshold", type=float, help="cosine distance for this lookup only (0 to 2)")
    get.add_argument("--json", action="store_true", help="print one JSON object")
    get.add_argument("--out", type=Path, help="write the image to this PNG file")

    stats = commands.add_parser("stats", help="lookups, hits, generations, money spent and saved")
    stats.add_argument("--json", action="store_true")

    threshold = commands.add_parser("threshold", help="show, or set for every process, the threshold of the "
                                                      "embedding space in use")
    threshold.add_argument("value", nargs="?", type=float, help="new cosine distance (0 to 2)")

    entries = commands.add_parser("entries", help="list cached phrases")
    entries.add_argument("--limit", type=int, default=50)
    entries.add_argument("--json", action="store_true")

    delete = commands.add_parser("delete", help="delete a cached phrase and its image")
    delete.add_argument("phrase")

    wrong = commands.add_parser("wrong", help="never serve QUERY from the entry SERVED again")
    wrong.add_argument("query")
    wrong.add_argument("served")

    reembed = commands.add_parser("reembed", help="embed every cached phrase with another model")
    reembed.add_argument("--model", required=True, help='"local" or an OpenAI embedding model name')
    reembed.add_argument("--pairs", type=Path, help="judged pairs (text_a<TAB>text_b<TAB>label) to propose the new "
                                                    "space's threshold from; default: the recorded verdicts")
    reembed.add_argument("--max-false-hits", type=float, default=0.01, metavar="RATE",
                         help="largest share of wrong pictures the proposal accepts (default 0.01)")
    reembed.add_argument("--apply", action="store_true", help="store the proposed threshold for the new space")
    reembed.add_argument("--accept-thin", action="store_true",
                         help="with --apply: apply it even on fewer than 30 negatives")
    reembed.add_argument("--json", action="store_true")
    return parser


def main(argv: Sequence[str] | None, build_cache: CacheFactory, build_embedder: EmbedderFactory, *,
         prog: str = "python -m semcache") -> int:
    parser = add_commands(argparse.ArgumentParser(prog=prog, description="The semantic image cache."))
    return run(parser.parse_args(argv), build_cache, build_embedder)


def run(args: argparse.Namespace, build_cache: CacheFactory, build_embedder: EmbedderFactory) -> int:
    """Run the parsed command; a `SemcacheError` is printed as one line and exits with 1."""
    try:
        return _run(args, build_cache, build_embedder)
    except SemcacheError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, build_cache: CacheFactory, build_embedder: EmbedderFactory) -> int:
    cache = build_cache()
    admin = CacheAdmin(cache)
    if args.command == "get":
        result = cache.get(args.topic, threshold=args.threshold)
        if args.out:
            args.out.write_bytes(result.image or b"")
        fields = {k: v for k, v in asdict(result).items() if k not in ("image", "timings")}
        fields["timings"] = asdict(result.timings)
        if args.json:
            print(json.dumps(fields))
        else:
            distance = "" if result.distance is None else f" (distance {result.distance:.3f})"
            money = (f"spent ${result.cost_spent_usd:.2f}" if result.kind == "generated"
                     else f"saved ${result.cost_saved_usd:.2f}")
            steps = ", ".join(f"{name[:-3]} {ms:.1f} ms" for name, ms in fields["timings"].items()
                              if ms is not None)
            print(f"{result.kind}: served by {result.served_key!r}{distance}, {money}")
            print(f"image {result.blob_key} ({result.detail})")
            print(f"threshold {result.threshold:.3f}; {steps}")
        return 0
    if args.command == "stats":
        stats = admin.stats()
        if args.json:
            print(json.dumps({**asdict(stats), "hit_rate": stats.hit_rate}))
        else:
            print(f"entries {stats.entries}, lookups {stats.lookups}: exact {stats.exact_hits}, "
                  f"semantic {stats.semantic_hits}, generated {stats.generations}, errors {stats.errors}")
            print(f"hit rate {stats.hit_rate:.1%}; spent ${stats.spent_usd:.2f}, saved ${stats.saved_usd:.2f}")
            print(f"embedder {stats.embedding_model} ({stats.dimensions} dims), threshold {stats.threshold:.3f}")
        return 0
    if args.command == "threshold":
        value = cache.threshold if args.value is None else cache.set_threshold(args.value, actor="cli")
        print(f"{value:.4f}")
        print(f"for {cache.embedder.model} ({cache.embedder.dimensions} dims)", file=sys.stderr)
        return 0
    if args.command == "entries":
        rows = admin.entries(limit=args.limit)
        if args.json:
            print(json.dumps([{**asdict(e), "created_at": e.created_at.isoformat(),
                               "last_served_at": e.last_served_at and e.last_served_at.isoformat()}
                              for e in rows]))
        else:
            for e in rows:
                print(f"{e.key!r:40} served {e.times_served:>4}x  {e.created_at:%Y-%m-%d %H:%M}  {e.detail}")
        return 0
    if args.command == "delete":
        if admin.delete(args.phrase):
            print(f"deleted {args.phrase!r}")
            return 0
        print(f"no entry for {args.phrase!r}", file=sys.stderr)
        return 1
    if args.command == "wrong":
        admin.mark_wrong(args.query, args.served, actor="cli")
        print(f"{args.query!r} will not be served by {args.served!r} again")
        return 0
    if args.command == "reembed":
        if not 0.0 <= args.max_false_hits <= 1.0:
            print("error: --max-false-hits is a share of pairs, from 0 to 1.", file=sys.stderr)
            return 2
        pairs = None
        if args.pairs is not None:
            from semcache.eval import read_pairs

            try:
                pairs = read_pairs(args.pairs)
            except (OSError, ValueError, UnicodeDecodeError) as exc:
                print(f"error: the pairs file cannot be read: {exc}", file=sys.stderr)
                return 2
        embedder = build_embedder(args.model)
        done = admin.reembed(embedder, pairs=pairs, max_false_hit_rate=args.max_false_hits, apply=args.apply,
                             accept_thin=args.accept_thin, actor="cli", progress=lambda n, total: print(
                                 f"\r{n}/{total}", end="", file=sys.stderr, flush=True))
        if args.json:
            print(json.dumps({"model": embedder.model, "dimensions": embedder.dimensions, "embedded": done.embedded,
                              "proposal": done.proposal.as_dict()}))
        else:
            print(f"\nembedded {done.embedded} phrases with {embedder.model} ({embedder.dimensions} dims); "
                  "point the app at that model to use them")
            print("\n".join(done.proposal.lines()))
        return 0
    raise AssertionError(args.command)
