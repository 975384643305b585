"""Runs the command line with the app's wiring (settings from the environment and `.env`)."""

import logging
import sys

from semcache.cli import main


def _factories():
    try:
        import services
        from settings import get_settings
    except ImportError:
        sys.exit("python -m semcache runs from the app's folder, where settings.py and services.py live.")
    settings = get_settings()
    return (lambda: services.build_cache(settings),
            lambda model: services.build_embedder(settings, model=model))


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    build_cache, build_embedder = _factories()
    sys.exit(main(sys.argv[1:], build_cache, build_embedder))
