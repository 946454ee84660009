"""The cloud pipeline's coded errors."""

from __future__ import annotations

from contract.errors import EarmarkError


class PipelineError(EarmarkError):
    """Base of all cloud-side errors."""

    code = "pipeline_error"


class ClipRejected(PipelineError):
    """A clip that may not be stored (no valid consent tag, bad ids)."""

    code = "clip_rejected"


class ModelError(PipelineError):
    """A recognition model is missing, corrupt, or failed its checksum."""

    code = "model"


class DatabaseUnavailable(PipelineError):
    """The database URL is malformed, or the database cannot be reached or used."""

    code = "database_unavailable"


class TextWithNul(PipelineError):
    """A value for the database contains a NUL character (PostgreSQL cannot store one, and no
    id, name or text Earmark keeps ever has one): refused on both engines alike."""

    code = "text_with_nul"
