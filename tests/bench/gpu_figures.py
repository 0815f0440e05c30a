#!/usr/bin/env python3
r"""Every GPU figure of evomal in one run: the GPU trainer against PyTorch CUDA and all CPU cores.

On a machine with an NVIDIA GPU, a CUDA build of PyTorch and evomal built in release mode:

    python3 tests/bench/gpu_figures.py --out gpu-figures [--side-by-side 25] [--steps 100] \
        [--stages steps,gpu,profile,cpu,tune] [--deadline-s S] [--summary-only]

Each stage writes OUT/STAGE.json and is skipped when that file is there; `steps`, `profile` and
`tune` also keep each model's figures in OUT/STAGE.partial.json as they come. So a run that was cut
short, by `--deadline-s` or by anything else, goes on where it stopped when run again with the
same OUT (`--stages` runs some; `--summary-only` runs none). The stages, in this order:

  steps    steps/s at batch 128 of LeNet-5, MLP(1000, 1000), ResNet-18 and VGG-11 on the GPU, one
           model and N side by side, against PyTorch CUDA (`pytorch_steps.py --device cuda`)
  gpu      the ResNet-18 reference search with N candidates side by side on the GPU, projected
           from short timings (`search_projection.py -- --device gpu --gpu-only`)
  profile  where one step of N ResNet-18s and of N VGG-11s side by side spends its time, per
           kernel (`evomal bench train --device gpu --profile`)
  cpu      the ResNet-18 search on all CPU cores, one candidate per core: the longest stage
  tune     the profiled models' steps/s, one and N side by side, at other sizes of the matrix
           products' tiles and of the weight gradients' chunks (`EVOMAL_GPU_TILES`,
           `EVOMAL_GPU_MIN_CHUNK`): what the adapter's defaults are to be chosen from; last,
           since the targets need none of it

Before a GPU stage it asks evomal which adapter it takes (a second) and names it; when evomal
finds none, it says why and runs nothing. A command that fails does not stop the run: the
stages and models after it still run, its standard error goes to OUT/failures.log as well as to
the console, and the run exits with status 1. `--deadline-s S` starts nothing after S seconds
and stops a command still running then
(with everything it started), for machines lent by the minute: the run then exits with status 3
(1 if something failed) and says so. Either way it writes OUT/summary.md and prints it: the
figures so far against the targets (per model-step at least 0.8x PyTorch; side by side at least
10x all CPU cores in evaluations per second), the seconds per fully evaluated ResNet-18
candidate, the projected time of the 25 x 50 search, what is not yet run and what failed. The
`summary` functions read only the JSON files and need nothing beyond the standard library.
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

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
STAGES = ["steps", "gpu", "profile", "cpu", "tune"]
MODELS = "lenet5,mlp,resnet18,vgg11"
PROFILED = "resnet18,vgg11"
DEADLINE_STATUS = 3
FAILURES = "failures.log"


def tiles(wide="64x64x16/4x4", few_rows="16x64x16/1x4", small="8x16x16/1x1"):
    """`EVOMAL_GPU_TILES` with the three tilings (`TMxTNxTK/PMxPN` each: outputs and depth per
    workgroup, outputs per invocation); the defaults are the adapter's own on GPUs."""
    return {"EVOMAL_GPU_TILES": ",".join([wide, few_rows, small])}


# The `tune` stage's settings, by name: the adapter's own first, then each changes one thing.
TUNINGS = {
    "adapter": {},
    "wide128x64": tiles(wide="128x64x8/8x4"),
    "wide64x128": tiles(wide="64x128x8/4x8"),
    "depth8": tiles(wide="64x64x8/4x4"),
    "depth32": tiles(wide="64x64x32/4x4"),
    "rows32": tiles(few_rows="32x64x16/2x4"),
    "small16": tiles(small="16x16x16/1x1"),
    "chunk256": {"EVOMAL_GPU_MIN_CHUNK": "256"},
    "chunk4096": {"EVOMAL_GPU_MIN_CHUNK": "4096"},
}

