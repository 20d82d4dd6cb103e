"""``vectors:<path>`` backbones: word vectors (GloVe ``.txt``, word2vec binary ``.bin``, fastText ``.vec``).

A text becomes the mean of the vectors of its in-vocabulary tokens (``pooling="mean"``, the default), or their
SIF-weighted mean (``pooling="sif"``: Arora, Liang & Ma, "A Simple but Tough-to-Beat Baseline for Sentence
Embeddings", ICLR 2017), each word weighted by ``a / (a + p(w))`` with ``a = 1e-3``. These files carry no word
counts, only a frequency-sorted vocabulary, so ``p(w)`` is Zipf's law on the rank: ``p(w_r) = 1 / (r H_V)``
(``H_V`` the V-th harmonic number). The paper's second step, removing the first principal component of the
corpus, needs the whole corpus and is left out: every text is embedded on its own, so features stay cacheable.

Tokenizer: lowercase (``lowercase=False`` keeps case, e.g. for word2vec GoogleNews), then words are maximal
runs of letters, digits and underscores with inner apostrophes kept (``don't``, ``o'clock``); punctuation is
dropped. Tokens missing from the vocabulary are counted (``describe_inputs``: ``oov_fraction``) and ignored; a
text without any known token gets the zero vector. The table is an ``nn.EmbeddingBag``, so fine-tuning updates it.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._errors import BackboneError
from .._utils import sha256_bytes, sha256_file
from ._base import read_json
from ._registry import SourceEntry, register_source
from ._text import TextBackbone, check_text_options
from .weights import TextPreprocessing, WeightsInfo, state_dict_checksum

TOKEN_PATTERN = re.compile(r"\w+(?:['’]\w+)*")
VECTOR_POOLINGS = ("mean", "sif")
SIF_A = 1e-3
VOCAB_FILE = "vocab.json"
OPTIONS_FILE = "transferkit_text.json"


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    """The documented word tokenizer: optional lowercasing, then ``\\w+(?:['’]\\w+)*`` matches (a word the vectors
    lack is then looked up as its Penn Treebank parts, :func:`split_clitic`)."""
    return TOKEN_PATTERN.findall(text.lower() if lowercase else text)


def split_clitic(token: str) -> list[str]:
    """``don't`` → ``do``, ``n't``; ``dog's`` → ``dog``, ``'s``: the Penn Treebank split GloVe's corpora used."""
    if token.endswith("n't") and len(token) > 3:
        return [token[:-3], "n't"]
    stem, _, suffix = token.rpartition("'")
    return [stem, f"'{suffix}"] if stem and suffix else [token]


class VectorsEncoder:
    """Texts → ``ids`` ``(B, T)`` of in-vocabulary tokens and a ``mask`` ``(B, T)`` (0 for padding)."""

    def __init__(self, vocab: dict[str, int], lowercase: bool = True):
        self.vocab = vocab
        self.lowercase = lowercase

    def ids(self, text: str) -> tuple[list[int], int, int]:
        """``(ids of the known words, tokens, unknown tokens)``; a token missing from the vocabulary whose clitic
        the vocabulary splits off (GloVe: ``do`` + ``n't``, ``dog`` + ``'s``) counts through its parts."""
        tokens = tokenize(text, self.lowercase)
        ids: list[int] = []
        unknown = 0
        for token in tokens:
            token = token.replace("’", "'")
            parts = [token] if token in self.vocab or "'" not in token else split_clitic(token)
            known = [self.vocab[part] for part in parts if part in self.vocab]
            ids.extend(known)
            unknown += not known
        return ids, len(tokens), unknown

    def __call__(self, texts: list[str]) -> dict[str, torch.Tensor]:
        rows = [self.ids(t)[0] for t in texts]
        width = max(1, max((len(r) for r in rows), default=1))
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.float32)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, : len(r)] = 1.0
        return {"ids": ids, "mask": mask}

    def report(self, texts: list[str]) -> dict[str, Any]:
        """Tokens, out-of-vocabulary tokens (and their fraction of all tokens), texts with no known token."""
        tokens = oov = empty = 0
        for text in texts:
            ids, n, unknown = self.ids(text)
            tokens += n
            oov += unknown
            empty += not ids
        return {"texts": len(texts), "tokens": tokens, "oov_tokens": oov,
                "oov_fraction": round(oov / tokens, 6) if tokens else 0.0, "texts_without_known_words": empty}


