"""The model card (README.md) of an exported model folder, generated from its description.

Written here because the card describes the library's own model description: YAML
front matter as the Hugging Face Hub reads it (``library_name: lossensemble``, tags,
license, pipeline tag), then the model, its training data, the run's test metrics
(unseen classes), intended use, limitations and how to load it. Everything comes
from the description (config.json), so :meth:`InferenceModel.save_pretrained` can
write the same card again.
"""

from __future__ import annotations

import json
from typing import Any

from lossensemble.preprocess.normalisation import Normalisation

__all__ = ["render_card"]

_TAGS = ["metric-learning", "image-retrieval", "image-feature-extraction", "embeddings", "lossensemble"]
_SHOWN_METRICS = ("recall@1", "recall@2", "recall@4", "recall@8", "map@r", "r_precision", "knn_acc", "nmi")


def _yaml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid YAML scalar


def _fmt(v: Any) -> str:
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def _metrics_table(metrics: dict[str, Any], exported: str) -> list[str]:
    rows = {k: v for k, v in metrics.items() if isinstance(v, dict)}
    if not rows:
        return ["No test metrics were recorded for this run."]
    cols = [m for m in _SHOWN_METRICS if any(m in r for r in rows.values())] or \
        sorted({m for r in rows.values() for m in r})[:8]
    lines = ["| embedding | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, r in rows.items():
        label = f"**{name}** (this model)" if name == exported else name
        lines.append(f"| {label} | " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |")
    return lines


def render_card(spec: dict[str, Any]) -> str:
    """The README.md model card of the model described by ``spec`` (a checked description)."""
    training = spec.get("training") or {}
    source = spec.get("source") or {}
    dataset = training.get("dataset") or source.get("dataset") or "unknown"
    license_ = spec.get("license") or "other"
    tags = _TAGS + ["safetensors"] + (["onnx"] if spec.get("onnx") else [])
    emb, size, kind = spec["embedding"], spec["image_size"], spec["data_kind"]
    norm = spec.get("normalisation") or {}
    preprocessing = Normalisation.from_dict(norm)
    weights = spec.get("weights") or {}
    if isinstance(weights, list):
        weights = dict(zip(spec["head_names"], weights))
    lines = [
        "---",
        "library_name: lossensemble",
        f"license: {_yaml_str(license_)}",
        "pipeline_tag: image-feature-extraction",
        "tags:",
        *[f"- {t}" for t in tags],
        "---",
        "",
        f"# {spec['backbone']} {emb} embedding ({spec['output_dim']}-d)"
        + (f", trained on {dataset}" if dataset != "unknown" else ""),
        "",
        "## Model description",
        "",
        "A deep-metric-learning image embedding made with [lossensemble](https://pypi.org/project/lossensemble/): "
        "one shared backbone trained with an ensemble of losses, each loss on its own embedding head, the "
        "losses combined with learned weights.",
        "",
        f"- **Backbone**: `{spec['backbone']}` ({spec['feature_dim']}-d features)",
        "- **Heads (losses) and their learned weights**: "
        + ", ".join(f"`{n}` {float(w):.3f}" for n, w in weights.items()),
        f"- **Embedding**: `{emb}`, {spec['output_dim']}-d, L2-normalised; compare with cosine similarity",
    ]
    if emb == "ensemble":
        lines.append(f"  (the weighted concatenation of the {len(spec['head_names'])} heads of "
                     f"{spec['embedding_dim']} dimensions each)")
    elif emb == "compressed":
        c = spec.get("compressor") or {}
        lines.append(f"  (a `{c.get('variant')}` compressor from {c.get('in_dim')} to {c.get('dim')} dimensions, "
                     f"objective `{c.get('objective')}`)")
    else:
        lines.append(f"  (the `{emb[6:]}` head alone)")
    lines += [
        f"- **Input**: {size} x {size} RGB images ({kind} preprocessing)",
        f"- **Parameters**: {spec.get('parameters', 'n/a'):,}" if isinstance(spec.get("parameters"), int)
        else "- **Parameters**: n/a",
        "",
        "## Training data",
        "",
        f"- **Dataset**: `{dataset}`",
    ]
    for key, value in sorted((training.get("options") or {}).items()):
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            lines.append(f"- `{key}`: {value}")
    for key in ("losses", "epochs", "pretrained_backbone"):
        if key in training:
            value = training[key]
            lines.append(f"- **{key.replace('_', ' ')}**: "
                         + (", ".join(map(str, value)) if isinstance(value, list) else str(value)))
    lines += [
        "",
        "## Evaluation",
        "",
        "Retrieval metrics (in %) of the run on its test split, whose classes were not seen in training "
        "(the standard zero-shot protocol of deep metric learning):",
        "",
        *_metrics_table(spec.get("metrics") or {}, emb),
        "",
        "## Intended use",
        "",
        f"Image retrieval and clustering by visual similarity of {kind} images like those of `{dataset}`: "
        "embed a gallery, then find the nearest neighbours of a query by cosine similarity "
        "(`lossensemble index` / `lossensemble search`).",
        "",
        "## Limitations",
        "",
        f"- Trained on `{dataset}` only: images of another domain may embed poorly.",
        "- Classes unseen in training are handled zero-shot: the embedding generalises by visual similarity, "
        "as the test metrics above measure; it is not a classifier.",
        "- Preprocess exactly as in training: "
        + (f"resize the shorter side to {preprocessing.resize_shorter(size)} ({preprocessing.interpolation}), "
           f"centre-crop {size} x {size}, RGB" if kind == "photo"
           else f"greyscale, resize to {size} x {size} ({preprocessing.interpolation}), replicate to 3 channels")
        + f", scale to [0, 1], normalise with mean {norm.get('mean')} and std {norm.get('std')}.",
        "",
        "## How to use",
        "",
        "```python",
        "import lossensemble",
        "",
        'model = lossensemble.load_model("path/to/this/folder")  # checks every file; no pickle',
        'embeddings = model.embed_images(["query.png"])  # (N, %d) float32, L2-normalised' % spec["output_dim"],
        "```",
        "",
    ]
    if spec.get("onnx"):
        lines += [
            f"`model.onnx` computes the same embedding: input `images` (batch, 3, {size}, {size}) float32, "
            "preprocessed as above; output `embeddings` (batch, %d), L2-normalised. The graph's metadata "
            "repeats the preprocessing (`image_size`, `data_kind`, `mean`, `std`)." % spec["output_dim"],
            "",
            "```python",
            "import onnxruntime as ort",
            "import torch",
            "from PIL import Image",
            "",
            'session = ort.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])',
            "batch = torch.stack([model.transform(Image.open(\"query.png\"))]).numpy()  # or your own preprocessing",
            '(vectors,) = session.run(["embeddings"], {"images": batch})',
            "```",
            "",
        ]
    return "\n".join(lines)
