"""Every localization method by name (DESIGN.md, "Estimator API and the method registry").

``create("maml-dg", seed=0, iterations=200)`` gives a fresh estimator; ``get(name)`` its spec (description, data
kinds, typed config, capabilities); ``load_model(path)`` any saved estimator. Each module below registers one
family; adding a method is one module plus its ``register(...)`` call, imported here.
"""

from __future__ import annotations

# Registration order is the order methods are listed in: baselines, then the four systems.
from xloc.methods import knn  # noqa: F401  # isort: skip
from xloc.methods import mlp  # noqa: F401  # isort: skip
from xloc.methods import metaloc  # noqa: F401  # isort: skip
from xloc.methods import graph  # noqa: F401  # isort: skip
from xloc.methods import analogical  # noqa: F401  # isort: skip
from xloc.methods import csi_nets  # noqa: F401  # isort: skip
from xloc.methods import lwlm  # noqa: F401  # isort: skip
from xloc.methods import model_based  # noqa: F401  # isort: skip
from xloc.methods import drift  # noqa: F401  # isort: skip
from xloc.methods import ilcl  # noqa: F401  # isort: skip
from xloc.methods import confi  # noqa: F401  # isort: skip
from xloc.methods import propagation  # noqa: F401  # isort: skip
from xloc.methods import auto  # noqa: F401  # isort: skip
from xloc.methods.registry import (
    Capabilities,
    MethodSpec,
    create,
    get,
    load_model,
    methods_for_kind,
    names,
    register,
    specs,
)

__all__ = ["Capabilities", "MethodSpec", "create", "get", "load_model", "methods_for_kind", "names", "register",
           "specs"]
