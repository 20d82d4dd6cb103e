"""Licences of weights as SPDX identifiers (https://spdx.org/licenses/), which of them allow commercial use, and
the chain of licences a model inherits from every set of weights it was made from.

Sources spell licences their own way: model cards write ``apache-2.0``, timm's ``pretrained_cfg.license`` the
same lowercase ids, packages ``Apache-2.0``, torchvision nothing at all. :func:`spdx_id` turns each into the SPDX
id (``Apache-2.0``, ``MIT``, ``CC-BY-NC-4.0``, ...); a named licence SPDX does not list becomes
``LicenseRef-<name>`` (SPDX's own convention for those); nothing stated stays ``unknown``; a random
initialisation has no third-party weights and is ``none (random init)``.

Which ids allow commercial use (:data:`COMMERCIAL_USE`), and why:

- OSI-approved open-source licences (Apache-2.0, MIT, BSD, ISC, MPL, the GPL family, ...) do: the Open Source
  Definition forbids restricting a field of endeavour, "for example ... from being used in a business" (OSD §6,
  https://opensource.org/osd). Copyleft adds duties when the model is redistributed, not a ban.
- Open-content and open-data licences CC0-1.0, CC-BY(-SA), PDDL-1.0, ODC-By-1.0 and ODbL-1.0 do: their texts grant
  the rights "for any purpose, including commercially" (CC's deed wording) or without a purpose limit (ODC).
- Creative Commons NonCommercial licences (CC-BY-NC, -NC-SA, -NC-ND, any version) do not: their §1 defines
  NonCommercial as "not primarily intended for or directed towards commercial advantage". So do licences named
  non-commercial outright (``fair-noncommercial-research-license``), and the SWAG weights torchvision serves
  (CC-BY-NC-4.0, the licence file their metadata links to).
- Everything else — custom licences (``LicenseRef-...``: OpenRAIL, Llama, vendor model licences) and ``unknown``
  — is not classified: a person has to read those terms, so a commercial run refuses them too.

A bundle records its chain in ``transferkit.json`` as ``licence_chain``: one :class:`LicenceSource` per set of
weights it descends from (its backbone's, a ``bundle:`` backbone's own chain, a distillation teacher's), and
``licence``: all of them as one SPDX expression (``Apache-2.0 AND CC-BY-NC-4.0``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

UNKNOWN = "unknown"
RANDOM_INIT = "none (random init)"

#: SPDX id → True (commercial use allowed), False (not allowed); ids not here are not classified (None)
COMMERCIAL_USE: dict[str, bool] = {
    **dict.fromkeys(["Apache-2.0", "MIT", "MIT-0", "BSD-2-Clause", "BSD-3-Clause", "ISC", "Zlib", "BSL-1.0",
                     "Unlicense", "MPL-2.0", "EPL-2.0", "AFL-3.0", "Python-2.0", "PSF-2.0", "Artistic-2.0",
                     "GPL-2.0-only", "GPL-3.0-only", "LGPL-2.1-only", "LGPL-3.0-only", "AGPL-3.0-only",
                     "CC0-1.0", "CC-BY-2.0", "CC-BY-3.0", "CC-BY-4.0", "CC-BY-SA-3.0", "CC-BY-SA-4.0",
                     "PDDL-1.0", "ODC-By-1.0", "ODbL-1.0", RANDOM_INIT], True),
    **dict.fromkeys([f"CC-BY-NC{kind}-{v}" for kind in ("", "-SA", "-ND") for v in ("2.0", "3.0", "4.0")]
                    + ["LicenseRef-fair-noncommercial-research-license"], False),
}

#: other spellings sources use (lowercase) → SPDX id; every id's own lowercase form is looked up too
ALIASES = {
    "apache 2.0": "Apache-2.0", "apache-2": "Apache-2.0", "apache license 2.0": "Apache-2.0", "bsd-3": "BSD-3-Clause",
    "pddl": "PDDL-1.0", "cc0": "CC0-1.0", "odc-by": "ODC-By-1.0", "odbl": "ODbL-1.0",
    "gpl-2.0": "GPL-2.0-only", "gpl-3.0": "GPL-3.0-only", "lgpl-2.1": "LGPL-2.1-only", "lgpl-3.0": "LGPL-3.0-only",
    "agpl-3.0": "AGPL-3.0-only", "n/a (random init)": RANDOM_INIT,
    RANDOM_INIT: RANDOM_INIT, "other": UNKNOWN, "unknown": UNKNOWN, "": UNKNOWN,
    "https://github.com/facebookresearch/swag/blob/main/license": "CC-BY-NC-4.0",
}
_BY_LOWER = {k.lower(): k for k in COMMERCIAL_USE}
_ID = re.compile(r"[a-z0-9][a-z0-9.+_-]*")  # what a licence id looks like (lowercase)


def spdx_id(text: str | None) -> str:
    """The SPDX id of a licence as a source states it.

    Example:
        >>> spdx_id("apache-2.0"), spdx_id("cc-by-nc-4.0"), spdx_id("apple-ascl"), spdx_id(None)
        ('Apache-2.0', 'CC-BY-NC-4.0', 'LicenseRef-apple-ascl', 'unknown')
    """
    raw = (text or "").strip().strip("'\"")
    key = raw.lower()
    if key.startswith(UNKNOWN):  # "unknown — check the model card"
        return UNKNOWN
    if key in ALIASES:
        return ALIASES[key]
    if key in _BY_LOWER:
        return _BY_LOWER[key]
    tokens = _tokens(raw)
    if any(t.upper() in ("AND", "OR") for t in tokens) and all(_ID.fullmatch(t.lower()) or t in "()" or t == RANDOM_INIT
                                                              for t in tokens):
        # an SPDX expression: each licence normalised, operators and parentheses kept
        return " ".join(t.upper() if t.upper() in ("AND", "OR") else t if t in "()" else spdx_id(t)
                        for t in tokens).replace("( ", "(").replace(" )", ")")
    if key.startswith("licenseref-"):
        return "LicenseRef-" + raw[len("licenseref-"):]
    if _ID.fullmatch(key):  # a named licence SPDX does not list
        return f"LicenseRef-{key}"
    return UNKNOWN  # a sentence, a URL: not an id


def allows_commercial_use(licence: str) -> bool | None:
    """True/False from :data:`COMMERCIAL_USE`; None when not classified. In an SPDX expression ``A AND B`` allows
    it when both do, ``A OR B`` when either does (AND binds tighter, parentheses group).

    Example:
        >>> allows_commercial_use("MIT"), allows_commercial_use("Apache-2.0 AND CC-BY-NC-4.0")
        (True, False)
    """
    tokens = [t.upper() if t.upper() in ("AND", "OR") else t for t in _tokens(spdx_id(licence))]

    def either() -> bool | None:  # OR of ANDs, as SPDX's precedence reads it
        options = [both()]
        while tokens and tokens[0] == "OR":
            tokens.pop(0)
            options.append(both())
        return True if True in options else None if None in options else False

    def both() -> bool | None:
        parts = [single()]
        while tokens and tokens[0] == "AND":
            tokens.pop(0)
            parts.append(single())
        return False if False in parts else None if None in parts else True

    def single() -> bool | None:
        token = tokens.pop(0) if tokens else UNKNOWN
        if token == "(":
            value = either()
            if tokens and tokens[0] == ")":
                tokens.pop(0)
            return value
        return COMMERCIAL_USE.get(token)

    return either()


def _tokens(expression: str) -> list[str]:
    """An SPDX expression's ids, operators and parentheses (``none (random init)`` is one id)."""
    marked = re.sub(re.escape(RANDOM_INIT), "\0", expression.strip(), flags=re.IGNORECASE)
    return [RANDOM_INIT if t == "\0" else t for t in re.findall(r"[()]|[^\s()]+", marked)]


