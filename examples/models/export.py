"""Exports Ember's bundled example model with torch.export.

usage: python3 examples/models/export.py [OUTDIR]      (PyTorch >= 2.8, safetensors)

Writes OUTDIR/tiny_resnet.pt2 (torch.export.save) and OUTDIR/tiny_resnet.io.safetensors with
reference inputs and PyTorch's own outputs, keyed like the shared fixtures:
case{K}.in.{I} for the I-th positional input of case K and case{K}.out.{J} for the J-th leaf
of the flattened output pytree. The model is small on purpose (about 30 KB of weights) but
has what real CNNs export: conv + batch norm + ReLU, a residual add, pooling, a linear head,
a dynamic batch dimension and a dict output.
"""
import os
import sys
import zlib

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file
from torch.export import Dim, export
from torch.utils._pytree import tree_flatten


class Block(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(ch)

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + x)


class TinyResNet(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.block = Block(16)
        self.head = nn.Linear(16, classes)

    def forward(self, image):
        x = F.max_pool2d(F.relu(self.bn(self.stem(image))), 2)
        x = self.block(x)
        features = F.adaptive_avg_pool2d(x, 1).flatten(1)
        logits = self.head(features)
        return {"logits": logits, "probs": torch.softmax(logits, dim=-1), "features": features}


def randomize_batch_norm(model):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    os.makedirs(outdir, exist_ok=True)
    torch.manual_seed(zlib.crc32(b"tiny_resnet"))
    model = randomize_batch_norm(TinyResNet()).eval()
    batch = Dim("batch", min=1, max=16)
    cases = [(torch.randn(2, 3, 32, 32),), (torch.randn(1, 3, 32, 32),), (torch.randn(5, 3, 32, 32),)]
    ep = export(model, cases[0], dynamic_shapes={"image": {0: batch}})
    torch.export.save(ep, os.path.join(outdir, "tiny_resnet.pt2"))

    tensors = {}
    for k, args in enumerate(cases):
        with torch.no_grad():
            leaves, _ = tree_flatten(model(*args))
        for i, t in enumerate(args):
            tensors[f"case{k}.in.{i}"] = t.contiguous()
        for j, t in enumerate(leaves):
            tensors[f"case{k}.out.{j}"] = t.contiguous()
    save_file(tensors, os.path.join(outdir, "tiny_resnet.io.safetensors"))
    print(f"torch {torch.__version__}: wrote tiny_resnet.pt2 and tiny_resnet.io.safetensors to {outdir}")


if __name__ == "__main__":
    main()
