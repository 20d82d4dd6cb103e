"""Turn a source's notion of layer groups into named, non-overlapping module lists."""

from __future__ import annotations

from torch import nn

from .._errors import BackboneError


def _short(name: str) -> str:
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 and parts[1].isdigit() else parts[0]


def _cover(group: set[str], params_under: dict[str, set[str]], order: dict[str, int]) -> list[str]:
    """The fewest modules (or top-level parameters) whose parameters are exactly ``group``."""
    covers: list[str] = []
    for p in sorted(group, key=order.__getitem__):
        node = p.rsplit(".", 1)[0] if "." in p else p
        if node == p:  # a parameter that sits directly on the trunk (e.g. ViT cls_token)
            covers.append(p)
            continue
        while "." in node and params_under.get(node.rsplit(".", 1)[0], set()) <= group:
            node = node.rsplit(".", 1)[0]
        if params_under.get(node, set()) <= group:
            covers.append(node)
        else:
            covers.append(p)
    # drop covers nested inside another cover
    unique = list(dict.fromkeys(covers))
    return [c for c in unique if not any(c != o and c.startswith(o + ".") for o in unique)]


def name_and_cover_groups(trunk: nn.Module, raw: list[list[str]]) -> list[tuple[str, list[str]]]:
    """Name each group and cover it by the largest modules that hold only its parameters.

    Covering by modules matters: parameter-less children (dropout, drop-path) and BatchNorm buffers then follow
    the group's train/eval mode, so a frozen group is fully deterministic.

    Args:
        trunk: the module the names refer to.
        raw: ordered input → output lists of parameter or module names.

    Returns:
        ``[(group_name, [module_or_parameter_name, ...]), ...]``; parameters in no group form a final ``rest``.
    """
    all_params = [n for n, _ in trunk.named_parameters()]
    params_under: dict[str, set[str]] = {}
    for p in all_params:
        parts = p.split(".")
        for k in range(1, len(parts)):
            params_under.setdefault(".".join(parts[:k]), set()).add(p)
    order = {p: i for i, p in enumerate(all_params)}
    groups: list[tuple[str, list[str]]] = []
    claimed: set[str] = set()
    for names in [*raw, all_params]:
        group = {p for n in names for p in all_params if (p == n or p.startswith(n + ".")) and p not in claimed}
        if not group:
            continue
        covers = _cover(group, params_under, order)
        label = covers[0] if len(covers) == 1 else "+".join(dict.fromkeys(_short(c) for c in covers))
        groups.append((label if names is not all_params else "rest", covers))
        claimed |= group
    seen: dict[str, int] = {}
    unique = []
    for label, modules in groups:
        seen[label] = seen.get(label, 0) + 1
        unique.append((label if seen[label] == 1 else f"{label}#{seen[label]}", modules))
    if not unique:
        raise BackboneError("The backbone has no trainable parameters to group.")
    return unique


def top_level_groups(trunk: nn.Module) -> list[list[str]]:
    """Fallback grouping: top-level children with parameters, expanding a lone big ``Sequential`` one level."""
    children = [(n, m) for n, m in trunk.named_children() if any(True for _ in m.parameters())]
    if len(children) <= 2:
        expanded: list[tuple[str, nn.Module]] = []
        for n, m in children:
            if isinstance(m, nn.Sequential) and len(m) > 2:
                expanded.extend((f"{n}.{cn}", cm) for cn, cm in m.named_children() if any(True for _ in cm.parameters()))
            else:
                expanded.append((n, m))
        children = expanded
    return [[n] for n, _ in children]


def probe_feature_dims(trunk: nn.Module, module_names: list[str], input_size: tuple[int, int, int]) -> dict[str, int]:
    """Channels of each named module's output, found with one small forward pass (64 px, eval mode)."""
    import torch

    dims: dict[str, int] = {}
    handles = []
    for name in module_names:
        def hook(_m: nn.Module, _i: object, out: object, name: str = name) -> None:
            t = out[0] if isinstance(out, tuple) else out
            if isinstance(t, torch.Tensor) and t.ndim in (3, 4):
                dims[name] = int(t.shape[1] if t.ndim == 4 else t.shape[-1])
        handles.append(trunk.get_submodule(name).register_forward_hook(hook))
    was_training = trunk.training
    try:
        trunk.eval()
        with torch.inference_mode():
            for side in dict.fromkeys((64, input_size[-1])):  # small first; a model with a fixed size needs its own
                try:
                    trunk(torch.zeros(1, input_size[0], side, side))
                    break
                except (RuntimeError, AssertionError):  # torchvision's ViT asserts its image size
                    dims.clear()
    finally:
        for h in handles:
            h.remove()
        trunk.train(was_training)
    return {n: dims[n] for n in module_names if n in dims}