sys.path.insert(0, HERE)
from cifar_data import cifar_manifest, synthetic_cifar  # noqa: E402


class Deadline(Exception):
    """The run's deadline came before `command` finished or started."""


class Failed(Exception):
    """A command exited with an error (its standard error is in OUT/failures.log)."""


class Unfinished(Exception):
    """Some of a stage's models failed (each is in `Run.failures`); the others are kept."""


class Run:
    """What every stage needs: the options, the time left and a scratch folder."""

    def __init__(self, args, scratch):
        self.args = args
        self.scratch = scratch
        self.end = None if args.deadline_s is None else time.monotonic() + args.deadline_s
        self.cifar = None
        self.failures = []

    def command(self, cmd, capture=False, env=None):
        """Runs `cmd` from the repository root in a process group of its own, so that at the
        deadline its children (evomal under a benchmark script) stop with it; `env` adds to the
        environment."""
        shown = " ".join([f"{k}={v}" for k, v in (env or {}).items()] + cmd)
        left = None if self.end is None else self.end - time.monotonic()
        if left is not None and left <= 0:
            raise Deadline(shown)
        print("$ " + shown, flush=True)
        child = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE if capture else None,
                                 stderr=subprocess.PIPE, text=True, start_new_session=True,
                                 env={**os.environ, **(env or {})})
        try:
            out, err = child.communicate(timeout=left)
        except BaseException as e:
            stop(child)
            if isinstance(e, subprocess.TimeoutExpired):
                raise Deadline(shown) from None
            raise
        sys.stderr.write(err)
        if child.returncode != 0:
            # Kept apart from the console, whose start a remote machine may not give back.
            with open(os.path.join(self.args.out, FAILURES), "a") as log:
                log.write(f"$ {shown}\nexit status {child.returncode}\n{err}\n")
            raise Failed(f"`{shown}` exited with status {child.returncode}")
        return out

    def synthetic_cifar(self):
        """A small synthetic CIFAR-10 in the scratch folder, written once per run."""
        self.cifar = self.cifar or synthetic_cifar(os.path.join(self.scratch, "cifar"))
        return self.cifar


def stop(child, grace_s=10):
    """Stops `child`'s process group: SIGTERM first, so that the benchmark scripts remove their
    data sets (the search's is 184 MB), then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGTERM)
    try:
        child.communicate(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.communicate()


def read_json(path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def write_json(path, value):
    """Writes `value` to a file beside `path` and renames it, so `path` is always whole."""
    with open(path + ".tmp", "w") as f:
        json.dump(value, f, indent=2)
    os.replace(path + ".tmp", path)


def partial_path(out, stage):
    return os.path.join(out, f"{stage}.partial.json")


def per_model(run, stage, models, measure):
    """`measure(model)` for each of `models` not yet in OUT/STAGE.partial.json, each kept there
    as soon as it is measured; all of them, keyed by model."""
    path = partial_path(run.args.out, stage)
    done = read_json(path) or {}
    for model in models:
        if model in done:
            print(f"{stage} {model}: kept in {path}; skipped", flush=True)
            continue
        try:
            done[model] = measure(model)
        except Failed as e:
            run.failures.append(f"{stage} {model}: {e}")
            continue
        write_json(path, done)
    if any(m not in done for m in models):
        raise Unfinished(stage)
    return {m: done[m] for m in models}


def steps_rows(per_model_reports, models):
    """The `steps` stage's figures from its per-model `pytorch_steps.py` reports."""
    reports = [per_model_reports[m] for m in models if m in per_model_reports]
    if not reports:
        return None
    return {"torch": reports[0]["torch"], "rows": [r for rep in reports for r in rep["rows"]]}


