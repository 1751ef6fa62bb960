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

#: The public API: name -> the module that defines it. The names are imported on
#: first use (module ``__getattr__``), so ``import pipeline`` stays cheap: the
#: command line, the web app and a worker process load only what they use::
#:
#:     import pipeline
#:     cfg, base = pipeline.load_config("configs/demo.yaml")
#:     folder = pipeline.run(cfg, base)
_API = {
    "run": ".run",
    "load_config": ".config",
    "validate_config": ".config",
    "RunConfig": ".config",
    "StabilityConfig": ".config",
    "REGISTRIES": ".registry",
    "segmenters": ".registry",
    "embedders": ".registry",
    "reducers": ".registry",
    "clusterers": ".registry",
    "namers": ".registry",
    "ConsensaError": ".errors",
    "ConfigError": ".errors",
    "InputError": ".errors",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    import importlib

    found = importlib.import_module(module, __name__)
    # ``run`` is also a submodule, which its import sets as this package's attribute;
    # the module is callable (pipeline/run.py), so it is the one answer either way
    value = found if module == f".{name}" else getattr(found, name)
    globals()[name] = value          # found once; later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
