"""Streamlit Community Cloud's entrypoint: the same dashboard, run from the repository as it is.

Community Cloud installs the dependency file beside the entrypoint first, so deploy/requirements.txt
(CPU-only PyTorch) is used instead of the repository's requirements.txt. Set the secret
``bundle = "https://.../my-index.zip"`` in the app's settings to show an exported index read-only
(README, "Sharing a bundle on Community Cloud").
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # Streamlit puts this file's folder on the path, not the repository's
    sys.path.insert(0, str(REPO))
runpy.run_path(str(REPO / "streamlit_app.py"), run_name="__main__")
