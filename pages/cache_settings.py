"""Settings of the image cache, for product owners: how close a phrase must be to reuse a
picture, a preview of what that means, the latest lookups, and the cached pictures."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import pandas as pd
import streamlit as st

import app_state
import auth
import import_views
from app_text import RELATION_NOTES, explain
from semcache import eval as evaluation
from semcache import report
from semcache.matching import ENTRY_LOOSEN_CAP
from semcache.normalize import topic_key

ACTOR = "settings page"
ENTRY_BOUNDS = [0.01, 0.02, 0.05, 0.1, 0.2, 0.3]
PREVIEW_SIZE = 6
KIND_LABELS = {"exact": "🎯 exact", "semantic": "🧭 close phrase", "generated": "🎨 new picture", "error": "⚠️ error"}


@contextmanager
def service_call() -> Iterator[None]:
    """Show a service outage as a message in place of the section that needed the service."""
    try:
        yield
    except report.SERVICE_ERRORS as exc:
        app_state.service_down(exc)


@st.cache_data(max_entries=2000, show_spinner=False)
def image(blob_key: str) -> bytes:
    """Blobs are content-addressed, so a key's bytes never change: safe to keep."""
    return app_state.cache_admin().image(blob_key)


def flash(slot: str) -> None:
    """The message an action's callback left for this section, shown once."""
    message = st.session_state.pop(f"flash_{slot}", None)
    if message:
        kind, text = message
        (st.success if kind == "success" else st.error)(text)


def run_action(slot: str, action, success: str) -> None:
    try:
        action()
    except report.SERVICE_ERRORS as exc:
        st.session_state[f"flash_{slot}"] = ("error", app_state.md(explain(exc)))
    else:
        st.session_state[f"flash_{slot}"] = ("success", success)


# ---------------------------------------------------------------------- callbacks


def save_threshold() -> None:
    value = round(float(st.session_state["threshold"]), 3)
    run_action("threshold", lambda: app_state.cache().set_threshold(value, actor=ACTOR),
               f"Saved: {shown(value)}. It applies to every user from their next search.")


def shown(value: float) -> str:
    """A threshold as people read it: two decimals, three when the third counts."""
    return f"{value:.2f}" if round(value, 2) == round(value, 3) else f"{value:.3f}"


def mark_wrong() -> None:
    lookup = st.session_state.get("wrong_options", {}).get(st.session_state.get("wrong_choice"))
    if lookup is None:
        return
    run_action("wrong", lambda: app_state.cache_admin().mark_wrong(lookup.query, lookup.served_key,
                                                                   distance=lookup.distance, actor=ACTOR),
               f"“{app_state.md(lookup.query)}” will never again be served the picture of "
               f"“{app_state.md(lookup.served_key)}”.")


def mark_right() -> None:
    lookup = st.session_state.get("wrong_options", {}).get(st.session_state.get("wrong_choice"))
    if lookup is None:
        return
    run_action("wrong", lambda: app_state.cache_admin().mark_right(lookup.query, lookup.served_key,
                                                                   distance=lookup.distance, actor=ACTOR),
               f"Recorded: “{app_state.md(lookup.served_key)}” was a good picture for “{app_state.md(lookup.query)}”.")


def save_limits() -> None:
    images = st.session_state["limit_images"] if st.session_state["limit_images_on"] else None
    budget = st.session_state["limit_budget"] if st.session_state["limit_budget_on"] else None

    def store() -> None:
        app_state.cache().guard.set_limits(images_per_user=None if images is None else int(images),
                                           budget_usd=budget, actor=ACTOR)

    run_action("limits", store, "Saved. The limits apply to every user from their next search.")


def use_recommended(value: float, thin: bool) -> None:
    if thin and not st.session_state.get("accept_thin"):
        st.session_state["flash_evidence"] = ("error", "Tick the box to accept a threshold chosen on thin evidence.")
        return

    def store() -> None:
        app_state.cache().set_threshold(value, actor=ACTOR)
        st.session_state["accept_thin"] = False

    run_action("evidence", store, f"Saved: {value:.3f}. It applies to every user from their next search.")


