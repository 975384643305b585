"""Settings of the image cache, for product owners: how close a phrase must be to reuse a
picture, a preview of what that means, the latest lookups, and the cached pictures."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import pandas as pd
import streamlit as st

import app_state
from semcache import report
from semcache.normalize import topic_key

ACTOR = "settings page"
PREVIEW_SIZE = 6
KIND_LABELS = {"exact": "🎯 exact", "semantic": "🧭 close phrase", "generated": "🎨 new picture", "error": "⚠️ error"}


@contextmanager
def service_call() -> Iterator[None]:
    """Show a service outage as a message in place of the section that needed the service."""
    try:
        yield
    except report.SERVICE_ERRORS as exc:
        st.error(report.explain(exc), icon=":material/cloud_off:")


@st.cache_data(max_entries=2000, show_spinner=False)
def image(blob_key: str) -> bytes:
    """Blobs are content-addressed, so a key's bytes never change: safe to keep."""
    return app_state.cache().image(blob_key)


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
        st.session_state[f"flash_{slot}"] = ("error", report.explain(exc))
    else:
        st.session_state[f"flash_{slot}"] = ("success", success)


# ---------------------------------------------------------------------- callbacks


def save_threshold() -> None:
    value = round(float(st.session_state["threshold"]), 2)

    def store() -> None:
        app_state.cache().set_threshold(value, actor=ACTOR)
        st.session_state["threshold_seen"] = value

    run_action("threshold", store, f"Saved: {value:.2f}. It applies to every user from their next search.")


def mark_wrong() -> None:
    lookup = st.session_state.get("wrong_options", {}).get(st.session_state.get("wrong_choice"))
    if lookup is None:
        return
    run_action("wrong", lambda: app_state.cache().mark_wrong(lookup.query, lookup.served_key,
                                                             distance=lookup.distance, actor=ACTOR),
               f"“{lookup.query}” will never again be served the picture of “{lookup.served_key}”.")


def delete_entries() -> None:
    phrases = list(st.session_state.get("delete_choice", []))

    def delete() -> None:
        for phrase in phrases:
            app_state.cache().delete(phrase)
        st.session_state["delete_choice"] = []

    run_action("delete", delete, f"Deleted {len(phrases)} cached picture{'s' if len(phrases) != 1 else ''}. "
                                 "The next search for them makes a new one.")


# ---------------------------------------------------------------------- the page

st.title("Image cache settings")
st.caption("Every search shows a pixel-art picture of its topic. Making one costs money, so pictures "
           "are reused for phrases that mean nearly the same. Here you decide how near is near enough.")

try:
    cache = app_state.cache()
    setting = report.threshold_setting(cache.engine, cache.default_threshold)
except report.SERVICE_ERRORS as exc:
    st.error(report.explain(exc), icon=":material/cloud_off:")
    st.stop()

price = float(cache.generator.price_usd)
threshold_tab, lookups_tab, entries_tab, setup_tab = st.tabs(
    [":material/tune: Threshold", ":material/history: Recent lookups", ":material/photo_library: Cached pictures",
     ":material/settings: Setup"])

