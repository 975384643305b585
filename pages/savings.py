"""What the semantic image cache saves: lookups, hits, money, latency, and a demo that replays a
day of searches so the figures grow on screen. The replay runs on the server's own threads
(`demo_topics.REPLAYS`): this page starts, stops and resumes it and shows how far it got, live,
after a reload and in another tab too."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

import app_state
import auth
import demo_topics
from app_text import explain
from semcache import report

KIND_LABELS = {"exact": "🎯 Exact hit", "semantic": "🧭 Close phrase", "generated": "🎨 New picture", "error": "⚠️ Error"}
STEP_LABELS = {"total": "Whole lookup", "embed": "Embedding", "search": "Database", "generate": "Generation",
               "blob": "Picture store"}
SAVED_COLOR, SPENT_COLOR, RATE_COLOR = "#2e9e5b", "#e4572e", "#4c78a8"
TIMELINE_POINTS = 30  # by lookup number, buckets hold several lookups so the rate per period is readable
POLL_SECONDS = 1.0  # while a replay runs, its progress and the figures are read again this often


def money(value: float) -> str:
    return f"${value:,.2f}"


def draw_metrics(totals: report.Totals) -> None:
    # No sparklines in the metrics: Streamlit's own sparkline warns of an infinite extent in the
    # browser's console as it is drawn; the charts below show the same lines.
    first = st.columns(4)
    first[0].metric("Saved", money(totals.saved_usd), border=True,
                    help=f"{totals.hits:,} pictures served from the cache instead of being made again.")
    first[1].metric("Spent", money(totals.spent_usd), border=True,
                    help=f"{totals.generations:,} pictures made. Without the cache: "
                         f"{money(totals.without_cache_usd)}.")
    first[2].metric("Hit rate", f"{totals.hit_rate:.0%}", border=True,
                    help="Lookups answered from the cache, out of all answered lookups.")
    first[3].metric("Lookups", f"{totals.lookups:,}", border=True, help="Every time a search asked for a picture.")
    second = st.columns(5)
    second[0].metric("Exact hits", f"{totals.exact_hits:,}", help="The very same phrase was cached.")
    second[1].metric("Semantic hits", f"{totals.semantic_hits:,}",
                     help="A phrase close enough in meaning was cached.")
    second[2].metric("Generations", f"{totals.generations:,}", help="New pictures made (and paid for).")
    second[3].metric("Errors", f"{totals.errors:,}", help="Lookups that failed: a service did not answer.")
    second[4].metric("Cached pictures", f"{totals.entries:,}")


def extent(values, *, floor: float | None = None, at_least: float = 0.0) -> alt.Scale:
    """A scale over ``values`` given outright, so an axis always has an extent."""
    values = [float(v) for v in values]
    low = floor if floor is not None else min(values, default=0.0)
    high = max(max(values, default=low), low + at_least)
    return alt.Scale(domain=[low, high], nice=False)


def rate_chart(frame: pd.DataFrame, x: str, x_type: str, x_title: str, x_scale, series: list[str],
               colors: list[str]) -> alt.Chart:
    rate = frame.melt(id_vars=[x], value_vars=series, var_name="Series", value_name="Hit rate")
    return alt.Chart(rate).mark_line(strokeWidth=2.5).encode(
        x=alt.X(f"{x}:{x_type}", title=x_title, scale=x_scale),
        y=alt.Y("Hit rate:Q", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1]), title=None),
        color=alt.Color("Series:N", scale=alt.Scale(domain=series, range=colors),
                        legend=alt.Legend(orient="bottom", title=None)),
        tooltip=[f"{x}:{x_type}", "Series:N", alt.Tooltip("Hit rate:Q", format=".0%")],
    ).properties(height=260)


def money_chart(frame: pd.DataFrame, x: str, x_type: str, x_title: str, x_scale) -> alt.Chart:
    frame = frame.assign(**{"Without the cache": frame["Saved"] + frame["Spent"]})
    series = ["Without the cache", "Spent", "Saved"]
    spend = frame.melt(id_vars=[x], value_vars=series, var_name="Series", value_name="USD")
    return alt.Chart(spend).mark_line(strokeWidth=2.5).encode(
        x=alt.X(f"{x}:{x_type}", title=x_title, scale=x_scale),
        y=alt.Y("USD:Q", axis=alt.Axis(format="$,.2f"), title=None,
                scale=extent(spend["USD"], floor=0.0, at_least=0.04)),
        color=alt.Color("Series:N", scale=alt.Scale(domain=series, range=["#9a9a9a", SPENT_COLOR, SAVED_COLOR]),
                        legend=alt.Legend(orient="bottom", title=None)),
        strokeDash=alt.StrokeDash("Series:N", scale=alt.Scale(domain=series, range=[[5, 4], [1, 0], [1, 0]]),
                                  legend=None),
        tooltip=[f"{x}:{x_type}", "Series:N", alt.Tooltip("USD:Q", format="$,.2f")],
    ).properties(height=260)


def draw_charts(line: report.Timeline, bins: list[report.DistanceBin], latency: list[report.PathLatency],
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
    x_scale = extent(frame[x]) if by_lookup else alt.Undefined
    if len(line.points) < 2:  # one point draws no line, and leaves the axes nothing to span
        st.caption("The lines over time start with the second "
                   + ("lookup." if by_lookup else f"{line.unit} that has lookups."))
    else:
        left, right = st.columns(2, gap="medium")
        with left.container(border=True):
            st.markdown("**Hit rate**")
            st.altair_chart(rate_chart(frame, x, x_type, x_title, x_scale, ["Hit rate so far", "Hit rate in the period"],
                                       [RATE_COLOR, "#b5cde6"]))
        with right.container(border=True):
            st.markdown("**Money spent, and saved by the cache** (cumulative)")
            st.altair_chart(money_chart(frame, x, x_type, x_title, x_scale))
    with st.container(border=True):
        st.markdown("**How close the semantic hits were**")
        if bins:
            hist = pd.DataFrame({"low": [b.low for b in bins], "high": [b.high for b in bins],
                                 "Hits": [b.hits for b in bins], "Distance": [b.label for b in bins]})
            top = max(bins[-1].high, threshold)
            x_scale = alt.Scale(domain=[0.0, top], nice=False)
            bars = alt.Chart(hist).mark_bar(color=RATE_COLOR).encode(
                x=alt.X("low:Q", bin=alt.Bin(binned=True, step=bins[0].high - bins[0].low), scale=x_scale,
                        title="distance to the phrase that answered, as the threshold counts it",
                        axis=alt.Axis(format=".2f", values=[i / 20 for i in range(int(top * 20) + 1)])),
                x2="high:Q", y=alt.Y("Hits:Q", title="semantic hits", scale=extent(hist["Hits"], floor=0, at_least=1)),
                tooltip=["Distance:N", "Hits:Q"])
            rule = alt.Chart(pd.DataFrame({"threshold": [threshold]})).mark_rule(
                color=SPENT_COLOR, strokeDash=[4, 3], size=2).encode(
                x=alt.X("threshold:Q", scale=x_scale),
                tooltip=[alt.Tooltip("threshold:Q", title="threshold now", format=".2f")])
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


def draw_figures(cache) -> None:
    """Every figure since the cache was created; a database outage is said in their place."""
    try:
        totals = report.totals(cache.engine)
        line = report.timeline(cache.engine, max_points=TIMELINE_POINTS)
        draw_metrics(totals)
        if totals.lookups:
            threshold = cache.threshold
            draw_charts(line, report.distance_histogram(cache.engine, up_to=threshold),
                        report.latency_by_path(cache.engine), threshold)
        else:
            st.info("No lookups yet. Search for something, or replay the demo topics above.",
                    icon=":material/query_stats:")
    except report.SERVICE_ERRORS as exc:
        app_state.service_down(exc)


# ---------------------------------------------------------------------- the replay


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
            f"(“dog”, “puppy”, “doggy”…), looked up one after another through the cache. Topics whose "
            f"picture is already cached are left out, so the replay's hit rate is its own. "
            f"Next up: topic {start + 1}, “{app_state.md(demo_topics.TOPICS[start])}”.")


def what_it_replays(run: demo_topics.Progress) -> str:
    stretch = f"topics {run.first + 1}–{run.first + run.stretch}" if run.stretch > 1 else f"topic {run.first + 1}"
    if run.stretch > len(demo_topics.TOPICS) - run.first:
        stretch += " (round the list)"
    text = f"The replay of {stretch}: {run.total} lookups"
    if run.skipped:
        shown = ", ".join(f"“{app_state.md(topic)}”" for topic in run.skipped[:5])
        more = f" and {len(run.skipped) - 5} more" if len(run.skipped) > 5 else ""
        text += (f"; {len(run.skipped)} {'topic was' if len(run.skipped) == 1 else 'topics were'} left out, "
                 f"already cached from earlier searches ({shown}{more})")
    return text + "."


def replay_line(run: demo_topics.Progress) -> alt.Chart:
    frame = pd.DataFrame({"Lookup": [mark.number for mark in run.marks],
                          "Hit rate so far": [mark.hit_rate for mark in run.marks],
                          "Saved": [mark.saved_usd for mark in run.marks],
                          "Spent": [mark.spent_usd for mark in run.marks]})
    scale = extent(frame["Lookup"], floor=1, at_least=1)
    rate = rate_chart(frame, "Lookup", "Q", "lookups of this replay", scale, ["Hit rate so far"], [RATE_COLOR])
    spend = money_chart(frame, "Lookup", "Q", "lookups of this replay", scale)
    return (rate.properties(height=180) | spend.properties(height=180)).resolve_scale(
        color="independent", strokeDash="independent")


def draw_replay(run: demo_topics.Progress) -> None:
    """How far the user's replay got: its bar, its last lookup, its own figures and line."""
    if run.state == "finished" and not run.total:
        st.info(f"Nothing to replay in this stretch: {what_it_replays(run)[:-1]}. "
                f"The next replay goes on from topic {run.next_start + 1}.", icon=":material/info:")
        return
    label = {"running": f"Replaying… {run.done} of {run.total}",
             "stopping": f"Stopping after this lookup… {run.done} of {run.total}",
             "stopped": f"Stopped after {run.done} of {run.total}",
             "finished": f"Replayed {run.total} topics"}[run.state]
    st.progress(run.done / run.total if run.total else 1.0, text=label)
    st.caption(what_it_replays(run))
    if run.last is not None:
        with st.container(horizontal=True, vertical_alignment="center"):
            if run.last.result is not None and run.last.result.image:
                st.image(run.last.result.image, width=40)
            st.markdown(describe(run.last))
    cols = st.columns(4)
    cols[0].metric("Replay hit rate", "–" if run.hit_rate is None else f"{run.hit_rate:.0%}",
                   help="Hits served by pictures this replay made, out of its lookups such a hit or a new "
                        "picture answered. The hit rate above covers every lookup since the cache was created.")
    cols[1].metric("New pictures", f"{run.generated:,}", help=f"Spent {money(run.spent_usd)}.")
    cols[2].metric("Hits", f"{run.exact + run.semantic:,}",
                   help=f"{run.exact} exact, {run.semantic} close phrase; saved {money(run.saved_usd)}.")
    cols[3].metric("From earlier pictures", f"{run.earlier_hits:,}",
                   help="Hits served by pictures cached before this replay began (a paraphrase of an earlier "
                        "search): counted apart, not in the replay's hit rate.")
    if run.errors:
        st.warning(f"{run.errors} {'lookup' if run.errors == 1 else 'lookups'} failed. "
                   f"Last error: {app_state.md(run.last_error or '')}", icon=":material/error:")
    elif run.last_error:
        st.warning(app_state.md(run.last_error), icon=":material/error:")
    if run.state == "stopped" and run.done < run.total:
        st.caption(f"**Resume** goes on with lookup {run.done + 1} of {run.total}, "
                   f"“{app_state.md(run.topics[run.done])}”.")
    if len(run.marks) > 1:
        st.altair_chart(replay_line(run))


