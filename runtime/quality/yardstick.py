"""The quality yardstick: is a sampler configuration as good as the course's DDPM-500?

    ys = Yardstick.load()                              # classifier, real sprites, shipped reference figures
    report = ys.report(sprites, requested)             # uint8 [N,H,W,C], int [N] → QualityReport
    ys.verdict([report_seed0, report_seed1, ...], ys.reference())   # → Verdict(equal, reason)

Every figure is measured on the features of the sprite classifier (features.py) against the real sprite
set (the training data, ddpm_ref/data): Fréchet distance (FD, as FID), KID, precision/recall (k = 3) and
the accuracy of the classifier on the class each sprite was generated for (metrics.py cites the papers).

Noise. A figure means little without its noise level, and there are two:
- real vs real (`real_noise`): the figures between two random halves of the real set, repeated over
  several splits — what two samples of the *same* distribution score (FD is biased upward at small N).
- seed to seed: the same configuration with other seeds; the spread is max − min over ≥ 3 seeds.

Verdict (issue 9): a configuration is *equal to DDPM-500* when its mean FD ≤ DDPM-500's mean FD +
DDPM-500's seed spread, and its mean accuracy ≥ DDPM-500's mean accuracy − DDPM-500's seed spread.
The DDPM-500 figures per seed (`reference()`) are measured by benchmarks/yardstick.py and shipped in
weights/quality_reference.json, keyed by the model's sha256 (and the classifier's).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from ..errors import DdpmEdgeError
from .features import SpriteFeatures
from .metrics import class_accuracy, feature_stats, frechet_distance, kid, precision_recall

PACKAGE = Path(__file__).resolve().parents[2]          # ddpm_edge/ (the repository root when editable)
DEFAULT_DATA = PACKAGE / "ddpm_ref" / "data"
DEFAULT_REFERENCE = PACKAGE / "weights" / "quality_reference.json"
REFERENCE_FORMAT = "ddpm-edge-quality-reference/1"
REFERENCE_CONFIG = "ddpm:500"
METRICS = ("fd", "kid", "precision", "recall", "accuracy")


@dataclass(frozen=True)
class QualityReport:
    """The yardstick's figures for one set of generated sprites (one configuration, one seed)."""
    fd: float
    kid: float
    precision: float
    recall: float
    accuracy: float
    n: int
    per_class: dict = field(default_factory=dict)     # class name → accuracy
    config: str = ""
    seed: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "QualityReport":
        names = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in names})
        except TypeError as e:
            raise DdpmEdgeError(f"malformed quality report: {e}") from None


@dataclass(frozen=True)
class Verdict:
    equal: bool
    reason: str


def summarize(reports: list[QualityReport]) -> dict[str, dict[str, float]]:
    """Per metric: mean, spread (max − min), min, max over the reports (seeds)."""
    if not reports:
        raise DdpmEdgeError("no quality reports to summarize")
    out = {}
    for name in METRICS:
        values = np.array([getattr(r, name) for r in reports], dtype=np.float64)
        out[name] = {"mean": float(values.mean()), "spread": float(values.max() - values.min()),
                     "min": float(values.min()), "max": float(values.max())}
    return out