@st.cache_data(max_entries=8, show_spinner="Scoring the pairs with the cache's own decision…")
def scored_file(content: bytes, space: str) -> evaluation.Scored:
    """A pairs file scored once per content and embedding space (``space`` is part of the key)."""
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".txt") as f:
        f.write(content)
        f.flush()
        pairs = evaluation.read_pairs(f.name)
    cache = app_state.cache()
    return evaluation.score_pairs(pairs, cache.embedder, cache.matcher, max_topic_chars=cache.max_topic_chars)


def scored_feedback() -> evaluation.Scored:
    cache = app_state.cache()
    return evaluation.score_pairs(evaluation.feedback_pairs(cache.engine), cache.embedder, cache.matcher,
                                  max_topic_chars=cache.max_topic_chars)


def save_entry_error_bound() -> None:
    value = float(st.session_state["entry_error_bound"])
    run_action("entry_bound", lambda: app_state.cache().set_entry_error_bound(value, actor=ACTOR),
               f"Saved: a picture may reach past the threshold while at most {value:.0%} of its serves may be wrong.")


def entry_bound_control() -> None:
    """The error bound each picture's own threshold loosens under (when pictures keep their own)."""
    cache = app_state.cache()
    if not cache.entry_thresholds:
        st.caption("Every picture is held to the one threshold (CACHE_ENTRY_THRESHOLDS is off).")
        return
    bound = cache.entry_error_bound
    if st.session_state.get("entry_error_bound_seen") != bound:
        st.session_state["entry_error_bound"] = bound if bound in ENTRY_BOUNDS else min(
            ENTRY_BOUNDS, key=lambda b: abs(b - bound))
        st.session_state["entry_error_bound_seen"] = bound
    st.select_slider(
        "Largest share of wrong serves at which a picture may reach past the threshold", options=ENTRY_BOUNDS,
        key="entry_error_bound", format_func=lambda v: f"{v:.0%}", on_change=save_entry_error_bound,
        help="Each picture learns from your verdicts: a wrong match brings its own threshold below that "
             "distance; good matches let it reach to the farthest good one (at most "
             f"{ENTRY_LOOSEN_CAP:.2f} past the threshold) only while the upper end of the 95% interval of "
             "its share of wrong serves stays within this.")
    flash("entry_bound")


def interval(bounds: list[float] | None) -> str:
    """A rate's 95% interval in words (empty without pairs to judge by)."""
    if not bounds:
        return ""
    return f"95% interval {bounds[0]:.1%}–{bounds[1]:.1%}"


# The threshold lines: neither of the curves' colours (blue, red), nor each other's.
NOW_COLOUR, RECOMMENDED_COLOUR = "#3d3d3d", "#e07b00"


