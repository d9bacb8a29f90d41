"""Learning commands: train, adapt and predict with any registered method; LWLM pretraining and
fine-tuning; federated MetaLoc."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from xloc.cli.common import app, console, environments, friendly, parse_params, torchrun, write_positions
from xloc.data.fingerprints import Fingerprints
from xloc.data.storage import load_fingerprints
from xloc.io import atomic_write_text
from xloc.progress import take_interrupt


@app.command()
@friendly
def train(
    data: Annotated[Path, typer.Option(help="xloc .h5 file with the historical environments")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model folder to write")],
    method: Annotated[str, typer.Option(help="A registered method ('xloc methods' lists them)")] = "maml",
    split: Annotated[str, typer.Option(help="Split to train on")] = "train",
    env: Annotated[list[str] | None, typer.Option(help="Environment to use (repeat; default all)")] = None,
    exclude: Annotated[list[str] | None, typer.Option(help="Environment to leave out (repeat)")] = None,
    iterations: Annotated[int | None, typer.Option(help="Training budget: the method's iterations / steps / "
                                                         "epochs field (default: the method's)")] = None,
    param: Annotated[list[str] | None, typer.Option(help="Hyper-parameter KEY=VALUE (repeat; JSON values, e.g. "
                                                         "hidden=[32,32])")] = None,
    seed: Annotated[int, typer.Option(help="Seed")] = 0,
    nproc: Annotated[int, typer.Option(help="Distributable methods: data-parallel processes (torchrun, gloo on "
                                            "CPU); each takes a share of every batch")] = 1,
) -> None:
    """Fit any registered method on the historical environments and save it; Ctrl-C keeps what was learned.

    Example: xloc train --data pl.h5 --exclude log_distance-s0 --method maml-dg -o metaloc/"""
    from xloc.learn import distributed
    from xloc.methods import get, specs

    spec = get(method)
    if nproc < 1:
        raise typer.BadParameter(f"--nproc must be >= 1, got {nproc}")
    if nproc > 1 and "RANK" not in os.environ:
        if not spec.capabilities.distributable:
            distributable = [s.name for s in specs() if s.capabilities.distributable]
            raise typer.BadParameter(f"--nproc > 1: {method!r} is not split over processes; distributable: "
                                     f"{', '.join(distributable)}")
        # The ranks rerun this command (same options, without --nproc) as `python -m xloc.cli train ...`.
        forwarded = ["train", "--data", str(data), "--out", str(out), "--method", method, "--split", split,
                     "--seed", str(seed)]
        forwarded += [a for e in env or [] for a in ("--env", e)] + [a for e in exclude or [] for a in ("--exclude", e)]
        forwarded += [] if iterations is None else ["--iterations", str(iterations)]
        forwarded += [a for item in param or [] for a in ("--param", item)]
        raise typer.Exit(torchrun(nproc, forwarded))
    params = parse_params(param)
    if iterations is not None:
        if spec.capabilities.budget_field is None:
            raise typer.BadParameter(f"--iterations: {method!r} has no training budget to set")
        params[spec.capabilities.budget_field] = iterations
    model = spec.create(seed, **params)
    in_group = distributed.init_from_environment()
    sources = environments(data, split, env, exclude)
    model.progress = distributed.is_main()
    take_interrupt()
    model.fit(sources)
    stopped = take_interrupt()
    if stopped is not None:  # Ctrl-C: the trainer kept its best state; say so in the model and the exit code
        model.interrupted_ = {"what": stopped.what, "done": stopped.done, "total": stopped.total}
    if distributed.is_main():  # every rank holds the same parameters; one writes them
        model.save(out)
        ranks = f" on {distributed.world()[1]} processes" if in_group else ""
        what = f"trained {method} on {', '.join(sources)} in {getattr(model, 'train_s_', 0.0):.1f} s{ranks}" \
            if spec.capabilities.trains_on_sources else f"{method} learns nothing from source environments; saved " \
            "its hyper-parameters"
        console.print(f"{what}; wrote {out}")
    if stopped is not None:
        console.print(f"[yellow]interrupted:[/] {stopped.what} stopped after {stopped.done} of {stopped.total} "
                      "steps; the saved model holds the best state so far and says so in meta.json")
        raise typer.Exit(130)


@app.command()
@friendly
def federated(
    data: Annotated[Path, typer.Option(help="xloc .h5 file the clients read their own environment from")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the model, result.json, audit and logs")],
    paradigm: Annotated[str, typer.Option(help="maml-ts or maml-dg")] = "maml-dg",
    env: Annotated[list[str] | None, typer.Option(help="Client environment (repeat; default all in the split)")]
    = None,
    split: Annotated[str, typer.Option(help="Split the clients train on")] = "train",
    mode: Annotated[str, typer.Option(help="simulation (Flower's Ray runtime), loopback (a SuperLink and one "
                                           "SuperNode process per environment on 127.0.0.1) or hosts (each on a "
                                           "network namespace of its own, TLS; root)")] = "simulation",
    iterations: Annotated[int | None, typer.Option(help="Meta-iterations (default: MetaLoc's)")] = None,
    support: Annotated[Path | None, typer.Option(help="MAML-TS: .h5 file with the new environment's support set "
                                                      "(its 'train' split) for the MMD query")] = None,
    support_env: Annotated[str | None, typer.Option(help="MAML-TS: the new environment's name in --support")]
    = None,
    port: Annotated[int, typer.Option(help="loopback/hosts: the SuperLink's port (SuperNodes use port+10...)")]
    = 18000,
    client_apps: Annotated[str, typer.Option(help="loopback: long-lived (one ClientApp process per client for all "
                                                  "its messages) or per-message (Flower's default)")]
    = "long-lived",
    supernode_poll_s: Annotated[float | None, typer.Option(help="loopback/hosts: longest idle wait [s] of the "
                                                                "SuperNodes and ClientApp workers (Flower's own: 3 s; "
                                                                "0 keeps Flower's SuperNode)")] = 0.1,
    reply_timeout_s: Annotated[float, typer.Option(help="Seconds to wait for a client's reply before the run "
                                                        "stops, naming the client")] = 600.0,
    seed: Annotated[int, typer.Option(help="Seed (same seed and schedule = the centralised result)")] = 0,
    dp_noise_multiplier: Annotated[float, typer.Option(help="MAML-DG with differential privacy: Gaussian noise "
                                                            "std / clip norm on every gradient a client sends "
                                                            "(0: off)")] = 0.0,
    dp_clip: Annotated[float, typer.Option(help="Differential privacy: L2 clip norm of each gradient sent")] = 1.0,
    dp_delta: Annotated[float, typer.Option(help="Differential privacy: delta of the reported (epsilon, delta)")]
    = 1e-5,
) -> None:
    """MetaLoc's privacy-preserving paradigm on Flower (extra xloc-federated): every environment is a client that
    keeps its fingerprints; only meta-parameters, their gradients and scalars travel, and every client message
    is audited into OUT/audit.

    Example: xloc federated --data pl.h5 --paradigm maml-dg -o fed/"""
    from xloc.learn.federated import FederatedRun, read_audit, run_loopback, run_simulation_mode

    if mode not in ("simulation", "loopback", "hosts"):
        raise typer.BadParameter(f"--mode must be 'simulation', 'loopback' or 'hosts', got {mode!r}")
    names = env or list(load_fingerprints(data, split)[split])
    hyper: dict[str, Any] = {"seed": seed, **({} if iterations is None else {"iterations": iterations})}
    run = FederatedRun(paradigm, names, str(data.resolve()), str(out.resolve()), hyper, split=split,
                       support=None if support is None else str(support.resolve()), support_env=support_env,
                       audit_dir=str((out / "audit").resolve()), reply_timeout_s=reply_timeout_s,
                       dp_noise_multiplier=dp_noise_multiplier, dp_clip=dp_clip, dp_delta=dp_delta)
    if mode == "simulation":
        result = run_simulation_mode(run)
    elif mode == "loopback":
        result = run_loopback(run, port=port, client_apps=client_apps, supernode_poll_s=supernode_poll_s or None)
    else:
        from xloc.learn.federated.hosts import run_hosts

        result = run_hosts(run, port=port, client_apps=client_apps, supernode_poll_s=supernode_poll_s or None)
        console.print(f"hosts (network namespaces, TLS): {', '.join(f'{k} {v}' for k, v in result['hosts'].items())}")
    audit = read_audit(out / "audit")
    leaks = [leak for e in audit for leak in e["leaks"]]
    console.print(f"{paradigm} over {len(names)} Flower clients ({mode}): {result['messages']} messages, "
                  f"{result['bytes_from_clients'] / 1e3:.1f} kB of arrays from clients, {result['train_s']:.1f} s; "
                  f"audit: {len(audit)} client replies, {len(leaks)} raw-data findings; wrote {out / 'model'}")
    if "dp" in result:
        spent = ", ".join(f"{k} {v:.2f}" for k, v in result["dp"]["epsilon"].items())
        console.print(f"differential privacy (delta {dp_delta:g}): epsilon per client {spent}")
    if "closest" in result:
        console.print(f"closest environment by MMD: {result['closest']} "
                      f"({', '.join(f'{k} {v:.4f}' for k, v in result['mmd2'].items())})")
    if leaks:
        raise typer.Exit(1)


@app.command()
@friendly
def adapt(
    model: Annotated[Path, typer.Option(help="Model folder from 'xloc train'")],
    data: Annotated[Path, typer.Option(help="xloc .h5 file holding the new environment")],
    env: Annotated[str, typer.Option(help="The new environment")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Adapted model folder to write")],
    split: Annotated[str, typer.Option(help="Split with the labelled support samples")] = "train",
    points: Annotated[int | None, typer.Option(help="Draw this many labelled reference points (default all)")]
    = None,
    seed: Annotated[int, typer.Option(help="Seed of the draw")] = 0,
    steps: Annotated[int | None, typer.Option(help="Gradient steps Q (default: the model's)")] = None,
    unlabelled: Annotated[bool, typer.Option(help="Methods that use unlabelled data (AGNN, AGML): the "
                                                  "environment's other fingerprints of the split join without "
                                                  "their locations")] = True,
    param: Annotated[list[str] | None, typer.Option(help="Change a hyper-parameter before adapting, KEY=VALUE "
                                                         "(repeat), e.g. alignment=moments (AGML) or group=ENV "
                                                         "(MAML-TS trained federated)")] = None,
) -> None:
    """Adapt a trained model to a new environment with a few labelled reference points (analogical models only
    bind them as references; no gradient step).

    Example: xloc adapt --model metaloc/ --data pl.h5 --env log_distance-s0 --points 10 -o adapted/"""
    from xloc.methods import get, load_model

    base = load_model(str(model))
    spec = get(base.method_name)
    if param:
        base.set_params(**parse_params(param))
    fp = load_fingerprints(data, split)[split][env]
    support = fp if points is None else fp.sample_points(points, np.random.default_rng(seed))
    rest = None
    if spec.capabilities.uses_unlabelled and unlabelled:
        rest_idx = np.flatnonzero(~np.isin(fp.point_ids, support.point_ids))
        rest = fp.subset(rest_idx) if len(rest_idx) else None
    adapted = base.adapt(support, steps=steps, unlabelled=rest)
    adapted.save(out)
    extra = f" and {len(rest)} unlabelled fingerprints" if rest is not None else ""
    console.print(f"adapted {spec.name} to {env} with {support.n_points} reference points ({len(support)} "
                  f"samples){extra}, {getattr(adapted, 'adapt_steps_', 0)} steps; wrote {out}")


@app.command()
@friendly
def pretrain(
    out: Annotated[Path, typer.Option("--out", "-o", help="Model folder to write")],
    data: Annotated[Path | None, typer.Option(help="xloc .h5 file of CSI environments (e.g. 'xloc simulate "
                                                   "--scenario city')")] = None,
    corpus: Annotated[Path | None, typer.Option(help="A channel corpus folder ('xloc corpus'), streamed from disk "
                                                     "instead of --data")] = None,
    split: Annotated[str, typer.Option(help="Split whose channels to pretrain on (labels are not read)")] = "train",
    env: Annotated[list[str] | None, typer.Option(help="Environment to use (repeat; default all)")] = None,
    objective: Annotated[list[str] | None, typer.Option(help="sf-mcm, dti, picl (repeat; default all three)")]
    = None,
    epochs: Annotated[int, typer.Option(help="Pretraining epochs")] = 10,
    seed: Annotated[int, typer.Option(help="Seed")] = 0,
    checkpoint: Annotated[Path | None, typer.Option(help="Folder for the training state (written every "
                                                         "--checkpoint-every steps, at the end and on Ctrl-C)")]
    = None,
    checkpoint_every: Annotated[int, typer.Option(help="Steps between checkpoints (0: only at the end and on "
                                                       "Ctrl-C)")] = 500,
    resume: Annotated[bool, typer.Option(help="Continue from --checkpoint (same settings and data)")] = False,
    nproc: Annotated[int, typer.Option(help="Data-parallel processes (torchrun, gloo on CPU); each encodes a share "
                                            "of every batch")] = 1,
    param: Annotated[list[str] | None, typer.Option(help="Hyper-parameter KEY=VALUE (repeat; JSON values), e.g. "
                                                         "depth=2 or d_model=32")] = None,
) -> None:
    """LWLM self-supervised pretraining on unlabelled channels (every BS of every user is a sample), from an .h5
    file or a corpus streamed from disk; resumable from its checkpoint.

    Example: xloc pretrain --corpus corpus --epochs 4 --checkpoint lwlm.ckpt -o lwlm/"""
    from xloc.data.corpus import ChannelCorpus
    from xloc.learn import distributed
    from xloc.learn.lwlm import LWLM, OBJECTIVES

    if (data is None) == (corpus is None):
        raise typer.BadParameter("give exactly one of --data (an .h5 file) and --corpus (a corpus folder)")
    if resume and checkpoint is None:
        raise typer.BadParameter("--resume needs --checkpoint")
    if nproc > 1 and "RANK" not in os.environ:
        forwarded = ["pretrain", "--out", str(out), "--split", split, "--epochs", str(epochs), "--seed", str(seed),
                     "--checkpoint-every", str(checkpoint_every)]
        forwarded += ["--data", str(data)] if data is not None else ["--corpus", str(corpus)]
        forwarded += ["--checkpoint", str(checkpoint)] if checkpoint is not None else []
        forwarded += ["--resume"] if resume else []
        forwarded += [a for e in env or [] for a in ("--env", e)]
        forwarded += [a for o in objective or [] for a in ("--objective", o)]
        forwarded += [a for p in param or [] for a in ("--param", p)]
        raise typer.Exit(torchrun(nproc, forwarded))
    in_group = distributed.init_from_environment()
    sources: Any = environments(data, split, env, None) if data is not None else ChannelCorpus.open(str(corpus))
    from xloc.learn.base import make_config
    from xloc.learn.lwlm import LWLMConfig

    config = make_config(LWLMConfig, {"objectives": tuple(objective or OBJECTIVES), "epochs": epochs, "seed": seed,
                                      **parse_params(param)}, "xloc pretrain --param")  # names a bad key
    model = LWLM(**{f.name: getattr(config, f.name) for f in dataclasses.fields(config)})
    take_interrupt()
    model.pretrain(sources, progress=distributed.is_main(), checkpoint_dir=checkpoint,
                   checkpoint_every=checkpoint_every, resume=resume)
    stopped = take_interrupt()
    if distributed.is_main():
        model.save(out)
        last = ", ".join(f"{k} {v:.3f}" for k, v in model.pretrain_losses_[-1].items()) if model.pretrain_losses_ \
            else ""
        ranks = f" on {distributed.world()[1]} processes" if in_group else ""
        what = str(corpus) if corpus is not None else ", ".join(sources)
        console.print(f"pretrained LWLM on {what} for {model.pretrain_steps_} steps in {model.pretrain_s_:.1f} s"
                      f"{ranks} (last epoch: {last}); wrote {out}")
    if stopped is not None:
        console.print(f"interrupted after {stopped.done} of {stopped.total} steps"
                      + (f"; continue with --resume --checkpoint {checkpoint}" if checkpoint else ""))
        raise typer.Exit(130)


@app.command()
@friendly
def finetune(
    data: Annotated[Path, typer.Option(help="xloc .h5 file holding the labelled environment")],
    env: Annotated[str, typer.Option(help="The environment to fine-tune on")],
    task: Annotated[str, typer.Option(help="toa, aoa, single-bs or multi-bs")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model folder to write")],
    model: Annotated[Path | None, typer.Option(help="Pretrained LWLM folder ('xloc pretrain'); omit to train "
                                                    "the same encoder from scratch")] = None,
    split: Annotated[str, typer.Option(help="Split with the labelled users")] = "train",
    label_fraction: Annotated[float, typer.Option(help="Fraction of the users whose labels are used")] = 1.0,
    bs: Annotated[int, typer.Option(help="single-bs: index of the base station to read")] = 0,
    steps: Annotated[int | None, typer.Option(help="Adam steps (default: the model's)")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the label draw and the head")] = 0,
) -> None:
    """Fine-tune an LWLM decoder (and a copy of its encoder) on a fraction of the labelled users.

    Example: xloc finetune --model lwlm/ --data city.h5 --env city-A-cond1 --task multi-bs -o lwlm-pos/"""
    from xloc.learn.lwlm import LWLM

    lwlm = LWLM(seed=seed) if model is None else LWLM.load(model)  # a clear error for any other model folder
    fp = load_fingerprints(data, split)[split][env]
    lwlm.finetune(task, fp, label_fraction, bs=bs, steps=steps, seed=seed)
    lwlm.save(out)
    rec = lwlm.tasks_[task]
    console.print(f"fine-tuned {task} ({'pretrained' if lwlm.pretrained_ else 'from scratch'}) on "
                  f"{rec.n_labelled_users} labelled users of {env}, {rec.steps} steps in {rec.seconds:.1f} s; "
                  f"wrote {out}")


@app.command()
@friendly
def predict(
    model: Annotated[Path, typer.Option(help="Adapted model folder ('xloc adapt'), or a trained analogical model "
                                             "('xloc train --method alloc') with --references")],
    data: Annotated[Path, typer.Option(help="xloc .h5 file with the measurements")],
    env: Annotated[str, typer.Option(help="Environment of the measurements")],
    out: Annotated[Path, typer.Option("--out", "-o", help="CSV of predicted positions [m]")],
    split: Annotated[str, typer.Option(help="Split to predict")] = "test",
    references: Annotated[Path | None, typer.Option(help="Zero-shot methods (ALLoc): .h5 file with the "
                                                          "environment's labelled (CSI, position) pairs")] = None,
    references_split: Annotated[str, typer.Option(help="Split of --references to use")] = "train",
    coarse: Annotated[Path | None, typer.Option(help="Coarse-fix methods: CSV with coarse positions x_m,y_m (e.g. "
                                                     "GNSS), one row per measurement")] = None,
    coarse_error_m: Annotated[float | None, typer.Option(help="Coarse-fix methods, evaluation: simulate GNSS as "
                                                              "truth + U[-l, l] per axis with this l [m]")] = None,
    random_model: Annotated[Path | None, typer.Option(help="Coarse-fix methods without GNSS: a random-sampling "
                                                           "model ('xloc train --method alloc-random') gives the "
                                                           "coarse fix (ALLoc's iterative search)")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the simulated coarse positions")] = 0,
    track: Annotated[bool, typer.Option(help="ALLoc: the measurements are one user's track (in time order where "
                                             "the file has times): each is localized with the previous estimate "
                                             "as its coarse fix; only the first sample's coarse fix is used")] = False,
) -> None:
    """Predict positions [m] (LWLM ToA/AoA models: per-BS delays/angles) and, where the file has the truth, print
    the errors.

    Example: xloc predict --model adapted/ --data pl.h5 --env log_distance-s0 -o positions.csv"""
    from xloc.methods import get, load_model

    est = load_model(str(model))
    spec = get(est.method_name)
    fp = load_fingerprints(data, split)[split][env]
    refs = None
    if references is not None:
        if not spec.capabilities.zero_shot_references:
            raise typer.BadParameter(f"--references: {spec.name} does not localize from references at predict time")
        refs = load_fingerprints(references, references_split)[references_split][fp.name]
    if spec.capabilities.zero_shot_references and refs is None and not est.is_adapted:
        raise typer.BadParameter(f"{model} localizes from references: give --references DB.h5 with the "
                                 "environment's labelled pairs (or bind them first with 'xloc adapt')")
    start = None
    if spec.capabilities.needs_coarse_fix:
        start = _coarse_positions(fp, refs, coarse, coarse_error_m, random_model, seed)
    task = est.get_params().get("task")
    if task in ("toa", "aoa"):
        _write_channel_parameters(est.predict(fp.measurements), fp, str(task), out)
        return
    sigma = None
    if track:
        if not hasattr(est, "track") or start is None:
            raise typer.BadParameter(f"--track: {spec.name} does not localize from a coarse fix it could carry over")
        order = np.argsort(fp.time_s, kind="stable") if fp.time_s is not None else np.arange(len(fp))
        pred = np.empty((len(fp), 2))
        pred[order] = est.track(fp.measurements[order], start[order[0]], references=refs)
    elif hasattr(est, "predict_with_spread"):  # methods that give each position an uncertainty [m]
        pred, sigma = est.predict_with_spread(fp.measurements, references=refs, coarse_positions_m=start)
    else:
        pred = est.predict(fp.measurements, references=refs, coarse_positions_m=start)
    write_positions(pred, fp, out, sigma)


def _write_channel_parameters(pred: np.ndarray, fp: Fingerprints, task: str, out: Path) -> None:
    """LWLM ToA [s] / AoA [rad] per (user, BS) to CSV, with the error where the file holds the truth."""
    from xloc.learn.channel_tasks import task_errors

    key, scale, unit = ("toa_s", 1e9, "ns") if task == "toa" else ("aoa_rad", np.degrees(1.0), "deg")
    truth = None if fp.labels is None or key not in fp.labels else fp.labels[key]
    lines = [f"user,bs,{task}_{unit}" + (f",true_{task}_{unit}" if truth is not None else "")]
    for i in range(pred.shape[0]):
        for j in range(pred.shape[1]):
            row = f"{fp.point_ids[i]},{fp.environment.ap_ids[j]},{pred[i, j] * scale:.4f}"
            lines.append(row + (f",{truth[i, j] * scale:.4f}" if truth is not None else ""))
    atomic_write_text(out, "\n".join(lines) + "\n")
    if truth is None:
        console.print(f"{pred.size} {task} estimates -> {out}")
        return
    ok = np.isfinite(truth)
    err = task_errors(task, (pred * scale)[ok][:, None], (truth * scale)[ok][:, None])
    err_unit = "m of range" if task == "toa" else "deg"
    console.print(f"{pred.size} {task} estimates -> {out}; error mean {err.mean():.2f} {err_unit}, median "
                  f"{np.median(err):.2f}, p90 {np.percentile(err, 90):.2f}")


def _coarse_positions(fp: Fingerprints, refs: Fingerprints | None, coarse: Path | None, coarse_error_m: float | None,
                      random_model: Path | None, seed: int) -> np.ndarray:
    from xloc.data.csv_survey import read_csv_table
    from xloc.learn.alloc import coarse_from_truth
    from xloc.methods import get, load_model

    given = [o for o, v in (("--coarse", coarse), ("--coarse-error-m", coarse_error_m),
                            ("--random-model", random_model)) if v is not None]
    if len(given) != 1:
        raise typer.BadParameter("this model samples references around a coarse position: give exactly one of "
                                 f"--coarse CSV, --coarse-error-m L or --random-model DIR (got {given or 'none'})")
    if random_model is not None:
        rnd = load_model(str(random_model))
        if not get(rnd.method_name).capabilities.zero_shot_references or \
                get(rnd.method_name).capabilities.needs_coarse_fix:
            raise typer.BadParameter(f"{random_model} is not a random-sampling analogical model")
        return rnd.predict(fp.measurements, references=refs)
    if coarse is not None:
        start = read_csv_table(coarse).numeric(["x_m", "y_m"])
        if len(start) != len(fp):
            raise typer.BadParameter(f"{coarse}: {len(start)} rows, but {fp.name!r} has {len(fp)} measurements")
        return start
    return coarse_from_truth(fp.positions_m, float(coarse_error_m or 0.0), seed)