def stage_steps(run):
    args = run.args
    models = args.models.split(",")

    def measure(model):
        path = os.path.join(run.scratch, f"steps-{model}.json")
        run.command([sys.executable, os.path.join(HERE, "pytorch_steps.py"), "--device", "cuda",
                     "--models", model, "--side-by-side", str(args.side_by_side), "--steps",
                     str(args.steps), "--evomal", args.evomal, "--json", path])
        return read_json(path)

    return steps_rows(per_model(run, "steps", models, measure), models)


def stage_projection(run, bench_args):
    out = run.command([sys.executable, os.path.join(HERE, "search_projection.py"), "--evomal",
                       run.args.evomal, "--", *bench_args, "--json"], capture=True)
    return json.loads(out)


def stage_profile(run):
    def measure(model):
        manifest = cifar_manifest(run.synthetic_cifar(), model)
        out = run.command([run.args.evomal, "bench", "train", manifest, "--device", "gpu",
                           "--steps", "3", "--side-by-side", str(run.args.side_by_side),
                           "--profile", "--json"], capture=True)
        return json.loads(out)

    return per_model(run, "profile", run.args.profile_models.split(","), measure)


def tune_keys(profile_models, tunings):
    """The `tune` stage's measurements: `MODEL TUNING` for each model and setting."""
    return [f"{m} {t}" for m in profile_models.split(",") for t in tunings.split(",")]


def stage_tune(run):
    def measure(key):
        model, tuning = key.split(" ")
        manifest = cifar_manifest(run.synthetic_cifar(), model)
        out = run.command([run.args.evomal, "bench", "train", manifest, "--device", "gpu",
                           "--steps", str(run.args.tune_steps), "--side-by-side",
                           str(run.args.side_by_side), "--json"],
                          capture=True, env=TUNINGS[tuning])
        return json.loads(out)

    return per_model(run, "tune", tune_keys(run.args.profile_models, run.args.tunings), measure)


def name_gpu_adapter(evomal):
    """Prints the adapter evomal's `--device gpu` takes, from a `bench loss` of a thousand
    elements (a second); exits, saying why, when it finds none, so that a machine lent by the
    minute is not spent on commands that all fail the same way."""
    if not os.path.exists(evomal):
        sys.exit(f"{evomal} is not there: build it first (cargo build --release --workspace)")
    probe = subprocess.run([evomal, "bench", "loss", "--device", "gpu", "--elements", "1000",
                            "--compile-trees", "1", "--json"], cwd=ROOT, capture_output=True,
                           text=True)
    if probe.returncode != 0:
        sys.exit(f"evomal finds no GPU adapter, so there is no GPU figure to take:\n"
                 f"{probe.stderr.strip()}\n(where the Vulkan loader misses an NVIDIA driver, "
                 "name its manifest: VK_DRIVER_FILES=/path/to/nvidia_icd.json)")
    device = json.loads(probe.stdout)["device"]
    software = " (a software rasteriser: its figures are not GPU figures)"
    print(f"evomal's GPU: {device['name']}{software if device['software'] else ''}",
          file=sys.stderr, flush=True)


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
             f"evomal on {rows[0]['device']}); target: per model-step at least 0.8x PyTorch "
             "as users run it (its defaults).", "",
             f"| model | evomal, one | evomal, {n} side by side (per model) | PyTorch CUDA | "
             "ratio, one | ratio, side by side | PyTorch CUDA in plain f32 | ratios to it | "
             "MiB per model |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ieee = r.get("pytorch_ieee_steps_per_s")
        plain = ("— | —" if ieee is None else
                 f"{ieee:.2f} | {r['evomal_steps_per_s'] / ieee:.2f}, "
                 f"{r['evomal_model_steps_per_s'] / ieee:.2f}")
        lines.append(
            f"| {r['model']} | {r['evomal_steps_per_s']:.2f} | "
            f"{r['evomal_model_steps_per_s']:.2f} | {r['pytorch_steps_per_s']:.2f} | "
            f"{r['ratio']:.2f} ({verdict(r['ratio'], 0.8)}) | "
            f"{r['ratio_side_by_side']:.2f} ({verdict(r['ratio_side_by_side'], 0.8)}) | "
            f"{plain} | {r['mib_per_model']:.1f} |")
    settings = rows[0].get("pytorch_f32_settings")
    if settings:
        lines += ["", f"PyTorch's defaults here compute f32 convolutions as `{settings['conv']}` "
                      f"and matrix products as `{settings['matmul']}` (`tf32`: on tensor cores "
                      "with 10-bit mantissas); evomal's kernels compute in plain f32, as PyTorch "
                      "does in the plain-f32 column."]
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