class BagOfVectors(nn.Module):
    """Weighted mean of word vectors: ``sum_t w(t) v(t) / (number of known tokens)``."""

    word_weights: torch.Tensor

    def __init__(self, num_words: int, dim: int, word_weights: torch.Tensor):
        super().__init__()
        self.embedding = nn.EmbeddingBag(num_words, dim, mode="sum")
        # derived from the vocabulary and the pooling, not learned: rebuilt with the backbone, never saved (a bundle
        # that kept them ran its training pooling even when loaded with another --pooling)
        self.register_buffer("word_weights", word_weights.float(), persistent=False)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        ids, mask = inputs["ids"], inputs["mask"].float()
        weights = self.word_weights[ids] * mask
        summed = self.embedding(ids, per_sample_weights=weights.to(self.embedding.weight.dtype))
        return summed / mask.sum(dim=1, keepdim=True).clamp(min=1)


def sif_weights(num_words: int, a: float = SIF_A) -> torch.Tensor:
    """``a / (a + p(w))`` with Zipf frequencies from the rank (the files are sorted by frequency)."""
    ranks = torch.arange(1, num_words + 1, dtype=torch.float64)
    p = 1.0 / (ranks * (1.0 / ranks).sum())
    return (a / (a + p)).float()


# -- file formats ---------------------------------------------------------------------------------------------
def _read_text_vectors(path: Path) -> tuple[list[str], np.ndarray]:
    """GloVe ``.txt`` (``word v1 ... vD`` per line) or fastText/word2vec text ``.vec`` (same, after an ``N D`` header)."""
    words: list[str] = []
    rows: list[np.ndarray] = []
    seen: set[str] = set()
    dim = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for line_no, line in enumerate(f, start=1):
            parts = line.rstrip("\n").rstrip().split(" ")
            if line_no == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                dim = int(parts[1])
                continue
            if len(parts) < 2:
                continue
            dim = dim or len(parts) - 1
            if len(parts) - 1 != dim:
                raise BackboneError(
                    f"{str(path)!r} line {line_no} has {len(parts) - 1} numbers, expected {dim}; is it a GloVe "
                    ".txt or fastText .vec file? (word2vec binary files must end in .bin)"
                )
            if parts[0] in seen:  # keep the first (most frequent) vector of a repeated word
                continue
            try:
                rows.append(np.asarray(parts[1:], dtype=np.float32))
            except ValueError:
                raise BackboneError(f"{str(path)!r} line {line_no} has a value that is not a number.") from None
            seen.add(parts[0])
            words.append(parts[0])
    if not words:
        raise BackboneError(f"{str(path)!r} holds no word vectors.")
    return words, np.stack(rows)


def _read_word2vec_binary(path: Path) -> tuple[list[str], np.ndarray]:
    """word2vec's C binary format: ``N D\\n``, then per word its bytes, a space and D little-endian float32."""
    data = path.read_bytes()
    end = data.find(b"\n")
    try:
        n, dim = (int(v) for v in data[:end].split())
    except ValueError:
        raise BackboneError(f"{str(path)!r} does not start with an 'N D' header; is it a word2vec binary file?") from None
    words: list[str] = []
    rows = np.empty((n, dim), dtype=np.float32)
    pos, kept, seen = end + 1, 0, set()
    for _ in range(n):
        while pos < len(data) and data[pos:pos + 1] in (b"\n", b" "):
            pos += 1
        space = data.find(b" ", pos)
        if space < 0 or space + 1 + 4 * dim > len(data):
            raise BackboneError(f"{str(path)!r} ends early; the word2vec binary file is truncated.")
        word = data[pos:space].decode("utf-8", errors="replace")
        vec = np.frombuffer(data, dtype="<f4", count=dim, offset=space + 1)
        pos = space + 1 + 4 * dim
        if word not in seen:
            seen.add(word)
            words.append(word)
            rows[kept] = vec
            kept += 1
    return words, rows[:kept]


