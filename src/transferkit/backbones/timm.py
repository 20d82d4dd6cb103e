"""``timm:<model>`` backbones: any of timm's architectures, pretrained weights from its hub when reachable.

``timm:resnet50`` downloads timm's default pretrained tag (through the Hugging Face hub cache);
``pretrained=False`` builds the architecture randomly initialised, which always works offline;
``weights_file=PATH`` loads a local ``.safetensors``/``.pth`` through timm's own loading path.
"""

from __future__ import annotations

import copy
import os
import socket
from typing import Any

import timm

from .._errors import BackboneError, OfflineError, did_you_mean
from ._base import Backbone
from ._groups import name_and_cover_groups, top_level_groups
from ._registry import SourceEntry, register_source
from .licences import UNKNOWN, LicenceSource, spdx_id
from .weights import Preprocessing, WeightsInfo, preprocessing_from_timm, state_dict_checksum

#: random weights are `pretrained=False` (the CLI's --random-init) or a random:<spec>, which every command takes
OFFLINE_ALTERNATIVES = ("packaged:efficientnet_lite0, a bundle:<dir> you trained, or random weights "
                        "(`pretrained=False`, or random:<spec>)")


def hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """Cheap connectivity probe, so an offline machine fails in seconds instead of minutes of retries."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        socket.setdefaulttimeout(timeout)
        socket.getaddrinfo(host, 443)
        return True
    except OSError:
        return False
    finally:
        socket.setdefaulttimeout(None)


def _create_timm_model(name: str, pretrained: bool, weights_file: str | None) -> Any:
    if weights_file is not None:
        if not os.path.isfile(weights_file):
            raise BackboneError(f"Weights file {weights_file!r} does not exist; pass a .safetensors or .pth path.")
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": os.fspath(weights_file)})
    if not pretrained:
        return timm.create_model(name, pretrained=False)
    import huggingface_hub.constants as hub_constants

    # Try the local hub cache first without touching the network, then go online only if a probe succeeds.
    was_offline = hub_constants.HF_HUB_OFFLINE
    hub_constants.HF_HUB_OFFLINE = True
    try:
        return timm.create_model(name, pretrained=True)
    except (OSError, RuntimeError, ValueError):
        pass
    finally:
        hub_constants.HF_HUB_OFFLINE = was_offline
    if not hub_reachable():
        raise OfflineError(
            f"Pretrained weights for timm:{name} are not in the local cache and the hub cannot be reached "
            f"(offline). Use {OFFLINE_ALTERNATIVES}."
        )
    try:
        return timm.create_model(name, pretrained=True)
    except OSError as e:
        raise OfflineError(
            f"Could not download weights for timm:{name}: {str(e).splitlines()[0]}. Use {OFFLINE_ALTERNATIVES}."
        ) from e


def backbone_from_timm_model(
    model: Any, *, spec: str, arch: str, weights: WeightsInfo, preprocessing: Preprocessing | None = None
) -> Backbone:
    """Wrap a timm model: keep its classifier aside as the source head, expose timm's groups and feature info."""
    num_source_classes = weights.num_source_classes
    source_head = copy.deepcopy(model.get_classifier()) if num_source_classes else None
    model.reset_classifier(0)
    cfg = model.pretrained_cfg
    if preprocessing is None:
        preprocessing = preprocessing_from_timm(model)
    feature_layers = {f["module"]: int(f["num_chs"]) for f in getattr(model, "feature_info", []) if f.get("module")}
    try:
        from timm.models import group_parameters

        raw = [list(v) for _, v in sorted(group_parameters(model, model.group_matcher(coarse=True)).items())]
    except (AttributeError, NotImplementedError, TypeError):
        raw = top_level_groups(model)
    if weights.checksum == "":
        weights = WeightsInfo(**{**weights.to_dict(), "checksum": state_dict_checksum(model)})
    if weights.pretrained and weights.licence == UNKNOWN and cfg.get("license"):
        weights = WeightsInfo(**{**weights.to_dict(), "licence": cfg["license"]})
    return Backbone(
        model,
        spec=spec,
        arch_spec=f"timm:{arch}",
        preprocessing=preprocessing,
        weights=weights,
        num_features=int(getattr(model, "head_hidden_size", None) or model.num_features),
        feature_layers=feature_layers,
        groups=name_and_cover_groups(model, raw),
        source_head=source_head,
    )


def create(name: str, *, pretrained: bool = True, weights_file: str | None = None, **_: Any) -> Backbone:
    if not timm.is_model(name):
        known = timm.list_models()
        raise BackboneError(
            f"timm has no model named {name!r}; see timm.list_models() or `transferkit backbones`."
            f"{did_you_mean(name, known)}"
        )
    model = _create_timm_model(name, pretrained, weights_file)
    cfg = model.pretrained_cfg
    loaded = pretrained or weights_file is not None
    origin = weights_file or cfg.get("hf_hub_id") or cfg.get("url") or "timm"
    weights = WeightsInfo(
        source="timm",
        pretrained=loaded,
        licence=cfg.get("license", "unknown") if loaded else "n/a (random init)",
        origin=origin if loaded else "random init",
        source_task=str(cfg.get("tag", "")) if loaded else "",
        num_source_classes=int(getattr(model, "num_classes", 0) or 0) if loaded else 0,
    )
    return backbone_from_timm_model(model, spec=f"timm:{name}", arch=name.split(".")[0], weights=weights)


def _cached_timm_models() -> list[str]:
    try:
        from huggingface_hub import scan_cache_dir

        return sorted(r.repo_id.split("/", 1)[1] for r in scan_cache_dir().repos if r.repo_id.startswith("timm/"))
    except Exception:  # no cache directory yet, or an unreadable one: nothing cached
        return []


def _cached_licence(name: str) -> str:
    """The SPDX id of a cached timm model's ``pretrained_cfg.license`` (``unknown`` when timm does not know it)."""
    try:
        return spdx_id(getattr(timm.models.get_pretrained_cfg(name), "license", None))
    except Exception:  # a cached repo timm no longer lists
        return UNKNOWN


def list_entries() -> list[SourceEntry]:
    rows = [
        SourceEntry(f"timm:{name}", _cached_licence(name), True, True, "weights in the local hub cache", "image")
        for name in _cached_timm_models()
    ]
    rows.append(
        SourceEntry(
            f"timm:<any of {len(timm.list_models())} architectures>",
            "per model (pretrained_cfg.license)",
            False,
            True,
            "needs the Hugging Face hub; offline with --random-init",
        )
    )
    return rows


def known_licence(name: str) -> tuple[tuple[LicenceSource, ...], str] | None:
    """``pretrained_cfg.license`` of the weights ``timm:<name>`` would download (the default tag when none is
    given), without downloading them."""
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except Exception:  # not a model timm knows: create() refuses it with the closest names
        return None
    return ((LicenceSource(f"timm:{name}", spdx_id(getattr(cfg, "license", None))),), "image") if cfg else None


register_source("timm", create, list_entries, timm.is_model, "any timm architecture, weights from the HF hub",
                reads=lambda _name: "image", licence=known_licence)