def summary_tune(tune):
    """Per model, each setting's model-steps/s side by side against the adapter's own."""
    models = list(dict.fromkeys(key.split(" ")[0] for key in tune))
    tunings = list(dict.fromkeys(key.split(" ")[1] for key in tune))
    first = next(iter(tune.values()))
    lines = [f"Model-steps/s of {first['side_by_side']} models side by side (in brackets: the "
             "steps/s of one model alone) at each setting of the products' tiles "
             "(`EVOMAL_GPU_TILES`) and the weight gradients' shortest chunk "
             "(`EVOMAL_GPU_MIN_CHUNK`), and the ratio to the adapter's own settings.", "",
             "| setting | tiles | chunk | " + " | ".join(models) + " |",
             "|---|---|---|" + "---|" * len(models)]
    for t in tunings:
        reports = [tune.get(f"{m} {t}") for m in models]
        known = next(r for r in reports if r)
        cells = []
        for m, r in zip(models, reports):
            base = tune.get(f"{m} adapter")
            if r is None:
                cells.append("—")
                continue
            ratio = "" if base is None else \
                f", {r['model_steps_per_s'] / base['model_steps_per_s']:.2f}x"
            cells.append(f"{r['model_steps_per_s']:.2f} ({r['steps_per_s']:.2f}){ratio}")
        lines.append(f"| {t} | {','.join(known['tiles'])} | {known['min_chunk']} | "
                     + " | ".join(cells) + " |")
    for m in models:
        mine = {t: tune[f"{m} {t}"] for t in tunings if f"{m} {t}" in tune}
        best = max(mine, key=lambda t: mine[t]["model_steps_per_s"])
        lines.append(f"\nFastest for {m} side by side: {best}.")
    return lines


def gathered(out, stage, models):
    """A stage's figures: its file, else, for a stage measured a model at a time (`models` not
    None), what its partial file holds so far (None if nothing); and the models of `models`
    that the partial file lacks."""
    whole = read_json(os.path.join(out, f"{stage}.json"))
    if whole is not None or models is None:
        return whole, []
    parts = read_json(partial_path(out, stage)) or {}
    have = [m for m in models if m in parts]
    missing = [m for m in models if m not in parts]
    if not have:
        return None, missing
    if stage == "steps":
        return steps_rows(parts, models), missing
    return {m: parts[m] for m in have}, missing


