"""Where the search by meaning should stop: the cosine distances of relevant and unrelated
messages, and of made-up words, in the two real mailboxes.

    python -m benchmarks.semantic_cutoff --mail ../shared/data/mail [--json out.json]

A fresh embedded PostgreSQL in a temporary folder; both mailboxes imported and embedded the way
the app does (the local model by default). Each query in `QUERIES` names the words that make a
message about it: a message is **relevant** when one of them is in its subject or its opening
(what its embedding is made of), **unrelated** when none is anywhere in it; the rest are left
out. Every query's nearest `CANDIDATES` messages (what the semantic ranking looks at) are sorted
into those kinds, and `NONSENSE` words, which no message is about, give the distances of mail
that only looks near. For each cut the report says how many relevant and unrelated matches it
keeps, and how many made-up words still find something.

Then the search itself, with the cut in place: the true totals of frequent words and the time a
page takes, counting all of the text matches.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np
from sqlalchemy import text

from benchmarks.common import finish, fresh_database, log, machine, percentiles, write_report

CANDIDATES = 100
OPENING_CHARS = 400
"""How much of the body counts as the message's opening when judging relevance."""

QUERIES: dict[str, list[str]] = {
    "spam filtering": ["spam", "spambayes", "spamassassin", "razor"],
    "linux kernel": ["kernel"],
    "red hat upgrade": ["red hat", "redhat", "rh ?[789]", "upgrad"],
    "sound card drivers": ["alsa", "sound", "audio"],
    "java programming": ["java"],
    "python": ["python"],
    "global warming": ["global warming", "climate"],
    "marriage": ["marri", "wedd", "wife", "husband"],
    "email client": ["exmh", "sylpheed", "mutt", "mail client", "mua"],
    "package manager": ["apt", "rpm", "yum", "package"],
    "dvd drive": ["dvd"],
    "electric car": ["electric car", "car", "cars"],
    "terrorism": ["terror", "sept 11", "september 11"],
    "religion": ["god", "relig", "church"],
    "job interview": ["interview", "resume", "candidate", "hire", "hiring"],
    "conference": ["conference"],
    "energy trading": ["energy", "power", "gas", "trading"],
    "weather derivatives": ["weather"],
    "risk management": ["risk", "var"],
    "university professor": ["universit", "professor", "student"],
    "access request": ["access request"],
    "meeting appointment": ["meeting", "appointment", "schedule"],
    "computer security": ["secur", "firewall", "vulnerab"],
    "music": ["music", "song", "mp3"],
    "movies": ["movie", "film"],
    "xml": ["xml"],
    "fonts": ["font", "freetype"],
    "email retention": ["retention"],
    "lawsuit": ["litigation", "lawsuit", "lawyer", "legal", "court"],
    "stock market": ["stock", "shares", "market"],
    "trip to houston": ["houston", "travel", "trip", "flight"],
    "newsletter": ["newsletter", "subscri"],
}
"""Query → word stems that make a message about it (case-insensitive, from a word's start)."""

NONSENSE = ["xqzvlorptak", "blorfengast", "zimquattle", "frondibix", "quelvarnish", "snorptaglia",
            "vexilotrum", "grabnuffle", "plimtosh", "wuzzlecrank", "trezzomandy", "kloobert", "yarnitrax",
            "mipsoodle", "florbigant", "zentraquil", "drimblewick", "skorvath", "oopletrine", "juxtaplinder",
            "fleeb norgle", "qwpzx"]
"""Made-up words: no message is about any of them."""

CUTS = [round(0.40 + 0.025 * i, 3) for i in range(17)]
FREQUENT = ["list", "linux", "mail", "spam", "time", "people", "energy", "python"]


def _pattern(stems: list[str]) -> re.Pattern:
    return re.compile(r"\b(?:" + "|".join(stems) + ")", re.IGNORECASE)


def _quantiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    q = np.quantile(values, [0.05, 0.25, 0.5, 0.75, 0.95])
    return {"n": len(values), **{f"p{p}": round(float(v), 3) for p, v in zip((5, 25, 50, 75, 95), q)}}


