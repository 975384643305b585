"""`python -m cache_cli`: the picture cache's commands (`semcache.cli`) on the app's own cache,
built from the app's settings (environment and `.env`) with its embedded defaults.

    python -m cache_cli get "dog" [--threshold 0.3] [--json] [--out dog.png]
    python -m cache_cli stats | threshold [T] | entries | delete PHRASE | wrong QUERY SERVED | reembed --model M
"""

import logging
import sys

import services
from semcache.cli import main
from settings import get_settings

if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    settings = get_settings()
    sys.exit(main(sys.argv[1:], lambda: services.build_cache(settings),
                  lambda model: services.build_embedder(settings, model=model), prog="python -m cache_cli"))
