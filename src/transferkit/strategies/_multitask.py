"""What the strategies share when fitted on several tasks at once (a :class:`~transferkit.data.MultiTaskDataset`,
or ``fit(X, Y)`` with ``Y`` a ``{task: labels}`` mapping or an ``(N, T)`` array).

scikit-learn's multi-output conventions (as ``RandomForestClassifier`` fitted on a 2-D ``y``): after such a fit
``tasks_`` names the tasks, ``classes_`` is a list with one array of classes per task, ``predict`` returns
``(N, T)`` labels, ``predict_proba`` a list of ``(N, K_t)`` arrays. A single-task fit sets ``tasks_ = None`` and
keeps every single-task behaviour. Internally (``predict_proba_details``, the bundle's ``classes``) the tasks'
probabilities sit side by side in one ``(N, sum K_t)`` array, its columns named ``task:class``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .._errors import DataError, TransferkitError
from ..data import MISSING, MultiTaskDataset, from_task_labels
from ..heads import TASK_WEIGHTINGS


def tasks_of(model: Any) -> list[str] | None:
    """The task names of a model fitted on several tasks, None for one fitted on one."""
    return getattr(model, "tasks_", None)


def is_multitask_target(y: Any) -> bool:
    """Whether ``y`` holds several tasks: a ``{task: labels}`` mapping or a 2-D array."""
    return isinstance(y, Mapping) or (y is not None and np.ndim(y) == 2)


def multitask_dataset(inputs: Any, y: Any) -> MultiTaskDataset:
    """``fit(X, Y)``'s inputs (a dataset of their modality, unlabelled) and several tasks' labels."""
    return from_task_labels(inputs, y)


def task_classes(ds: MultiTaskDataset) -> list[np.ndarray]:
    """Per task, ``classes_`` as scikit-learn keeps them: integers when the labels were, else names."""
    out = []
    for names, integer in zip(ds.classes, ds.integer_classes or [False] * len(ds.tasks), strict=True):
        out.append(np.arange(len(names)) if integer and names == [str(i) for i in range(len(names))]
                   else np.asarray(names))
    return out


def set_tasks(model: Any, ds: MultiTaskDataset, head_classes: list[np.ndarray]) -> None:
    """The fitted attributes of a multi-task fit: ``tasks_``, ``classes_`` and ``head_classes_`` (per task)."""
    model.tasks_ = list(ds.tasks)
    model.classes_ = task_classes(ds)
    model.head_classes_ = [np.asarray(h, dtype=np.int64) for h in head_classes]


def task_sizes(model: Any) -> list[int]:
    return [len(c) for c in model.classes_]


def split_tasks(model: Any, joint: np.ndarray) -> list[np.ndarray]:
    """The tasks' ``(N, K_t)`` probabilities from the joint ``(N, sum K_t)`` array."""
    return np.split(joint, np.cumsum(task_sizes(model))[:-1], axis=1)


def joint_softmax(logits: torch.Tensor, sizes: list[int]) -> np.ndarray:
    """Concatenated task logits → concatenated per-task probabilities (each task's block sums to 1)."""
    return torch.cat([z.softmax(-1) for z in torch.split(logits, sizes, dim=-1)], dim=-1).numpy()


def predict_tasks(model: Any, joint: np.ndarray) -> np.ndarray:
    """``(N, T)`` labels, one column per task (an object array when the tasks' class kinds differ)."""
    columns = [np.asarray(c)[p.argmax(1)] for c, p in zip(model.classes_, split_tasks(model, joint), strict=True)]
    if len({c.dtype.kind for c in columns}) == 1:
        return np.stack(columns, axis=1)  # one dtype wide enough for every task's names
    out = np.empty((len(joint), len(columns)), dtype=object)
    for t, c in enumerate(columns):
        out[:, t] = c
    return out


def score_tasks(model: Any, ds: MultiTaskDataset) -> float:
    """Mean over the tasks of the accuracy on the items labelled for each (``score`` of a multi-task model)."""
    return float(np.mean(list(task_accuracies(model, ds).values())))


