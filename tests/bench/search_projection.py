#!/usr/bin/env python3
"""How long the EvoMAL reference search of ResNet-18 on CIFAR-10 takes here, projected.

Writes a synthetic CIFAR-10 of the real size (50,000 + 10,000 random images in the binary
format, 184 MB) to a temporary folder, points a copy of `tasks/cifar10-resnet18.toml` at it, and
runs `evomal bench fitness COPY --project` with the arguments given after `--`: each device's
cost per meta step and per fitness step, fitted from two short timings, and the projected time
of a generation and of the 25 x 50 search (stdlib only; no PyTorch).

    cargo build --release --workspace
    python3 tests/bench/search_projection.py [--manifest tasks/cifar10-resnet18.toml] \
        [-- --device cpu --candidates 2 --json]
"""

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile

from cifar_data import synthetic_cifar

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    # Stopped by `gpu_figures.py --deadline-s`: leave through the `with` blocks, which remove
    # the temporary data sets.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--manifest", default=os.path.join(ROOT, "tasks", "cifar10-resnet18.toml"),
                    help="a CIFAR-10 manifest whose data_dir is replaced")
    ap.add_argument("--evomal", default=os.path.join(ROOT, "target", "release", "evomal"))
    ap.add_argument("bench_args", nargs="*", help="passed to `evomal bench fitness`")
    args = ap.parse_args()
    with open(args.manifest) as f:
        text = f.read()
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(synthetic_cifar(tmp, 10000), "cifar-10-batches-bin")
        text, n = re.subn(r'(?m)^data_dir\s*=.*$', f'data_dir = "{data}"', text)
        if n != 1:
            sys.exit(f"{args.manifest}: expected one data_dir line, found {n}")
        manifest = os.path.join(tmp, "manifest.toml")
        with open(manifest, "w") as f:
            f.write(text)
        cmd = [args.evomal, "bench", "fitness", manifest, "--project", *args.bench_args]
        sys.exit(subprocess.run(cmd).returncode)


if __name__ == "__main__":
    main()
