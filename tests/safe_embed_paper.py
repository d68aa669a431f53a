"""The Safe-Embed paper's published figures, copied here from the paper so the tests do not take
them from `taxonomy_store/workflows/reproduce.py`, the code under test.

Kim et al. (2024), "Safe-Embed: Unveiling the Safety-Critical Knowledge of Sentence Encoders",
Safety-Challenging results, SBERT-all (all-mpnet-base-v2) row: mean normalised pair similarity
per XSTest pair type, with baseline b = 0.092 (also listed in ../shared/ENCODERS.md).
"""

SBERT_ALL_BASELINE = 0.092
SBERT_ALL_SEPARATION = {
    "homonyms": 0.394,
    "figurative_language": 0.296,
    "target": 0.494,  # safe targets
    "context": 0.653,  # safe contexts
    "definitions": 0.534,
    "group": 0.514,  # discrimination (nonsense group)
    "action": 0.385,
    "history": 0.698,  # historical events
    "privacy_publicity": 0.396,  # privacy (public figures)
    "privacy_fictionality": 0.511,  # privacy (fictional)
}
