"""What every benchmark script shares: where it runs (the machine, the repository, the shared
datasets) and the offline environment it runs in."""

from __future__ import annotations

import os
import platform
from pathlib import Path

# Set before any script imports sentence-transformers or chromadb: nothing may download at run time.
for _name, _value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("ANONYMIZED_TELEMETRY", "False")):
    os.environ.setdefault(_name, _value)

REPO = Path(__file__).resolve().parent.parent
DATASETS = Path(os.environ.get("TSTORE_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    return f"load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "load average n/a"
