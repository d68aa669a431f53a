"""Domain errors. Each carries a one-line message and, where we know it, how to fix it.

The CLI prints `error: <message>` (plus the hint) and exits with `exit_code`; no traceback.
"""

from __future__ import annotations

import os


class TStoreError(Exception):
    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class NotAStore(TStoreError):
    """A directory that is not (or not yet) a tstore store."""


class StoreExists(TStoreError):
    pass


class DatabaseUnreachable(TStoreError):
    pass


class SchemaOutdated(TStoreError):
    pass


class SchemaBroken(TStoreError):
    """A migration found rows it would leave inconsistent, and changed nothing."""


class SchemaTooNew(TStoreError):
    """The store's database was migrated by a newer tstore to a revision this one does not know."""


class UnknownTaxonomy(TStoreError):
    pass


class TaxonomyFileError(TStoreError):
    """A taxonomy definition file that cannot be read or is malformed."""


class InputFileError(TStoreError):
    """A data file with a problem at a known place: file, row, column, reason."""

    def __init__(self, path: str | os.PathLike[str], reason: str, row: int | None = None, column: str | None = None,
                 hint: str | None = None):
        where = str(path)
        if row is not None:
            where += f", row {row}"
        if column is not None:
            where += f", column {column!r}"
        super().__init__(f"{where}: {reason}", hint)
        self.path, self.row, self.column, self.reason = str(path), row, column, reason


class UnknownEncoder(TStoreError):
    pass


class EncoderError(TStoreError):
    pass


class EncoderMismatch(TStoreError):
    """The encoder's weights no longer match the vectors stored for it."""


class NotEmbedded(TStoreError):
    pass


class NotFound(TStoreError):
    pass


class StoreBusy(TStoreError):
    """Another process holds the store's write lock for longer than we wait."""


class InvalidValue(TStoreError):
    exit_code = 2


class EmptyStore(TStoreError):
    """The store holds no prompts to compare against."""


class EmptyPrompt(InvalidValue):
    """A query text that is empty or only whitespace."""


class NotEnoughLabels(TStoreError):
    """Calibration needs labeled safe and unsafe prompts."""


class IndexOutOfSync(TStoreError):
    """`tstore verify` found differences between SQL and an encoder's Chroma collection."""


class VectorStoreUnreachable(TStoreError):
    """The Chroma server (or the embedded Chroma directory) cannot be used."""


class OutputFileError(TStoreError):
    """A file tstore was asked to write that cannot be written where the user pointed."""

    def __init__(self, path, reason: str, hint: str | None = None):
        super().__init__(f"{path}: {reason}", hint)
        self.path, self.reason = str(path), reason


class WriterBusy(TStoreError):
    """Another process writes to the store's vector index and the caller chose not to wait (--no-wait)."""

    exit_code = 75  # EX_TEMPFAIL: try again later


class IndexDamaged(TStoreError):
    """Vectors that the embedded Chroma lists but can no longer read back."""


class UndoConflict(TStoreError):
    """An undo that would overwrite a later change of the same prompt or pair."""


class ClusterUnavailable(TStoreError):
    """`--ray ADDRESS`: Ray is not installed, the cluster cannot be reached, or a worker failed."""
