"""XML from devices, parsed with no DTD and no entities, whatever the document's encoding.

Devices (and anyone between them and the agent on plain HTTP) choose what they send; a byte
search for `<!DOCTYPE` misses a UTF-16 document, so the parser itself refuses (defusedxml).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring


class UnsafeXml(ValueError):
    """A document that declares a DTD or an entity: refused, never expanded."""


def parse(data: bytes | str) -> ET.Element:
    """The document's root element; ET.ParseError when it is not XML, UnsafeXml when it brings
    a DTD, an entity or an external reference."""
    try:
        root: ET.Element = fromstring(data, forbid_dtd=True, forbid_entities=True,
                                      forbid_external=True)  # fmt: skip
    except DefusedXmlException as exc:
        raise UnsafeXml(f"XML with a DTD or entity ({type(exc).__name__}), refused") from None
    return root
