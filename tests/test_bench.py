"""`python -m benchmarks.cache` at a tiny scale, on the session's database: the figures it reports
are real properties of the cache (one generation per key under concurrency, exact-only never
cheaper than semantic, the exact scans agree)."""

from __future__ import annotations

import json

import pytest

from benchmarks.cache import cost, markdown, scale, throughput
from semcache.matching import DEFAULT_THRESHOLD


def test_scale_reports_latency_agreement_and_sizes(db, tmp_path):
    report = scale.run(db, tmp_path / "blobs", entries=300, lookups=60, vectors="random", ef_search=(40,),
                       scan_lookups=10, with_model=False)
    assert report["exact_hit"]["n"] == 60
    first = report["first_lookup"]
    assert first["semantic"]["n"] + first["miss"]["n"] == 60
    assert first["miss"]["n"] == 60 - report["exact_scan_would_serve"]  # every 4th lookup is far from all
    repeat = report["repeat_lookup"]["40"]
    assert repeat["decision_agreement"] == repeat["top1_agreement"] == 1.0  # 300 vectors: the graph is exact
    assert report["exact_scan_sql"]["top1_same_as_numpy"] == 1.0
    assert report["hnsw_index_mb"] > 0 and report["embeddings_table_mb"] > 0
    # The build is reported in tenths of a second (at this size it may well round to 0.0).
    assert isinstance(report["index_build_s"], float) and report["index_build_s"] == round(report["index_build_s"], 1)
    (tmp_path / "scale-random-300.json").write_text(json.dumps(report))
    assert "| 300 | random |" in markdown.render(tmp_path)


def test_throughput_generates_each_key_at_most_once(db, pg_url, tmp_path):
    report = throughput.run(pg_url, db, tmp_path / "blobs", base=300, topics=80, stream=200, workers=(1, 4),
                            modes=("thread", "process"), repeats=1, generate_ms=20, vectors="random")
    expected = report["expected_generations_exact_scan_in_order"]
    assert 0 < expected < report["distinct_topics_in_stream"]
    for run in report["runs"]:
        assert run["keys_generated_twice"] == []
        assert run["generations"] == run["generator_calls"] == run["generated_events"]
        assert sum(run["kinds"].values()) == 200
        if run["workers"] == 1:  # in stream order, the (exact, at this size) index decides as the scan does
            assert run["generations"] == expected
    one_thread = next(s for s in report["summary"] if s["mode"] == "thread" and s["workers"] == 1)
    assert len(report["summary"]) == 4  # one row per mode and worker count
    for row in report["summary"]:  # each against the one thread's median, not against itself
        assert row["ratio_to_one_thread"] == round(row["lookups_per_s_median"] / one_thread["lookups_per_s_median"], 2)


def test_cost_of_no_cache_exact_only_and_semantic(db, local_embedder, tmp_path):
    report = cost.run(db, local_embedder, tmp_path / "blobs", stream=40, price=0.04)
    policies = report["policies"]
    assert policies["no_cache"]["spent_usd"] == pytest.approx(40 * 0.04)
    exact, semantic = policies["exact_only"], policies["semantic"]
    assert exact["generations"] == report["distinct_keys"] and exact["kinds"].get("semantic", 0) == 0
    assert semantic["threshold"] == DEFAULT_THRESHOLD and semantic["kinds"].get("semantic", 0) > 0
    assert exact["spent_usd"] >= semantic["spent_usd"]
    for policy in (exact, semantic):
        assert policy["spent_usd"] == pytest.approx(policy["generations"] * 0.04)
        assert policy["keys_generated_twice"] == []
