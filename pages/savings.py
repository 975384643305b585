"""What the semantic image cache saves: lookups, hits, money, latency, and a demo that replays a
day of searches so the figures grow on screen."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

import app_state
import auth
import demo_topics
from semcache import report

KIND_LABELS = {"exact": "🎯 Exact hit", "semantic": "🧭 Close phrase", "generated": "🎨 New picture", "error": "⚠️ Error"}
STEP_LABELS = {"total": "Whole lookup", "embed": "Embedding", "search": "Database", "generate": "Generation",
               "blob": "Picture store"}
SAVED_COLOR, SPENT_COLOR, RATE_COLOR = "#2e9e5b", "#e4572e", "#4c78a8"
TIMELINE_POINTS = 30  # by lookup number, buckets hold several lookups so the rate per period is readable
CHART_EVERY = 10  # during a replay, charts are redrawn every this many lookups (metrics after each)


def money(value: float) -> str:
    return f"${value:,.2f}"


def draw_metrics(slot, totals: report.Totals, line: report.Timeline) -> None:
    def series(values: list[float]) -> list[float] | None:
        return values if len(values) > 1 else None

    points = line.points
    with slot.container():
        first = st.columns(4)
        first[0].metric("Saved", money(totals.saved_usd), border=True, chart_type="area",
                        chart_data=series([point.saved_usd for point in points]),
                        help=f"{totals.hits:,} pictures served from the cache instead of being made again.")
        first[1].metric("Spent", money(totals.spent_usd), border=True, chart_type="area",
                        chart_data=series([point.spent_usd for point in points]),
                        help=f"{totals.generations:,} pictures made. Without the cache: "
                             f"{money(totals.without_cache_usd)}.")
        first[2].metric("Hit rate", f"{totals.hit_rate:.0%}", border=True,
                        chart_data=series([round(100 * point.cumulative_hit_rate, 1) for point in points]),
                        help="Lookups answered from the cache, out of all answered lookups.")
        first[3].metric("Lookups", f"{totals.lookups:,}", border=True, chart_type="area",
                        chart_data=series([point.lookup_number for point in points]),
                        help="Every time a search asked for a picture.")
        second = st.columns(5)
        second[0].metric("Exact hits", f"{totals.exact_hits:,}", help="The very same phrase was cached.")
        second[1].metric("Semantic hits", f"{totals.semantic_hits:,}",
                         help="A phrase close enough in meaning was cached.")
        second[2].metric("Generations", f"{totals.generations:,}", help="New pictures made (and paid for).")
        second[3].metric("Errors", f"{totals.errors:,}", help="Lookups that failed: a service did not answer.")
        second[4].metric("Cached pictures", f"{totals.entries:,}")


def draw_charts(slot, line: report.Timeline, bins: list[report.DistanceBin], latency: list[report.PathLatency],
                threshold: float) -> None:
    by_lookup = line.unit == "lookup"
    x, x_title = ("Lookup", "lookups so far") if by_lookup else ("When", f"time (per {line.unit})")
    frame = pd.DataFrame({
        x: [point.lookup_number if by_lookup else point.at for point in line.points],
        "Hit rate so far": [point.cumulative_hit_rate for point in line.points],
        "Hit rate in the period": [point.hit_rate for point in line.points],
        "Saved": [point.saved_usd for point in line.points],
        "Spent": [point.spent_usd for point in line.points],
    })
    x_type = "Q" if by_lookup else "T"
    with slot.container():
        left, right = st.columns(2, gap="medium")
        with left.container(border=True):
            st.markdown("**Hit rate**")
            rate = frame.melt(id_vars=[x], value_vars=["Hit rate so far", "Hit rate in the period"],
                              var_name="Series", value_name="Hit rate")
            st.altair_chart(
                alt.Chart(rate).mark_line(strokeWidth=2.5).encode(
                    x=alt.X(f"{x}:{x_type}", title=x_title),
                    y=alt.Y("Hit rate:Q", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1]), title=None),
                    color=alt.Color("Series:N", scale=alt.Scale(domain=["Hit rate so far", "Hit rate in the period"],
                                                                range=[RATE_COLOR, "#b5cde6"]),
                                    legend=alt.Legend(orient="bottom", title=None)),
                    tooltip=[f"{x}:{x_type}", "Series:N", alt.Tooltip("Hit rate:Q", format=".0%")],
                ).properties(height=260))
        with right.container(border=True):
            st.markdown("**Money spent, and saved by the cache** (cumulative)")
            frame["Without the cache"] = frame["Saved"] + frame["Spent"]
            series = ["Without the cache", "Spent", "Saved"]
            spend = frame.melt(id_vars=[x], value_vars=series, var_name="Series", value_name="USD")
            st.altair_chart(
                alt.Chart(spend).mark_line(strokeWidth=2.5).encode(
                    x=alt.X(f"{x}:{x_type}", title=x_title),
                    y=alt.Y("USD:Q", axis=alt.Axis(format="$,.2f"), title=None),
                    color=alt.Color("Series:N", scale=alt.Scale(domain=series,
                                                                range=["#9a9a9a", SPENT_COLOR, SAVED_COLOR]),
                                    legend=alt.Legend(orient="bottom", title=None)),
                    strokeDash=alt.StrokeDash("Series:N", scale=alt.Scale(domain=series,
                                                                          range=[[5, 4], [1, 0], [1, 0]]),
                                              legend=None),
                    tooltip=[f"{x}:{x_type}", "Series:N", alt.Tooltip("USD:Q", format="$,.2f")],
                ).properties(height=260))
        with st.container(border=True):
            st.markdown("**How close the semantic hits were**")
            if bins:
                hist = pd.DataFrame({"low": [b.low for b in bins], "high": [b.high for b in bins],
                                     "Hits": [b.hits for b in bins], "Distance": [b.label for b in bins]})
                bars = alt.Chart(hist).mark_bar(color=RATE_COLOR).encode(
                    x=alt.X("low:Q", bin=alt.Bin(binned=True, step=bins[0].high - bins[0].low),
                            title="distance to the phrase that answered, as the threshold counts it",
                            axis=alt.Axis(format=".2f", values=[i / 20 for i in range(int(bins[-1].high * 20) + 1)])),
                    x2="high:Q", y=alt.Y("Hits:Q", title="semantic hits"),
                    tooltip=["Distance:N", "Hits:Q"])
                rule = alt.Chart(pd.DataFrame({"threshold": [threshold]})).mark_rule(
                    color=SPENT_COLOR, strokeDash=[4, 3], size=2).encode(
                    x="threshold:Q", tooltip=[alt.Tooltip("threshold:Q", title="threshold now", format=".2f")])
                st.altair_chart((bars + rule).properties(height=200))
                st.caption(f"The dashed line is the threshold now ({threshold:.2f}).")
            else:
                st.caption("No semantic hits yet.")
        with st.container(border=True):
            st.markdown("**Latency by path** (median · 95th percentile)")
            st.dataframe(
                pd.DataFrame({
                    "Path": [KIND_LABELS.get(path.kind, path.kind) for path in latency],
                    "Lookups": [path.lookups for path in latency],
                    **{STEP_LABELS[step]: [format_step(getattr(path, step)) for path in latency]
                       for step in report.STEPS},
                }),
                hide_index=True,
                column_config={"Lookups": st.column_config.NumberColumn(format="localized", width="small")})
            st.caption("Milliseconds; “–” where a step does not run on that path.")


def format_step(step: report.StepLatency) -> str:
    if step.p50_ms is None:
        return "–"
    return f"{step.p50_ms:,.1f} · {step.p95_ms:,.1f}"


def draw_all(metrics_slot, charts_slot, cache) -> report.Totals:
    totals = report.totals(cache.engine)
    line = report.timeline(cache.engine, max_points=TIMELINE_POINTS)
    draw_metrics(metrics_slot, totals, line)
    if totals.lookups:
        threshold = cache.threshold
        draw_charts(charts_slot, line, report.distance_histogram(cache.engine, up_to=threshold),
                    report.latency_by_path(cache.engine), threshold)
    else:
        charts_slot.info("No lookups yet. Search for something, or replay the demo topics above.",
                         icon=":material/query_stats:")
    return totals


def describe(step: demo_topics.ReplayStep) -> str:
    """One replayed lookup, as Markdown. The phrase that answered is any user's topic: text only."""
    result = step.result
    topic = app_state.md(step.topic)
    if result is None:
        return f"“{topic}” → ⚠️ {app_state.md(step.error)}"
    if result.kind == "generated":
        return f"“{topic}” → 🎨 new picture ({money(result.cost_spent_usd)})"
    if result.kind == "exact":
        return f"“{topic}” → 🎯 exact hit (saved {money(result.cost_saved_usd)})"
    return f"“{topic}” → 🧭 picture of “{app_state.md(result.served_key)}” (distance {result.distance:.2f})"


