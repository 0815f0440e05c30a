#!/usr/bin/env python3
"""Training steps per second, evomal against PyTorch, in one run on one machine.

For each model (LeNet-5 on 28x28, MLP(1000, 1000) on 784 inputs, ResNet-18 and VGG-11 on
32x32x3), batch 128, cross-entropy, the optimiser of its manifest (plain SGD for the MNIST
models; SGD with Nesterov momentum 0.9 and weight decay 5e-4 for the CIFAR ones), on 1 thread
and on all cores: `evomal bench train` (which reads, normalises and augments its batches
through the plugin) and the same model in PyTorch on a batch already in memory (no data
loader). Prints a table with the ratio evomal / PyTorch; `--json FILE` keeps the figures.

    cargo build --release --workspace
    pip install torch          # any build; only the CPU is used
    python3 tests/bench/pytorch_steps.py [--steps 100] [--models lenet5,mlp,resnet18,vgg11]

On a machine with an NVIDIA GPU and a CUDA build of PyTorch, `--device cuda` compares evomal's
GPU trainer (`evomal bench train --device gpu`: one model, and `--side-by-side` models in the
same dispatches, per model-step) with PyTorch on CUDA, one model, timed twice: with its defaults
(which run cuDNN's f32 convolutions in TF32 on tensor cores) and in plain f32, as evomal computes:

    python3 tests/bench/pytorch_steps.py --device cuda [--side-by-side 25]

The CIFAR models read a synthetic CIFAR-10 (random images in the binary format) that this
script writes to a temporary folder, cropped and flipped on the CPU and on the GPU alike.
"""

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from cifar_data import cifar_manifest, synthetic_cifar

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def lenet5():
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.Tanh(), nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.Tanh(), nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, 10))


def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 1000), nn.ReLU(),
                         nn.Linear(1000, 1000), nn.ReLU(), nn.Linear(1000, 10))


class BasicBlock(nn.Module):
    def __init__(self, cin, planes, stride):
        super().__init__()
        self.c1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(planes)
        self.c2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(planes)
        self.short = nn.Sequential()
        if stride != 1 or cin != planes:
            self.short = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False),
                                       nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.b1(self.c1(x)))
        return F.relu(self.b2(self.c2(out)) + self.short(x))


def resnet18():
    layers = [nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()]
    cin = 64
    for stage, planes in enumerate([64, 128, 256, 512]):
        for i in range(2):
            layers.append(BasicBlock(cin, planes, 2 if stage > 0 and i == 0 else 1))
            cin = planes
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 10)]
    return nn.Sequential(*layers)


def vgg11():
    layers, cin = [], 3
    for m in [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]:
        if m == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(cin, m, 3, padding=1), nn.BatchNorm2d(m), nn.ReLU()]
            cin = m
    layers += [nn.Flatten(), nn.Linear(512, 10)]
    return nn.Sequential(*layers)


