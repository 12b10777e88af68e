"""Makes small torch.export archives that cover IR features the shared fixtures do not:
tied (aliased) weights, a non-persistent buffer and a lifted tensor constant, a namedtuple
output, keyword inputs, a None output leaf, a mutated buffer, and a strided weight view.

usage: python3 tests/torch/make_test_archives.py OUTDIR      (PyTorch >= 2.8, safetensors)
Each NAME.pt2 gets NAME.io.safetensors with case0.in.I / case0.out.J like the fixtures.
"""
import collections
import os
import sys

import torch
import torch.nn as nn
from safetensors.torch import save_file
from torch.export import export
from torch.utils._pytree import tree_flatten

Pair = collections.namedtuple("Pair", ["first", "second"])
# A namedtuple in an output spec needs a stable serialized name.
torch.utils._pytree._register_namedtuple(Pair, serialized_type_name="ember_test.Pair")


class Tied(nn.Module):
    """Embedding and output projection share one weight (one stored blob, two FQNs)."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(11, 8)
        self.proj = nn.Linear(8, 11, bias=False)
        self.proj.weight = self.emb.weight

    def forward(self, ids):
        return self.proj(self.emb(ids))


class Consts(nn.Module):
    """A persistent and a non-persistent buffer, a lifted tensor constant, a strided view."""

    def __init__(self):
        super().__init__()
        self.register_buffer("scale", torch.linspace(0.5, 1.5, 6))
        self.register_buffer("shift", torch.arange(6, dtype=torch.float32) / 10, persistent=False)
        base = torch.randn(6, 12)
        self.w = nn.Parameter(base[:, ::2])  # non-contiguous parameter
        self.offset = torch.tensor([1.0, -1.0, 2.0, -2.0, 0.5, -0.5])

    def forward(self, x):
        return (x @ self.w.t()) * self.scale + self.shift + self.offset


class NamedOut(nn.Module):
    def forward(self, x, *, bias=None, alpha: float = 2.0):
        y = x * alpha
        if bias is not None:
            y = y + bias
        return Pair(first=y, second=None), [y.sum(dim=-1)]


class Counter(nn.Module):
    """Mutates a buffer in forward (a buffer_mutation output spec)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("count", torch.zeros(3))

    def forward(self, x):
        self.count.add_(x.sum(dim=0))
        return x * 2 + self.count


def dump(outdir, name, model, args, kwargs=None):
    kwargs = kwargs or {}
    model = model.eval()
    ep = export(model, args, kwargs)
    torch.export.save(ep, os.path.join(outdir, name + ".pt2"))
    tensors = {}
    flat_in, _ = tree_flatten((args, kwargs))
    for i, t in enumerate(flat_in):
        tensors[f"case0.in.{i}"] = t.contiguous()
    with torch.no_grad():
        out = model(*args, **kwargs) if name != "counter" else Counter()(*args, **kwargs)
    leaves, spec = tree_flatten(out)
    leaves = [t for t in leaves if t is not None]  # None leaves carry no data
    for j, t in enumerate(leaves):
        tensors[f"case0.out.{j}"] = t.contiguous()
    save_file(tensors, os.path.join(outdir, name + ".io.safetensors"))
    print(name, "out_spec", spec)


def main():
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    torch.manual_seed(7)
    dump(outdir, "tied_weights", Tied(), (torch.tensor([[1, 2, 3], [4, 5, 10]]),))
    dump(outdir, "constants", Consts(), (torch.randn(4, 6),))
    dump(outdir, "namedtuple_kwargs", NamedOut(), (torch.randn(2, 3),), {"bias": torch.randn(3)})
    dump(outdir, "buffer_mutation", Counter(), (torch.randn(4, 3),))


if __name__ == "__main__":
    main()
