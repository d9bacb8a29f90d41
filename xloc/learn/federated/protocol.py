"""The message protocol between the federated MetaLoc server and its clients: the run settings every message
carries, what a client may send back, and the conversion of tensors to Flower records.

Message types (server -> client, and the client's reply):

* ``query.hello`` -- run config; reply: config ``environment``.
* ``train.ts`` -- ``index`` of the environment; reply: arrays, its MAML-TS parameters.
* ``query.mmd`` -- ``index``, arrays ``x`` (support features); reply: metric ``mmd2`` (eq. 16).
* ``train.dg_inner`` -- ``iteration``, arrays theta; reply: arrays ``theta/*`` and ``grad/*``, metric ``F``.
* ``train.dg_outer`` -- ``iteration``, arrays theta'; reply: arrays w grad G(theta'), metric ``G``.
* ``evaluate.val`` -- ``index``, ``adapt_lr``, arrays theta; reply: metrics ``val_loss``, ``tasks``, ``lr_i``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from xloc.errors import DataValidationError
from xloc.learn.metaloc import ADAPT_LR_GRID, MetaLoc

__all__ = ["FEDERATED_PARADIGMS", "INSTALL_HINT", "ALLOWED_METRICS", "FederatedRun", "require_flwr", "run_of",
           "to_arrays", "to_tensors"]

FEDERATED_PARADIGMS = ("maml-ts", "maml-dg")
INSTALL_HINT = "Flower is not installed: pip install 'xloc[federated]' (flwr with its simulation runtime)"
#: What a client may send back, per message type (records and their keys; arrays are checked separately).
ALLOWED_METRICS = {"F", "G", "mmd2", "val_loss", "tasks", "train_s", *(f"lr_{i}" for i in range(len(ADAPT_LR_GRID)))}


def require_flwr() -> Any:
    try:
        import flwr
    except ImportError:
        raise DataValidationError(INSTALL_HINT) from None
    return flwr


@dataclass
class FederatedRun:
    """What the server and the clients agree on (JSON-serialisable; travels as Flower run config).

    ``environments`` orders the clients (the index of a client's environment keys its random streams);
    ``data`` is the .h5 file a client reads *its own* environment from (each SuperNode may point at its own
    file); ``support``/``support_env`` optionally name the new environment's support set for MAML-TS's MMD query.
    """

    paradigm: str
    environments: list[str]
    data: str
    out: str
    hyper: dict[str, Any] = field(default_factory=dict)
    split: str = "train"
    support: str | None = None
    support_env: str | None = None
    audit_dir: str | None = None
    #: seconds the server waits for a client's reply before the run stops with an error naming the client
    reply_timeout_s: float = 600.0
    #: MAML-DG with differential privacy: each gradient a client sends is clipped to L2 norm ``dp_clip`` and gets
    #: Gaussian noise of std ``dp_noise_multiplier * dp_clip`` (0: off); see :mod:`xloc.learn.federated.privacy`
    dp_noise_multiplier: float = 0.0
    dp_clip: float = 1.0
    dp_delta: float = 1e-5

    def __post_init__(self) -> None:
        if self.paradigm not in FEDERATED_PARADIGMS:
            raise DataValidationError(f"federated paradigm must be one of {FEDERATED_PARADIGMS}, got "
                                      f"{self.paradigm!r}")
        if self.paradigm == "maml-dg" and len(self.environments) < 2:
            raise DataValidationError("MAML-DG needs at least two client environments")
        if not self.environments or len(set(self.environments)) != len(self.environments):
            raise DataValidationError(f"environments must be distinct and non-empty, got {self.environments}")
        if not self.reply_timeout_s > 0:
            raise DataValidationError(f"reply_timeout_s must be > 0, got {self.reply_timeout_s}")
        if self.dp_noise_multiplier < 0 or not self.dp_clip > 0 or not 0 < self.dp_delta < 1:
            raise DataValidationError(f"dp_noise_multiplier must be >= 0, dp_clip > 0 and dp_delta in (0, 1); got "
                                      f"{self.dp_noise_multiplier}, {self.dp_clip}, {self.dp_delta}")
        if self.dp_noise_multiplier > 0 and self.paradigm != "maml-dg":
            raise DataValidationError("differential privacy is for MAML-DG's gradient messages; MAML-TS sends each "
                                      "client's whole trained model once (no per-step gradient to clip and noise)")
        if self.hyper.get("first_order", True) is False:
            raise DataValidationError("federated MAML-DG is first-order (Algorithm 3's messages carry no Hessians)")

    def metaloc(self) -> MetaLoc:
        return MetaLoc(self.paradigm, **self.hyper)

    def to_config(self) -> dict[str, str]:
        return {"xloc_run": json.dumps(asdict(self))}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> FederatedRun:
        if "xloc_run" not in config:
            raise DataValidationError("the Flower run config has no 'xloc_run' entry (start it with xloc federated)")
        return cls(**json.loads(str(config["xloc_run"])))


def run_of(msg: Any) -> FederatedRun:
    """The run settings travel in every request's config record (simulation has no app config file)."""
    return FederatedRun.from_config(dict(msg.content["config"]))


def to_arrays(params: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Flower records carrying ``params``: one flat array (record ``arrays``, key ``packed``) and its layout
    (record ``layout``: names, shapes, dtypes), to be merged into a message's content.

    One array rather than one per tensor: Flower moves every array as an object of its own, one HTTP request
    each, and those requests, not the bytes, set the cost of a message (MAML-DG's reply of 12 tensors took 17
    object transfers; packed, it takes 6). Values are concatenated in the widest dtype and cast back on
    arrival, so they travel exactly."""
    from flwr.app import Array, ArrayRecord, ConfigRecord

    names = list(params)
    values = [params[k].detach().cpu().numpy() for k in names]
    wide = np.result_type(*values) if values else np.dtype(np.float32)
    flat = np.concatenate([v.astype(wide).ravel() for v in values]) if values else np.zeros(0, wide)
    layout = ConfigRecord({"names": names, "shapes": json.dumps([list(v.shape) for v in values]),
                           "dtypes": [str(v.dtype) for v in values]})
    return {"arrays": ArrayRecord({"packed": Array(flat)}), "layout": layout}


def to_tensors(content: Any) -> dict[str, torch.Tensor]:
    """The tensors that :func:`to_arrays` put into a message's ``content``, by name, in their own dtypes."""
    layout = content["layout"]
    flat = np.asarray(content["arrays"]["packed"].numpy())
    names, dtypes, shapes = list(layout["names"]), list(layout["dtypes"]), json.loads(str(layout["shapes"]))
    if not len(names) == len(dtypes) == len(shapes) or sum(int(np.prod(s)) for s in shapes) != flat.size:
        raise DataValidationError(f"a message's layout ({len(names)} arrays) does not match its {flat.size} values")
    out, start = {}, 0
    for name, dtype, shape in zip(names, dtypes, shapes, strict=True):
        size = int(np.prod(shape))
        out[name] = torch.from_numpy(flat[start:start + size].astype(dtype).reshape(shape))
        start += size
    return out
