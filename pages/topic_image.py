"""Try the image cache by hand: type a topic, see its image and how it was served."""

import streamlit as st

import app_state
from semcache import SemcacheError

st.title("Topic image")
st.caption("Type a topic. The image comes from the semantic cache: an exact hit, a close phrase "
           "already cached, or a newly generated one.")

topic = st.text_input("Topic", placeholder="dog, invoices, trip to Paris…", max_chars=200)
if topic.strip():
    cache = app_state.cache()
    try:
        with st.spinner("Looking up the image…"):
            result = cache.get(topic)
    except SemcacheError as exc:
        st.warning(str(exc))
    else:
        image_col, info_col = st.columns([1, 2])
        with image_col:
            st.image(result.image, width=192)
        with info_col:
            if result.kind == "generated":
                st.markdown(f"**Generated** (${result.cost_spent_usd:.2f})")
            elif result.kind == "exact":
                st.markdown(f"**Exact cache hit** (saved ${result.cost_saved_usd:.2f})")
            else:
                st.markdown(f"**Served from cache:** *{result.served_key}* "
                            f"(distance {result.distance:.2f}, saved ${result.cost_saved_usd:.2f})")
            st.caption(f"{result.detail} · threshold {result.threshold:.2f} · {result.timings.total_ms:.0f} ms")