def dataset_sha256(images: np.ndarray, labels: np.ndarray, class_names) -> str:
    """The content hash of ddpm_ref.dataset.SpriteDataset.sha256 (kept equal; runtime never imports ddpm_ref)."""
    digest = hashlib.sha256()
    digest.update(json.dumps([list(images.shape), list(labels.shape), list(class_names)]).encode())
    digest.update(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
    digest.update(np.ascontiguousarray(labels, dtype=np.float32).tobytes())
    return digest.hexdigest()


def load_real(folder: str | os.PathLike = DEFAULT_DATA) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """The real sprite set in our format: (uint8 [N,H,W,C], one-hot [N,K], class names)."""
    folder = Path(folder)
    try:
        images = np.load(folder / "sprites.npy", allow_pickle=False)
        labels = np.load(folder / "labels.npy", allow_pickle=False)
        names = tuple(json.loads((folder / "dataset.json").read_text())["class_names"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DdpmEdgeError(f"real sprite set not readable in {folder}: {str(e).splitlines()[0][:200]}") from None
    return images, labels, names


class Yardstick:
    def __init__(self, classifier: SpriteFeatures, real_images: np.ndarray, real_labels: np.ndarray,
                 reference_path: str | os.PathLike = DEFAULT_REFERENCE, kid_subsets: int = 100):
        self.classifier = classifier
        self.kid_subsets = kid_subsets          # Bińkowski et al. average 100 subsets; tests use fewer
        self.class_names = classifier.class_names
        self.real_images = real_images
        self.real_index = np.asarray(real_labels).argmax(axis=1)
        self.reference_path = Path(reference_path)
        _, self.real_features = classifier(real_images)                    # [N_real, D]
        self.real_stats = feature_stats(self.real_features)

    @classmethod
    def load(cls, classifier: str | os.PathLike | None = None, data: str | os.PathLike | None = None,
             reference: str | os.PathLike | None = None, kid_subsets: int = 100) -> "Yardstick":
        """The shipped classifier, the real sprite set it was trained on (checked by sha256), the shipped
        DDPM-500 reference figures."""
        features = SpriteFeatures(classifier)
        images, labels, names = load_real(data if data is not None else DEFAULT_DATA)
        if names != features.class_names:
            raise DdpmEdgeError(f"the classifier knows classes {features.class_names}, the data has {names}")
        want = features.metadata.get("dataset_sha256")
        if want != dataset_sha256(images, labels, names):
            raise DdpmEdgeError(f"the real sprite set differs from the one the classifier was trained on "
                                f"(dataset sha256 {want[:12] if want else 'unrecorded'}…)")
        return cls(features, images, labels, reference if reference is not None else DEFAULT_REFERENCE, kid_subsets)

    # -- measuring ------------------------------------------------------------------------------------

    def report(self, sprites: np.ndarray, requested, config: str = "", seed: int | None = None) -> QualityReport:
        """Figures for generated uint8 sprites [N,H,W,C] made for classes `requested` [N] (int indices)."""
        requested = np.asarray(requested)
        if requested.shape != (len(sprites),) or not np.issubdtype(requested.dtype, np.integer):
            raise DdpmEdgeError(f"requested must be [N] class indices for {len(sprites)} sprites, got "
                                f"{requested.dtype} {requested.shape}")
        logits, features = self.classifier(sprites)
        precision, recall = precision_recall(self.real_features, features)
        guess = logits.argmax(axis=1)
        per_class = {name: float((guess[requested == k] == k).mean())
                     for k, name in enumerate(self.class_names) if np.any(requested == k)}
        return QualityReport(fd=frechet_distance(*feature_stats(features), *self.real_stats),
                             kid=kid(features, self.real_features, self.kid_subsets), precision=precision,
                             recall=recall, accuracy=class_accuracy(logits, requested), n=len(sprites),
                             per_class=per_class,
                             config=config, seed=seed)

    def real_noise(self, splits: int = 5, seed: int = 0) -> dict:
        """Real vs real: the figures between two random halves of the real set over `splits` splits
        (mean and spread), and the classifier's held-out accuracy on real sprites (the accuracy ceiling)."""
        rng = np.random.default_rng(seed)
        rows = []
        for _ in range(splits):
            order = rng.permutation(len(self.real_features))
            a, b = self.real_features[order[::2]], self.real_features[order[1::2]]
            p, r = precision_recall(a, b)
            rows.append(QualityReport(fd=frechet_distance(*feature_stats(a), *feature_stats(b)),
                                      kid=kid(a, b, self.kid_subsets), precision=p, recall=r, accuracy=float("nan"),
                                      n=len(b)))
        summary = {k: v for k, v in summarize(rows).items() if k != "accuracy"}
        summary["accuracy"] = {"held_out": self.classifier.metadata.get("held_out_accuracy"),
                               "held_out_n": self.classifier.metadata.get("held_out")}
        summary["halves"] = [len(self.real_features) // 2, (len(self.real_features) + 1) // 2]
        summary["splits"] = splits
        return summary

    # -- the reference and the verdict ------------------------------------------------------------------

    def reference(self, model_sha256: str | None = None, guidance: float = 0.0) -> list[QualityReport]:
        """DDPM-500's figures per seed for `model_sha256` (default: the shipped model) at `guidance`."""
        if model_sha256 is None:
            from ..backends import default_model_path
            from ..files import sha256_file
            model_sha256 = sha256_file(default_model_path())
        try:
            table = json.loads(self.reference_path.read_text())
        except (OSError, ValueError) as e:
            raise DdpmEdgeError(f"quality reference not readable: {self.reference_path}: {e}") from None
        if table.get("format") != REFERENCE_FORMAT:
            raise DdpmEdgeError(f"{self.reference_path} is not a {REFERENCE_FORMAT} file")
        if table.get("classifier_sha256") != self.classifier.sha256:
            raise DdpmEdgeError(f"{self.reference_path} was measured with another classifier "
                                f"({str(table.get('classifier_sha256'))[:12]}…)")
        key = reference_key(guidance)
        model = table.get("models", {}).get(model_sha256)
        if model is None or key not in model.get("references", {}):
            have = [f"{sha[:12]}… {', '.join(m.get('references', {}))}" for sha, m in table.get("models", {}).items()]
            raise DdpmEdgeError(f"no {key} reference for model {model_sha256[:12]}… in {self.reference_path} "
                                f"(has: {'; '.join(have) or 'nothing'}); run benchmarks/yardstick.py --write-reference")
        return [QualityReport.from_dict(r) for r in model["references"][key]]

    @staticmethod
    def verdict(candidate: list[QualityReport], reference: list[QualityReport]) -> Verdict:
        """Equal when mean FD ≤ ref mean + ref spread and mean accuracy ≥ ref mean − ref spread (spread =
        max − min over the reference seeds; at least 2 reference seeds)."""
        if len(reference) < 2:
            raise DdpmEdgeError(f"the reference needs at least 2 seeds for a spread, got {len(reference)}")
        if not candidate:
            raise DdpmEdgeError("no candidate reports to judge")
        ref, cand = summarize(reference), summarize(candidate)
        fd_limit = ref["fd"]["mean"] + ref["fd"]["spread"]
        acc_limit = ref["accuracy"]["mean"] - ref["accuracy"]["spread"]
        fd_ok, acc_ok = cand["fd"]["mean"] <= fd_limit, cand["accuracy"]["mean"] >= acc_limit
        reason = (f"FD {cand['fd']['mean']:.2f} {'≤' if fd_ok else '>'} {fd_limit:.2f} "
                  f"(reference {ref['fd']['mean']:.2f} + spread {ref['fd']['spread']:.2f}); "
                  f"accuracy {cand['accuracy']['mean']:.3f} {'≥' if acc_ok else '<'} {acc_limit:.3f} "
                  f"(reference {ref['accuracy']['mean']:.3f} − spread {ref['accuracy']['spread']:.3f}); "
                  f"{len(candidate)} vs {len(reference)} seeds")
        return Verdict(fd_ok and acc_ok, ("equal: " if fd_ok and acc_ok else "not equal: ") + reason)


def reference_key(guidance: float = 0.0) -> str:
    """"ddpm:500" or "ddpm:500:guidance=2": the config string benchmarks/yardstick.py uses."""
    return REFERENCE_CONFIG if not guidance else f"{REFERENCE_CONFIG}:guidance={float(guidance):g}"
