"""CLIP video-frame explorer: the dashboard's entry point (``streamlit run streamlit_app.py``)."""

import streamlit as st

st.set_page_config(page_title="CLIP video-frame explorer", page_icon="🎞️", layout="wide")
st.title("CLIP video-frame explorer")
st.write("Build an index with `python -m core build --videos DIR`, then evaluate and search it.")
