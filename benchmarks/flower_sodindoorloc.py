"""MetaLoc over Flower on SODIndoorLoc against the centralised run (the table in docs/distributed.md).

    xloc import sodindoorloc --out sod.h5
    python benchmarks/flower_sodindoorloc.py sod.h5 OUT central|simulation|loopback ITERATIONS maml-dg|maml-ts \
        [DP_NOISE_MULTIPLIER DP_CLIP]

Clients: CETC331-F1, CETC331-F2, HCXY, SYL; the new environment CETC331-F3 is adapted with 10 labelled
fingerprints (seed 0) and tested on its test split. Run ``central`` first: the federated runs report their largest
parameter difference to it. With DP_NOISE_MULTIPLIER > 0, MAML-DG's gradients are clipped to DP_CLIP and noised
(docs/distributed.md). Prints one JSON line and writes OUT/MODE-PARADIGM-ITERATIONS[-dpZ-clipC].json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from xloc.data.fingerprints import FingerprintSet
from xloc.data.storage import load_fingerprints, save_fingerprints
from xloc.eval.metrics import localization_errors_m, summarize_errors
from xloc.eval.results import atomic_write_text
from xloc.learn import federated
from xloc.learn.federated import FederatedRun, read_audit
from xloc.learn.metaloc import MetaLoc

TARGET, K_SHOT = "CETC331-F3", 10


def main(data: str, out_root: str, mode: str, iterations: int, paradigm: str, dp_noise_multiplier: float = 0.0,
         dp_clip: float = 1.0) -> dict:
    sets = load_fingerprints(data)
    train, test = sets["train"], sets["test"]
    clients = [n for n in train if n != TARGET]
    hyper = {"iterations": iterations, "seed": 0}
    target = train[TARGET]
    support = target.subset(np.sort(np.random.default_rng(0).choice(len(target), K_SHOT, replace=False)))
    root = Path(out_root)
    root.mkdir(parents=True, exist_ok=True)
    support_path = root / "support.h5"
    save_fingerprints(support_path, {"train": FingerprintSet([support])})
    out = root / (f"{mode}-{paradigm}-{iterations}" + (f"-dp{dp_noise_multiplier:g}-clip{dp_clip:g}"
                                                        if dp_noise_multiplier > 0 else ""))
    t0 = time.perf_counter()
    if mode == "central":
        MetaLoc(paradigm, **hyper).fit(FingerprintSet([train[n] for n in clients])).save(out / "model")
        result: dict = {}
    else:
        ts = paradigm == "maml-ts"
        run = FederatedRun(paradigm, clients, str(Path(data).resolve()), str(out.resolve()), hyper,
                           support=str(support_path.resolve()) if ts else None, support_env=TARGET if ts else None,
                           audit_dir=str((out / "audit").resolve()), dp_noise_multiplier=dp_noise_multiplier,
                           dp_clip=dp_clip)
        result = federated.run_simulation_mode(run) if mode == "simulation" else federated.run_loopback(run)
        result["leak_findings"] = sum(len(e["leaks"]) for e in read_audit(out / "audit"))
    result["wall_s"] = time.perf_counter() - t0
    model = MetaLoc.load(out / "model")
    adapted = model.adapt(support, group=result.get("closest"))
    errors = localization_errors_m(adapted.predict(test[TARGET].measurements), test[TARGET].positions_m)
    result.update({"mode": mode, "paradigm": paradigm, "iterations": iterations, "clients": clients,
                   "target": TARGET, "k": K_SHOT, "group": adapted.group, "adapt_lr": model.adapt_lr_,
                   "error_m": summarize_errors(errors).as_dict()})
    central = root / f"central-{paradigm}-{iterations}" / "model"
    if mode != "central" and central.exists():
        ref = MetaLoc.load(central)
        result["max_param_diff_vs_central"] = max(
            float((ref.params_by_group_[g][k] - model.params_by_group_[g][k]).abs().max())
            for g in ref.params_by_group_ for k in ref.params_by_group_[g])
    atomic_write_text(root / f"{out.name}.json", json.dumps(result, indent=1, default=str))
    return result


if __name__ == "__main__":
    if len(sys.argv) not in (6, 8):
        sys.exit(__doc__)
    dp = (float(sys.argv[6]), float(sys.argv[7])) if len(sys.argv) == 8 else (0.0, 1.0)
    print(json.dumps(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], *dp), default=str))
