"""How often the offline generator's picture fits the topic, on labelled topics.

    python -m benchmarks.pictures [--topics FILE] [--classic | --without RULE ...] [--wrong] [--json out.json]

Each topic of the file is drawn by `EmojiPixelArtGenerator` (the real local model, the real emoji
font) and its pick counts as acceptable when the glyph is one of the topic's labels. A sprite (no
emoji close enough) counts as not acceptable. ``--classic`` turns every pick rule off (the
catalogue as names and aliases only, flags for any topic, no exclusions, typed emoji embedded as
text), which is how the generator picked before the rules existed; ``--without keywords`` (or
any other field of `PickRules`) turns one rule off, to see what it buys. The default file is
`benchmarks/data/topics-pictures.tsv`; `topics-pictures-holdout.tsv` was written after the
keyword table and is never tuned on.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, fields, replace
from pathlib import Path

from benchmarks.common import write_report
from semcache.embedders import LocalEmbedder
from semcache.pixelart import EmojiPixelArtGenerator, PickRules, find_emoji_font

TOPICS = Path(__file__).resolve().parent / "data" / "topics-pictures.tsv"
HOLDOUT = TOPICS.with_name("topics-pictures-holdout.tsv")
_VARIATION = "\ufe0f"


@dataclass(frozen=True)
class Labelled:
    topic: str
    accepted: frozenset[str]


def bare(glyph: str) -> str:
    """The glyph without emoji presentation selectors, so "✈️" and "✈" compare equal."""
    return glyph.replace(_VARIATION, "")


def read_topics(path: Path) -> list[Labelled]:
    """``topic<TAB>emoji emoji ...`` per line; ``#`` lines are comments."""
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        topic, sep, labels = line.partition("\t")
        accepted = frozenset(bare(g) for g in labels.split())
        if not sep or not topic.strip() or not accepted:
            raise ValueError(f"{path}:{number}: expected 'topic<TAB>emoji ...', got {line!r}")
        out.append(Labelled(topic.strip(), accepted))
    return out


def score(generator: EmojiPixelArtGenerator, topics: list[Labelled]) -> dict:
    rows = []
    for item in topics:
        pick = generator.pick(item.topic)
        glyph = pick.emoji if pick is not None else None
        rows.append({"topic": item.topic, "pick": glyph, "phrase": pick.phrase if pick else None,
                     "acceptable": glyph is not None and bare(glyph) in item.accepted})
    good = sum(r["acceptable"] for r in rows)
    sprites = sum(r["pick"] is None for r in rows)
    return {"topics": len(rows), "acceptable": good, "acceptable_rate": good / len(rows) if rows else 0.0,
            "sprites": sprites, "picks": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--topics", type=Path, default=TOPICS)
    parser.add_argument("--classic", action="store_true", help="pick as before the pick rules existed")
    rule_names = [f.name for f in fields(PickRules) if f.type in ("bool", bool)]
    parser.add_argument("--without", action="append", default=[], choices=rule_names,
                        help="turn this rule off (repeatable)")
    parser.add_argument("--cache-dir", type=Path, default=Path(".data/emoji-index"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--wrong", action="store_true", help="list the topics whose pick is not acceptable")
    args = parser.parse_args(argv)
    if find_emoji_font() is None:
        print("No colour emoji font is installed (fonts-noto-color-emoji).", file=sys.stderr)
        return 2
    rules = PickRules.classic() if args.classic else replace(PickRules(), **{name: False for name in args.without})
    generator = EmojiPixelArtGenerator(LocalEmbedder(), cache_dir=args.cache_dir, rules=rules)
    generator.prepare()
    report = score(generator, read_topics(args.topics))
    report["rules"] = ("classic" if args.classic
                       else "default" + "".join(f" without {name}" for name in args.without))
    report["file"] = args.topics.name
    print(f"{report['acceptable']}/{report['topics']} acceptable ({report['acceptable_rate']:.0%}), "
          f"{report['sprites']} sprites ({report['rules']} rules)")
    if args.wrong:
        for row in report["picks"]:
            if not row["acceptable"]:
                print(f"  {row['topic']!r}: {row['pick'] or 'sprite'} via {row['phrase']!r}")
    write_report(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
