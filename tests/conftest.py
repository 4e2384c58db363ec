"""Shared test helpers live next to this file (e.g. `hover_artifact`: a trained hover artifact in seconds)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