def read_vectors(path: str | Path) -> tuple[list[str], np.ndarray]:
    """``(words, (V, D) float32 vectors)`` from a GloVe ``.txt``, fastText ``.vec`` or word2vec ``.bin`` file."""
    path = Path(path)
    if not path.is_file():
        raise BackboneError(f"Word-vector file {str(path)!r} does not exist; pass a GloVe .txt, fastText .vec or "
                            "word2vec .bin file.")
    return _read_word2vec_binary(path) if path.suffix.lower() == ".bin" else _read_text_vectors(path)


# -- the backbone ---------------------------------------------------------------------------------------------
def backbone_from_vectors(
    words: Sequence[str], vectors: np.ndarray | None, *, spec: str, arch_spec: str, licence: str, origin: str,
    checksum: str = "", pooling: str = "mean", lowercase: bool = True, sif_a: float = SIF_A, dim: int | None = None,
    source_task: str = "",
) -> TextBackbone:
    """A :class:`TextBackbone` over ``words`` (frequency order); ``vectors=None`` gives a seeded random table."""
    check_text_options(pooling, None, VECTOR_POOLINGS, spec)
    words = list(words)
    vocab: dict[str, int] = {}
    for i, w in enumerate(words):
        vocab.setdefault(w, i)
    dim = int(vectors.shape[1]) if vectors is not None else int(dim or 0)
    weights = sif_weights(len(words), sif_a) if pooling == "sif" else torch.ones(len(words))
    trunk = BagOfVectors(len(words), dim, weights)
    if vectors is not None:
        with torch.no_grad():
            trunk.embedding.weight.copy_(torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)))
    pretrained = vectors is not None
    info = WeightsInfo(
        source=spec.split(":", 1)[0], pretrained=pretrained, licence=licence if pretrained else "n/a (random init)",
        origin=origin if pretrained else "random init", checksum=checksum or state_dict_checksum(trunk),
        source_task=source_task if pretrained else "",
    )
    preprocessing = TextPreprocessing(tokenizer="regex-words+clitics", pooling=pooling, max_length=None, lowercase=lowercase,
                                      tokenizer_sha256=sha256_bytes("\n".join(words).encode()))

    def export(target: Path) -> str:
        (target / VOCAB_FILE).write_text(json.dumps(words, ensure_ascii=False))
        (target / OPTIONS_FILE).write_text(json.dumps({"kind": "vectors", "dim": dim, "pooling": pooling,
                                                       "lowercase": lowercase, "sif_a": sif_a}))
        return "vectors"

    return TextBackbone(
        trunk, encoder=VectorsEncoder(vocab, lowercase), export=export, spec=spec, arch_spec=arch_spec,
        preprocessing=preprocessing, weights=info, num_features=dim, feature_layers={},
        groups=[("embedding", ["embedding"])],
    )


