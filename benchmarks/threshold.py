"""Choose "close enough" from evidence: the threshold evaluation of one pairs file (or of the
verdicts recorded on the Settings page) with the app's settings, and what each of the cache's
matching techniques buys on a folder of human-judged word pairs, and what it costs per lookup.

    python -m benchmarks.threshold --pairs FILE [--model NAME] [--json results.json] [--plot curve.png]
    python -m benchmarks.threshold --from-feedback [--json ...] [--plot ...]
    python -m benchmarks.threshold --pairs ../shared/data/pairs [--json out.json] [--markdown out.md] [--latency]

A pairs FILE (format: `semcache.eval`) is scored with the app's embedder, matcher and stored
threshold: the JSON has the counts, the rates at the default, the largest threshold keeping
false hits within ``--max-false-hit-rate`` and the whole curve (``--plot`` draws it).

A FOLDER: each pair file is scored with `semcache.eval` (the cache's own decision) under every technique:
distance alone; dictionary forms on the exact path; WordNet's second look as first shipped; with
synonyms through main senses only and kinds one step apart closer; with multi-word phrases
aligned word by word; phrases that share words and differ in others counted further; the same
words in another order counted closer and kinds one step apart a little closer (the default);
an embedding template. The realistic topic pairs of ``benchmarks/data/topics-dev.tsv`` (``--topics``) are
scored beside the folder's files. Three views:
- **per file**: the hit rate when the false-hit rate is held at 1% and 5% on that file, with the
  threshold chosen on that file (what an owner tuning on their own data would get);
- **one threshold**: chosen on SimLex (the dev file) for 1% / 5% false hits, then applied
  unchanged to WordSim-353 and to MEN's unrelated pairs (how it carries to data it was not
  chosen on).
- **at the default**: the hit and false-hit rate at the shipped threshold, and at 0.35 (the
  default before), on every file; and the default decision on the topic pairs at thresholds
  around the default (how it was chosen).
Labels: SimLex and WordSim similarity >= 7 of 10 positive, <= 3 negative; MEN rates
relatedness, so only its unrelated pairs (<= 15 of 50) are used, as negatives.

``--latency`` also times `SemanticCache.get` on an embedded PostgreSQL holding real WordNet
phrases, with and without the second look, so its cost per lookup is measured where it runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import percentiles, write_report
from semcache.embedders import LocalEmbedder, TemplatedEmbedder
from semcache import eval as evaluation
from semcache.eval import Scored, read_pairs, score_pairs
from semcache.lexicon import WordNet
from semcache.matching import DEFAULT_THRESHOLD, Matcher, Weights

DEV = "simlex-dev-500"
TEMPLATE = "a picture of {}"
TOPICS = Path(__file__).resolve().parent / "data" / "topics-dev.tsv"
BEFORE_THRESHOLD = 0.35
"""The default threshold before the topic pairs chose one."""
AT = (DEFAULT_THRESHOLD, BEFORE_THRESHOLD)
SWEEP = (0.22, 0.26, 0.28, 0.30, 0.31, 0.32, 0.33, 0.35)
BEFORE = Weights(direct_kind=0.5, aligned=0.5, partial=1.0)
"""The weights before phrases that differ in part counted further."""
DEFAULT = "+ aligned closer, direct kinds x0.47 (default)"


def techniques(wordnet: WordNet) -> dict[str, tuple[Matcher, str]]:
    first = WordNet(wordnet.path, main_senses=False)
    return {
        "distance alone": (Matcher.plain(), ""),
        "+ dictionary forms": (Matcher(wordnet=wordnet, lemmas=True, lexicon=False), ""),
        "+ WordNet second look": (Matcher(wordnet=first, lemmas=True, lexicon=True, phrases=False, weights=BEFORE), ""),
        "+ main senses, direct kinds": (Matcher(wordnet=wordnet, lemmas=True, lexicon=True, phrases=False,
                                                weights=BEFORE), ""),
        "+ phrases": (Matcher(wordnet=wordnet, lemmas=True, lexicon=True, phrases=True, weights=BEFORE), ""),
        "+ differing in part x1.6": (Matcher(wordnet=wordnet, weights=Weights(direct_kind=0.5, aligned=0.5)), ""),
        DEFAULT: (Matcher(wordnet=wordnet), ""),
        "template alone": (Matcher.plain(), TEMPLATE),
        "default + template": (Matcher(wordnet=wordnet), TEMPLATE),
    }


def load_sets(folder: Path, topics: Path | None = None) -> dict:
    sets = {}
    if topics is not None:
        sets[topics.stem] = read_pairs(topics)
    for path in sorted(folder.glob("*.txt")):
        sets[path.stem] = read_pairs(path, negatives_only="MEN" in path.name)
    return sets


class MemoEmbedder:
    """Embeds each phrase once however many techniques score it."""

    def __init__(self, inner) -> None:
        self.inner, self.model, self.dimensions = inner, inner.model, inner.dimensions
        self.vectors: dict[str, np.ndarray] = {}

    def embed(self, texts):
        missing = [t for t in dict.fromkeys(texts) if t not in self.vectors]
        if missing:
            self.vectors.update(zip(missing, np.asarray(self.inner.embed(missing), dtype=np.float32)))
        return np.stack([self.vectors[t] for t in texts])


def evaluate(folder: Path, topics: Path | None = TOPICS) -> dict:
    wordnet = WordNet()
    if not wordnet.available:
        raise SystemExit("WordNet is needed: apt-get install wordnet-base")
    sets = load_sets(folder, topics)
    base = MemoEmbedder(LocalEmbedder())
    out: dict = {"model": f"{base.model} ({base.dimensions} dims)", "sets": {}, "techniques": {}}
    for name, pairs in sets.items():
        out["sets"][name] = {"positives": sum(p.label for p in pairs), "negatives": sum(1 - p.label for p in pairs)}
    for label, (matcher, template) in techniques(wordnet).items():
        embedder = TemplatedEmbedder(base, template) if template else base
        scored: dict[str, Scored] = {name: score_pairs(pairs, embedder, matcher) for name, pairs in sets.items()}
        row: dict = {"per_file": {}, "one_threshold": {}, "at": {}}
        for t in AT:
            row["at"][f"{t:.2f}"] = {name: at(s, t) for name, s in scored.items()}
        if label == DEFAULT and topics is not None:
            out["sweep"] = {f"{t:.2f}": {name: at(s, t) for name, s in scored.items()} for t in SWEEP}
        for name, s in scored.items():
            if (s.labels == 1).any():
                row["per_file"][name] = {f"{limit:.0%}": s.rates(s.recommend(limit)) for limit in (0.01, 0.05)}
        for limit in (0.01, 0.05):
            t = scored[DEV].recommend(limit)
            row["one_threshold"][f"{limit:.0%}"] = {"threshold": t, **{name: s.rates(t) for name, s in scored.items()}}
        out["techniques"][label] = row
    return out


def at(s: Scored, threshold: float) -> dict:
    """The rates at ``threshold``, with the number of negatives and the false-hit interval."""
    negatives = int((s.labels == 0).sum())
    served = int((s.served(threshold) & (s.labels == 0)).sum())
    return {**s.rates(threshold), "negatives": negatives, "false_hits": served,
            "false_hit_interval": wilson(served, negatives)}


def wilson(successes: int, trials: int, z: float = 1.96) -> list[float] | None:
    """`semcache.eval.wilson`, rounded to four places as the reports print it."""
    interval = evaluation.wilson(successes, trials, z)
    return None if interval is None else [round(bound, 4) for bound in interval]


def markdown(result: dict) -> str:
    files = [n for n, c in result["sets"].items() if c["positives"]]
    lines = ["Per file: hit rate with the false-hit rate held at 1% / 5% on that file (threshold in brackets).", "",
             "| technique | " + " | ".join(f"{n} @1% | {n} @5%" for n in files) + " |",
             "|---|" + "---|" * (2 * len(files))]
    for label, row in result["techniques"].items():
        cells = []
        for n in files:
            for limit in ("1%", "5%"):
                r = row["per_file"][n][limit]
                cells.append(f"{r['hit_rate']:.2f} ({r['threshold']:.2f})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", f"One threshold, chosen on {DEV} for 1% / 5% false hits, applied to every file "
                  "(hit rate / false-hit rate).", "",
              "| technique | limit | threshold | " + " | ".join(result["sets"]) + " |",
              "|---|---|---|" + "---|" * len(result["sets"])]
    for label, row in result["techniques"].items():
        for limit, view in row["one_threshold"].items():
            cells = []
            for n in result["sets"]:
                r = view[n]
                hit = "-" if r["hit_rate"] is None else f"{r['hit_rate']:.2f}"
                cells.append(f"{hit} / {r['false_hit_rate']:.3f}")
            lines.append(f"| {label} | {limit} | {view['threshold']:.3f} | " + " | ".join(cells) + " |")
    for t in AT:
        title = "the default" if t == DEFAULT_THRESHOLD else "the default before"
        lines += ["", f"At {title}, {t:.2f}: hit rate / false-hit rate [95% Wilson interval of the false-hit rate].",
                  "", "| technique | " + " | ".join(result["sets"]) + " |", "|---|" + "---|" * len(result["sets"])]
        for label, row in result["techniques"].items():
            lines.append(f"| {label} | " + " | ".join(_at_cell(row["at"][f"{t:.2f}"][n]) for n in result["sets"]) + " |")
    if "sweep" in result:
        lines += ["", "The default decision around the default threshold: hit rate / false-hit rate "
                      "[95% Wilson interval] (false hits).", "",
                  "| threshold | " + " | ".join(result["sets"]) + " |", "|---|" + "---|" * len(result["sets"])]
        for t, view in result["sweep"].items():
            cells = [_at_cell(view[n]) + f" ({view[n]['false_hits']})" for n in result["sets"]]
            lines.append(f"| {t} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _at_cell(r: dict) -> str:
    hit = "-" if r["hit_rate"] is None else f"{r['hit_rate']:.2f}"
    low, high = r["false_hit_interval"] or (0, 0)
    return f"{hit} / {r['false_hit_rate']:.3f} [{low:.3f}, {high:.3f}]"


# ---------------------------------------------------------------------- latency

def latency(entries: int = 10_000, lookups: int = 1000, seed: int = 7) -> dict:
    """`get` of phrases near cached ones, with the second look off and on, on one database."""
    import os
    import tempfile

    from db.engine import create_db_engine, embedded_postgres_url, migrate
    from semcache import CacheAdmin, SemanticCache
    from benchmarks.common import FixedImage, TableEmbedder, fill, wordnet_phrases, wordnet_vectors
    from semcache.blobstores import LocalBlobStore

    everything = wordnet_phrases()
    phrases = everything[:entries + lookups]
    vectors = wordnet_vectors(everything, entries + lookups, Path("bench-results"))
    cached, queries = phrases[:entries], phrases[entries:]
    wordnet = WordNet()
    results: dict = {"entries": entries, "lookups": lookups}
    with tempfile.TemporaryDirectory(prefix="semcache-bench-", dir="/var/tmp") as tmp:
        os.chmod(tmp, 0o755)
        engine = create_db_engine(embedded_postgres_url(Path(tmp) / "pg", on_exit="delete"))
        migrate(engine)
        embedder = TableEmbedder()
        embedder.table.update(zip(phrases, vectors))
        blobs = LocalBlobStore(Path(tmp) / "blobs")
        fixed = FixedImage()
        blob_key = blobs.put(fixed.png, "image/png")
        plain = SemanticCache(engine, embedder, fixed, blobs)
        fill(plain, cached, vectors[:entries], blob_key)
        variants = {"distance alone": SemanticCache(engine, embedder, fixed, blobs, matcher=Matcher.plain()),
                    # Each its own WordNet: what one decider read is not already read for the other.
                    "WordNet second look": SemanticCache(engine, embedder, fixed, blobs,
                                                         matcher=Matcher(wordnet=WordNet(), lemmas=True, lexicon=True)),
                    "second look, weights before": SemanticCache(engine, embedder, fixed, blobs,
                                                                 matcher=Matcher(wordnet=WordNet(), weights=BEFORE))}
        for q in queries:  # every lookup's vector in the embedding cache: what is timed is the decision
            variants["distance alone"].embedding(q)
        samples: dict = {label: {} for label in variants}
        served: dict = {label: [] for label in variants}
        for n, q in enumerate(queries):
            order = list(variants)[n % len(variants):] + list(variants)[:n % len(variants)]  # interleaved, rotating
            for label in order:
                cache = variants[label]
                t = time.perf_counter()
                r = cache.get(q, fetch_image=False, threshold=DEFAULT_THRESHOLD)
                ms = (time.perf_counter() - t) * 1000
                samples[label].setdefault("hit" if r.hit else "miss (fixed image, then deleted)", []).append(ms)
                samples[label].setdefault("all", []).append(ms)
                served[label].append(r.hit)
                if r.kind == "generated":
                    CacheAdmin(cache).delete(q)  # the cache stays as it was for the next lookup
        for label in variants:
            results[label] = {kind: percentiles(ms) for kind, ms in samples[label].items()}
        # The same lookup under two deciders, where both served or both missed: what the decision adds.
        for label in list(variants)[1:]:
            for kind, hit in (("hit", True), ("miss", False)):
                both = [n for n in range(len(queries)) if served[label][n] == served["distance alone"][n] == hit]
                extra = [samples[label]["all"][n] - samples["distance alone"]["all"][n] for n in both]
                results[label][f"{kind}, paired: ms more than distance alone"] = percentiles(extra)
        decide = []
        # The decision alone, on pairs of phrases it has not seen (its relation memo cold).
        matcher = Matcher(wordnet=wordnet, lemmas=True, lexicon=True)
        rng = np.random.default_rng(seed)
        for i in rng.choice(len(queries), size=min(500, len(queries)), replace=False):
            t = time.perf_counter()
            matcher.match(queries[i], cached[int(i) % len(cached)], 0.3)
            decide.append((time.perf_counter() - t) * 1000)
        results["match_cold"] = percentiles(decide)
        engine.dispose()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.threshold", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--pairs", type=Path,
                        help="a file of tab-separated pairs (text_a, text_b, label or score), or a folder of them")
    source.add_argument("--from-feedback", action="store_true",
                        help="the wrong-match and confirmed verdicts recorded by the app")
    parser.add_argument("--json", "--out", dest="json", type=Path, help="write the JSON report here")
    parser.add_argument("--plot", type=Path, help="one file: draw the curve to this PNG")
    parser.add_argument("--model", help='one file: "local" or an OpenAI embedding model; default: the app\'s')
    parser.add_argument("--max-false-hit-rate", type=float, default=0.01)
    parser.add_argument("--positive-min", type=float, default=7.0, help="score files: positives from here (of 10)")
    parser.add_argument("--negative-max", type=float, default=3.0, help="score files: negatives up to here (of 10)")
    parser.add_argument("--negatives-only", action="store_true", help="relatedness scores: use only the negatives")
    parser.add_argument("--no-lemmas", action="store_true", help="switch off the exact path by dictionary form")
    parser.add_argument("--no-lexicon", action="store_true", help="switch off WordNet's second look")
    parser.add_argument("--template", help='embed inside this template, e.g. "a picture of {}"')
    parser.add_argument("--markdown", type=Path, help="a folder: write the tables here")
    parser.add_argument("--topics", default=str(TOPICS),
                        help='a folder: also score this labelled file of topic pairs ("" for none)')
    parser.add_argument("--latency", action="store_true",
                        help="a folder: also time get() with and without the second look")
    args = parser.parse_args(argv)
    if not 0 <= args.max_false_hit_rate <= 1:
        parser.error("--max-false-hit-rate is a share between 0 and 1.")
    if args.pairs is not None and args.pairs.is_dir():
        return compare(args)
    return evaluate_one(args, parser)


def compare(args: argparse.Namespace) -> int:
    """Every technique on every pair file of a folder (`make threshold`)."""
    result = evaluate(args.pairs, Path(args.topics) if args.topics else None)
    if args.latency:
        result["latency"] = latency()
    write_report(result, args.json)
    table = markdown(result)
    print(table, file=sys.stderr)
    if args.markdown:
        args.markdown.write_text(table + "\n")
    return 0


def evaluate_one(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """One pairs file, or the recorded verdicts, through the cache as the app configures it."""
    import services
    from semcache.report import threshold_setting
    from settings import Settings

    settings = Settings()
    if args.from_feedback:
        engine = services.build_engine(settings)
        pairs = evaluation.feedback_pairs(engine)
        default_threshold = None  # the one stored for the model's space, below
    else:
        try:
            pairs = read_pairs(args.pairs, positive_min=args.positive_min, negative_max=args.negative_max,
                               negatives_only=args.negatives_only)
        except (OSError, ValueError) as exc:
            parser.error(str(exc))
        default_threshold = settings.default_threshold
    if not pairs:
        print("No labelled pairs to evaluate.", file=sys.stderr)
        return 1
    embedder = services.build_embedder(settings, model=args.model)
    if default_threshold is None:
        default_threshold = threshold_setting(engine, settings.default_threshold, model=embedder.model,
                                              dimensions=embedder.dimensions).value
    template = settings.embed_template if args.template is None else args.template
    if template:
        embedder = TemplatedEmbedder(embedder, template)
    matcher = services.build_matcher(settings, lexicon=False if args.no_lexicon else None,
                                     lemmas=False if args.no_lemmas else None)
    scored = score_pairs(pairs, embedder, matcher, max_topic_chars=settings.max_topic_chars)
    result = evaluation.report(scored, model=f"{embedder.model} ({embedder.dimensions} dims)",
                               default_threshold=default_threshold, max_false_hit_rate=args.max_false_hit_rate,
                               matcher=matcher)
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)
    else:
        print(text)
    if args.plot:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        evaluation.plot(result, args.plot)
    at, rec = result["at_default"], result["recommended"]
    print(f"{result['pairs']} pairs ({result['positives']} positive, {result['negatives']} negative). "
          f"At {default_threshold:.3f}: hit rate {_fmt(at['hit_rate'])}, false-hit rate {_fmt(at['false_hit_rate'])}. "
          f"Recommended for false hits <= {args.max_false_hit_rate:.0%}: {rec['threshold']}"
          + (f" (hit rate {_fmt(rec.get('hit_rate'))})" if rec["threshold"] is not None else ""), file=sys.stderr)
    return 0


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    raise SystemExit(main())