with threshold_tab:
    if st.session_state.get("threshold_seen") != setting.value:
        # First visit, or someone changed it elsewhere: show what is stored.
        st.session_state["threshold"] = min(1.0, round(setting.value, 2))
        st.session_state["threshold_seen"] = setting.value

    left, right = st.columns([3, 2], gap="large")
    with left:
        st.subheader("How close is close enough?")
        st.slider("Largest distance at which a cached picture is reused", min_value=0.0, max_value=1.0,
                  step=0.01, format="%.2f", key="threshold", on_change=save_threshold,
                  help="A cosine distance. Saved as soon as you let go of the slider.")
        flash("threshold")
        if setting.value > 1.0:
            st.warning(f"The stored value is {setting.value:.2f}, beyond this slider; moving it stores a new one.")
    with right:
        when = f"set by {setting.updated_by or 'the command line'} on {setting.updated_at:%Y-%m-%d %H:%M}" \
            if setting.stored else "the default: nobody has changed it yet"
        st.metric("In use for every search", f"{setting.value:.2f}", help=when, border=True)
        st.caption(when.capitalize() + ".")

    st.markdown(
        "Each phrase is placed on a map of meanings. The **distance** between two phrases says how far "
        "apart their meanings are: **0** is the same meaning, around **0.3** a close synonym "
        "(*puppy* and *dog*), and **0.6 or more** another subject. When someone searches, the picture of the "
        "nearest cached phrase is shown if it is at most this far away; otherwise a new picture is made "
        f"(${price:.2f}).")
    st.caption("**0** reuses a picture only for the very same phrase. Lower: more new pictures, fewer wrong ones. "
               "Higher: more reuse, and more pictures that do not fit. The default, 0.35, reused the picture for "
               "about a third of synonym pairs in our test word lists, with under 5% wrong.")

    st.divider()
    st.subheader("Preview")
    st.caption("Type a phrase to see the cached phrases nearest to it and which picture it would get now. "
               "No picture is made and nothing is counted in the savings.")
    topic = st.text_input("Phrase to preview", placeholder="puppy, villa, Paris vacation…", max_chars=200,
                          key="preview_topic")
    if topic.strip():
        threshold = float(st.session_state["threshold"])
        with service_call():
            neighbours = cache.neighbours(topic, k=PREVIEW_SIZE, threshold=threshold)
            served = next((n for n in neighbours if n.would_serve), None)
            if served is None:
                st.info(f"No cached phrase is within {threshold:.2f} of “{topic.strip()}”: "
                        f"it would get a new picture (${price:.2f}).", icon=":material/brush:")
            elif served.key == topic_key(topic, cache.max_topic_chars):
                st.success(f"“{topic.strip()}” is cached itself: its own picture is served.",
                           icon=":material/check_circle:")
            else:
                st.success(f"“{topic.strip()}” would be served the picture of “{served.key}” "
                           f"(distance {served.distance:.2f}, within {threshold:.2f}).", icon=":material/check_circle:")
            if neighbours:
                for column, neighbour in zip(st.columns(PREVIEW_SIZE), neighbours):
                    with column.container(border=True):
                        try:
                            st.image(image(neighbour.blob_key), width=96)
                        except report.SERVICE_ERRORS:
                            st.caption("picture unavailable")
                        st.markdown(f"**{neighbour.key}**")
                        st.caption(f"distance {neighbour.distance:.3f}")
                        if neighbour.would_serve:
                            st.badge("Served", icon=":material/check:", color="green", help="The picture this phrase would get now.")
                        elif neighbour.banned:
                            st.badge("Banned", icon=":material/block:", color="red", help="Marked as a wrong match for this phrase.")
                        elif neighbour.distance > threshold:
                            st.badge("Too far", color="gray")
                        else:
                            st.badge("In reach", color="blue", help="Within the threshold, but a nearer phrase wins.")
            else:
                st.caption("The cache is empty.")

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
        options = st.session_state["wrong_options"] = {row.id: row for row in unique.values()}
        if not options:
            st.caption("No close-phrase matches to judge yet.")
        else:
            left, right = st.columns([3, 1], vertical_alignment="bottom")
            left.selectbox("Recent match", options=list(options), key="wrong_choice",
                           format_func=lambda i: (f"“{options[i].query}” was served “{options[i].served_key}” "
                                                  f"(distance {options[i].distance:.2f})"))
            right.button("Never serve this again", on_click=mark_wrong, icon=":material/block:", type="primary")
        flash("wrong")

with entries_tab:
    with service_call():
        stats = report.totals(cache.engine)
        entries = cache.entries(limit=200)
        st.subheader(f"Cached pictures ({stats.entries:,})")
        if stats.entries > len(entries):
            st.caption(f"The newest {len(entries)} are shown.")
        if not entries:
            st.info("Nothing is cached yet. Pictures appear here once searches have made them.")
        else:
            thumbs = report.thumbnails(image, [entry.blob_key for entry in entries])
            if thumbs.failures:
                st.warning(f"{len(thumbs.failures)} picture(s) could not be read from the image store: "
                           f"{next(iter(thumbs.failures.values()))}", icon=":material/broken_image:")
            st.dataframe(
                pd.DataFrame({
                    "Picture": [thumbs.urls.get(entry.blob_key) for entry in entries],
                    "Phrase": [entry.phrase for entry in entries],
                    "Created": [entry.created_at for entry in entries],
                    "Times served": [entry.times_served for entry in entries],
                    "Last served": [entry.last_served_at for entry in entries],
                    "Made from": [entry.detail for entry in entries],
                }),
                hide_index=True, height=560, row_height=56, placeholder="–",
                column_config={
                    "Picture": st.column_config.ImageColumn(width="small"),
                    "Created": st.column_config.DatetimeColumn(format="distance"),
                    "Last served": st.column_config.DatetimeColumn(format="distance"),
                    "Times served": st.column_config.NumberColumn(format="%d", width="small"),
                })
            left, right = st.columns([3, 1], vertical_alignment="bottom")
            left.multiselect("Delete pictures", options=[entry.phrase for entry in entries], key="delete_choice",
                             placeholder="Choose phrases…",
                             help="The next search for a deleted phrase makes a new picture.")
            right.button("Delete", on_click=delete_entries, icon=":material/delete:",
                         disabled=not st.session_state.get("delete_choice"))
        flash("delete")

with setup_tab:
    st.subheader("What is running")
    st.caption("Set by the server's environment (see `.env.example`); shown here to know what the numbers mean.")
    with st.container(border=True):
        first, second = st.columns(2)
        first.markdown(f"**Embedding model**  \n`{cache.embedder.model}` · {cache.embedder.dimensions} dimensions")
        second.markdown(f"**Picture generator**  \n`{cache.generator.name}`")
        first.markdown(f"**Picture store**  \n`{cache.blobs.name}`")
        second.markdown(f"**Price per new picture**  \n${price:.2f}")