def summary(out, models=MODELS, profile_models=PROFILED, tunings=",".join(TUNINGS),
            failures=()):
    """The summary of the stages' files in `out` that are there, whole or partial, and of the
    commands of this run that failed."""
    figures, unfinished = {}, []
    for stage in STAGES:
        wanted = {"steps": models.split(","), "profile": profile_models.split(","),
                  "tune": tune_keys(profile_models, tunings)}.get(stage)
        figures[stage], missing = gathered(out, stage, wanted)
        if figures[stage] is None:
            unfinished.append(stage)
        elif missing:
            unfinished.append(f"{stage} ({', '.join(missing)})")
    sections = [["# evomal on the GPU"]]
    if figures["steps"]:
        sections.append(summary_steps(figures["steps"]))
    search = summary_search(figures["gpu"], figures["cpu"])
    if search:
        sections.append(["## The reference search", ""] + search)
    if figures["profile"]:
        sections.append(["## Where a step goes"] + summary_profile(figures["profile"]))
    if figures["tune"]:
        sections.append(["## Tile and chunk sizes", ""] + summary_tune(figures["tune"]))
    if unfinished:
        sections.append([f"Not yet run: {', '.join(unfinished)}."])
    if failures:
        sections.append([f"Failed in this run (their errors are in {FAILURES}):"] +
                        [f"- {f}" for f in failures])
    return "\n\n".join("\n".join(lines) for lines in sections) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="folder for the stages' JSON and summary.md")
    ap.add_argument("--side-by-side", type=int, default=25)
    ap.add_argument("--steps", type=int, default=100, help="timed steps per model in `steps`")
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument("--models", default=MODELS, help="the models of `steps`")
    ap.add_argument("--profile-models", default=PROFILED,
                    help="the models of `profile` and `tune`")
    ap.add_argument("--tunings", default=",".join(TUNINGS),
                    help=f"the settings `tune` times (known: {', '.join(TUNINGS)})")
    ap.add_argument("--tune-steps", type=int, default=10, help="timed steps per setting in `tune`")
    ap.add_argument("--deadline-s", type=float,
                    help="start nothing after this many seconds, and stop what still runs")
    ap.add_argument("--evomal", default=os.path.join(ROOT, "target", "release", "evomal"))
    ap.add_argument("--summary-only", action="store_true")
    args = ap.parse_args()
    unknown = set(args.stages.split(",")) - set(STAGES)
    if unknown:
        sys.exit(f"--stages: unknown {', '.join(sorted(unknown))} (known: {', '.join(STAGES)})")
    unknown = set(args.tunings.split(",")) - set(TUNINGS)
    if unknown:
        sys.exit(f"--tunings: unknown {', '.join(sorted(unknown))} "
                 f"(known: {', '.join(TUNINGS)})")
    os.makedirs(args.out, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(args.out, FAILURES))
    n, cores = str(args.side_by_side), str(os.cpu_count() or 1)
    todo = {
        "steps": stage_steps,
        "gpu": lambda run: stage_projection(run, ["--device", "gpu", "--gpu-only",
                                                  "--candidates", n]),
        "profile": stage_profile,
        "tune": stage_tune,
        "cpu": lambda run: stage_projection(run, ["--device", "cpu", "--candidates", cores]),
    }
    stages = [] if args.summary_only else args.stages.split(",")
    if any(s != "cpu" and not os.path.exists(os.path.join(args.out, f"{s}.json")) for s in stages):
        name_gpu_adapter(args.evomal)
    stopped = None
    with tempfile.TemporaryDirectory() as scratch:
        run = Run(args, scratch)
        for stage in stages:
            path = os.path.join(args.out, f"{stage}.json")
            if os.path.exists(path):
                print(f"{stage}: {path} is there; skipped", flush=True)
                continue
            try:
                write_json(path, todo[stage](run))
            except Deadline as e:
                stopped = f"{stage}, at `{e}`"
                break
            except Failed as e:
                run.failures.append(f"{stage}: {e}")
                continue
            except Unfinished:
                continue
            with contextlib.suppress(FileNotFoundError):
                os.remove(partial_path(args.out, stage))
    text = summary(args.out, args.models, args.profile_models, args.tunings, run.failures)
    with open(os.path.join(args.out, "summary.md"), "w") as f:
        f.write(text)
    print(text, end="")
    if stopped:
        print(f"Stopped at the deadline ({args.deadline_s:g} s) in stage {stopped}; what was "
              f"finished is in {args.out}: the same command goes on from there.", flush=True)
    if run.failures:
        sys.exit(1)
    if stopped:
        sys.exit(DEADLINE_STATUS)


if __name__ == "__main__":
    main()