def start_replay() -> None:
    try:
        demo_topics.REPLAYS.start(user.name, app_state.cache(), int(st.session_state["demo_count"]))
    except demo_topics.ReplayBusy as exc:
        st.session_state["replay_note"] = str(exc)
    except report.SERVICE_ERRORS as exc:
        st.session_state["replay_note"] = explain(exc)


def resume_replay() -> None:
    try:
        demo_topics.REPLAYS.resume(user.name, app_state.cache())
    except demo_topics.ReplayBusy as exc:
        st.session_state["replay_note"] = str(exc)
    except report.SERVICE_ERRORS as exc:
        st.session_state["replay_note"] = explain(exc)


def stop_replay() -> None:
    demo_topics.REPLAYS.stop(user.name)


# ---------------------------------------------------------------------- the page

user = auth.require_admin()  # every user's topics are shown here

st.title("Savings")
st.caption("Every picture served from the cache is one the image model did not have to make. "
           "Figures cover every lookup since the cache was created.")

try:
    cache = app_state.cache()
except report.SERVICE_ERRORS as exc:
    app_state.service_down(exc)
    st.stop()

drawn = demo_topics.REPLAYS.progress(user.name)
running = drawn is not None and drawn.active

with st.container(border=True):
    text_col, count_col, button_col = st.columns([4, 1.3, 1], vertical_alignment="bottom")
    with text_col:
        st.markdown("**Demo: replay a day of searches**")
        st.caption(describe_next(demo_topics.REPLAYS.next_start(user.name)))
    if running:
        button_col.button("Stop", icon=":material/stop:", width="stretch", key="demo_stop", on_click=stop_replay,
                          disabled=drawn.state == "stopping")
    else:
        count_col.number_input("How many", min_value=1, max_value=1000, value=50, step=10, key="demo_count")
        button_col.button("Replay", type="primary", icon=":material/play_arrow:", width="stretch", key="demo_go",
                          on_click=start_replay)
        if drawn is not None and drawn.state == "stopped" and drawn.done < drawn.total:
            button_col.button("Resume", icon=":material/resume:", width="stretch", key="demo_resume",
                              on_click=resume_replay)
    if note := st.session_state.pop("replay_note", None):
        st.error(app_state.md(note), icon=":material/block:")

    @st.fragment(run_every=POLL_SECONDS if running else None)
    def live_replay() -> None:
        run = demo_topics.REPLAYS.progress(user.name)
        if running and (run is None or not run.active):
            st.rerun(scope="app")  # it ended: the buttons change, and the page stops polling
        if run is not None:
            draw_replay(run)

    live_replay()


@st.fragment(run_every=POLL_SECONDS if running else None)
def live_figures() -> None:
    draw_figures(cache)


live_figures()