def task_accuracies(model: Any, ds: MultiTaskDataset) -> dict[str, float]:
    """``{task: accuracy on its labelled items}``, classes matched by name."""
    check_same_tasks(model, ds)
    joint, index, _ = model.predict_proba_details(ds)
    out = {}
    for t, (classes, proba) in enumerate(zip(model.classes_, split_tasks(model, joint), strict=True)):
        if model.tasks_[t] not in ds.tasks:
            continue
        k = ds.tasks.index(model.tasks_[t])
        labels = ds.labels[index, k]
        keep = labels != MISSING
        if not keep.any():
            continue
        truth = np.asarray(ds.classes[k])[labels[keep]]
        out[model.tasks_[t]] = float(np.mean(np.asarray(classes).astype(str)[proba[keep].argmax(1)] == truth))
    if not out:
        raise DataError(f"None of {ds.name or 'the data'}'s readable items is labelled for any task.")
    return out


def check_same_tasks(model: Any, ds: Any) -> None:
    """Refuse labels for a single task given to a multi-task model, or tasks the model does not have."""
    if getattr(ds, "tasks", None) is None:
        raise DataError(f"This model predicts {len(model.tasks_)} tasks ({', '.join(model.tasks_)}); give labels "
                        "for them as a MultiTaskDataset (read_multitask_table, from_task_labels).")
    unknown = [t for t in ds.tasks if t not in model.tasks_]
    if unknown:
        raise DataError(f"{ds.name or 'the data'!r} has task(s) {', '.join(unknown)} the model was not trained on; its "
                        f"tasks are {', '.join(model.tasks_)}.")


def check_weighting(task_weighting: str, multitask: bool) -> None:
    if task_weighting not in TASK_WEIGHTINGS:
        raise TransferkitError(f"`task_weighting` must be one of {', '.join(TASK_WEIGHTINGS)}. Got "
                               f"{task_weighting!r} instead.")
    if task_weighting != "equal" and not multitask:
        raise TransferkitError(f"`task_weighting={task_weighting!r}` weighs the losses of several tasks, and X has "
                               "labels for one; give several (a MultiTaskDataset), or drop `task_weighting`.")


def class_weights(ds: MultiTaskDataset, class_weight: str | None) -> list[torch.Tensor] | None:
    """``class_weight='balanced'`` per task: inverse frequency among its labelled items (0 for a class without)."""
    if class_weight is None:
        return None
    if class_weight != "balanced":
        raise TransferkitError(f"`class_weight` must be 'balanced' or None. Got {class_weight!r} instead.")
    out = []
    for t, names in enumerate(ds.classes):
        counts = torch.bincount(torch.as_tensor(ds.labels[ds.labelled(t), t]), minlength=len(names)).float()
        present = counts > 0
        out.append(torch.where(present, counts.sum() / (int(present.sum()) * counts.clamp(min=1)), 0.0))
    return out


# -- bundles --------------------------------------------------------------------------------------------------

def tasks_meta(model: Any) -> dict[str, Any]:
    """The bundle fields of a multi-task model: ``classes`` as ``task:class`` (the joint columns), ``tasks``."""
    return {
        "classes": [f"{task}:{c}" for task, classes in zip(model.tasks_, model.classes_, strict=True) for c in classes],
        "classes_are_integers": False,
        "head_classes": [int(c) for h in model.head_classes_ for c in h],
        "tasks": [{"name": task, "classes": [str(c) for c in classes],
                   "classes_are_integers": bool(np.asarray(classes).dtype.kind in "iu"),
                   "head_classes": [int(c) for c in head]}
                  for task, classes, head in zip(model.tasks_, model.classes_, model.head_classes_, strict=True)],
    }


def restore_tasks(model: Any, meta: dict[str, Any]) -> None:
    """``tasks_``, ``classes_``, ``head_classes_`` of a bundle (a single-task bundle: ``tasks_ = None``)."""
    records = meta.get("tasks")
    if not records:
        model.tasks_ = None
        return
    model.tasks_ = [r["name"] for r in records]
    model.classes_ = [np.asarray(r["classes"]).astype(np.int64) if r.get("classes_are_integers")
                      else np.asarray(r["classes"]) for r in records]
    model.head_classes_ = [np.asarray(r.get("head_classes", range(len(r["classes"]))), dtype=np.int64)
                           for r in records]
