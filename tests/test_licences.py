"""The licence guard (issue 19): an SPDX id for every weight source, which ids allow commercial use, the chain a
bundle records and a bundle of it inherits, and the one-line refusal of `--commercial`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from transferkit import FeatureExtractionClassifier, LicenceError, WeightsInfo, create_backbone, from_folder
from transferkit.backbones import (
    LicenceSource,
    allows_commercial_use,
    licence_chain_of,
    licence_record,
    require_commercial_backbone,
    require_commercial_use,
    spdx_id,
)
from transferkit.backbones._hf_hub import read_licence
from transferkit.backbones.licences import inherit
from transferkit.jobs._fit_config import FitConfig, check_licence

from .conftest import TINY, tiny_backbone
from .test_cli import FIT_TINY, assert_user_error, cli, one_json

NON_COMMERCIAL = "cc-by-nc-4.0"


@pytest.mark.parametrize(("stated", "spdx", "commercial"), [
    ("apache-2.0", "Apache-2.0", True),  # model cards and timm's pretrained_cfg.license write lowercase ids
    ("Apache-2.0", "Apache-2.0", True),
    ("mit", "MIT", True),
    ("bsd-3-clause", "BSD-3-Clause", True),
    ("PDDL-1.0", "PDDL-1.0", True),
    ("cc-by-4.0", "CC-BY-4.0", True),
    ("cc-by-nc-4.0", "CC-BY-NC-4.0", False),
    ("cc-by-nc-sa-4.0", "CC-BY-NC-SA-4.0", False),
    ("fair-noncommercial-research-license", "LicenseRef-fair-noncommercial-research-license", False),
    ("https://github.com/facebookresearch/SWAG/blob/main/LICENSE", "CC-BY-NC-4.0", False),  # torchvision's SWAG
    ("apple-ascl", "LicenseRef-apple-ascl", None),  # a custom licence: a person must read it
    ("other", "unknown", None),
    (None, "unknown", None),
    ("unknown — check the model card", "unknown", None),
    ("BSD-3-Clause code; weights under the terms of their training data", "unknown", None),
    ("n/a (random init)", "none (random init)", True),  # no third-party weights at all
    ("mit and cc-by-nc-4.0", "MIT AND CC-BY-NC-4.0", False),
    ("mit OR cc-by-nc-4.0", "MIT OR CC-BY-NC-4.0", True),
    ("(MIT OR cc-by-nc-4.0) AND unknown", "(MIT OR CC-BY-NC-4.0) AND unknown", None),
    ("cc-by-nc-4.0 OR MIT AND PDDL-1.0", "CC-BY-NC-4.0 OR MIT AND PDDL-1.0", True),  # AND binds tighter
])
def test_stated_licences_become_spdx_ids_with_a_commercial_verdict(stated, spdx, commercial):
    assert spdx_id(stated) == spdx
    assert spdx_id(spdx) == spdx  # an id is its own id
    assert allows_commercial_use(spdx) is commercial


def test_weights_info_holds_the_id_and_keeps_a_statement_that_says_more():
    stated = "BSD-3-Clause code; weights under the terms of their training data (see torchvision docs)"
    w = WeightsInfo("torchvision", True, stated, "https://download.pytorch.org/x.pth")
    assert w.licence == "unknown" and w.licence_note == stated
    assert WeightsInfo("timm", True, "apache-2.0", "hub").licence_note == ""  # a spelling, not a statement
    assert WeightsInfo("timm", False, "apache-2.0", "random init").licence == "none (random init)"
    chained = WeightsInfo("bundle", True, "MIT", "runs/x", licence_chain=(LicenceSource("packaged:a", "MIT"),))
    assert WeightsInfo.from_dict(json.loads(json.dumps(chained.to_dict()))) == chained


def test_every_source_states_an_spdx_id(tmp_path):
    assert create_backbone("packaged:efficientnet_lite0").licence_chain == (
        LicenceSource("packaged:efficientnet_lite0", "Apache-2.0"),)
    import timm

    assert create_backbone(TINY, pretrained=False).weights.licence == "none (random init)"
    path = tmp_path / "w.pth"
    torch.save(timm.create_model(TINY.split(":")[1], pretrained=False).state_dict(), path)
    # timm: the tag's pretrained_cfg.license ("apache-2.0") of weights loaded from a file
    assert create_backbone(f"{TINY}.r160_in1k", weights_file=str(path)).weights.licence == "Apache-2.0"
    import torchvision

    from transferkit.backbones.torchvision import weights_licence

    assert weights_licence(torchvision.models.ViT_H_14_Weights.IMAGENET1K_SWAG_E2E_V1) == "CC-BY-NC-4.0"
    assert weights_licence(torchvision.models.ResNet18_Weights.DEFAULT) == "unknown"
    card = tmp_path / "README.md"
    card.write_text("---\nlicense: apache-2.0\ntags: [x]\n---\n# model\n")
    assert spdx_id(read_licence(card)) == "Apache-2.0"
    card.write_text("---\nlicense: other\nlicense_name: acme-model-terms\n---\n")
    assert spdx_id(read_licence(card)) == "LicenseRef-acme-model-terms"


def test_backbones_lists_ids_and_whether_commercial_use_is_allowed(capsys):
    code, out, _ = cli(capsys, "backbones", "--json")
    assert code == 0
    rows = {r["spec"]: r for r in one_json(out)["backbones"]}
    assert rows["packaged:efficientnet_lite0"]["licence"] == "Apache-2.0"
    assert rows["packaged:efficientnet_lite0"]["commercial"] == "yes"
    assert rows["random:<spec>"]["commercial"] == "yes"
    assert rows["bundle:<dir>"]["commercial"] == "per model"


def non_commercial_bundle(root: Path, image_folder: Path) -> Path:
    """A bundle whose backbone's weights are (said to be) CC-BY-NC-4.0, as a hub model's could be."""
    backbone = tiny_backbone()
    backbone.weights = WeightsInfo("timm", True, NON_COMMERCIAL, "hub:someone/tiny")
    FeatureExtractionClassifier(backbone, progress=False).fit(from_folder(image_folder)).save(root)
    return root


def test_a_bundle_keeps_its_ancestors_licences_and_commercial_fits_refuse_them(capsys, tmp_path, image_folder):
    first = non_commercial_bundle(tmp_path / "first", image_folder)
    meta = json.loads((first / "transferkit.json").read_text())
    assert meta["licence"] == "CC-BY-NC-4.0"
    assert meta["licence_chain"] == [{"source": TINY, "licence": "CC-BY-NC-4.0", "role": "weights", "via": []}]

    second = tmp_path / "second"
    FeatureExtractionClassifier(f"bundle:{first}", progress=False).fit(from_folder(image_folder)).save(second)
    meta = json.loads((second / "transferkit.json").read_text())
    assert meta["licence"] == "CC-BY-NC-4.0"  # a bundle of a bundle keeps the original weights' licence
    assert meta["licence_chain"][0]["via"] == [f"bundle:{first}"]
    # the chain of a bundle: spec is read from its JSON, as the built backbone has it
    chain = licence_chain_of(f"bundle:{second}")
    assert chain == create_backbone(f"bundle:{second}").licence_chain
    assert chain[0].via == (f"bundle:{second}", f"bundle:{first}") and chain[0].source == TINY

    code, out, _ = cli(capsys, "backbones", "--show", f"bundle:{second}", "--json")
    assert code == 0 and one_json(out)["backbone"]["licence_chain"] == [c.to_dict() for c in chain]
    code, out, _ = cli(capsys, "backbones", "--show", f"bundle:{second}")
    assert f"licence chain: {TINY} (CC-BY-NC-4.0) → bundle:{first} → bundle:{second}" in out.replace("\n", "")

    out_dir = tmp_path / "refused"
    line = assert_user_error(cli(capsys, "fit", image_folder, "--backbone", f"bundle:{second}", "--out", out_dir,
                                 "--commercial", "--no-progress"), "CC-BY-NC-4.0")
    assert "--commercial" in line and TINY in line and f"bundle:{first}" in line
    assert "does not allow commercial use" in line and "packaged:efficientnet_lite0 (Apache-2.0)" in line
    assert not out_dir.exists()  # refused before anything was read or written
    # the architecture alone (random init) uses none of those weights: allowed
    check_licence(FitConfig(data="unused", out="unused", backbone=f"bundle:{second}", random_init=True,
                            commercial=True))


@pytest.mark.parametrize(("spec", "licence"), [("timm:convnextv2_atto.fcmae", "CC-BY-NC-4.0"),
                                              ("torchvision:vit_h_14", "CC-BY-NC-4.0"),
                                              ("torchvision:resnet18", "unknown")])
def test_hub_weights_are_refused_by_their_stated_licence_before_any_download(spec, licence):
    with pytest.raises(LicenceError, match=rf"^commercial use refused: {spec} is licensed {licence}, .*Offline "
                                           r"alternatives whose licence allows it: packaged:efficientnet_lite0 "):
        require_commercial_backbone(spec)  # offline (HF_HUB_OFFLINE=1): the licence comes from timm/torchvision
    assert licence_chain_of("timm:resnet18")[0].licence == "Apache-2.0"
    with pytest.raises(LicenceError, match=r"the distillation teacher timm:convnextv2_atto\.fcmae is licensed"):
        require_commercial_backbone("timm:convnextv2_atto.fcmae", role="teacher")


def test_unknown_licences_are_refused_with_alternatives_of_the_same_modality(tmp_path):
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("good 0.1 0.2\nbad -0.1 0.3\n")
    with pytest.raises(LicenceError) as info:
        require_commercial_backbone(f"vectors:{vectors}")
    message = str(info.value)
    assert "is licensed unknown, which is not known" in message and "check the source of the vectors" in message
    assert "efficientnet" not in message  # an image backbone is no alternative for word vectors
    require_commercial_backbone(f"vectors:{vectors}", pretrained=False)  # random vectors: allowed


def test_a_distilled_model_keeps_its_teachers_licence():
    student = (LicenceSource("packaged:efficientnet_lite0", "Apache-2.0"),)
    teacher = inherit((LicenceSource("timm:convnextv2_atto.fcmae", "CC-BY-NC-4.0"),), "bundle:runs/t", role="teacher")
    record = licence_record(student, teacher)
    assert record["licence"] == "Apache-2.0 AND CC-BY-NC-4.0"
    assert [e["role"] for e in record["licence_chain"]] == ["weights", "teacher"]
    require_commercial_use(student)
    assert [s.role for s in licence_chain_of("timm:convnextv2_atto.fcmae", role="teacher")] == ["teacher"]
    with pytest.raises(LicenceError, match=r"the distillation teacher timm:convnextv2_atto\.fcmae \(reached through "
                                           r"bundle:runs/t\) is licensed CC-BY-NC-4\.0"):
        require_commercial_use([LicenceSource.from_dict(e) for e in record["licence_chain"]], modality="image")


def test_a_commercial_fit_of_allowed_weights_runs(capsys, tmp_path, image_folder):
    code, out, _ = cli(capsys, "fit", image_folder, *FIT_TINY, "--commercial", "--out", tmp_path / "ok", "--json")
    assert code == 0
    result = one_json(out)
    assert result["licence"] == "none (random init)"
    assert result["licence_chain"] == [{"source": TINY, "licence": "none (random init)", "role": "weights",
                                        "via": []}]
