"""tuner's Streamlit dashboard: watch studies live and see why a trial won.

Started by ``tuner dashboard`` (``streamlit run`` on :data:`APP`). It reads through tuner's public
API only (``tuner.list_studies``, ``tuner.load_study`` and ``Study`` methods) and never writes.
Streamlit is imported by the app files only, so ``import tuner`` never needs it.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["APP"]

APP = Path(__file__).resolve().parent / "app.py"
"""The entry script: the router (``st.navigation``) over the pages in ``views/``."""