def describe_next(start: int) -> str:
    return (f"{len(demo_topics.TOPICS)} topics people search their mail for, with repeats and synonyms "
            f"(“dog”, “puppy”, “doggy”…), looked up one after another through the cache. "
            f"Next up: topic {start + 1}, “{app_state.md(demo_topics.TOPICS[start])}”.")


# ---------------------------------------------------------------------- the page

auth.require_admin()  # every user's topics are shown here

st.title("Savings")
st.caption("Every picture served from the cache is one the image model did not have to make. "
           "Figures cover every lookup since the cache was created.")

try:
    cache = app_state.cache()
except report.SERVICE_ERRORS as exc:
    app_state.service_down(exc)
    st.stop()

demo = st.container(border=True)
with demo:
    start = st.session_state.get("demo_next", 0) % len(demo_topics.TOPICS)
    text_col, count_col, button_col = st.columns([4, 1.3, 1], vertical_alignment="bottom")
    with text_col:
        st.markdown("**Demo: replay a day of searches**")
        next_up = st.empty()
        next_up.caption(describe_next(start))
    count = count_col.number_input("How many", min_value=1, max_value=1000, value=50, step=10, key="demo_count")
    replay = button_col.button("Replay", type="primary", icon=":material/play_arrow:", width="stretch")

