"""Text: zero-shot classification by label embeddings, LoRA and prompt tuning (tiny random BERT; MiniLM when slow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from sklearn.base import clone

import transferkit as tk
from transferkit import create_backbone
from transferkit.backbones.adapters import LoraAdapters
from transferkit.cli import main
from transferkit.data import from_texts, open_dataset
from transferkit.features import extract_features
from transferkit.strategies.zero_shot import parse_labels

from . import test_text
from .test_text import make_texts

tiny_bert, text_csv = test_text.tiny_bert, test_text.text_csv  # the text tests' fixtures, shared

LABELS = ["fruit: apple banana cherry juice", "car: engine wheel brake motor"]


def embed(spec: str, texts: list[str]) -> np.ndarray:
    return extract_features(create_backbone(spec), from_texts(texts), cache=False, progress=False).features


# -- zero-shot ------------------------------------------------------------------------------------------------
def test_tokenizer_of_the_tiny_bert_knows_its_words(tiny_bert: Path) -> None:
    ids = create_backbone(f"hf:{tiny_bert}").encoder(["apple engine"])["input_ids"][0].tolist()
    assert 1 not in ids  # no [UNK]: texts really differ, so the tests below test something


def test_zero_shot_probabilities_are_tempered_cosine_similarities(tiny_bert: Path) -> None:
    clf = tk.ZeroShotClassifier(f"hf:{tiny_bert}", labels=LABELS, template="a {} text", temperature=0.1,
                                progress=False, cache=False).fit()  # no data at all
    texts = ["apple banana juice", "the car has a fast motor", "sweet melon"]
    proba = clf.predict_proba(texts)
    labels = embed(f"hf:{tiny_bert}", ["a apple banana cherry juice text", "a engine wheel brake motor text"])
    feats = embed(f"hf:{tiny_bert}", texts)
    cos = (feats / np.linalg.norm(feats, axis=1, keepdims=True)) @ \
        (labels / np.linalg.norm(labels, axis=1, keepdims=True)).T
    expected = torch.softmax(torch.from_numpy(cos / 0.1), dim=1).numpy()
    np.testing.assert_allclose(proba, expected, atol=1e-5)
    assert list(clf.classes_) == ["fruit", "car"] and clf.fit_info_["train_images"] == 0
    assert list(clf.predict(texts)) == [["fruit", "car"][i] for i in cos.argmax(1)]
    assert clf.fit_info_["prompts"][0] == "a apple banana cherry juice text"
    sharper = clone(clf).set_params(temperature=0.01).fit()
    np.testing.assert_array_equal(sharper.predict(texts), clf.predict(texts))  # the ranking ignores temperature
    assert sharper.predict_proba(texts).max(1).mean() > proba.max(1).mean()


def test_zero_shot_is_a_scikit_learn_estimator(tiny_bert: Path) -> None:
    clf = tk.ZeroShotClassifier(f"hf:{tiny_bert}", labels="fruit,car", progress=False, cache=False)
    with pytest.raises(tk.NotFittedError):
        clf.predict(["apple"])
    assert clone(clf).get_params()["labels"] == "fruit,car"
    texts, labels = make_texts(4)
    assert 0.0 <= clf.fit(texts, labels).score(texts, labels) <= 1.0


def test_zero_shot_labels_are_checked(tiny_bert: Path) -> None:
    assert parse_labels("a, b: the letter b") == [("a", "a"), ("b", "the letter b")]
    texts, labels = make_texts(3)
    clf = tk.ZeroShotClassifier(f"hf:{tiny_bert}", labels="fruit,bus", progress=False, cache=False)
    with pytest.raises(tk.DataError) as info:
        clf.fit(texts, labels)
    assert "'car' is not among the zero-shot labels" in str(info.value) and "\n" not in str(info.value)
    tk.ZeroShotClassifier(f"hf:{tiny_bert}", labels="fruit,car,boat", progress=False).fit(texts, labels)  # extra: ok
    for bad, match in (({"labels": "fruit,fruit"}, "more than once"), ({"labels": "fruit"}, "at least two"),
                       ({"labels": None}, "needs labels"), ({"labels": "a,b", "template": "x"}, "template"),
                       ({"labels": "a,b", "template": "{} and {}"}, "exactly once"),  # IndexError before
                       ({"labels": "a,b", "template": "About {}: {topic}"}, "exactly once"),  # KeyError before
                       ({"labels": "a,b", "template": "{{}}"}, "exactly once"),  # every label embedded alike
                       ({"labels": "a,b", "temperature": 0}, "temperature")):
        with pytest.raises(tk.TransferkitError, match=match):
            tk.ZeroShotClassifier(f"hf:{tiny_bert}", progress=False, **bad).fit()


def test_zero_shot_refuses_an_image_backbone() -> None:
    from .conftest import tiny_backbone

    with pytest.raises(tk.TransferkitError, match="needs a text backbone"):
        tk.ZeroShotClassifier(tiny_backbone(), labels="a,b", progress=False).fit()


def test_zero_shot_bundle_stores_label_embeddings_and_predicts_identically(tiny_bert: Path, tmp_path: Path) -> None:
    clf = tk.ZeroShotClassifier(f"hf:{tiny_bert}", labels=LABELS, progress=False, cache=False).fit()
    texts = ["apple banana juice", "the car has a fast motor"]
    clf.save(tmp_path / "zs")
    meta = json.loads((tmp_path / "zs" / "transferkit.json").read_text())
    assert meta["strategy"] == "zero-shot" and meta["head"]["config"]["type"] == "cosine"
    assert meta["params"]["labels"] == LABELS and meta["classes"] == ["fruit", "car"]
    stored = load_file(str(tmp_path / "zs" / "model.safetensors"))["head.weight"]
    np.testing.assert_allclose(stored.numpy(), clf.head_module_.weight.numpy())
    loaded = tk.load_bundle(tmp_path / "zs", progress=False, cache=False)
    np.testing.assert_array_equal(loaded.predict_proba(texts), clf.predict_proba(texts))


def test_cli_fit_zero_shot_evaluates_all_of_data(tiny_bert: Path, text_csv: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "zs"
    code = main(["fit", str(text_csv), "--strategy", "zero-shot", "--labels", "fruit,car", "--backbone",
                 f"hf:{tiny_bert}", "--out", str(out), "--json", "--no-progress", "--device", "cpu"])
    assert code == 0
    fit = json.loads(capsys.readouterr().out)
    assert fit["train_images"] == 0 and fit["val_images"] == 24 and fit["verdict"] is None
    assert fit["labels"] == {"fruit": "fruit", "car": "car"} and 0.0 <= fit["accuracy"] <= 1.0
    meta = json.loads((out / "transferkit.json").read_text())
    assert meta["data"]["evaluated_on"].startswith("all of DATA") and meta["verdict"] is None
    assert main(["evaluate", str(out), str(text_csv), "--json", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(fit["accuracy"])
    for extra, message in ((["--labels", "fruit,bus"], "not among the zero-shot labels"), ([], "needs --labels"),
                           (["--labels", "fruit,car", "--epochs", "2"], "does not apply to zero-shot")):
        code = main(["fit", str(text_csv), "--strategy", "zero-shot", "--backbone", f"hf:{tiny_bert}", "--out",
                     str(tmp_path / "bad"), "--no-progress", *extra])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.startswith("error:") and message in " ".join(err.split()), err


# -- LoRA -------------------------------------------------------------------------------------------------------
def test_lora_trains_only_adapters_and_the_head(tiny_bert: Path, text_csv: Path) -> None:
    from transferkit.backbones import DEFAULT_LAYER
    from transferkit.strategies._train import TransferModel
    from transferkit.training import TrainConfig, Trainer

    bb = create_backbone(f"hf:{tiny_bert}")
    adapters = LoraAdapters(bb, rank=4)
    assert adapters.report["target_modules"] == ["query", "value"]
    assert adapters.report["adapter_parameters"] == 2 * 2 * (4 * 32 + 32 * 4)  # layers x (query, value) x (A + B)
    base = {n: p.detach().clone() for n, p in bb.trunk.named_parameters() if ".lora_" not in n}
    lora_b = {n: p.detach().clone() for n, p in bb.trunk.named_parameters() if ".lora_B" in n}
    assert all(float(v.abs().sum()) == 0 for v in lora_b.values())  # B starts at zero: the pretrained model
    model = TransferModel(bb, torch.nn.Linear(32, 2), DEFAULT_LAYER)
    Trainer(TrainConfig(head_epochs=1, epochs=1, schedule="two-stage", batch_size=8, lr_backbone=1e-2),
            torch.device("cpu"), progress=False).fit(model, open_dataset(text_csv))
    after = dict(bb.trunk.named_parameters())
    for name, value in base.items():
        torch.testing.assert_close(after[name].detach(), value)
        assert not after[name].requires_grad  # even after the loop's final unfreeze()
    assert all(float(after[n].detach().abs().sum()) > 0 for n in lora_b)


def test_lora_fine_tune_bundle_predicts_identically_after_reload(tiny_bert: Path, text_csv: Path,
                                                                 tmp_path: Path) -> None:
    clf = tk.FineTuneClassifier(f"hf:{tiny_bert}", peft="lora", head_epochs=1, epochs=2, lr_backbone=1e-2,
                                batch_size=8, progress=False, device="cpu")
    clf.fit(open_dataset(text_csv))
    peft = clf.fit_info_["peft"]
    assert peft["merged"] and peft["adapter_parameters"] == 2 * 2 * (8 * 32 + 32 * 8)
    assert peft["head_parameters"] == 32 * 2 + 2
    assert peft["trainable_parameters"] == peft["adapter_parameters"] + peft["head_parameters"]
    assert 0 < peft["trainable_fraction"] < 0.2
    texts = ["grape melon sweet", "brake wheel road", "the car is very fast"]
    proba = clf.predict_proba(texts)
    clf.save(tmp_path / "lora")
    tensors = load_file(str(tmp_path / "lora" / "model.safetensors"))
    assert not any("lora" in k for k in tensors)  # merged: a plain transformer, loads without peft
    loaded = tk.load_bundle(tmp_path / "lora", progress=False)
    np.testing.assert_allclose(loaded.predict_proba(texts), proba, atol=1e-6)
    torch.testing.assert_close(loaded.head_module_.state_dict(), clf.head_module_.state_dict())
    # the adapters changed the encoder: the pretrained encoder under the same head predicts otherwise
    pretrained = create_backbone(f"hf:{tiny_bert}")
    with torch.no_grad():
        plain = clf.head_module_(pretrained(pretrained.encoder(texts))).softmax(-1).numpy()
    assert np.abs(plain - proba).max() > 1e-4
    assert json.loads((tmp_path / "lora" / "transferkit.json").read_text())["fit"]["peft"]["rank"] == 8


def test_peft_errors_are_one_line(tiny_bert: Path, text_csv: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    from .conftest import tiny_backbone

    with pytest.raises(tk.TransferkitError, match="peft must be one of: lora, prompt-tuning"):
        tk.FineTuneClassifier(f"hf:{tiny_bert}", peft="prefix", progress=False).fit(open_dataset(text_csv))
    with pytest.raises(tk.TransferkitError, match="transformer text encoders"):
        tk.FineTuneClassifier(tiny_backbone(), peft="lora", progress=False).fit(np.zeros((4, 8, 8, 3)), [0, 1, 0, 1])
    code = main(["fit", str(text_csv), "--backbone", f"hf:{tiny_bert}", "--peft", "lora", "--out", str(tmp_path / "o"),
                 "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--strategy fine-tune" in err and len(err.splitlines()) <= 2


def test_cli_fit_lora_reports_trainable_parameters(tiny_bert: Path, text_csv: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["fit", str(text_csv), "--strategy", "fine-tune", "--peft", "lora", "--lora-rank", "2",
                 "--backbone", f"hf:{tiny_bert}", "--out", str(tmp_path / "run"), "--no-baseline", "--epochs", "1",
                 "--head-epochs", "1", "--json", "--no-progress", "--device", "cpu"])
    assert code == 0
    fit = json.loads(capsys.readouterr().out)
    assert fit["peft"]["rank"] == 2 and fit["peft"]["adapter_parameters"] == 2 * 2 * (2 * 32 + 32 * 2)


# -- prompt tuning ------------------------------------------------------------------------------------------------
def test_prompt_runs_as_peft_feature_extraction_and_pools_only_the_text(tiny_bert: Path) -> None:
    import copy
    import warnings

    import peft

    from transferkit.backbones._text import pool_tokens
    from transferkit.backbones.prompt_tuning import PromptTuning

    bb = create_backbone(f"hf:{tiny_bert}")
    base = copy.deepcopy(bb.trunk.model)
    PromptTuning(bb, num_tokens=5)
    inputs = bb.encoder(["apple banana", "the car is very fast and i like this engine"])  # padding in row 0
    config = peft.PromptTuningConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=5, token_dim=32,
                                     num_transformer_submodules=1, num_attention_heads=2, num_layers=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # peft/transformers deprecation notices, not ours
        reference = peft.get_peft_model(base, config).eval()
        with torch.no_grad():
            reference.prompt_encoder["default"].embedding.weight.copy_(bb.trunk.prompt)
            # token_type_ids are all zero for single texts, so leaving them out (as peft asks) changes nothing
            expected = reference(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).last_hidden_state
    with torch.no_grad():
        ours = bb.trunk._run(inputs).last_hidden_state
        features = bb(inputs)
    assert ours.shape == (2, 5 + inputs["input_ids"].shape[1], 32)
    torch.testing.assert_close(ours, expected)
    torch.testing.assert_close(features, pool_tokens(expected[:, 5:], inputs["attention_mask"], "mean"))
    bb.trunk.pooling = "cls"  # the text's own [CLS], not the first virtual token
    with torch.no_grad():
        torch.testing.assert_close(bb(inputs), expected[:, 5])
        layer0 = bb(inputs, "encoder.layer.0")
    assert layer0.shape == (2, 32)


def test_prompt_tuning_trains_only_the_prompt_and_the_head(tiny_bert: Path, text_csv: Path) -> None:
    from transferkit.backbones import DEFAULT_LAYER
    from transferkit.backbones.prompt_tuning import PromptTuning
    from transferkit.strategies._train import TransferModel
    from transferkit.training import TrainConfig, Trainer

    bb = create_backbone(f"hf:{tiny_bert}")
    weights = {n: p.detach().clone() for n, p in bb.trunk.named_parameters()}
    tuning = PromptTuning(bb, num_tokens=4)
    assert [g.name for g in bb.layer_groups()] == ["prompt"]
    assert tuning.report["prompt_parameters"] == 4 * 32 and tuning.report["max_length"] == 64 - 4
    # sampled-vocabulary init: every virtual token starts as some word's embedding
    vocab = bb.trunk.model.get_input_embeddings().weight
    assert all(bool((vocab == row).all(1).any()) for row in bb.trunk.prompt.detach())
    initial = bb.trunk.prompt.detach().clone()
    model = TransferModel(bb, torch.nn.Linear(32, 2), DEFAULT_LAYER)
    trainer = Trainer(TrainConfig(head_epochs=1, epochs=2, schedule="gradual", batch_size=8, lr_backbone=5e-2),
                      torch.device("cpu"), progress=False)
    assert [s.trainable_groups for s in trainer.plan(model)] == [(), ("prompt",)]  # nothing to unfreeze gradually
    trainer.fit(model, open_dataset(text_csv))
    after = dict(bb.trunk.named_parameters())
    for name, value in weights.items():
        assert torch.equal(after[name].detach(), value), name  # bit-identical, dropout and all
        assert not after[name].requires_grad  # even after the loop's final unfreeze()
    assert not torch.equal(bb.trunk.prompt.detach(), initial)
    tuning.finish()
    assert [g.name for g in bb.layer_groups()] == ["prompt", "embeddings", "encoder.layer.0", "encoder.layer.1"]
    assert all(p.requires_grad for p in bb.trunk.parameters()) and not bb.fixed_parameters


def test_prompt_init_text_and_limits(tiny_bert: Path) -> None:
    from transferkit.backbones.prompt_tuning import PromptTuning

    bb = create_backbone(f"hf:{tiny_bert}")
    report = PromptTuning(bb, num_tokens=3, init_text="apple car").report
    assert report["init"] == "text" and report["init_text"] == "apple car"
    ids = bb.encoder(["apple car"])["input_ids"][0, :3]  # [CLS] apple car: as peft, special tokens included
    torch.testing.assert_close(bb.trunk.prompt.detach(), bb.trunk.model.get_input_embeddings().weight[ids])
    assert bb.preprocessing.prompt_tokens == 3 and bb.preprocessing.max_length == 61
    assert bb.encoder(["apple " * 100])["input_ids"].shape[1] == 61  # 3 virtual + 61 real = the 64 positions
    with pytest.raises(tk.TransferkitError, match="already runs with 3 virtual tokens"):
        PromptTuning(bb, num_tokens=2)
    for tokens, match in ((63, "leaves no room for text"), (0, "positive integer")):
        with pytest.raises(tk.TransferkitError, match=match):
            PromptTuning(create_backbone(f"hf:{tiny_bert}"), num_tokens=tokens)
    with pytest.raises(tk.TransferkitError, match="non-empty text"):
        PromptTuning(create_backbone(f"hf:{tiny_bert}"), init_text=" ")
    assert "prompt_tokens" not in create_backbone(f"hf:{tiny_bert}").preprocessing.to_dict()  # cache keys unchanged


def test_prompt_tuning_bundle_predicts_identically_after_reload(tiny_bert: Path, text_csv: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    clf = tk.FineTuneClassifier(f"hf:{tiny_bert}", peft="prompt-tuning", prompt_tokens=6, head_epochs=1, epochs=2,
                                lr_backbone=5e-2, batch_size=8, progress=False, device="cpu")
    clf.fit(open_dataset(text_csv))
    peft = clf.fit_info_["peft"]
    assert peft["method"] == "prompt-tuning" and peft["num_virtual_tokens"] == 6 and peft["prompt_parameters"] == 192
    assert peft["trainable_parameters"] == 192 + 32 * 2 + 2 and 0 < peft["trainable_fraction"] < 0.05
    assert clf.fit_info_["plan"][-1]["trainable_groups"] == ("prompt",)
    pretrained = create_backbone(f"hf:{tiny_bert}").trunk.state_dict()
    trained = clf.backbone_.trunk.state_dict()
    assert set(trained) - set(pretrained) == {"prompt"}
    assert all(torch.equal(trained[k], v) for k, v in pretrained.items())  # the encoder did not move
    texts = ["grape melon sweet", "brake wheel road", "the car is very fast"]
    proba = clf.predict_proba(texts)
    clf.save(tmp_path / "pt")
    tensors = load_file(str(tmp_path / "pt" / "model.safetensors"))
    torch.testing.assert_close(tensors["backbone.prompt"], clf.backbone_.trunk.prompt.detach(), rtol=0, atol=0)
    meta = json.loads((tmp_path / "pt" / "transferkit.json").read_text())
    assert meta["preprocessing"]["prompt_tokens"] == 6 and meta["preprocessing"]["max_length"] == 64 - 6
    assert meta["backbone"]["groups"][0] == "prompt" and meta["fit"]["peft"]["num_virtual_tokens"] == 6
    assert not any(p.suffix in (".pkl", ".pt", ".bin") for p in (tmp_path / "pt").rglob("*"))
    loaded = tk.load_bundle(tmp_path / "pt", progress=False)
    np.testing.assert_array_equal(loaded.predict_proba(texts), proba)  # prompt and head restored exactly
    torch.testing.assert_close(loaded.head_module_.state_dict(), clf.head_module_.state_dict(), rtol=0, atol=0)
    (tmp_path / "new.txt").write_text("\n".join(texts) + "\n")
    assert main(["predict", str(tmp_path / "pt"), str(tmp_path / "new.txt"), "--json", "--no-progress"]) == 0
    predicted = json.loads(capsys.readouterr().out)["predictions"]
    assert [[p["probabilities"][c] for c in ("car", "fruit")] for p in predicted] == proba.tolist()
    # the prompt matters: the same encoder and head without it predict otherwise
    plain = create_backbone(f"hf:{tiny_bert}")
    with torch.no_grad():
        without = clf.head_module_(plain(plain.encoder(texts))).softmax(-1).numpy()
    assert np.abs(without - proba).max() > 1e-4
    reused = create_backbone(f"bundle:{tmp_path / 'pt'}")  # the next transfer starts from the prompted encoder
    assert reused.trunk.num_virtual_tokens == 6 and reused.preprocessing.prompt_tokens == 6
    with torch.no_grad():
        torch.testing.assert_close(reused(reused.encoder(texts)), clf.backbone_(clf.backbone_.encoder(texts)))


def test_cli_fit_prompt_tuning_reports_it(tiny_bert: Path, text_csv: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["fit", str(text_csv), "--strategy", "fine-tune", "--peft", "prompt-tuning", "--prompt-tokens", "4",
                 "--prompt-init", "fruit or car", "--lr-backbone", "3e-2", "--backbone", f"hf:{tiny_bert}", "--out",
                 str(tmp_path / "run"), "--no-baseline", "--epochs", "1", "--head-epochs", "1", "--json",
                 "--no-progress", "--device", "cpu"])
    assert code == 0
    fit = json.loads(capsys.readouterr().out)
    assert fit["peft"]["method"] == "prompt-tuning" and fit["peft"]["num_virtual_tokens"] == 4
    assert fit["peft"]["init_text"] == "fruit or car" and fit["peft"]["prompt_parameters"] == 4 * 32
    assert fit["peft"]["trainable_parameters"] == 4 * 32 + 32 * 2 + 2
    assert fit["plan"][-1]["trainable_groups"] == ["prompt"] and fit["inputs"]["max_length"] == 60


def test_prompt_tuning_errors_are_one_line(tiny_bert: Path, text_csv: Path, image_folder: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from .conftest import tiny_backbone

    with pytest.raises(tk.TransferkitError, match="transformer text encoders"):
        tk.FineTuneClassifier(tiny_backbone(), peft="prompt-tuning", progress=False).fit(np.zeros((4, 8, 8, 3)),
                                                                                          [0, 1, 0, 1])
    with pytest.raises(tk.TransferkitError, match="^unfreeze_top does not apply"):
        tk.FineTuneClassifier(f"hf:{tiny_bert}", peft="prompt-tuning", unfreeze_top=2,
                              progress=False).fit(open_dataset(text_csv))
    common = ["--strategy", "fine-tune", "--no-baseline", "--no-progress", "--device", "cpu"]
    for data, extra, message in (
        (image_folder, ["--backbone", "timm:test_efficientnet", "--random-init", "--peft", "prompt-tuning",
                        "--image-size", "32"], "--peft prompt-tuning adapts transformer text encoders"),
        (text_csv, ["--backbone", f"hf:{tiny_bert}", "--prompt-tokens", "4"], "--prompt-tokens applies to --peft "
                                                                              "prompt-tuning"),
        (text_csv, ["--backbone", f"hf:{tiny_bert}", "--peft", "prompt-tuning", "--lora-rank", "4"],
         "--lora-rank applies to --peft lora"),
        (text_csv, ["--backbone", f"hf:{tiny_bert}", "--peft", "prompt-tuning", "--prompt-tokens", "70"],
         "leaves no room for text"),
    ):
        code = main(["fit", str(data), *extra, *common, "--out", str(tmp_path / "bad")])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.startswith("error:") and message in " ".join(err.split()), err
        assert len(err.splitlines()) <= 2  # one line (rich may wrap it)


# -- slow: real packaged weights --------------------------------------------------------------------------------
@pytest.mark.slow
def test_packaged_minilm_zero_shot_sports_vs_cooking() -> None:
    sports = ["The striker scored twice in the second half.", "The tennis final went to five sets.",
              "Our team won the championship after a penalty shootout.", "He ran the marathon in under three hours.",
              "The coach benched the quarterback for the playoff game."]
    cooking = ["Simmer the tomato sauce for twenty minutes.", "Whisk the eggs with sugar until fluffy.",
               "Roast the chicken with garlic and rosemary.", "Knead the dough and let it rise overnight.",
               "Season the soup with salt and fresh pepper."]
    clf = tk.ZeroShotClassifier("packaged:all-minilm-l6-v2", labels="sports,cooking", template="This text is about {}.",
                                progress=False, cache=False).fit(sports + cooking, ["sports"] * 5 + ["cooking"] * 5)
    assert clf.score(sports + cooking, ["sports"] * 5 + ["cooking"] * 5) >= 0.9
    assert clf.predict_proba(sports).argmax(1).tolist() == [0] * 5


def test_cli_fit_zero_shot_on_unlabeled_texts_writes_a_bundle(tiny_bert: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "new.txt").write_text("apple banana juice\nthe fast car\n")
    out = tmp_path / "zs"
    code = main(["fit", str(tmp_path / "new.txt"), "--strategy", "zero-shot", "--labels", "fruit,car", "--backbone",
                 f"hf:{tiny_bert}", "--out", str(out), "--no-progress", "--device", "cpu"])
    printed = capsys.readouterr().out
    assert code == 0 and "n/a (DATA has no labels)" in printed and "fruit, car" in printed
    assert tk.load_bundle(out, progress=False).predict(["apple"])[0] in ("fruit", "car")


@pytest.mark.slow
def test_packaged_minilm_prompt_tuning_from_text() -> None:
    from transferkit.backbones.prompt_tuning import PromptTuning

    bb = create_backbone("packaged:all-minilm-l6-v2")
    report = PromptTuning(bb, num_tokens=20, init_text="Classify the topic of this sentence.").report
    assert report["prompt_parameters"] == 20 * 384 and report["max_length"] == 128  # 512 positions: room for both
    with torch.no_grad():
        features = bb(bb.encoder(["The striker scored twice.", "Simmer the sauce."]))
    assert features.shape == (2, 384) and torch.isfinite(features).all()