MODELS = {
    # name: (builder, input shape, manifest or None for the synthetic CIFAR one, SGD settings)
    "lenet5": (lenet5, (1, 28, 28), "tasks/mnist-lenet5.toml", {}),
    "mlp": (mlp, (1, 28, 28), "tasks/mnist-mlp.toml", {}),
    "resnet18": (resnet18, (3, 32, 32), None,
                 {"momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}),
    "vgg11": (vgg11, (3, 32, 32), None,
              {"momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}),
}


def torch_steps_per_s(name, threads, steps, device="cpu"):
    build, shape, _, sgd = MODELS[name]
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build().to(device)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, **sgd)
    x = torch.randn(128, *shape, device=device)
    y = torch.randint(0, 10, (128,), device=device)

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    for _ in range(max(3, steps // 10)):
        step()
    sync()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return steps / (time.perf_counter() - t)


def f32_switches():
    """PyTorch's settings for f32 convolutions and matrix products, each as (object, attribute,
    its plain-f32 value), by whichever of its two ways of saying so it has: the
    `fp32_precision` strings since 2.9 (where the old flags are deprecated and mixing the two
    is an error), the `allow_tf32` flags before."""
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        return {"conv": (conv, "fp32_precision", "ieee"),
                "matmul": (torch.backends.cuda.matmul, "fp32_precision", "ieee")}
    return {"conv": (torch.backends.cudnn, "allow_tf32", False),
            "matmul": (torch.backends.cuda.matmul, "allow_tf32", False)}


def f32_settings():
    """Where PyTorch may compute f32 convolutions and matrix products in TF32 on tensor cores
    (NVIDIA Ampere and later: 10-bit mantissas): `tf32`, `ieee` (plain f32) or, since 2.9,
    `none` (as the setting above it says)."""
    settings = {}
    for op, (obj, attr, _) in f32_switches().items():
        value = getattr(obj, attr)
        settings[op] = value if isinstance(value, str) else ("tf32" if value else "ieee")
    return settings


@contextlib.contextmanager
def ieee_f32():
    """PyTorch with every f32 product in f32, as evomal's kernels compute; by default its cuDNN
    convolutions run in TF32."""
    settings = list(f32_switches().values())
    saved = [getattr(obj, attr) for obj, attr, _ in settings]
    for obj, attr, plain in settings:
        setattr(obj, attr, plain)
    try:
        yield
    finally:
        for (obj, attr, _), value in zip(settings, saved):
            setattr(obj, attr, value)


def ieee_steps_per_s(name, steps):
    """PyTorch CUDA's steps/s in plain f32, or None (saying why) where it cannot be set."""
    try:
        with ieee_f32():
            return torch_steps_per_s(name, 1, steps, "cuda")
    except (AttributeError, RuntimeError) as e:
        print(f"PyTorch in plain f32 not measured: {e}", file=sys.stderr, flush=True)
        return None


def bench_train(evomal, manifest, steps, *extra):
    """`evomal bench train MANIFEST --steps STEPS EXTRA --json`: its report (exits, saying why,
    when it fails)."""
    cmd = [evomal, "bench", "train", manifest, "--steps", str(steps), *extra, "--json"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"`{' '.join(cmd)}` failed:\n{out.stderr}")
    return json.loads(out.stdout)


def steps_for(name, steps):
    """Timed steps for `name`: the large models take long per step (and, side by side on the
    GPU, per model), so fewer of them keep the run short."""
    return steps if name in ("lenet5", "mlp") else max(5, steps // 10)


def cuda_rows(args, tmp):
    rows, data = [], None
    for name in args.models.split(","):
        manifest = MODELS[name][2]
        if manifest is None:
            data = data or synthetic_cifar(tmp)
            manifest = cifar_manifest(tmp, name)
        ours = bench_train(args.evomal, manifest, steps_for(name, args.steps), "--device", "gpu",
                           "--side-by-side", str(args.side_by_side))
        # PyTorch's CUDA steps take milliseconds: all of them, for a steadier rate. Its
        # defaults are what users get; plain f32 is what evomal computes.
        theirs = torch_steps_per_s(name, 1, args.steps, "cuda")
        ieee = ieee_steps_per_s(name, args.steps)
        one, many = ours["steps_per_s"], ours["model_steps_per_s"]
        rows.append({"model": name, "batch": 128, "device": ours["device"],
                     "torch_device": torch.cuda.get_device_name(0),
                     "evomal_steps_per_s": one, "side_by_side": args.side_by_side,
                     "evomal_model_steps_per_s": many, "pytorch_steps_per_s": theirs,
                     "pytorch_f32_settings": f32_settings(),
                     "pytorch_ieee_steps_per_s": ieee,
                     "ratio": one / theirs, "ratio_side_by_side": many / theirs,
                     "mib_per_model": ours["bytes_per_candidate"] / 2**20})
        plain = "" if ieee is None else f", {ieee:8.2f} in plain f32"
        print(f"{name:>9}: evomal {one:8.2f} steps/s alone, {many:8.2f} model-steps/s with "
              f"{args.side_by_side} side by side; PyTorch CUDA {theirs:8.2f} steps/s{plain}; "
              f"ratios {one / theirs:5.2f}, {many / theirs:5.2f}", flush=True)
    return rows


def main():
    # Stopped by `gpu_figures.py --deadline-s`: leave through the `with` blocks, which remove
    # the temporary data sets.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--models", default="lenet5,mlp,resnet18,vgg11")
    ap.add_argument("--json", help="write the figures to this file")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--side-by-side", type=int, default=25)
    ap.add_argument("--evomal", default=os.path.join(ROOT, "target", "release", "evomal"))
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    rows = []
    if args.device == "cuda":
        with tempfile.TemporaryDirectory() as tmp:
            rows = cuda_rows(args, tmp)
        print(f"\nPyTorch {torch.__version__}, {torch.cuda.get_device_name(0)}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"torch": torch.__version__, "rows": rows}, f, indent=2)
        return
    with tempfile.TemporaryDirectory() as tmp:
        data = None
        for name in args.models.split(","):
            manifest = MODELS[name][2]
            if manifest is None:
                data = data or synthetic_cifar(tmp)
                manifest = cifar_manifest(tmp, name)
            steps = steps_for(name, args.steps)
            ours = {row["threads"]: row["steps_per_s"]
                    for row in bench_train(args.evomal, manifest, steps)}
            for threads in sorted(ours):
                theirs = torch_steps_per_s(name, threads, steps)
                rows.append({"model": name, "threads": threads, "batch": 128,
                             "evomal_steps_per_s": ours[threads],
                             "pytorch_steps_per_s": theirs,
                             "ratio": ours[threads] / theirs})
                print(f"{name:>9} {threads:>2} thread(s): evomal {ours[threads]:8.2f} steps/s, "
                      f"PyTorch {theirs:8.2f} steps/s, ratio {ours[threads] / theirs:5.2f}",
                      flush=True)
    print(f"\nPyTorch {torch.__version__}, {cores} cores")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "cores": cores, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
