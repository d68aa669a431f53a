"""From the guard's query results to OpenAI's moderation contract (pure: no I/O).

- `flagged` is true for an `unsafe` verdict; an `uncertain` one flags only when the server runs
  with `--flag-uncertain` (a guard that would rather stop the doubtful).
- `categories` / `category_scores` hold every category of the voting taxonomy at its voting level
  (Do-Not-Answer's harm types by default). A score is the category's share of the query's
  neighbourhood weight (0 for a safe verdict, which names no harm). A category is true when the
  text is flagged and its score is at least half the leading category's.
"""

from __future__ import annotations

from typing import Any, Iterable

from taxonomy_store.serve.snapshot import Category

LEAD_SHARE = 0.5  # a flagged text names every category scoring at least this share of the leader's
OPENAI_MODEL_PREFIXES = ("omni-moderation-", "text-moderation-")


def is_openai_model_name(name: str) -> bool:
    return name.startswith(OPENAI_MODEL_PREFIXES)


def is_flagged(verdict: str, flag_uncertain: bool) -> bool:
    return verdict == "unsafe" or (flag_uncertain and verdict == "uncertain")


def moderation_result(result, categories: Iterable[Category], *, flag_uncertain: bool) -> dict[str, Any]:
    """One entry of a moderation response's `results` for a guard QueryResult."""
    flagged = is_flagged(result.verdict, flag_uncertain)
    codes = [c.code for c in categories]
    scores = dict.fromkeys(codes, 0.0)
    for vote in result.categories:
        if vote.code in scores:
            scores[vote.code] = float(vote.score)
    lead = max(scores.values(), default=0.0)
    return {
        "flagged": flagged,
        "categories": {c: bool(flagged and lead > 0 and s >= LEAD_SHARE * lead) for c, s in scores.items()},
        "category_scores": scores,
        "category_applied_input_types": {c: ["text"] for c in codes},
        "tstore": {
            "verdict": result.verdict,
            "verdict_reason": result.verdict_reason,
            "unsafe_score": result.unsafe_score,
            "threshold": result.threshold,
            "margin": result.margin,
            "scorer": result.scorer,
            "nearest_similarity": result.nearest_similarity,
            "categories": [{"code": v.code, "name": v.name, "path": list(v.path), "score": float(v.score)} for v in result.categories],
            "warnings": list(result.warnings),
        },
    }
