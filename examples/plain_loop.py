"""Train a backbone with lossensemble's LossEnsemble in a plain PyTorch loop, then evaluate it.

The loss ensemble is an ordinary ``nn.Module``: ``loss, logs = ensemble(features, labels)``.
Everything else here (data loader, optimizer, loop) is yours to write as you like.
Runs offline on the embedded glyph images, on CPU in a minute with the defaults:

    python examples/plain_loop.py                # 200 steps
    python examples/plain_loop.py --steps 3      # a smoke test
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

import lossensemble
from lossensemble.data import MPerClassBatchSampler, collate_batch
from lossensemble.errors import UserError
from lossensemble.evaluation import compute_metrics
from lossensemble.models import build_backbone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="training steps")
    parser.add_argument("--classes", type=int, default=50, help="glyph classes for training (and as many for test)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--backbone", default="small_cnn", help="a lossensemble backbone, e.g. small_cnn or resnet18")
    parser.add_argument("--embedding-dim", type=int, default=64)
    parser.add_argument("--losses", default="triplet,proxy_nca,pml:MultiSimilarityLoss",
                        help="comma-separated loss names (registered losses or pml:<ClassName>)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.steps < 1:
        parser.error("--steps must be >= 1")
    torch.manual_seed(args.seed)

    # Data: the embedded glyphs (rendered on first use), class-balanced batches of 4 images per class.
    glyphs = dict(image_size=32, num_train_classes=args.classes, num_test_classes=args.classes, progress=False)
    train_set = lossensemble.build_dataset("glyphs", "train", **glyphs)
    test_set = lossensemble.build_dataset("glyphs", "test", **glyphs)
    sampler = MPerClassBatchSampler(train_set.labels, m=4, batch_size=args.batch_size, num_batches=args.steps,
                                    seed=args.seed)
    loader = torch.utils.data.DataLoader(train_set, batch_sampler=sampler, collate_fn=collate_batch)

    # Model: any backbone giving [B, F] features, and the loss ensemble on top of it.
    backbone = build_backbone(args.backbone)
    ensemble = lossensemble.LossEnsemble.build(
        feature_dim=backbone.feature_dim,
        losses=args.losses.split(","),
        num_classes=train_set.num_classes,
        embedding_dim=args.embedding_dim,
        weighting="uncertainty",
    )
    optimizer = torch.optim.Adam([*backbone.parameters(), *ensemble.parameters()], lr=1e-3)

    # Training: a plain loop.
    backbone.train()
    ensemble.train()
    for step, (images, labels, _skipped) in enumerate(loader, start=1):
        loss, logs = ensemble(backbone(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step == 1 or step % 50 == 0 or step == args.steps:
            raw = ", ".join(f"{k[5:]} {v:.3f}" for k, v in logs.items() if k.startswith("loss_") and k != "loss_total")
            print(f"step {step}: total {logs['loss_total']:.3f} ({raw})")

    # Evaluation on the unseen test classes, with the weighted ensemble embedding.
    backbone.eval()
    ensemble.eval()
    embeddings, labels = [], []
    with torch.no_grad():
        for images, batch_labels, _ in torch.utils.data.DataLoader(test_set, batch_size=256, collate_fn=collate_batch):
            embeddings.append(ensemble.embed(backbone(images)))
            labels.append(batch_labels)
    metrics = compute_metrics(torch.cat(embeddings).numpy(), np.concatenate(labels), k=(1, 2, 4), nmi=False)
    print("test metrics:", {k: round(v, 2) for k, v in metrics.items()})


if __name__ == "__main__":
    try:
        main()
    except UserError as exc:  # bad settings: one line, like the lossensemble command line
        sys.exit(f"error: {exc}")
