"""Consensa: NLP-assisted theme discovery for Consensual Qualitative Research.

It proposes; the judges decide. Importing the package sets the offline switches
of the Hugging Face libraries before they are imported: Consensa loads models
from installed packages and local folders only and never opens a connection.
"""

from __future__ import annotations

import os

for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# numba (behind UMAP) compiles on first use; a persistent cache spares that cost
# in every later process.
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "consensa", "numba"))

__version__ = "0.1.0"

__all__ = ["__version__"]