def commercial_status(licence: str) -> str:
    """``yes``, ``no`` or ``unknown``: what ``transferkit backbones`` shows."""
    return {True: "yes", False: "no", None: "unknown"}[allows_commercial_use(licence)]


@dataclass(frozen=True)
class LicenceSource:
    """One set of weights a model descends from, under one licence.

    Attributes:
        source: the spec the weights came from (``packaged:efficientnet_lite0``, ``timm:vit_base_patch16_224``).
        licence: its SPDX id.
        role: how the model used them: ``weights`` (the backbone starts from them) or ``teacher`` (distilled from).
        via: the ``bundle:`` specs it reached this model through, the nearest first.
        note: the licence as the source stated it, when that says more than the id.
    """

    source: str
    licence: str
    role: str = "weights"
    via: tuple[str, ...] = ()
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"source": self.source, "licence": self.licence, "role": self.role, "via": list(self.via)}
        return {**d, "note": self.note} if self.note else d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LicenceSource:
        return cls(str(d.get("source", "?")), spdx_id(str(d.get("licence", UNKNOWN))), str(d.get("role", "weights")),
                   tuple(str(v) for v in d.get("via", ())), str(d.get("note", "")))

    def describe(self) -> str:
        """``packaged:x (Apache-2.0) → bundle:runs/a``: where it came from and through what."""
        path = "".join(f" → {v}" for v in reversed(self.via))
        return f"{self.source} ({self.licence}{', teacher' if self.role == 'teacher' else ''}){path}"


