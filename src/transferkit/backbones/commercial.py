"""The licence guard: a run asked to make a model for commercial use refuses weights whose licence does not allow
it, or whose licence is unknown, before any work is done.

Every command that writes a model calls :func:`require_commercial_use` on the licence chain of what it builds on:
``fit`` (its backbone), ``distill`` (the student's backbone and the teacher), ``export`` (the bundle's recorded
chain, :func:`~.licences.chain_from_meta`). Which licences allow commercial use, and why, is
:data:`~.licences.COMMERCIAL_USE`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from .._errors import LicenceError
from ._registry import create_backbone, known_licence, list_backbones
from .licences import LicenceSource, allows_commercial_use


def require_commercial_use(chain: Iterable[LicenceSource], *, modality: str = "") -> None:
    """Refuse a licence chain of which any entry does not allow commercial use or is not classified.

    Args:
        chain: :attr:`Backbone.licence_chain`, :func:`~.licences.chain_from_meta` of a bundle, or both joined.
        modality: what the model reads (``image``, ``text``, ``audio``): the alternatives suggested read it too.

    Raises:
        LicenceError: one line naming the offending source and its licence, and offline alternatives whose licence
            allows commercial use.

    Example:
        >>> require_commercial_use(create_backbone("packaged:efficientnet_lite0").licence_chain)  # Apache-2.0: fine
    """
    for entry in chain:
        allowed = allows_commercial_use(entry.licence)
        if allowed:
            continue
        why = "does not allow commercial use" if allowed is False else (
            "is not known" if entry.licence == "unknown" else "is not one transferkit can classify; read its terms")
        via = f" (reached through {', '.join(entry.via)})" if entry.via else ""
        role = "the distillation teacher " if entry.role == "teacher" else ""
        raise LicenceError(
            f"`commercial` use refused: {role}{entry.source}{via} is licensed {entry.licence}, which {why}"
            f"{f' ({entry.note})' if entry.note else ''}. {_alternatives(modality)}"
        )


def commercial_alternatives(modality: str = "") -> list[tuple[str, str]]:
    """``(spec, licence)`` of the backbones usable offline now whose licence allows commercial use (same
    ``modality`` when given)."""
    return [(e.spec, e.licence) for e in list_backbones()
            if e.offline and e.pretrained and "<" not in e.spec and allows_commercial_use(e.licence)
            and (not modality or e.modality in ("", modality))]


def _alternatives(modality: str) -> str:
    found = commercial_alternatives(modality)
    if not found:
        return ("No offline backbone with a commercial-friendly licence is installed; `transferkit backbones` lists "
                "them with their licences.")
    return ("Offline alternatives whose licence allows it: "
            + ", ".join(f"{spec} ({licence})" for spec, licence in found) + ".")


def require_commercial_backbone(spec: str, *, pretrained: bool = True, role: str = "weights",
                                **options: Any) -> tuple[LicenceSource, ...]:
    """Refuse the backbone ``spec`` names unless its whole licence chain allows commercial use; return the chain.

    What ``fit`` (and ``distill``: the student's backbone, and the teacher with ``role="teacher"``) call before
    any data is read; nothing is downloaded to find the licence where the source knows it beforehand (timm,
    torchvision, packaged weights, bundles). ``pretrained=False`` (a random initialisation) always passes: no
    third-party weights are used.

    Raises:
        LicenceError: as :func:`require_commercial_use`.

    Example:
        >>> require_commercial_backbone("packaged:efficientnet_lite0")[0].licence
        'Apache-2.0'
    """
    chain, modality = _chain_and_modality(spec, pretrained, role, options)
    require_commercial_use(chain, modality=modality)
    return chain


def licence_chain_of(spec: str, *, pretrained: bool = True, role: str = "weights",
                     **options: Any) -> tuple[LicenceSource, ...]:
    """The licence chain of the backbone ``spec`` names, as :attr:`Backbone.licence_chain` of
    ``create_backbone(spec, pretrained=pretrained, **options)``, each entry in ``role`` unless it is ``weights``
    (a distilled student's bundle keeps ``licence_record(student_chain, licence_chain_of(teacher, role="teacher"))``).
    Where the source states the licence beforehand (a bundle's JSON, timm's pretrained config, a torchvision
    weights enum, a package's entry), no weights are loaded.

    Example:
        >>> licence_chain_of("bundle:runs/pets")[0].licence
        'Apache-2.0'
    """
    return _chain_and_modality(spec, pretrained, role, options)[0]


def _chain_and_modality(spec: str, pretrained: bool, role: str, options: dict[str, Any]
                        ) -> tuple[tuple[LicenceSource, ...], str]:
    known = known_licence(spec) if pretrained and not options.get("weights_file") else None
    if known is not None:
        chain, modality = known
    else:
        backbone = create_backbone(spec, pretrained=pretrained, **options)
        chain, modality = backbone.licence_chain, backbone.modality
    if role != "weights":
        chain = tuple(dataclasses.replace(s, role=role) for s in chain)
    return chain, modality
