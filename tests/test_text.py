"""Text modality: hf: transformers (a tiny random BERT), word vectors in three formats, text data, bundles, CLI."""

from __future__ import annotations

import json
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import transferkit as tk
from transferkit import create_backbone
from transferkit.backbones import DEFAULT_LAYER
from transferkit.backbones._text import pool_tokens
from transferkit.cli import main
from transferkit.data import TextDataset, from_texts, open_dataset, read_text_table, stratified_split
from transferkit.features import extract_features

WORDS = ["apple", "banana", "cherry", "grape", "melon", "fruit", "sweet", "juice",
         "engine", "wheel", "brake", "motor", "road", "car", "fast", "drive",
         "the", "a", "is", "very", "and", "i", "like", "this"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def make_texts(n_per_class: int = 12, seed: int = 0) -> tuple[list[str], list[str]]:
    """Two topics that differ by their words: fruit vs car sentences, with shared filler words."""
    rng = np.random.default_rng(seed)
    fruit, car, filler = WORDS[:8], WORDS[8:16], WORDS[16:]
    texts, labels = [], []
    for label, topic in (("fruit", fruit), ("car", car)):
        for _ in range(n_per_class):
            words = list(rng.choice(topic, 4)) + list(rng.choice(filler, 3))
            rng.shuffle(words)
            texts.append(" ".join(words))
            labels.append(label)
    return texts, labels


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer BERT (hidden 32) with a WordPiece tokenizer over a 29-token vocabulary, saved to a dir."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    root = tmp_path_factory.mktemp("tiny-bert")
    vocab = root / "vocab.txt"
    vocab.write_text("\n".join(SPECIALS + WORDS) + "\n")
    # positional: transformers 4 names it vocab_file, 5 names it vocab (a keyword the other ignores: all [UNK])
    tokenizer = BertTokenizerFast(str(vocab), do_lower_case=True)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(SPECIALS) + len(WORDS), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=37, max_position_embeddings=64)
    BertModel(config).eval().save_pretrained(root)
    tokenizer.save_pretrained(root)
    (root / "README.md").write_text("---\nlicense: mit\n---\n# tiny\n")
    return root


