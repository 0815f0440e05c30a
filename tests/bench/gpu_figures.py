#!/usr/bin/env python3
r"""Every GPU figure of evomal in one run: the GPU trainer against PyTorch CUDA and all CPU cores.

On a machine with an NVIDIA GPU, a CUDA build of PyTorch and evomal built in release mode:

    python3 tests/bench/gpu_figures.py --out gpu-figures [--side-by-side 25] [--steps 100] \
        [--stages steps,gpu,cpu,profile] [--summary-only]

Each stage writes OUT/STAGE.json and is skipped when that file is there, so a run that was cut
short goes on where it stopped (`--stages` runs some; `--summary-only` runs none):

  steps    steps/s at batch 128 of LeNet-5, MLP(1000, 1000), ResNet-18 and VGG-11 on the GPU, one
           model and N side by side, against PyTorch CUDA (`pytorch_steps.py --device cuda`)
  gpu      the ResNet-18 reference search with N candidates side by side on the GPU, projected
           from short timings (`search_projection.py -- --device gpu --gpu-only`)
  cpu      the same on all CPU cores, one candidate per core
  profile  where one step of N ResNet-18s and of N VGG-11s side by side spends its time, per
           kernel (`evomal bench train --device gpu --profile`)

Then it writes OUT/summary.md and prints it: the figures against the targets (per model-step at
least 0.8x PyTorch; side by side at least 10x all CPU cores in evaluations per second), the
seconds per fully evaluated ResNet-18 candidate and the projected time of the 25 x 50 search.
The `summary` functions read only the JSON files and need nothing beyond the standard library.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
EVOMAL = os.path.join(ROOT, "target", "release", "evomal")
STAGES = ["steps", "gpu", "cpu", "profile"]
PROFILED = ["resnet18", "vgg11"]


def run(cmd, stdout=None):
    print("$ " + " ".join(cmd), flush=True)
    done = subprocess.run(cmd, cwd=ROOT, stdout=stdout, text=True)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(cmd)}")
    return done.stdout


def stage_steps(path, n, steps):
    run([sys.executable, os.path.join(HERE, "pytorch_steps.py"), "--device", "cuda",
         "--side-by-side", str(n), "--steps", str(steps), "--json", path])


def stage_projection(path, bench_args):
    out = run([sys.executable, os.path.join(HERE, "search_projection.py"), "--",
               *bench_args, "--json"], stdout=subprocess.PIPE)
    with open(path, "w") as f:
        f.write(out)


def stage_profile(path, n):
    sys.path.insert(0, HERE)
    from cifar_data import synthetic_cifar
    from pytorch_steps import cifar_manifest
    reports = {}
    with tempfile.TemporaryDirectory() as tmp:
        synthetic_cifar(tmp)
        for model in PROFILED:
            out = run([EVOMAL, "bench", "train", cifar_manifest(tmp, model), "--device", "gpu",
                       "--steps", "3", "--side-by-side", str(n), "--profile", "--json"],
                      stdout=subprocess.PIPE)
            reports[model] = json.loads(out)
    with open(path, "w") as f:
        json.dump(reports, f, indent=2)


def load(out, stage):
    path = os.path.join(out, f"{stage}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def duration(seconds):
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:,.1f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:,.1f} h"
    return f"{seconds:,.1f} s"


def verdict(value, target):
    return "meets" if value >= target else "below"


def summary_steps(steps):
    rows = steps["rows"]
    n = rows[0]["side_by_side"]
    lines = [f"Steps/s at batch 128 (PyTorch {steps['torch']} on {rows[0]['torch_device']}; "
             f"evomal on {rows[0]['device']}); target: per model-step at least 0.8x PyTorch.", "",
             f"| model | evomal, one | evomal, {n} side by side (per model) | PyTorch CUDA | "
             "ratio, one | ratio, side by side | MiB per model |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['evomal_steps_per_s']:.2f} | "
            f"{r['evomal_model_steps_per_s']:.2f} | {r['pytorch_steps_per_s']:.2f} | "
            f"{r['ratio']:.2f} ({verdict(r['ratio'], 0.8)}) | "
            f"{r['ratio_side_by_side']:.2f} ({verdict(r['ratio_side_by_side'], 0.8)}) | "
            f"{r['mib_per_model']:.1f} |")
    return lines


def evaluations_per_s(report, device):
    return report["candidates"] / report[device]["projected"]["generation_s"]


def summary_search(gpu, cpu):
    lines = []
    if gpu:
        n, projected = gpu["candidates"], gpu["gpu"]["projected"]
        software = " (a software rasteriser: not a GPU figure)" if gpu["gpu"]["software"] else ""
        lines += [
            f"{gpu['task']} / {gpu['model']}, the manifest's settings ({gpu['meta_steps']} meta "
            f"steps, {gpu['fitness_steps']} fitness steps), {n} candidates side by side on "
            f"{gpu['gpu']['device']}{software}:",
            f"- {projected['meta_step_s']:.3f} s per meta step, "
            f"{projected['fitness_step_s']:.3f} s per fitness step (all {n} at once)",
        ]
        host = gpu["gpu"]["timings"][-1].get("meta_host")
        if host:
            init, wait = (host[k] / host["device_steps"] for k in ("init_s", "wait_s"))
            pace = "the host" if init > wait else "the device"
            lines.append(
                f"- per meta step the host drew base-model initialisations for {init:.3g} s "
                f"(the next step's while the device works) and waited {wait:.3g} s for the "
                f"device: {pace} sets the pace")
        lines += [
            f"- a generation of {n}: {duration(projected['generation_s'])}; "
            f"{duration(projected['generation_s'] / n)} per fully evaluated candidate",
            f"- the search, {gpu['generations']} generations of {n}: "
            f"{duration(projected['search_s'])}",
        ]
    if cpu:
        projected = cpu["cpu"]["projected"]
        lines.append(
            f"- on the CPU, {cpu['candidates']} candidates on {cpu['cpu']['threads']} threads: "
            f"a generation {duration(projected['generation_s'])}, the search "
            f"{duration(projected['search_s'])}")
    if gpu and cpu:
        ratio = evaluations_per_s(gpu, "gpu") / evaluations_per_s(cpu, "cpu")
        lines.append(
            f"- evaluations/s: GPU {evaluations_per_s(gpu, 'gpu'):.4g}, all CPU cores "
            f"{evaluations_per_s(cpu, 'cpu'):.4g}: {ratio:.2f}x; target at least 10x "
            f"({verdict(ratio, 10)})")
    return lines


def summary_profile(profile, top=6):
    lines = []
    for model, report in profile.items():
        kernels = report["profile"]
        total = sum(k["seconds"] for k in kernels)
        lines += ["", f"One step of {report['side_by_side']} {model} models side by side: "
                      f"{total * 1e3:.1f} ms in {sum(k['dispatches'] for k in kernels)} dispatches"]
        for k in kernels[:top]:
            lines.append(f"- {k['kernel']}: {k['seconds'] * 1e3:.2f} ms "
                         f"({100 * k['seconds'] / max(total, 1e-30):.1f} %)")
    return lines


def summary(out):
    """The summary of the stages' files in `out` that are there."""
    steps, gpu, cpu, profile = (load(out, s) for s in STAGES)
    sections = [["# evomal on the GPU"]]
    if steps:
        sections.append(summary_steps(steps))
    search = summary_search(gpu, cpu)
    if search:
        sections.append(["## The reference search", ""] + search)
    if profile:
        sections.append(["## Where a step goes"] + summary_profile(profile))
    missing = [s for s, v in zip(STAGES, (steps, gpu, cpu, profile)) if v is None]
    if missing:
        sections.append([f"Not yet run: {', '.join(missing)}."])
    return "\n\n".join("\n".join(lines) for lines in sections) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="folder for the stages' JSON and summary.md")
    ap.add_argument("--side-by-side", type=int, default=25)
    ap.add_argument("--steps", type=int, default=100, help="timed steps per model in `steps`")
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument("--summary-only", action="store_true")
    args = ap.parse_args()
    unknown = set(args.stages.split(",")) - set(STAGES)
    if unknown:
        sys.exit(f"--stages: unknown {', '.join(sorted(unknown))} (known: {', '.join(STAGES)})")
    os.makedirs(args.out, exist_ok=True)
    n, cores = args.side_by_side, os.cpu_count() or 1
    todo = {
        "steps": lambda p: stage_steps(p, n, args.steps),
        "gpu": lambda p: stage_projection(p, ["--device", "gpu", "--gpu-only",
                                              "--candidates", str(n)]),
        "cpu": lambda p: stage_projection(p, ["--device", "cpu", "--candidates", str(cores)]),
        "profile": lambda p: stage_profile(p, n),
    }
    for stage in [] if args.summary_only else args.stages.split(","):
        path = os.path.join(args.out, f"{stage}.json")
        if os.path.exists(path):
            print(f"{stage}: {path} is there; skipped", flush=True)
            continue
        todo[stage](path + ".partial")
        os.replace(path + ".partial", path)
    text = summary(args.out)
    with open(os.path.join(args.out, "summary.md"), "w") as f:
        f.write(text)
    print(text, end="")


if __name__ == "__main__":
    main()
