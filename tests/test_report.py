"""``transferkit report`` (issue 19): one self-contained HTML file with every section, user text escaped, texts
shown for text bundles, temperature scaling that recovers a known temperature, one-line refusals; and, where
Debian's chromium is installed, the page rendered headless without a console error."""

from __future__ import annotations

import base64
import html
import html.parser
import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transferkit import FeatureExtractionClassifier, FineTuneClassifier, Verdict, from_folder, from_texts
from transferkit.jobs.report import ReportConfig, report_bundle
from transferkit.report import apply_temperature, expected_calibration_error, temperature_scaling

from .conftest import COLORS, make_image, tiny_backbone
from .test_cli import assert_user_error, cli, one_json

SECTIONS = {"summary", "confusion", "per-class", "calibration", "training", "mistakes", "model-card"}


class Page(html.parser.HTMLParser):
    """What a test needs from the page: element ids, images, every URL-valued attribute, the confusion cells."""

    def __init__(self, text: str):
        super().__init__()
        self.ids: set[str] = set()
        self.images: list[dict[str, str]] = []
        self.urls: list[str] = []
        self.tags: list[str] = []
        self.cells: list[str] = []
        self._in_cm = self._in_td = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        self.tags.append(tag)
        self.ids.update([a["id"]] if "id" in a else [])
        self.urls += [v for k, v in a.items() if k in ("src", "href", "action", "data")]
        if tag == "img":
            self.images.append(a)
        if tag == "table" and a.get("class") == "cm":
            self._in_cm = True
        self._in_td = self._in_cm and tag == "td"

    def handle_endtag(self, tag):
        self._in_cm = self._in_cm and tag != "table"
        self._in_td = self._in_td and tag != "td"

    def handle_data(self, data):
        if self._in_td:
            self.cells.append(data)


