"""Pure numpy metric functions (Safe-Embed, Kim et al., 2024): arrays and labels in, numbers out.

No SQL, no Chroma, no torch: `taxonomy_store.measurement.runs` feeds these from the store.
Results are flat snake_case dicts with a declared primary metric (see each module).
"""

from taxonomy_store.metrics.baseline import estimate_baseline
from taxonomy_store.metrics.detection import auroc, best_f1, knn_detection, majority_category, neighbour_agreement
from taxonomy_store.metrics.pairs import contrast_boundary, normalised_similarity, pair_cosines, separation
from taxonomy_store.metrics.purity import categorical_purity
from taxonomy_store.metrics.similarity import knn, knn_query, normalise, update_knn

__all__ = [
    "auroc", "best_f1", "categorical_purity", "contrast_boundary", "estimate_baseline", "knn", "knn_detection",
    "knn_query", "majority_category", "neighbour_agreement", "normalise", "normalised_similarity", "pair_cosines",
    "separation", "update_knn",
]