def restrict_vocabulary(backbone: Any, texts: Sequence[str]) -> TextBackbone:
    """A copy of a word-vector ``backbone`` whose table keeps only the words that ``texts`` use (in the table's
    frequency order), with their vectors as they are now: a student trained on ``texts`` never moves the other rows,
    and a 400k-word table shrinks to the task's few thousand words. Words outside it are then out of vocabulary
    (ignored, as every unknown token is).

    Args:
        backbone: a ``vectors:``/``packaged:glove-*`` backbone with mean pooling.
        texts: the texts whose words to keep (e.g. a student's labelled and unlabelled training texts).

    Returns:
        a new :class:`TextBackbone` with the same spec, licence and origin; ``backbone`` is unchanged.

    Raises:
        BackboneError: not a word-vector backbone, SIF pooling (its weights come from the full table's ranks), or no
            known word in ``texts``.

    Example:
        >>> small = restrict_vocabulary(tk.create_backbone("packaged:glove-6b-50d"), train_texts)
    """
    encoder, trunk = getattr(backbone, "encoder", None), getattr(backbone, "trunk", None)
    if not isinstance(encoder, VectorsEncoder) or not isinstance(trunk, BagOfVectors):
        raise BackboneError(f"Only word-vector backbones (vectors:, packaged:glove-6b-50d) have a vocabulary to "
                            f"restrict. Got {getattr(backbone, 'spec', backbone)!r}.")
    if backbone.preprocessing.pooling != "mean":
        raise BackboneError(f"{backbone.spec} uses {backbone.preprocessing.pooling!r} pooling, whose word weights "
                            "come from the whole table's ranks; restrict the vocabulary of a mean-pooled one.")
    keep = sorted({i for text in texts for i in encoder.ids(text)[0]})
    if not keep:
        raise BackboneError(f"None of the {len(texts)} texts has a word in {backbone.spec}'s vocabulary.")
    words = {i: w for w, i in encoder.vocab.items()}
    vectors = trunk.embedding.weight.detach().cpu().numpy()[keep]
    info = backbone.weights
    out = backbone_from_vectors([words[i] for i in keep], vectors, spec=backbone.spec, arch_spec=backbone.arch_spec,
                                licence=info.licence, origin=info.origin, lowercase=encoder.lowercase,
                                source_task=info.source_task)
    out.weights = dataclasses.replace(out.weights, licence_note=info.licence_note, licence_chain=info.licence_chain)
    return out


def refuse_max_length(max_length: int | None, spec: str) -> None:
    """Word vectors embed every word of a text: a token limit would silently mean nothing."""
    if max_length is not None:
        raise BackboneError(f"`max_length` applies to transformer backbones (hf:, packaged:all-minilm-l6-v2); {spec} "
                            "averages word vectors over the whole text. Drop `max_length`.")


def create(name: str, *, pretrained: bool = True, pooling: str | None = None, lowercase: bool | None = None,
           max_length: int | None = None, **_: Any) -> TextBackbone:
    refuse_max_length(max_length, f"vectors:{name}")
    path = Path(name)
    if path.is_dir():  # a vocabulary exported with a bundle: the architecture only
        options_path, vocab_path = path / OPTIONS_FILE, path / VOCAB_FILE
        if not (options_path.is_file() and vocab_path.is_file()):
            raise BackboneError(f"{name!r} is a folder without {VOCAB_FILE} and {OPTIONS_FILE}; pass a word-vector "
                                "file (GloVe .txt, fastText .vec, word2vec .bin).")
        options = read_json(options_path)
        words = read_json(vocab_path)
        return backbone_from_vectors(words, None, spec=f"vectors:{name}", arch_spec=f"vectors:{name}", licence="",
                                     origin="", pooling=pooling or options["pooling"], dim=options["dim"],
                                     lowercase=options["lowercase"] if lowercase is None else lowercase,
                                     sif_a=options.get("sif_a", SIF_A))
    words, vectors = read_vectors(path)
    return backbone_from_vectors(
        words, vectors if pretrained else None, spec=f"vectors:{name}", arch_spec=f"vectors:{name}",
        licence="unknown — check the source of the vectors", origin=str(path.resolve()),
        checksum=sha256_file(path) if pretrained else "", pooling=pooling or "mean",
        lowercase=True if lowercase is None else lowercase, dim=vectors.shape[1],
    )


def list_entries() -> list[SourceEntry]:
    return [SourceEntry("vectors:<file>", "per file", True, True,
                        "word vectors: GloVe .txt, fastText .vec, word2vec .bin; mean or SIF pooling")]


register_source("vectors", create, list_entries, lambda n: Path(n).suffix.lower() in (".vec", ".bin"),
                "word vectors from a local GloVe/fastText/word2vec file")