def image_tree(root: Path, names: dict[str, tuple[int, int, int]], per_class: int = 8) -> Path:
    for c, (name, color) in enumerate(names.items()):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            make_image(color, seed=100 * c + i).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def fine_tuned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A fine-tuned tiny bundle (training history kept) with a verdict, and the 24 images it was trained on."""
    root = tmp_path_factory.mktemp("report")
    images = image_tree(root / "images", COLORS)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRANSFERKIT_CACHE", str(root / "cache"))
        clf = FineTuneClassifier(tiny_backbone(), head_epochs=1, epochs=1, lr_backbone=1e-2, batch_size=12,
                                 progress=False).fit(from_folder(images))
        verdict = Verdict("positive", 0.25, (0.05, 0.45), 0.75, 0.5, 24, 1, "paired bootstrap",
                          advice=["Keep the transfer model."])
        clf.save(root / "bundle", extra={"verdict": verdict.to_dict()})
    return root / "bundle", images


def test_the_report_holds_every_section_and_needs_nothing_else(capsys, tmp_path, fine_tuned):
    bundle, images = fine_tuned
    out = tmp_path / "r" / "report.html"
    code, stdout, _ = cli(capsys, "report", bundle, images, "--out", out, "--json", "--no-progress")
    assert code == 0
    r = one_json(stdout)
    assert r["out"] == str(out) and r["items"] == 24 and r["verdict"] == "positive" and r["training_curves"]
    text = out.read_text(encoding="utf-8")
    page = Page(text)
    assert SECTIONS | {"reliability", "training-curves", "verdict", "per-class-table", "licence-chain"} <= page.ids
    # self-contained: nothing but data: URIs and in-page anchors, no stylesheet or script files, a CSP saying so
    assert all(u.startswith(("data:image/png;base64,", "#")) for u in page.urls), page.urls
    assert "link" not in page.tags and "default-src 'none'; img-src data:" in html.unescape(text)
    for img in page.images:
        png = base64.b64decode(img["src"].split(",", 1)[1])
        assert Image.open(io.BytesIO(png)).format == "PNG"
    # the confusion matrix counts every scored image once; the mistakes are the wrong ones, most confident first
    cells = [int(c) for c in page.cells]
    assert len(cells) == 9 and sum(cells) == 24
    wrong = 24 - int(np.trace(np.reshape(cells, (3, 3))))
    assert r["mistakes"] == min(12, wrong) == text.count('class="mistake"')
    confidences = [float(v) for v in re.findall(r'<figure class="mistake">.*?predicted <b>[^<]*</b> \(([0-9.]+)\)',
                                                text)]
    assert confidences == sorted(confidences, reverse=True)
    assert abs(r["accuracy"] - (24 - wrong) / 24) < 1e-9
    assert "positive transfer: +25.0 points" in text and "Keep the transfer model." in text
    assert "none (random init)" in text  # the model card's licence chain
    assert "was trained on 24 of the 24 reported items" in text  # and the report says so


def test_user_text_is_escaped(tmp_path):
    evil = "<img src=x onerror=alert(1)>"
    images = image_tree(tmp_path / "images", {evil: COLORS["red"], "plain": COLORS["blue"]}, per_class=4)
    FeatureExtractionClassifier(tiny_backbone(), progress=False).fit(from_folder(images)).save(tmp_path / "b")
    out = tmp_path / "report.html"
    report_bundle(ReportConfig(bundle=str(tmp_path / "b"), data=str(images), out=str(out), progress=False))
    text = out.read_text(encoding="utf-8")
    assert evil not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    assert all(img["src"].startswith("data:") for img in Page(text).images)


def test_a_text_bundle_shows_its_mistaken_texts(tmp_path):
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("good 1 0\ngreat 0.9 0.1\nbad 0 1\nawful 0.1 0.9\nfilm 0.5 0.5\n")
    texts = ["good film", "great film", "bad film", "awful film", "good <b>film</b>", "awful bad"] * 2
    labels = ["pos", "pos", "neg", "neg", "neg", "pos"] * 2  # the last two of each six contradict their words
    data = tmp_path / "reviews.csv"
    data.write_text("text,label\n" + "".join(f'"{t}",{y}\n' for t, y in zip(texts, labels, strict=True)))
    FeatureExtractionClassifier(f"vectors:{vectors}", head="linear", progress=False).fit(
        from_texts(texts, labels)).save(tmp_path / "b")
    out = tmp_path / "report.html"
    r = report_bundle(ReportConfig(bundle=str(tmp_path / "b"), data=str(data), out=str(out), progress=False))
    text = out.read_text(encoding="utf-8")
    assert r["mistakes"] >= 1 and "<blockquote>" in text
    assert "good &lt;b&gt;film&lt;/b&gt;" in text or "awful bad" in text
    assert "unknown" in text  # vectors from a file: the licence chain says it is not known


def test_temperature_scaling_recovers_an_over_confident_models_temperature():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 1.5, (4000, 5))
    calibrated = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    truth = np.array([rng.choice(5, p=p) for p in calibrated])  # labels drawn from the calibrated model
    over_confident = apply_temperature(calibrated, 1 / 2.5)  # the same model, logits times 2.5
    result = temperature_scaling(over_confident, truth)
    assert result["temperature"] == pytest.approx(2.5, rel=0.1)
    assert result["ece_after"] < result["ece_before"] / 3
    assert result["nll_after"] < result["nll_before"]
    assert np.array_equal(apply_temperature(over_confident, 2.5).argmax(1), over_confident.argmax(1))
    assert expected_calibration_error(calibrated, truth) < 0.03
    assert np.allclose(apply_temperature(calibrated, 1.0), calibrated)
    assert temperature_scaling(calibrated[:3], truth[:3]) is None


def test_report_refusals_are_one_line_and_write_nothing(capsys, tmp_path, fine_tuned):
    bundle, images = fine_tuned
    assert_user_error(cli(capsys, "report", bundle, images, "--out", tmp_path / "r.pdf"), r"--out is the HTML file")
    other = image_tree(tmp_path / "other", {"purple": (120, 20, 160)}, per_class=2)
    assert_user_error(cli(capsys, "report", bundle, other, "--out", tmp_path / "r.html", "--no-progress"),
                      "classes the model was not trained on: purple")
    assert_user_error(cli(capsys, "report", tmp_path / "nothing", images, "--out", tmp_path / "r.html"),
                      "does not exist")
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "r.pdf").exists()


# -- in a real browser ------------------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def headless(page: Path, profile: Path) -> tuple[str, list[str]]:
    """(the DOM after load, the console lines) of ``page`` in headless Chromium."""
    run = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
         f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=180, check=True)
    return run.stdout, [line for line in run.stderr.splitlines() if ":CONSOLE" in line]


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_the_report_renders_in_headless_chromium_without_console_errors(tmp_path, fine_tuned):
    bundle, images = fine_tuned
    out = tmp_path / "report.html"
    report_bundle(ReportConfig(bundle=str(bundle), data=str(images), out=str(out), progress=False))
    dom, console = headless(out, tmp_path / "profile")
    assert console == []
    assert 'data-images-ok="true"' in dom  # the page's own script ran (its CSP hash is right) and every image decoded
    rendered = Page(dom)
    assert SECTIONS | {"reliability", "training-curves", "verdict"} <= rendered.ids
    assert len(rendered.images) == len(Page(out.read_text(encoding="utf-8")).images) >= 3
    # the check can fail: a page that loads anything from the network is refused by its CSP, and says so
    leaky = tmp_path / "leaky.html"
    leaky.write_text(out.read_text(encoding="utf-8").replace("<main>", '<main><img alt="x" src="https://example.com/x.png">'),
                     encoding="utf-8")
    dom, console = headless(leaky, tmp_path / "profile2")
    assert any("Content Security Policy" in line for line in console), console
    assert 'data-images-ok="false"' in dom
