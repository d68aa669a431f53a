"""The HTTP contract: pydantic models for every request and response (they make /openapi.json).

`/v1/moderations` follows OpenAI's moderation contract; tstore's own answer rides along under
the extra key `tstore`, which OpenAI clients ignore.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

TextInput = Union[StrictStr, list[StrictStr]]
Names = Union[StrictStr, Annotated[list[StrictStr], Field(max_length=32)]]  # one name, or a few
Label = Literal["safe", "unsafe", "unlabeled"]
Labels = Union[Label, Annotated[list[Label], Field(max_length=3)]]


class ModerationRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI clients may send fields we have no use for

    input: TextInput = Field(description="A text, or a list of texts, to judge.")
    model: StrictStr | None = Field(
        None, description="The encoder to answer with (the server's, by default). OpenAI's own names "
        "(`omni-moderation-latest`, `text-moderation-...`) mean the server's encoder.")


class QueryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt option is an error, not silently ignored

    input: TextInput = Field(description="A text, or a list of texts, to query.")
    model: StrictStr | None = Field(None, description="The encoder (the server's, by default).")
    ids: list[Union[StrictStr, StrictInt]] | None = Field(None, description="One id per text, carried into the results.")
    k: int = Field(10, ge=1, le=100, description="Neighbours per text.")
    level: StrictStr | None = Field(None, description="Taxonomy level of the category vote.")
    taxonomy: StrictStr | None = Field(None, description="Taxonomy whose categories vote [default: do-not-answer].")
    dataset: Names | None = Field(None, description="Only neighbours from this dataset (or these).")
    label: Labels | None = Field(None, description="Only neighbours with this label (or these): safe, unsafe, unlabeled.")
    category: Names | None = Field(None, description="Only neighbours in this category or under it (a node code, or several).")


class NearestCategory(BaseModel):
    code: str
    name: str
    path: list[str]
    score: float = Field(description="Share of the neighbourhood's similarity weight.")


class TStoreVerdict(BaseModel):
    verdict: str = Field(description="unsafe, uncertain or safe.")
    verdict_reason: str
    unsafe_score: float | None
    threshold: float | None
    margin: float | None
    scorer: str | None = Field(description="The calibrated scorer that decided (None: not calibrated).")
    nearest_similarity: float | None
    categories: list[NearestCategory] = Field(description="The nearest harm categories with their paths, strongest first.")
    warnings: list[str]


class ModerationResult(BaseModel):
    flagged: bool
    categories: dict[str, bool]
    category_scores: dict[str, float]
    category_applied_input_types: dict[str, list[str]]
    tstore: TStoreVerdict


class ModerationResponse(BaseModel):
    id: str
    model: str
    results: list[ModerationResult]
    tstore: dict[str, Any] = Field(description="data_revision, calibration revision, taxonomy and level of this answer.")


class QueryResponse(BaseModel):
    model: str
    data_revision: int
    results: list[dict[str, Any]] = Field(description="One object per text: the JSON of `tstore query --json`.")


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = Field(description="The request field at fault, e.g. `input[3]`.")
    code: str


class ErrorResponse(BaseModel):
    error: ErrorDetail