metrics_slot = st.empty()
charts_slot = st.empty()
try:
    draw_all(metrics_slot, charts_slot, cache)
except report.SERVICE_ERRORS as exc:
    charts_slot.empty()
    with metrics_slot.container():
        app_state.service_down(exc)
    st.stop()

if replay:
    topics = demo_topics.pick(int(count), start)
    st.session_state["demo_next"] = (start + len(topics)) % len(demo_topics.TOPICS)
    next_up.caption(describe_next(st.session_state["demo_next"]))
    tally = {"exact": 0, "semantic": 0, "generated": 0, "error": 0}
    last_error = None
    with demo, st.status(f"Replaying {len(topics)} topics…", expanded=True) as status:
        bar = st.progress(0.0)
        now = st.empty()
        for step in demo_topics.replay(cache, topics):
            tally[step.result.kind if step.result else "error"] += 1
            last_error = step.error or last_error
            bar.progress(step.fraction, text=f"{step.number} of {step.total}")
            with now.container(horizontal=True, vertical_alignment="center"):
                if step.result is not None and step.result.image:
                    st.image(step.result.image, width=40)
                st.markdown(describe(step))
            try:
                if step.number % CHART_EVERY == 0 or step.number == step.total:
                    draw_all(metrics_slot, charts_slot, cache)
                else:
                    draw_metrics(metrics_slot, report.totals(cache.engine),
                                 report.timeline(cache.engine, max_points=TIMELINE_POINTS))
            except report.SERVICE_ERRORS:
                pass  # the lookup itself reports the outage; the figures catch up on the next one
        summary = (f"Replayed {len(topics)} topics: {tally['exact']} exact, {tally['semantic']} close-phrase, "
                   f"{tally['generated']} new pictures, {tally['error']} errors")
        status.update(label=summary, state="error" if tally["error"] else "complete", expanded=bool(tally["error"]))
        if last_error:
            st.warning(f"Last error: {app_state.md(last_error)}")
