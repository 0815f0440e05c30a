"""A synthetic CIFAR-10 in the real binary format, for the benchmark scripts beside this one."""

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