def evidence_chart(curve: list[dict], now: float, recommended: float | None):
    """The hit and false-hit curves with the current and recommended thresholds as lines of
    their own colours, each labelled on its own row (so close values never overlap), on the
    side of its line that has room."""
    import altair as alt

    frame = pd.DataFrame(curve).rename(columns={"hit_rate": "served (may share)",
                                                "false_hit_rate": "wrong (may not share)"})
    long = frame.melt(id_vars="threshold", value_vars=["served (may share)", "wrong (may not share)"],
                      var_name="share", value_name="rate").dropna()
    right = max(1.0, now, recommended or 0.0)
    x = alt.X("threshold:Q", title="threshold (cosine distance)", scale=alt.Scale(domain=[0, right], nice=False))
    chart = alt.Chart(long).mark_line().encode(
        x=x, y=alt.Y("rate:Q", title="share of pairs", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("share:N", title=None, scale=alt.Scale(range=["#2b7bba", "#d1495b"]),
                        legend=alt.Legend(orient="bottom", direction="vertical")))  # fits a phone's width
    marks = [(now, f"now {shown(now)}", NOW_COLOUR, [5, 4], 10)]
    if recommended is not None:
        marks.append((recommended, f"recommended {recommended:.3f}", RECOMMENDED_COLOUR, [], 28))
    for value, label, colour, dash, row in marks:
        at = pd.DataFrame([{"threshold": value, "label": label}])
        chart += alt.Chart(at).mark_rule(color=colour, strokeDash=dash, strokeWidth=2).encode(x="threshold:Q")
        left_side = value > 0.62 * right
        chart += alt.Chart(at).mark_text(color=colour, fontWeight="bold", align="right" if left_side else "left",
                                         dx=-5 if left_side else 5, baseline="middle").encode(
            x="threshold:Q", y=alt.value(row), text="label:N")
    return chart


def delete_entries() -> None:
    phrases = list(st.session_state.get("delete_choice", []))

    def delete() -> None:
        for phrase in phrases:
            app_state.cache_admin().delete(phrase)
        st.session_state["delete_choice"] = []

    run_action("delete", delete, f"Deleted {len(phrases)} cached picture{'s' if len(phrases) != 1 else ''}. "
                                 "The next search for them makes a new one.")


def ask_regenerate() -> None:
    st.session_state["regenerate_pending"] = st.session_state.get("regenerate_choice")


def cancel_regenerate() -> None:
    st.session_state.pop("regenerate_pending", None)


def regenerate_entry() -> None:
    phrase = st.session_state.pop("regenerate_pending", None)
    if not phrase:
        return
    user = auth.current_user()
    try:
        done = app_state.cache_admin().regenerate(phrase, actor=user.name if user else None)
    except report.SERVICE_ERRORS as exc:
        st.session_state["flash_regenerate"] = (
            "error", f"No new picture for \u201c{app_state.md(phrase)}\u201d: {app_state.md(explain(exc))}")
    else:
        st.session_state["flash_regenerate"] = (
            "success", f"New picture for \u201c{app_state.md(phrase)}\u201d (\\${done.cost_spent_usd:.2f}): "
                       f"{app_state.md(done.entry.detail)}")


# ---------------------------------------------------------------------- the page

auth.require_admin()  # every user's topics are shown here

st.title("Image cache settings")
st.caption("Every search shows a pixel-art picture of its topic. Making one costs money, so pictures "
           "are reused for phrases that mean nearly the same. Here you decide how near is near enough.")

try:
    cache = app_state.cache()
    setting = report.threshold_setting(cache.engine, cache.default_threshold, model=cache.embedder.model,
                                       dimensions=int(cache.embedder.dimensions))
except report.SERVICE_ERRORS as exc:
    app_state.service_down(exc)
    st.stop()

price = float(cache.generator.price_usd)
threshold_tab, evidence_tab, lookups_tab, entries_tab, setup_tab = st.tabs(
    [":material/tune: Threshold", ":material/insights: Evidence", ":material/history: Recent lookups",
     ":material/photo_library: Cached pictures", ":material/settings: Setup"])

with threshold_tab:
    # Every run shows what is stored for the space in use: a value set in another tab or by the
    # command line, or a save that failed, never leaves the slider at another one.
    st.session_state["threshold"] = min(1.0, round(setting.value, 3))

    left, right = st.columns([3, 2], gap="large")
    with left:
        st.subheader("How close is close enough?")
        st.slider("Largest distance at which a cached picture is reused", min_value=0.0, max_value=1.0,
                  step=0.001, format="%.3f", key="threshold", on_change=save_threshold,
                  help="A cosine distance. Saved as soon as you let go of the slider.")
        flash("threshold")
        if setting.value > 1.0:
            st.warning(f"The stored value is {setting.value:.2f}, beyond this slider; moving it stores a new one.")
    with right:
        when = f"set by {app_state.md(setting.updated_by or 'the command line')}, {import_views.when(setting.updated_at)}" \
            if setting.stored else "the default: nobody has changed it yet"
        st.metric("In use for every search", shown(setting.value), help=when, border=True)
        st.caption(when.capitalize() + ".")
        st.caption(f"For the embedding model in use, `{setting.model}` · {setting.dimensions} dimensions. "
                   "Each model has its own threshold: distances of different models are not comparable.")

    st.markdown(
        "Each phrase is placed on a map of meanings. The **distance** between two phrases says how far "
        "apart their meanings are: **0** is the same meaning, around **0.3** a close synonym "
        "(*puppy* and *dog*), and **0.6 or more** another subject. When someone searches, the picture of the "
        "nearest cached phrase is shown if it is at most this far away; otherwise a new picture is made "
        f"(${price:.2f}).")
    st.caption("**0** reuses a picture only for the very same phrase (or another form of the same word). Lower: more "
               "new pictures, fewer wrong ones. Higher: more reuse, and more pictures that do not fit. The "
               "**Evidence** tab shows what each value does on judged phrase pairs.")
    if cache.matcher.uses_lexicon:
        st.caption("Single words get a second look in WordNet: opposites (*hot*, *cold*) are never served; for "
                   "synonyms the distance counts half, for *a kind of* (*puppy*, *dog*) 0.7 of it; two words "
                   "WordNet knows but does not link count 0.05 further.")

    st.divider()
    st.subheader("Preview")
    st.caption("Type a phrase to see the cached phrases nearest to it and which picture it would get now. "
               "No picture is made and nothing is counted in the savings.")
    topic = st.text_input("Phrase to preview", placeholder="puppy, villa, Paris vacation…", max_chars=200,
                          key="preview_topic")
    if topic.strip():
        threshold = setting.value  # what searches use now, whatever the slider was left at
        with service_call():
            neighbours = cache.neighbours(topic, k=PREVIEW_SIZE, threshold=threshold)
            served = next((n for n in neighbours if n.would_serve), None)
            if served is None:
                st.info(f"No cached phrase is within {shown(threshold)} of “{app_state.md(topic)}”: "
                        f"it would get a new picture (${price:.2f}).", icon=":material/brush:")
            elif served.key == topic_key(topic, cache.max_topic_chars):
                st.success(f"“{app_state.md(topic)}” is cached itself: its own picture is served.",
                           icon=":material/check_circle:")
            else:
                scored = "" if served.score == served.distance else f", counted as {served.score:.2f}"
                note = f" {RELATION_NOTES[served.relation]}." if served.relation in RELATION_NOTES else ""
                st.success(f"“{app_state.md(topic)}” would be served the picture of “{app_state.md(served.key)}” "
                           f"(distance {served.distance:.2f}{scored}, within {shown(threshold)}).{note}",
                           icon=":material/check_circle:")
            if neighbours:
                for column, neighbour in zip(st.columns(PREVIEW_SIZE), neighbours):
                    with column.container(border=True):
                        try:
                            st.image(image(neighbour.blob_key), width=96)
                        except report.SERVICE_ERRORS:
                            st.caption("picture unavailable")
                        st.markdown(f"**{app_state.md(neighbour.key)}**")
                        st.caption(f"distance {neighbour.distance:.3f}")
                        if neighbour.relation == "antonym":
                            st.caption("opposites: never served")
                        elif neighbour.relation == "contrast":
                            st.caption("differ in a word that changes the picture: never served")
                        elif neighbour.score is not None and neighbour.score != neighbour.distance:
                            st.caption(f"{neighbour.relation}: counts {neighbour.score:.3f}")
                        if neighbour.would_serve:
                            st.badge("Served", icon=":material/check:", color="green", help="The picture this phrase would get now.")
                        elif neighbour.banned:
                            st.badge("Banned", icon=":material/block:", color="red", help="Marked as a wrong match for this phrase.")
                        elif neighbour.score is None or neighbour.score > threshold:
                            st.badge("Too far", color="gray")
                        else:
                            st.badge("In reach", color="blue", help="Within the threshold, but a nearer phrase wins.")
            else:
                st.caption("The cache is empty.")

with evidence_tab:
    st.subheader("Choose the threshold from evidence")
    st.caption("Phrase pairs judged by people: 1 where the same picture may be served for both, 0 where it may not. "
               "Each pair is run through the cache's own decision (the first phrase cached, the second searched), "
               "at every threshold.")
    source = st.radio("Pairs", ["Judgements recorded here", "A pairs file"], horizontal=True, key="evidence_source",
                      help="Recorded: matches marked wrong or good under Recent lookups. A file: tab-separated "
                           "lines text_a, text_b, label (or a 0-10 similarity score), # for comments.")
    limit = st.select_slider("Largest share of wrong pictures you accept", options=[0.005, 0.01, 0.02, 0.05, 0.1],
                             value=0.01, format_func=lambda v: f"{v:.1%}", key="evidence_limit")
    scored = None
    with service_call():
        if source == "A pairs file":
            upload = st.file_uploader("Pairs file", type=["txt", "tsv"], key="evidence_file")
            if upload is not None:
                try:
                    scored = scored_file(upload.getvalue(), cache.embedder.model)
                except (ValueError, UnicodeDecodeError) as exc:
                    st.error(f"That file cannot be read: {app_state.md(exc)}")
        else:
            scored = scored_feedback()
    if scored is not None and not len(scored.pairs):
        st.info("No judged pairs yet. Mark matches as wrong or good under **Recent lookups**, or use a pairs file.")
    elif scored is not None:
        result = evaluation.report(scored, model=cache.embedder.model, default_threshold=setting.value,
                                   max_false_hit_rate=limit)
        rec = result["recommended"]
        recommended = rec["threshold"]
        now = result["at_default"]
        cols = st.columns(4)
        cols[0].metric("Pairs", f"{result['pairs']:,}", help=f"{result['positives']} may share a picture, "
                                                             f"{result['negatives']} may not")
        cols[1].metric(f"Served at {shown(setting.value)} (now)",
                       "–" if now["hit_rate"] is None else f"{now['hit_rate']:.0%}",
                       help="Share of the pairs that may share a picture which would. " + interval(now["hit_interval"]))
        cols[2].metric(f"Wrong at {shown(setting.value)} (now)",
                       "–" if now["false_hit_rate"] is None else f"{now['false_hit_rate']:.1%}",
                       help="Share of the pairs that may not share a picture which would. "
                            + interval(now["false_hit_interval"]))
        if recommended is None:
            cols[3].metric("Recommended", "–", help="Needs pairs marked 0 (may not share) to judge by.")
        else:
            rec_hit = rec.get("hit_rate")
            cols[3].metric(f"Recommended for ≤ {limit:.1%} wrong", f"{recommended:.3f}",
                           delta=None if rec_hit is None else f"serves {rec_hit:.0%}", delta_color="off")
            st.caption(
                f"At {recommended:.3f}: served for {rec['hits']} of {rec['positives']} pairs that may share a picture"
                f"{' (' + interval(rec['hit_interval']) + ')' if rec['hit_interval'] else ''}; wrong for "
                f"{rec['false_hits']} of {rec['negatives']} that may not ({interval(rec['false_hit_interval'])}).")
        if rec["thin"]:
            upper = rec.get("false_hit_interval")
            st.warning(f"The evidence is thin: {result['negatives']} pairs that may not share a picture, fewer than "
                       f"the {rec['min_negatives']} it takes to trust a false-hit rate"
                       + (f"; the share of wrong pictures could be as high as {upper[1]:.0%}" if upper else "")
                       + ". Judge more matches under **Recent lookups**, or use a pairs file.",
                       icon=":material/science:")
        st.altair_chart(evidence_chart(result["curve"], setting.value, recommended), width="stretch")
        if recommended is not None and round(recommended, 3) != round(setting.value, 3):
            confirmed = True
            if rec["thin"]:
                confirmed = st.checkbox(f"Use {recommended:.3f} although the evidence is thin", key="accept_thin")
            st.button(f"Use {recommended:.3f}", on_click=use_recommended, args=(recommended, rec["thin"]),
                      type="primary", icon=":material/done:", key="use_recommended", disabled=not confirmed)
        flash("evidence")
        if scored.skipped:
            st.caption(f"{scored.skipped} pair(s) were left out: empty or too long to be a topic.")

with lookups_tab:
    st.subheader("Recent lookups")
    with service_call():
        lookups = report.recent_lookups(cache.engine, limit=100)
        if not lookups:
            st.info("No lookups yet. They appear here as soon as someone searches.")
        else:
            st.dataframe(
                pd.DataFrame({
                    "When": [row.at for row in lookups],
                    "Query": [row.query for row in lookups],
                    "How": [KIND_LABELS.get(row.kind, row.kind) for row in lookups],
                    "Served picture of": [row.served_key if row.kind != "generated" else None for row in lookups],
                    "Distance": [row.distance if row.kind == "semantic" else None for row in lookups],
                    "Threshold": [row.threshold for row in lookups],
                    "Time": [row.total_ms for row in lookups],
                    "Problem": [row.error for row in lookups],
                }),
                hide_index=True, height=360, placeholder="–",
                column_config={
                    "When": st.column_config.DatetimeColumn(format="distance", width="small"),
                    "Distance": st.column_config.NumberColumn(format="%.3f", width="small"),
                    "Threshold": st.column_config.NumberColumn(format="%.2f", width="small"),
                    "Time": st.column_config.NumberColumn(format="%.0f ms", width="small"),
                })

    st.subheader("Wrong match?")
    st.caption("If a search was served a picture that does not fit, say so: that search is never again "
               "served that picture (other phrases still are).")
    with service_call():
        candidates = [row for row in report.recent_lookups(cache.engine, limit=200, kinds=["semantic"])
                      if not row.banned]
        unique = {}
        for row in candidates:
            unique.setdefault((row.key, row.served_key), row)
        # Chosen by the pair itself, never by its place in the list: a ban (which takes its pair
        # out) or a new lookup (which comes first) leaves the choice where it was, or empty.
        options = st.session_state["wrong_options"] = unique
        if not options:
            st.caption("No close-phrase matches to judge yet.")
        else:
            left, right = st.columns([3, 1], vertical_alignment="bottom")
            left.selectbox("Recent match", options=list(options), key="wrong_choice", index=None,
                           placeholder="Choose a match to judge…",
                           format_func=lambda pair: (f"“{pair[0]}” was served “{pair[1]}” "
                                                     f"(distance {options[pair].distance:.2f})"))
            chosen = st.session_state.get("wrong_choice") in options
            right.button("Never serve this again", on_click=mark_wrong, icon=":material/block:", type="primary",
                         disabled=not chosen)
            right.button("Good match", on_click=mark_right, icon=":material/thumb_up:", disabled=not chosen,
                         help="Recorded as evidence for the Evidence tab and for the entry's own threshold.")
        flash("wrong")

with entries_tab:
    with service_call():
        stats = report.totals(cache.engine)
        entries = app_state.cache_admin().entries(limit=200)
        st.subheader(f"Cached pictures ({stats.entries:,})")
        if stats.entries > len(entries):
            st.caption(f"The newest {len(entries)} are shown.")
        if not entries:
            st.info("Nothing is cached yet. Pictures appear here once searches have made them.")
        else:
            thumbs = report.thumbnails(image, [entry.blob_key for entry in entries])
            if thumbs.failures:
                st.warning(f"{len(thumbs.failures)} picture(s) could not be read from the image store: "
                           f"{app_state.md(next(iter(thumbs.failures.values())))}", icon=":material/broken_image:")
            st.dataframe(
                pd.DataFrame({
                    "Picture": [thumbs.urls.get(entry.blob_key) for entry in entries],
                    "Phrase": [entry.phrase for entry in entries],
                    "Created": [entry.created_at for entry in entries],
                    "Times served": [entry.times_served for entry in entries],
                    "Good": [entry.serves_right for entry in entries],
                    "Wrong": [entry.serves_wrong for entry in entries],
                    "Own threshold": [entry.own_threshold for entry in entries],
                    "Last served": [entry.last_served_at for entry in entries],
                    "Made from": [entry.detail for entry in entries],
                }),
                hide_index=True, height=560, row_height=56, placeholder="–",
                column_config={
                    "Picture": st.column_config.ImageColumn(width="small"),
                    "Created": st.column_config.DatetimeColumn(format="distance"),
                    "Last served": st.column_config.DatetimeColumn(format="distance"),
                    "Times served": st.column_config.NumberColumn(format="%d", width="small"),
                    "Good": st.column_config.NumberColumn(format="%d", width="small",
                                                          help="Serves of this picture judged a good match."),
                    "Wrong": st.column_config.NumberColumn(format="%d", width="small",
                                                           help="Serves of this picture judged a wrong match."),
                    "Own threshold": st.column_config.NumberColumn(
                        format="%.3f", width="small",
                        help="The largest distance at which this picture is served now: tighter after a wrong "
                             "match, looser after enough good ones."),
                })
            entry_bound_control()
            left, right = st.columns([3, 1], vertical_alignment="bottom")
            left.multiselect("Delete pictures", options=[entry.phrase for entry in entries], key="delete_choice",
                             placeholder="Choose phrases…",
                             help="The next search for a deleted phrase makes a new picture.")
            right.button("Delete", on_click=delete_entries, icon=":material/delete:",
                         disabled=not st.session_state.get("delete_choice"))
            left, right = st.columns([3, 1], vertical_alignment="bottom")
            left.selectbox("Make a different picture", options=[entry.phrase for entry in entries],
                           key="regenerate_choice", index=None, placeholder="Choose a phrase…",
                           help="A new picture for the same phrase, in place of the old one. It costs one "
                                f"generation (${price:.2f}), counted in Savings like every other.")
            right.button("Regenerate…", on_click=ask_regenerate, icon=":material/refresh:",
                         disabled=not st.session_state.get("regenerate_choice"))
            pending = st.session_state.get("regenerate_pending")
            if pending:
                with st.container(border=True):
                    st.warning(f"Make a new picture for \u201c{app_state.md(pending)}\u201d? It costs one generation "
                               f"(\\${price:.2f}); the old picture stays until the new one is ready.",
                               icon=":material/paid:")
                    yes, no = st.columns(2)
                    yes.button(f"Yes, spend ${price:.2f}", on_click=regenerate_entry, type="primary",
                               key="regenerate_confirm")
                    no.button("Cancel", on_click=cancel_regenerate, key="regenerate_cancel")
        flash("delete")
        flash("regenerate")

with setup_tab:
    st.subheader("What is running")
    st.caption("Set by the server's environment (see `.env.example`); shown here to know what the numbers mean.")
    with st.container(border=True):
        first, second = st.columns(2)
        first.markdown(f"**Embedding model**  \n`{cache.embedder.model}` · {cache.embedder.dimensions} dimensions")
        second.markdown(f"**Picture generator**  \n`{cache.generator.name}`")
        first.markdown(f"**Picture store**  \n`{cache.blobs.name}`")
        second.markdown(f"**Price per new picture**  \n${price:.2f}")
        matching = cache.matcher.describe()
        first.markdown("**Same word in another form**  \n" + ("on (WordNet dictionary forms)" if matching["lemmas"]
                                                                else "off"))
        second.markdown("**WordNet second look**  \n" + ("on" if matching["lexicon"] else "off"))
        if matching["missing_wordnet"]:
            st.warning(f"WordNet was not found in `{matching['missing_wordnet']}`, so the cache decides by distance "
                       "alone. Install Debian's `wordnet-base` package, or set `WORDNET_DIR`.")

    guard = cache.guard
    if guard is not None:
        st.subheader("Spending limits")
        st.caption("New pictures cost money; cached ones are free and are always shown. These limits stop anyone "
                   "from running up the bill with random topics. They renew at midnight UTC.")
        with service_call():
            usage = guard.usage()
            limits = usage.limits
            cols = st.columns(3)
            cols[0].metric("New pictures today", f"{usage.images:,}", border=True)
            cols[1].metric("Spent today", f"${usage.spent_usd:.2f}", border=True,
                           delta=None if limits.budget_usd is None else f"of ${limits.budget_usd:.2f}",
                           delta_color="off")
            cols[2].metric("Per user per day", "no limit" if limits.images_per_user is None
                           else f"{limits.images_per_user:,} pictures", border=True)
            with st.form("limits_form"):
                left, right = st.columns(2)
                left.checkbox("Limit new pictures per user", value=limits.images_per_user is not None,
                              key="limit_images_on")
                left.number_input("Pictures per user per day", min_value=0, step=1,
                                  value=limits.images_per_user if limits.images_per_user is not None else 50,
                                  key="limit_images")
                right.checkbox("Limit what all new pictures cost per day", value=limits.budget_usd is not None,
                               key="limit_budget_on")
                right.number_input("Daily budget (USD)", min_value=0.0, step=1.0, format="%.2f",
                                   value=limits.budget_usd if limits.budget_usd is not None else 20.0,
                                   key="limit_budget")
                st.form_submit_button("Save the limits", on_click=save_limits, type="primary")
        flash("limits")
