"""The Markdown tables of `python -m benchmarks.cache`, made from the JSON reports in one folder,
so parts run separately still end up in one page."""

from __future__ import annotations

import json
from pathlib import Path


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _ms(p: dict | None) -> str:
    if not p or p.get("p50_ms") is None:
        return "-"
    return f"{p['p50_ms']:.2f} / {p['p99_ms']:.2f}"


def _load_average(r: dict) -> str:
    m = r.get("machine", {})
    if "load_average_1m" not in m:
        return "-"
    return f"{m['load_average_1m']} / {m.get('load_average_1m_at_end', '-')}"


def _n(value) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def scale_tables(reports: list[dict]) -> list[str]:
    reports = sorted(reports, key=lambda r: (r["entries"], r["vectors"]))
    out = ["## Lookup latency by cache size", "",
           "`SemanticCache.get(topic, fetch_image=False)`, p50 / p99 in ms. Misses exclude the generator's "
           "own time (a fixed PNG). Repeat lookups find the phrase's vector already stored. The last three "
           "columns time the top-1 query alone in SQL, through the HNSW index (default ef_search) and "
           "without it (an exact scan in PostgreSQL, the baseline), alternately on the same lookups.", "",
           "| entries | vectors | exact hit | semantic, first lookup | semantic, repeat | miss, first lookup "
           "| HNSW query alone | exact scan (baseline) | index speed-up (p50) |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in reports:
        ef = str(r["default_ef_search"])
        repeat = r["repeat_lookup"].get(ef) or next(iter(r["repeat_lookup"].values()))
        scan, hnsw = r.get("exact_scan_sql", {}), r.get("hnsw_query_sql", {})
        out.append(f"| {_n(r['entries'])} | {r['vectors']} | {_ms(r['exact_hit'])} | "
                   f"{_ms(r['first_lookup'].get('semantic'))} | {_ms(repeat.get('semantic'))} | "
                   f"{_ms(r['first_lookup'].get('miss'))} (n={r['first_lookup'].get('miss', {}).get('n', 0)}) | "
                   f"{_ms(hnsw)}{'' if hnsw.get('uses_index', True) else ' (planner chose a scan)'} | "
                   f"{_ms(scan)} (n={scan.get('n', 0)}) | {r.get('index_speedup_p50', '-')}x |")
    out += ["", "## HNSW agreement with an exact scan", "",
            "Decision: the same entry served (or the same decision to generate) as an exact scan over every "
            "vector at the threshold. Top-1: the index's nearest entry is the exact nearest. Hits found: of "
            "the lookups an exact scan would serve, the share served by the same entry.", "",
            "| entries | vectors | ef_search | decision agreement | top-1 agreement | hits found "
            "| semantic repeat p50 / p99 ms | exact scan would serve |",
            "|---|---|---|---|---|---|---|---|"]
    for r in reports:
        for ef, rep in r["repeat_lookup"].items():
            out.append(f"| {_n(r['entries'])} | {r['vectors']} | {ef} | {rep['decision_agreement']:.3f} | "
                       f"{rep['top1_agreement']:.3f} | {rep['exact_scan_hits_found']:.3f} | "
                       f"{_ms(rep.get('semantic'))} | {_n(r['exact_scan_would_serve'])} of {_n(r['lookups'])} |")
    out += ["", "## Index build and sizes", "",
            "| entries | vectors | bulk load (COPY) | HNSW build | build settings | embeddings table | entries table "
            "| HNSW index | database | load average, start / end |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for r in reports:
        settings = ", ".join(f"{k} {v}" for k, v in r.get("build_settings", {}).items()) or "server defaults"
        out.append(f"| {_n(r['entries'])} | {r['vectors']} | {r['load_s']} s | {r['index_build_s']} s | {settings} | "
                   f"{r['embeddings_table_mb']} MB | {r['entries_table_mb']} MB | {r['hnsw_index_mb']} MB | "
                   f"{r['database_mb']} MB | {_load_average(r)} |")
    descriptions = {r["vectors"]: r["description"] for r in reports}
    out += [""] + [f"- {name}: {text}." for name, text in sorted(descriptions.items())]
    models = [r for r in reports if "full_get_local_model_new_phrase" in r]
    for r in models:
        full = r["full_get_local_model_new_phrase"]
        kinds = ", ".join(f"{kind} {_ms(p)} (n={p['n']})" for kind, p in full.items() if kind != "all")
        out.append(f"- Full `get` of {full['all']['n']} new phrases with the real local model at "
                   f"{_n(r['entries'])} entries, p50 / p99 ms: all {_ms(full['all'])}; {kinds}.")
    return out + [""]


def throughput_table(r: dict) -> list[str]:
    out = ["## Throughput with concurrent workers", "",
           f"{_n(r['stream'])} lookups per run, Zipf (exponent {r['zipf_exponent']}) over {_n(r['topics'])} topics "
           f"({_n(r['distinct_topics_in_stream'])} distinct in the stream), on a cache of {_n(r['base_entries'])} "
           f"entries ({r['vectors']}); generator time {r['generate_ms']} ms; median of {r['repeats']} runs. "
           f"An exact scan replaying the stream in order would generate "
           f"{r['expected_generations_exact_scan_in_order']} images. Load average (1 min) at start / end: "
           f"{_load_average(r)}.", "",
           "| mode | workers | lookups/s (median) | vs 1 thread | runs | latency p50 / p99 ms | generations per run "
           "| keys generated twice |",
           "|---|---|---|---|---|---|---|---|"]
    for s in r["summary"]:
        runs = ", ".join(f"{x:g}" for x in s["lookups_per_s_runs"])
        gens = ", ".join(str(g) for g in s["generations_runs"])
        out.append(f"| {s['mode'] + 'es' if s['mode'] == 'process' else s['mode'] + 's'} | {s['workers']} | {s['lookups_per_s_median']:,.0f} | "
                   f"{s['ratio_to_one_thread']}x | {runs} | {_ms(s['latency'])} | {gens} | "
                   f"{len(s['keys_generated_twice'])} |")
    return out + [""]


def cost_table(r: dict) -> list[str]:
    out = ["## Cost of a replayed topic stream", "",
           f"{_n(r['lookups'])} lookups, Zipf (exponent {r['zipf_exponent']}) over the {r['distinct_topics']} distinct "
           f"demo topics in several forms ({_n(r['distinct_keys'])} distinct keys), embedded with {r['embedding_model']}; "
           f"${r['price_usd']:.2f} per generated image. Load average (1 min) at start / end: {_load_average(r)}.",
           "",
           "| policy | threshold | generations | expected (exact scan) | spent | vs no cache | lookups served "
           "(exact / semantic) |",
           "|---|---|---|---|---|---|---|"]
    names = {"no_cache": "no cache", "exact_only": "exact match only", "semantic": "semantic"}
    for name, p in r["policies"].items():
        kinds = p.get("kinds", {})
        served = f"{kinds.get('exact', 0)} / {kinds.get('semantic', 0)}" if kinds else "-"
        out.append(f"| {names.get(name, name)} | {p.get('threshold', '-')} | {_n(p['generations'])} | "
                   f"{_n(p.get('expected_generations_exact_scan', '-'))} | ${p['spent_usd']:,.2f} | "
                   f"{p['fraction_of_no_cache'] * 100:.1f}% | {served} |")
    examples = r["policies"].get("semantic", {}).get("semantic_examples", [])[:10]
    if examples:
        out += ["", "Semantic hits, first few: " + "; ".join(examples) + "."]
    return out + [""]


def mail_table(r: dict) -> list[str]:
    if "skipped" in r:
        return ["## Mail", "", f"Skipped: {r['skipped']}", ""]
    rows = [("SpamAssassin mbox, no embeddings (baseline)", "import_spamassassin_without_embeddings"),
            ("SpamAssassin mbox, with local embeddings", "import_spamassassin_with_embeddings"),
            ("Enron Maildir, with local embeddings", "import_enron_with_embeddings"),
            ("the same mbox again (all duplicates)", "reimport_spamassassin"),
            ("demo messages, with local embeddings", "import_demo_with_embeddings")]
    out = ["## Mail", "", f"Load average (1 min) at start / end: {_load_average(r)}.", "",
           "| import | messages | seconds | per second | failed |", "|---|---|---|---|---|"]
    for label, key in rows:
        if key in r:
            i = r[key]
            out.append(f"| {label} | {_n(i['messages'])} | {i['seconds']} | {i['per_second']} | {i['failed']} |")
    out += ["", f"Search over one owner's {_n(r['searched_messages'])} messages:", "",
            "| search | p50 / p99 ms | n |", "|---|---|---|",
            f"| the local model embedding the query | {_ms(r['search_with_query_embedding'])} | "
            f"{r['search_with_query_embedding']['n']} |",
            f"| the query's vector already known | {_ms(r['search_with_known_vector'])} | "
            f"{r['search_with_known_vector']['n']} |"]
    return out + [""]


def render(folder: Path) -> str:
    """Every table there is a report for in ``folder``."""
    scale = [r for p in sorted(folder.glob("scale-*.json")) if (r := _load(p))]
    parts = ["# python -m benchmarks.cache", ""]
    stamps = sorted({r["machine"].get("measured_at", "")[:10] for r in scale} - {""})
    if scale:
        machine = scale[0]["machine"]
        parts += [f"Measured {', '.join(stamps) or 'on an unknown date'}; {machine['cpus']} CPUs, "
                  f"Python {machine['python']}, {machine['platform']}.", ""]
        parts += scale_tables(scale)
    for name, table in (("throughput.json", throughput_table), ("cost.json", cost_table), ("mail.json", mail_table)):
        report = _load(folder / name)
        if report:
            parts += table(report)
    return "\n".join(parts)
