"""Shape-classification pretraining of a detector's backbone on the embedded data.

The published DCN results start from ImageNet weights: a plain backbone pretrained on
classification, to which zero-initialised offset heads are added before detection
training.  No ImageNet is reachable here, so this stage plays that part on the package's
own data: the backbone of a detector config (its deformable layers replaced by plain
convs) learns to tell the embedded dataset's six shapes apart from object-centred crops
(:func:`~mmdcn_plugin.pretrain.crops.object_crops`), then its weights are saved under the
backbone's own state-dict keys, loadable with ``init_cfg=dict(type='Pretrained', ...)``
into the plain and into the deformable backbone alike.

Reproducible bit for bit: the crops come from the deterministic generator, every random
draw (initialisation, order, flips) from one seeded generator, and the thread count is
fixed, because the order of a CPU reduction depends on it.
"""
import math
import time
from typing import Callable, Dict, Optional

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ['ShapeClassifier', 'build_backbone', 'train_classifier', 'evaluate']


def build_backbone(cfg) -> nn.Module:
    """The backbone of detector config ``cfg`` with plain convs and no pretrained init.

    Built by :func:`mmdcn_plugin.apis.build_backbone_from_config`, the package's one
    config loader; ``cfg`` is not changed.
    """
    from ..apis import build_backbone_from_config
    return build_backbone_from_config(cfg, cfg_options={'model.backbone.init_cfg': None},
                                      plain_convs=True)


class ShapeClassifier(nn.Module):
    """Backbone -> global average pool of its last output -> linear classes.

    Args:
        backbone (nn.Module): Returns a tuple of feature maps; the last is pooled.
        channels (int): Channels of that last map.
        num_classes (int): Number of shape classes.
    """

    def __init__(self, backbone: nn.Module, channels: int, num_classes: int):
        super().__init__()
        self.backbone = backbone
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """x (Tensor[N, 3, H, W]) -> logits (Tensor[N, num_classes])."""
        return self.fc(self.backbone(x)[-1].mean(dim=(2, 3)))


def to_input(crops: np.ndarray, mean, std, bgr_to_rgb: bool = True) -> Tensor:
    """uint8 ndarray[N, H, W, 3] (BGR) -> float Tensor[N, 3, H, W], normalised as the
    detector's data preprocessor does."""
    x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float()
    if bgr_to_rgb:
        x = x.flip(1)
    mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - mean) / std


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, labels: Tensor, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` on x (Tensor[N, 3, H, W]), labels (Tensor[N])."""
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += (model(x[i:i + batch_size]).argmax(1) == labels[i:i + batch_size]).sum()
    model.train()
    return float(correct) / max(len(x), 1)


def train_classifier(model: nn.Module, x: Tensor, labels: Tensor, *, epochs: int,
                     batch_size: int, lr: float, weight_decay: float, seed: int,
                     warmup_iters: int = 50,
                     log: Optional[Callable[[Dict], None]] = None) -> Dict:
    """Train ``model`` on x (Tensor[N, 3, H, W]), labels (Tensor[N]) with AdamW,
    a linear warm-up and a cosine decay to zero; random horizontal flips.

    Returns:
        dict: ``iters``, ``seconds``, ``final_loss``.
    """
    gen = torch.Generator().manual_seed(seed)
    n = len(x)
    per_epoch = n // batch_size
    total = per_epoch * epochs
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)

    def lr_at(it):
        if it < warmup_iters:
            return lr * (it + 1) / warmup_iters
        t = (it - warmup_iters) / max(total - warmup_iters, 1)
        return lr * 0.5 * (1 + math.cos(math.pi * t))

    model.train()
    start, it, loss = time.time(), 0, torch.zeros(())
    for epoch in range(epochs):
        order = torch.randperm(n, generator=gen)
        flips = torch.rand(n, generator=gen) < 0.5
        for b in range(per_epoch):
            idx = order[b * batch_size:(b + 1) * batch_size]
            xb = x[idx]
            xb = torch.where(flips[idx].view(-1, 1, 1, 1), xb.flip(3), xb)
            for group in opt.param_groups:
                group['lr'] = lr_at(it)
            loss = nn.functional.cross_entropy(model(xb), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            it += 1
            if log is not None and (it % 25 == 0 or it == total):
                log(dict(epoch=epoch + 1, iter=it, total=total, loss=loss.item(),
                         lr=lr_at(it - 1), seconds=time.time() - start))
    return dict(iters=total, seconds=time.time() - start, final_loss=loss.item())
