"""Cross-modal formalization: images become formal text a text-only reasoner can read.

One :class:`Formalizer` per image type (``REGISTRY``): circuits -> SPICE, flowcharts ->
PlantUML, layouts -> HTML, tables -> CSV, charts -> JSON, natural scenes -> detector boxes
+ caption, text-heavy images -> OCR + reconstruction, math figures -> facts + strategy,
CLEVR scenes -> object list. ``run`` is the stage.

May import ``r1ov.teachers`` (the client), ``r1ov.data``, ``r1ov.scoring``, ``r1ov.config``,
``r1ov.errors``.
"""

from r1ov.formalize.base import Check, CheckResult, Formalizer
from r1ov.formalize.router import REGISTRY, formalizer_for, parse_image_type
from r1ov.formalize.stage import formalize_batch, run

__all__ = [
    "REGISTRY",
    "Check",
    "CheckResult",
    "Formalizer",
    "formalize_batch",
    "formalizer_for",
    "parse_image_type",
    "run",
]
