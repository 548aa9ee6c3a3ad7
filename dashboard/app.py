"""tuner dashboard entry point: ``streamlit run`` this file (``tuner dashboard`` does).

The router: four pages, linkable through query parameters (``/study?study=NAME``,
``/trial?study=NAME&trial=12``, ``/compare?study=NAME&trials=3,8``). The storage comes from
``$TUNER_STORAGE`` (set by ``tuner dashboard --storage``), never from the URL or the page.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from tuner._dashboard._data import shown_url

HERE = Path(__file__).resolve().parent

st.set_page_config(page_title="tuner", page_icon=":material/tune:", layout="wide")
pages = [
    st.Page(HERE / "views" / "studies.py", title="Studies", icon=":material/list:", default=True),
    st.Page(HERE / "views" / "study.py", title="Study", icon=":material/monitoring:"),
    st.Page(HERE / "views" / "trial.py", title="Trial", icon=":material/show_chart:"),
    st.Page(HERE / "views" / "compare.py", title="Compare", icon=":material/stacked_line_chart:"),
]
current = st.navigation(pages)
with st.sidebar:
    st.caption("storage")
    st.text(shown_url())
    if st.button("Reload data", help="Drop the cached reads now instead of waiting for their TTL"):
        st.cache_data.clear()
current.run()
