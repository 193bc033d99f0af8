"""Payload validation and the envelope wire format, under their historical import path.

The code lives in two modules: :mod:`lssm_jobs.payloads` (the strict payload converter, ``validate_payload``)
and :mod:`lssm_jobs.envelope` (``Envelope``, the ``Serializer`` interface, ``JsonSerializer``). Importing from
here keeps working.
"""

from __future__ import annotations

from lssm_jobs.envelope import (
    ENVELOPE_FORMAT,
    Envelope,
    JsonSerializer,
    Serializer,
    envelope_from_dict,
    envelope_to_dict,
    job_from_envelope,
    options_converter,
)
from lssm_jobs.payloads import (
    configure_payload_converter,
    field_errors,
    make_payload_converter,
    payload_converter,
    structure_payload,
    validate_payload,
)

__all__ = [
    "ENVELOPE_FORMAT",
    "Envelope",
    "JsonSerializer",
    "Serializer",
    "configure_payload_converter",
    "envelope_from_dict",
    "envelope_to_dict",
    "field_errors",
    "job_from_envelope",
    "make_payload_converter",
    "options_converter",
    "payload_converter",
    "structure_payload",
    "validate_payload",
]