@pytest.fixture
def text_csv(tmp_path: Path) -> Path:
    texts, labels = make_texts()
    path = tmp_path / "texts.csv"
    lines = ["text,label"] + [f"{t},{lab}" for t, lab in zip(texts, labels, strict=True)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# -- hf: backbones ---------------------------------------------------------------------------------------------
def test_hf_features_are_mask_aware_mean_pooled(tiny_bert: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    bb = create_backbone(f"hf:{tiny_bert}")
    assert bb.modality == "text" and bb.num_features == 32
    assert bb.weights.licence == "MIT" and len(bb.weights.checksum) == 64
    texts = ["apple banana", "the car is very fast and i like this engine"]  # different lengths: padding
    out = extract_features(bb, from_texts(texts), cache=False, progress=False).features
    tok = AutoTokenizer.from_pretrained(tiny_bert)
    model = AutoModel.from_pretrained(tiny_bert).eval()
    with torch.no_grad():
        for i, text in enumerate(texts):  # one text at a time: no padding at all
            hidden = model(**tok(text, return_tensors="pt")).last_hidden_state[0]
            np.testing.assert_allclose(out[i], hidden.mean(0).numpy(), atol=1e-5)


@pytest.mark.parametrize("pooling", ["cls", "max"])
def test_hf_pooling_options(tiny_bert: Path, pooling: str) -> None:
    bb = create_backbone(f"hf:{tiny_bert}", pooling=pooling)
    assert bb.preprocessing.pooling == pooling
    inputs = bb.encoder(["apple", "the car is fast"])
    with torch.no_grad():
        hidden = bb.trunk.model(**inputs).last_hidden_state
        got = bb(inputs)
    if pooling == "cls":
        torch.testing.assert_close(got, hidden[:, 0])
    else:
        n = int(inputs["attention_mask"][0].sum())
        torch.testing.assert_close(got[0], hidden[0, :n].amax(0))


def test_pool_tokens_ignores_padding() -> None:
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    torch.testing.assert_close(pool_tokens(hidden, mask, "mean"), torch.tensor([[2.0, 3.0]]))
    torch.testing.assert_close(pool_tokens(hidden, mask, "max"), torch.tensor([[3.0, 4.0]]))


def test_hf_layer_features_are_pooled_hidden_states(tiny_bert: Path) -> None:
    bb = create_backbone(f"hf:{tiny_bert}")
    assert bb.layers == ["encoder.layer.0", "encoder.layer.1", DEFAULT_LAYER]
    inputs = bb.encoder(["apple banana cherry", "the car"])
    with torch.no_grad():
        states = bb.trunk.model(**inputs, output_hidden_states=True).hidden_states
        both = bb.forward_layers(inputs, ["encoder.layer.0", DEFAULT_LAYER])
        for i, name in enumerate(["encoder.layer.0", "encoder.layer.1"]):
            torch.testing.assert_close(bb(inputs, name), pool_tokens(states[i + 1], inputs["attention_mask"], "mean"))
    torch.testing.assert_close(both["encoder.layer.0"], bb(inputs, "encoder.layer.0"))
    torch.testing.assert_close(both[DEFAULT_LAYER], bb(inputs))


def test_hf_groups_cover_every_parameter_once_and_freeze(tiny_bert: Path) -> None:
    bb = create_backbone(f"hf:{tiny_bert}")
    names = [g.name for g in bb.layer_groups()]
    assert names == ["embeddings", "encoder.layer.0", "encoder.layer.1"]  # the unused pooler is gone
    assert bb.trunk.model.pooler is None
    ids = [id(p) for g in bb.layer_groups() for p in g.parameters()]
    assert len(ids) == len(set(ids)) == len(list(bb.trunk.parameters()))
    bb.freeze(["embeddings", "encoder.layer.0"])
    bb.train()
    assert not any(p.requires_grad for p in bb.trunk.model.embeddings.parameters())
    assert all(p.requires_grad for p in bb.trunk.model.encoder.layer[1].parameters())
    assert not bb.trunk.model.encoder.layer[0].training and bb.trunk.model.encoder.layer[1].training


def test_hf_random_init_is_seeded_and_keeps_the_config(tiny_bert: Path) -> None:
    a = create_backbone(f"hf:{tiny_bert}", pretrained=False)
    b = create_backbone(f"hf:{tiny_bert}", pretrained=False)
    pre = create_backbone(f"hf:{tiny_bert}")
    assert not a.weights.pretrained and a.weights.checksum == b.weights.checksum
    assert a.weights.checksum != pre.weights.checksum
    assert a.trunk.model.config.hidden_size == 32 and a.layers == pre.layers


def test_hf_max_length_truncates_and_is_reported(tiny_bert: Path) -> None:
    bb = create_backbone(f"hf:{tiny_bert}", max_length=5)
    assert bb.encoder(["apple " * 20])["input_ids"].shape[1] == 5
    report = bb.describe_inputs(from_texts(["apple " * 20, "apple"]))
    assert report["truncated"] == 1 and report["max_length"] == 5
    assert create_backbone(f"hf:{tiny_bert}").preprocessing.max_length == 64  # the model's positions < 128


def test_hf_offline_hub_error_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(tk.OfflineError) as info:
        create_backbone("hf:some-org/not-cached-model-xyz")
    message = str(info.value)
    assert "\n" not in message and "offline" in message and "packaged:all-minilm-l6-v2" in message


# -- word vectors -------------------------------------------------------------------------------------------------
VECS = {"apple": [1.0, 0.0, 0.0], "banana": [0.0, 1.0, 0.0], "car": [0.0, 0.0, 1.0], "don't": [2.0, 2.0, 2.0]}


def write_vectors(tmp_path: Path, fmt: str) -> Path:
    if fmt == "glove":
        path = tmp_path / "vectors.txt"
        path.write_text("".join(f"{w} {' '.join(map(str, v))}\n" for w, v in VECS.items()), encoding="utf-8")
    elif fmt == "vec":
        path = tmp_path / "vectors.vec"
        path.write_text(f"{len(VECS)} 3\n" + "".join(f"{w} {' '.join(map(str, v))}\n" for w, v in VECS.items()))
    else:
        path = tmp_path / "vectors.bin"
        with open(path, "wb") as f:
            f.write(f"{len(VECS)} 3\n".encode())
            for w, v in VECS.items():
                f.write(w.encode() + b" " + struct.pack("<3f", *v) + b"\n")
    return path


@pytest.mark.parametrize("fmt", ["glove", "vec", "bin"])
def test_vector_files_mean_pooling_and_oov(tmp_path: Path, fmt: str) -> None:
    bb = create_backbone(f"vectors:{write_vectors(tmp_path, fmt)}")
    assert bb.modality == "text" and bb.num_features == 3 and bb.layers == [DEFAULT_LAYER]
    ds = from_texts(["Apple, BANANA and pears!", "car car", "nothing known", "Don't"])
    out = extract_features(bb, ds, cache=False, progress=False)
    np.testing.assert_allclose(out.features, [[0.5, 0.5, 0], [0, 0, 1], [0, 0, 0], [2, 2, 2]], atol=1e-6)
    # tokens: apple banana and pears | car car | nothing known | don't  -> 9 tokens, 4 unknown
    assert out.inputs["tokens"] == 9 and out.inputs["oov_tokens"] == 4
    assert out.inputs["oov_fraction"] == pytest.approx(4 / 9, abs=1e-6)
    assert out.inputs["texts_without_known_words"] == 1
    assert out.summary()["inputs"]["oov_fraction"] == pytest.approx(4 / 9, abs=1e-6)


def test_sif_weights_down_weight_frequent_words(tmp_path: Path) -> None:
    from transferkit.backbones.vectors import SIF_A, sif_weights

    bb = create_backbone(f"vectors:{write_vectors(tmp_path, 'glove')}", pooling="sif")
    w = sif_weights(4)
    harmonic = sum(1 / r for r in range(1, 5))
    assert float(w[0]) == pytest.approx(SIF_A / (SIF_A + 1 / harmonic), rel=1e-5) and bool((w[1:] > w[:-1]).all())
    got = extract_features(bb, from_texts(["apple banana"]), cache=False, progress=False).features[0]
    np.testing.assert_allclose(got, [float(w[0]) / 2, float(w[1]) / 2, 0], rtol=1e-5)
    # a SIF bundle reloads as SIF, and as a plain mean when asked: the weights come from the pooling, not the file
    clf = tk.FeatureExtractionClassifier(bb, progress=False).fit(["apple banana", "car"] * 3, ["f", "c"] * 3)
    clf.save(tmp_path / "sif")
    again = create_backbone(f"bundle:{tmp_path / 'sif'}")
    mean = create_backbone(f"bundle:{tmp_path / 'sif'}", pooling="mean")
    text = from_texts(["apple banana"])
    np.testing.assert_allclose(extract_features(again, text, cache=False, progress=False).features[0], got, rtol=1e-5)
    np.testing.assert_allclose(extract_features(mean, text, cache=False, progress=False).features[0],
                               [0.5, 0.5, 0], rtol=1e-5)


def test_words_the_vectors_lack_count_through_their_clitics(tmp_path: Path) -> None:
    from transferkit.backbones.vectors import VectorsEncoder, split_clitic

    assert split_clitic("don't") == ["do", "n't"] and split_clitic("dog's") == ["dog", "'s"]
    enc = VectorsEncoder({"do": 0, "n't": 1, "dog": 2, "'s": 3, "rock'n'roll": 4, "like": 5})
    # GloVe 6B has neither "don't" nor "dog's": they were dropped as unknown words before
    assert enc.ids("I don’t like my dog's rock'n'roll") == ([0, 1, 5, 2, 3, 4], 6, 2)  # "i" and "my" unknown
    report = enc.report(["don't", "zzz"])
    assert report["oov_tokens"] == 1 and report["tokens"] == 2


def test_vectors_fine_tuning_updates_the_table(tmp_path: Path) -> None:
    texts = ["apple banana"] * 6 + ["car"] * 6
    clf = tk.FineTuneClassifier(f"vectors:{write_vectors(tmp_path, 'glove')}", head_epochs=1, epochs=1,
                                lr_backbone=0.1, batch_size=4, progress=False, device="cpu")
    before = clf.fit(texts, ["f"] * 6 + ["c"] * 6)
    table = before.backbone_.trunk.embedding.weight.detach()
    assert not torch.allclose(table[:3], torch.tensor(list(VECS.values())[:3]))
    assert before.fit_info_["inputs"]["oov_fraction"] == 0.0


# -- text data ----------------------------------------------------------------------------------------------------
def test_text_csv_tsv_jsonl_and_routing(tmp_path: Path, text_csv: Path) -> None:
    ds = open_dataset(text_csv)
    assert isinstance(ds, TextDataset) and ds.classes == ["car", "fruit"] and len(ds) == 24
    assert ds.content_key(0) == ds.content_key(0) and ds.content_key(0) != ds.content_key(1)
    (tmp_path / "d.tsv").write_text("review\tstars\nnice apple\t5\n\t3\nbad car\t1\nbad car\t5\n")
    tsv = open_dataset(tmp_path / "d.tsv", text_column="review", label_column="stars")
    assert tsv.items == ["nice apple", "bad car", "bad car"] and tsv.classes == ["1", "5"]
    assert tsv.skipped == [(f"{tmp_path / 'd.tsv'}:3", "empty text")]
    assert tsv.summary()["duplicates"] == 1 and tsv.summary()["conflicting"] == 1
    (tmp_path / "d.jsonl").write_text('{"text": "x y", "label": "a"}\n\n{"text": "z", "label": "b"}\n')
    jl = open_dataset(tmp_path / "d.jsonl")
    assert jl.items == ["x y", "z"] and list(jl.labels) == [0, 1]
    sub = jl.subset([1])
    assert sub.items == ["z"] and sub.describe(0).endswith("d.jsonl:3")
    train, val = stratified_split(ds, 0.25, seed=0)
    assert isinstance(train, TextDataset) and len(train) + len(val) == 24
    # an image CSV (path,label) still goes to images
    (tmp_path / "img.csv").write_text("path,label\na.png,x\n")
    (tmp_path / "a.png").write_bytes(b"")  # exists (unreadable images are the loader's business)
    assert type(open_dataset(tmp_path / "img.csv")).__name__ == "ImageDataset"


def test_non_utf8_text_file_names_the_encoding_option(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("text,label\ncafé crème,a\nthé,b\n".encode("latin-1"))
    with pytest.raises(tk.DataError) as info:
        open_dataset(path)
    assert "encoding='latin-1'" in str(info.value) and "\n" not in str(info.value)
    ds = open_dataset(path, encoding="latin-1")
    assert ds.items == ["café crème", "thé"]
    with pytest.raises(tk.DataError, match="text_column='NAME'"):
        read_text_table(path, text_column="body", encoding="latin-1")


def test_data_and_backbone_modalities_must_match(tiny_bert: Path, text_csv: Path) -> None:
    from .conftest import tiny_backbone

    with pytest.raises(tk.DataError, match="reads images"):
        tk.FeatureExtractionClassifier(tiny_backbone(), progress=False).fit(open_dataset(text_csv))


# -- strategies, bundles, CLI -------------------------------------------------------------------------------------
def test_feature_extraction_and_bundle_round_trip(tiny_bert: Path, text_csv: Path, tmp_path: Path) -> None:
    ds = open_dataset(text_csv)
    clf = tk.FeatureExtractionClassifier(f"hf:{tiny_bert}", progress=False, cache=str(tmp_path / "c")).fit(ds)
    texts = ["apple banana juice", "the car has a fast motor"]
    proba = clf.predict_proba(texts)
    assert proba.shape == (2, 2) and clf.fit_info_["extraction"]["inputs"]["truncated"] == 0
    clf.save(tmp_path / "bundle")
    meta = json.loads((tmp_path / "bundle" / "transferkit.json").read_text())
    assert meta["backbone"]["modality"] == "text" and meta["backbone"]["assets"]["source"] == "hf"
    assert meta["preprocessing"]["modality"] == "text" and meta["licence"] == "MIT"
    assert (tmp_path / "bundle" / "backbone_assets" / "tokenizer.json").is_file()
    assert not list((tmp_path / "bundle").rglob("*.bin")) and not list((tmp_path / "bundle").rglob("*.pkl"))
    loaded = tk.load_bundle(tmp_path / "bundle", progress=False, cache=False)
    np.testing.assert_array_equal(loaded.predict_proba(texts), proba)
    assert loaded.backbone_.preprocessing == clf.backbone_.preprocessing


def test_fine_tune_text_two_stage_freezes_then_trains(tiny_bert: Path, text_csv: Path, tmp_path: Path) -> None:
    ds = open_dataset(text_csv)
    clf = tk.FineTuneClassifier(f"hf:{tiny_bert}", head_epochs=1, epochs=1, batch_size=8, lr_decay=0.5,
                                progress=False, device="cpu", augment="strong")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf.fit(ds)
    assert any("image preset" in str(w.message) for w in caught)
    plan = clf.fit_info_["plan"]
    assert list(plan[0]["trainable_groups"]) == [] and "embeddings" in plan[1]["trainable_groups"]
    lrs = clf.history_[-1]["lr"]
    assert len(lrs) >= 4  # head + per-group rates
    clf.save(tmp_path / "ft")
    loaded = tk.load_bundle(tmp_path / "ft", progress=False)
    texts = ["grape melon sweet", "brake wheel road"]
    np.testing.assert_allclose(loaded.predict_proba(texts), clf.predict_proba(texts), atol=1e-6)


def test_frozen_text_backbone_does_not_change(tiny_bert: Path, text_csv: Path) -> None:
    from transferkit.strategies._train import TransferModel
    from transferkit.training import TrainConfig, Trainer

    bb = create_backbone(f"hf:{tiny_bert}")
    before = {k: v.clone() for k, v in bb.trunk.state_dict().items()}
    head = torch.nn.Linear(32, 2)
    head_before = head.weight.detach().clone()
    model = TransferModel(bb, head, DEFAULT_LAYER)
    history = Trainer(TrainConfig(head_epochs=1, epochs=0, schedule="two-stage", batch_size=8), torch.device("cpu"),
                      progress=False).fit(model, open_dataset(text_csv))
    assert len(history) == 1 and history[0]["stage"] == "head"  # an epoch of steps ran ...
    assert not torch.equal(head.weight, head_before)  # ... and moved the head
    for k, v in bb.trunk.state_dict().items():  # but not the frozen encoder
        torch.testing.assert_close(v, before[k])


def test_cli_fit_predict_evaluate_on_a_text_csv(tiny_bert: Path, text_csv: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code = main(["fit", str(text_csv), "--backbone", f"hf:{tiny_bert}", "--out", str(out), "--no-baseline",
                 "--json", "--no-progress", "--device", "cpu"])
    assert code == 0
    fit = json.loads(capsys.readouterr().out)
    assert fit["modality"] == "text" and fit["inputs"]["texts"] == fit["train_images"]
    (tmp_path / "new.txt").write_text("apple banana juice\n\nthe fast car\n")
    assert main(["predict", str(out), str(tmp_path / "new.txt"), "--json", "--no-progress"]) == 0
    pred = json.loads(capsys.readouterr().out)
    assert [p["text"] for p in pred["predictions"]] == ["apple banana juice", "the fast car"]
    assert pred["predictions"][1]["input"].endswith("new.txt:3") and pred["skipped"][0]["reason"] == "empty text"
    assert main(["evaluate", str(out), str(text_csv), "--json", "--no-progress"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["images"] == 24 and 0.0 <= ev["accuracy"] <= 1.0


def test_cli_encoding_error_is_one_line(tmp_path: Path, tiny_bert: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("text,label\ncafé,a\nthé,b\n".encode("latin-1"))
    code = main(["fit", str(path), "--backbone", f"hf:{tiny_bert}", "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error:") and "--encoding latin-1" in err
    assert len(err.splitlines()) <= 2  # rich may soft-wrap, never a traceback


# -- slow: real packaged weights --------------------------------------------------------------------------------
@pytest.mark.slow
def test_packaged_minilm_paraphrases_are_closer() -> None:
    bb = create_backbone("packaged:all-minilm-l6-v2")
    assert bb.weights.licence == "Apache-2.0" and bb.preprocessing.pooling == "mean" and bb.num_features == 384
    ds = from_texts(["A man is playing a guitar.", "Someone is playing an instrument.",
                     "The stock market fell sharply today.", "Shares dropped on Wall Street."])
    f = extract_features(bb, ds, cache=False, progress=False).features
    f = f / np.linalg.norm(f, axis=1, keepdims=True)
    sim = f @ f.T
    assert sim[0, 1] > 0.5 and sim[2, 3] > 0.4 and max(sim[0, 2], sim[0, 3], sim[1, 2]) < 0.2


@pytest.mark.slow
def test_packaged_glove_means_separate_two_topics() -> None:
    bb = create_backbone("packaged:glove-6b-50d")
    assert bb.weights.licence == "PDDL-1.0" and bb.num_features == 50
    sport = ["the team won the football match", "a great goal in the final game", "the coach praised his players"]
    money = ["the bank raised interest rates", "stock prices fell on the market", "investors sold their shares"]
    out = extract_features(bb, from_texts(sport + money), cache=False, progress=False)
    f = out.features / np.linalg.norm(out.features, axis=1, keepdims=True)
    sim = f @ f.T
    within = (sim[:3, :3].sum() - 3 + sim[3:, 3:].sum() - 3) / 12
    across = sim[:3, 3:].mean()
    assert within > across + 0.05 and out.inputs["oov_fraction"] == 0.0


def test_vectors_bundle_round_trip_and_bundle_backbone(tmp_path: Path) -> None:
    texts, labels = make_texts(6)
    vec = tmp_path / "v.txt"
    rng = np.random.default_rng(0)
    vec.write_text("".join(f"{w} {' '.join(f'{x:.4f}' for x in rng.normal(size=4))}\n" for w in WORDS))
    clf = tk.FeatureExtractionClassifier(f"vectors:{vec}", progress=False, cache=False).fit(texts, labels)
    clf.save(tmp_path / "b")
    vec.unlink()  # the bundle keeps its vocabulary: the source file is no longer needed
    loaded = tk.load_bundle(tmp_path / "b", progress=False, cache=False)
    np.testing.assert_array_equal(loaded.predict_proba(texts[:3]), clf.predict_proba(texts[:3]))
    bb = create_backbone(f"bundle:{tmp_path / 'b'}")
    assert bb.modality == "text" and bb.weights.source == "bundle"
    torch.testing.assert_close(bb.trunk.embedding.weight, clf.backbone_.trunk.embedding.weight)


def test_a_damaged_model_folder_is_one_line(tiny_bert: Path, tmp_path: Path) -> None:
    import shutil

    cut = tmp_path / "cut"
    shutil.copytree(tiny_bert, cut)
    (cut / "model.safetensors").write_bytes((tiny_bert / "model.safetensors").read_bytes()[:300])
    with pytest.raises(tk.BackboneError, match="not a loadable transformers model directory"):
        create_backbone(f"hf:{cut}")  # a SafetensorError traceback before
    pooling = tmp_path / "pooling"
    shutil.copytree(tiny_bert, pooling)
    (pooling / "1_Pooling").mkdir()
    (pooling / "1_Pooling" / "config.json").write_text("{oops")
    with pytest.raises(tk.BackboneError, match="config.json' is not valid JSON"):
        create_backbone(f"hf:{pooling}")  # a JSONDecodeError traceback before
