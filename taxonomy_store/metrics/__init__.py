"""Pure numpy metric functions (Safe-Embed, Kim et al., 2024): arrays and labels in, numbers out.

No SQL, no Chroma, no torch: `taxonomy_store.metric_runs` feeds these from the store.
Results are flat snake_case dicts with a declared primary metric (see each module).
"""

from .baseline import estimate_baseline
from .detection import auroc, best_f1, knn_detection, majority_category, neighbour_agreement
from .pairs import contrast_boundary, normalised_similarity, pair_cosines, separation
from .purity import categorical_purity
from .similarity import knn, knn_query, normalise, update_knn

__all__ = [
    "auroc", "best_f1", "categorical_purity", "contrast_boundary", "estimate_baseline", "knn", "knn_detection",
    "knn_query", "majority_category", "neighbour_agreement", "normalise", "normalised_similarity", "pair_cosines",
    "separation", "update_knn",
]
