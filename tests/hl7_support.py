"""Shared by the HL7 tests: validation against the HL7 v2.6 structures with hl7apy."""

from __future__ import annotations

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message
from hl7apy.exceptions import HL7apyException
from hl7apy.parser import parse_message
from hl7apy.validation import Validator

#: HL7 v2.6 defines no ORU_R40 structure (it is ACM's, and v2.7's): its groups are those of
#: ORU_R01, so a PCD-04 message is checked against ORU_R01.
_STRUCTURE_FOR_VALIDATION = {"ORU^R40^ORU_R40": "ORU^R40^ORU_R01"}


def validate_v26(text: str, *, location_only: bool = False) -> Message:
    """Parse strictly (data types) and validate (structure, cardinality, required fields).

    Without a patient, PID-3 is empty as PCD-01 allows; the v2.6 base standard
    makes PID-3 required, and that must be the only complaint.
    """
    for sent, checked in _STRUCTURE_FOR_VALIDATION.items():
        text = text.replace(sent, checked, 1)
    msg = parse_message(text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    assert msg.version == "2.6"
    if location_only:
        with pytest.raises(HL7apyException, match=r"^Missing required child PID\.PID_3$"):
            Validator.validate(msg)
    else:
        assert Validator.validate(msg)
    return msg