def combined_licence(chain: Iterable[LicenceSource]) -> str:
    """All licences of a chain as one SPDX expression; a random initialisation adds no terms."""
    ids = list(dict.fromkeys(s.licence for s in chain))
    terms = [i for i in ids if i != RANDOM_INIT]
    if not terms:
        return RANDOM_INIT if ids else UNKNOWN
    return " AND ".join(terms)


def inherit(chain: Iterable[LicenceSource], through: str, role: str | None = None) -> tuple[LicenceSource, ...]:
    """``chain`` as seen from a model made from ``through`` (a ``bundle:`` spec), optionally in another ``role``."""
    return tuple(LicenceSource(s.source, s.licence, role or s.role, (through, *s.via), s.note) for s in chain)


def chain_from_meta(meta: Mapping[str, Any]) -> tuple[LicenceSource, ...]:
    """The chain a bundle's JSON records; a bundle written before chains were kept gives one entry, its backbone's."""
    recorded = meta.get("licence_chain")
    if isinstance(recorded, list) and recorded:
        return tuple(LicenceSource.from_dict(d) for d in recorded if isinstance(d, Mapping))
    backbone = meta["backbone"] if isinstance(meta.get("backbone"), Mapping) else {}
    source = str(backbone.get("spec") or backbone.get("arch_spec") or "?")
    raw = str(meta.get("licence", UNKNOWN))
    licence = spdx_id(raw)
    return (LicenceSource(source, licence, note=raw if licence == UNKNOWN and raw.lower() != UNKNOWN else ""),)


def licence_record(*chains: Sequence[LicenceSource]) -> dict[str, Any]:
    """What a bundle's JSON keeps: ``{"licence": expression, "licence_chain": [...]}`` over every chain given.

    Example (a distilled student keeps its teacher's licences)::

        save_bundle(student, out, extra=licence_record(student.backbone_.licence_chain,
                                                       licence_chain_of(teacher_spec, role="teacher")))
    """
    merged = tuple(dict.fromkeys(s for chain in chains for s in chain))
    return {"licence": combined_licence(merged), "licence_chain": [s.to_dict() for s in merged]}


__all__ = ["COMMERCIAL_USE", "RANDOM_INIT", "UNKNOWN", "LicenceSource", "allows_commercial_use", "chain_from_meta",
           "combined_licence", "commercial_status", "inherit", "licence_record", "spdx_id"]
