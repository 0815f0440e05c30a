"""A synthetic CIFAR-10 in the real binary format, and manifests that train on it, for the
benchmark scripts beside this one (standard library only)."""

import os
import random


def synthetic_cifar(folder, images_per_file=1280):
    """Five training files and a test file of `images_per_file` random images each (10,000 is
    the real data set's size) under `folder/cifar-10-batches-bin`; returns `folder`."""
    bin_dir = os.path.join(folder, "cifar-10-batches-bin")
    os.makedirs(bin_dir, exist_ok=True)
    rng = random.Random(0)
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    for name in names:
        with open(os.path.join(bin_dir, name), "wb") as f:
            for _ in range(images_per_file):
                f.write(bytes([rng.randrange(10)]) + os.urandom(3072))
    return folder


def cifar_manifest(folder, model, augment=True):
    """A manifest that trains the cifar plugin's `model` on the data set under `folder` with
    the CIFAR settings of `pytorch_steps.py`; returns its path."""
    path = os.path.join(folder, f"{model}.toml")
    with open(path, "w") as f:
        f.write(f"""[task]
plugin = "cifar"
model = "{model}"
[task.data]
data_dir = "{folder}"
augment = {str(augment).lower()}
[testing]
steps = 1000
batch = 128
lr = 0.01
momentum = 0.9
nesterov = true
weight_decay = 5e-4
seeds = [0]
""")
    return path
