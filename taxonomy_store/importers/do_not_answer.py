"""Do-Not-Answer (do_not_answer.csv): unsafe questions under risk area / harm type / specific harm.

The category is the path of exact node names (risk_area, types_of_harm, specific_harms); the
LLM response columns are ignored. The file has 939 rows but 938 distinct questions: one
question appears twice (ids 433 and 434, same category). Both rows are kept as sources of
one prompt, and the import reports the duplicate.
"""

from __future__ import annotations

from taxonomy_store.vocabulary import DO_NOT_ANSWER_TAXONOMY, FORMAT_DO_NOT_ANSWER
from taxonomy_store.importers.records import ParsedFile, PromptRecord
from taxonomy_store.importers.tabular import Table, cell, prompt_text, row_key

TAXONOMY = DO_NOT_ANSWER_TAXONOMY
COLUMNS = ("risk_area", "types_of_harm", "specific_harms", "question")


def parse_do_not_answer(table: Table) -> ParsedFile:
    table.require(*COLUMNS, what="the Do-Not-Answer format")
    prompts: list[PromptRecord] = []
    seen: dict[str, int] = {}
    for rownum, row in table.rows:
        key = row_key(table, rownum, row, seen)
        path = tuple(cell(table, rownum, row, c, what="category name") for c in COLUMNS[:3])
        text = prompt_text(table, rownum, row, "question")
        prompts.append(
            PromptRecord(
                key=key, text=text, label="unsafe", row=rownum, category=path, category_column="specific_harms",
                text_column="question",
            )
        )
    return ParsedFile(table.path, FORMAT_DO_NOT_ANSWER, prompts, taxonomy=TAXONOMY)
