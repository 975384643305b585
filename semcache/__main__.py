"""`python -m semcache`: the cache's commands on a cache built from flags.

    python -m semcache --database-url URL --blob-dir DIR [--emoji-index DIR] [--default-threshold T] COMMAND ...

The cache's tables are made, or brought up to date, first (`semcache.schema.upgrade`: an empty
PostgreSQL with pgvector will do); embeddings come from the local all-MiniLM-L6-v2 model and new
pictures from the offline pixel-art generator. An application with its own wiring calls
`semcache.cli.main` with its factories instead.
"""

import argparse
import logging
import sys
from pathlib import Path

from semcache.cli import add_commands, run
from semcache.matching import DEFAULT_THRESHOLD


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m semcache", description="The semantic image cache.")
    parser.add_argument("--database-url", required=True, help="PostgreSQL with pgvector (a SQLAlchemy URL)")
    parser.add_argument("--blob-dir", type=Path, required=True, help="folder for the pictures")
    parser.add_argument("--emoji-index", type=Path, help="folder to keep the emoji catalogue's index in")
    parser.add_argument("--wordnet", type=Path, default=Path("/usr/share/wordnet"),
                        help="WordNet 3.0 folder for the matcher's second look (without it: distance alone)")
    parser.add_argument("--default-threshold", type=float, default=DEFAULT_THRESHOLD,
                        help="cosine distance used until one is stored (0 to 2)")
    add_commands(parser)
    args = parser.parse_args(argv)

    def build_embedder(model: str):
        if model != "local":
            parser.error("python -m semcache embeds with the local model only (--model local).")
        from semcache.embedders import LocalEmbedder

        return LocalEmbedder()

    def build_cache():
        from sqlalchemy import create_engine

        from semcache import SemanticCache
        from semcache.blobstores import LocalBlobStore
        from semcache.pixelart import EmojiPixelArtGenerator
        from semcache.lexicon import WordNet
        from semcache.matching import Matcher
        from semcache.schema import upgrade

        engine = create_engine(args.database_url, pool_pre_ping=True)
        upgrade(engine)
        embedder = build_embedder("local")
        generator = EmojiPixelArtGenerator(embedder, cache_dir=args.emoji_index)
        return SemanticCache(engine, embedder, generator,
                             LocalBlobStore(args.blob_dir), default_threshold=args.default_threshold,
                             matcher=Matcher(wordnet=WordNet(args.wordnet)))

    return run(args, build_cache, build_embedder)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main())