def measure(engine, embedder, owner: str) -> dict:
    with engine.connect() as conn:
        rows = conn.execute(text("""
            SELECT m.subject, m.body, e.embedding::text AS embedding
            FROM mail_messages m JOIN mail_embeddings e ON e.message_pk = m.id
            WHERE m.owner = :owner AND e.model = :model"""), {"owner": owner, "model": embedder.model}).all()
    subjects = [r.subject or "" for r in rows]
    bodies = [r.body or "" for r in rows]
    matrix = np.array([np.array(r.embedding.strip("[]").split(","), dtype=np.float32) for r in rows])
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)

    def distances(topic: str) -> np.ndarray:
        vector = np.asarray(embedder.embed([topic]), dtype=np.float32)[0]
        return 1.0 - matrix @ (vector / np.linalg.norm(vector))

    relevant, unrelated, best_relevant, per_query = [], [], [], {}
    for query, stems in QUERIES.items():
        pattern = _pattern(stems)
        d = distances(query)
        nearest = np.argsort(d)[:CANDIDATES]
        mine, others = [], []
        for i in nearest:
            if pattern.search(subjects[i]) or pattern.search(bodies[i][:OPENING_CHARS]):
                mine.append(float(d[i]))
            elif not (pattern.search(subjects[i]) or pattern.search(bodies[i])):
                others.append(float(d[i]))
        relevant += mine
        unrelated += others
        if mine:
            best_relevant.append(min(mine))
        per_query[query] = {"relevant_in_nearest": len(mine), "unrelated_in_nearest": len(others),
                            "best": round(float(d[nearest[0]]), 3),
                            "relevant_median": round(float(np.median(mine)), 3) if mine else None,
                            "unrelated_median": round(float(np.median(others)), 3) if others else None}
    nonsense, nonsense_best = [], []
    for word in NONSENSE:
        d = np.sort(distances(word))[:CANDIDATES]
        nonsense.append(d)
        nonsense_best.append(float(d[0]))
    cuts = []
    for cut in CUTS:
        cuts.append({
            "cut": cut,
            "relevant_kept": round(float(np.mean(np.array(relevant) <= cut)), 3),
            "unrelated_kept": round(float(np.mean(np.array(unrelated) <= cut)), 3),
            "relevant_per_query": round(sum(v <= cut for v in relevant) / len(QUERIES), 1),
            "unrelated_per_query": round(sum(v <= cut for v in unrelated) / len(QUERIES), 1),
            "nonsense_words_finding_any": sum(int(d[0] <= cut) for d in nonsense),
            "nonsense_results_per_word": round(float(np.mean([np.sum(d <= cut) for d in nonsense])), 1),
        })
    return {"messages": len(rows), "queries": len(QUERIES), "nonsense_words": len(NONSENSE),
            "relevant": _quantiles(relevant), "unrelated": _quantiles(unrelated),
            "best_relevant_per_query": _quantiles(best_relevant),
            "nonsense_all": _quantiles([float(v) for d in nonsense for v in d]),
            "nonsense_best_per_word": _quantiles(nonsense_best),
            "cuts": cuts, "per_query": per_query}


def search_costs(engine, embedder, owner: str) -> dict:
    """True totals and page latency of frequent words (every text match counted, and by meaning
    within the cut when ``embedder`` is given), beside a count of the text matches alone and the
    text ranking capped at `CANDIDATES` as it was before the totals were true."""
    from mail.search import search

    capped = text("""SELECT count(*) FROM (SELECT m.id FROM mail_messages m,
                     (SELECT websearch_to_tsquery('english', :w) AS tsq) q
                     WHERE m.owner = :o AND m.tsv @@ q.tsq ORDER BY ts_rank_cd(m.tsv, q.tsq, 32) DESC
                     LIMIT :k) t""")
    alone = text("SELECT count(*) FROM mail_messages WHERE owner = :o AND tsv @@ websearch_to_tsquery('english', :w)")
    out = {}
    for word in FREQUENT:
        vector = np.asarray(embedder.embed([word]), dtype=np.float32)[0] if embedder else None
        run = lambda offset=0: search(engine, owner, word, embedder=embedder, query_vector=vector,  # noqa: E731
                                      offset=offset)
        first = run()  # warm
        samples = []
        for _ in range(5):
            t = time.perf_counter()
            first = run()
            samples.append((time.perf_counter() - t) * 1000)
        last_page = max(0, (first.total - 1) // 20)
        last = run(last_page * 20)
        timed = {}
        with engine.connect() as conn:
            for name, statement in (("fts_count_alone", alone), ("capped_text_ranking", capped)):
                conn.execute(statement, {"o": owner, "w": word, "k": CANDIDATES})
                t = time.perf_counter()
                value = conn.execute(statement, {"o": owner, "w": word, "k": CANDIDATES}).scalar()
                timed[name] = {"rows": value, "ms": round((time.perf_counter() - t) * 1000, 2)}
        out[word] = {"total": first.total, "word_matches": getattr(first, "word_matches", None), **timed,
                     "first_page": percentiles(samples), "pages": last_page + 1, "last_page_rows": len(last.hits)}
    return out


def counts(mail: Path) -> dict:
    """The search's true totals alone: the largest mailbox imported without embeddings, the
    text ranking timed against a plain count of its matches."""
    from mail.sources import open_source
    from mail.store import import_messages, message_count

    report: dict = {"machine": machine()}
    with fresh_database("semantic-cutoff-") as (_, engine, _folder):
        import_messages(engine, "bench", open_source(mail / "spamassassin-easy-ham-1.mbox"))
        report["messages"] = message_count(engine, "bench")
        report["search"] = search_costs(engine, None, "bench")
    return finish(report)


def run(mail: Path, *, with_search: bool = True) -> dict:
    from mail.sources import open_source
    from mail.store import import_messages, message_count
    from semcache.embedders import LocalEmbedder

    embedder = LocalEmbedder()
    embedder.embed(["warm up"])
    report: dict = {"machine": machine(), "model": embedder.model, "candidates": CANDIDATES}
    with fresh_database("semantic-cutoff-") as (_, engine, _folder):
        for name in ("spamassassin-easy-ham-1.mbox", "enron-kaminski-inbox.Maildir"):
            log(f"importing {name}")
            import_messages(engine, "bench", open_source(mail / name), embedder=embedder)
        report["messages"] = message_count(engine, "bench")
        log("measuring distances")
        report["distances"] = measure(engine, embedder, "bench")
        if with_search:
            log("measuring the search")
            report["search"] = search_costs(engine, embedder, "bench")
    return finish(report)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mail", type=Path, required=True, help="folder with the two real mailboxes")
    parser.add_argument("--json", type=Path, default=Path("bench-results/semantic_cutoff.json"))
    parser.add_argument("--distances-only", action="store_true", help="leave out the search's totals and latency")
    parser.add_argument("--counts-only", action="store_true",
                        help="only the totals and latency of the text search, on the mbox without embeddings")
    args = parser.parse_args(argv)
    if args.counts_only:
        write_report(counts(args.mail), args.json)
    else:
        write_report(run(args.mail, with_search=not args.distances_only), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
