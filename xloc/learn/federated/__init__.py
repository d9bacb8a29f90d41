"""MetaLoc's distributed paradigm (section III-C/D, Fig. 6) on Flower (optional extra ``xloc[federated]``).

Every historical environment is a Flower client (a SuperNode) that keeps its fingerprints; only meta-parameters,
gradients of meta-parameters and scalars travel.

* **MAML-TS** -- each client meta-trains its own environment's parameters (``train.ts``) and keeps its reference
  fingerprint features. At meta-test the server sends the new environment's support features to every client
  (``query.mmd``); each returns only its MMD^2 (eq. 16) and the server adapts the closest set.
* **MAML-DG** -- Algorithm 3 as a server loop: per round two clients are drawn; client I gets theta and returns
  ``theta' = theta - beta grad F(theta)`` with ``grad F(theta)`` (``train.dg_inner``); client II gets theta' and
  returns ``w grad G(theta')`` (``train.dg_outer``); the server takes the Adam step on
  ``grad F(theta) + w grad G(theta')`` -- the first-order gradient of eq. (19). Validation losses and
  the adaptation step size come from ``evaluate.val`` (each client's own validation tasks).

The same seed and schedule give the centralised :class:`~xloc.learn.metaloc.MetaLoc`'s meta-parameters: domain
draws come from the server's stream ``[seed, 101]``, task draws from per-(iteration, role) streams the client
re-creates. Checkpoint choice differs only when validation is on (clients validate on their own tasks).

Every message in and out of a client passes :func:`~xloc.learn.federated.client.audit_mod`, which records it
(type, records, array shapes) and flags any outgoing array that carries a raw fingerprint or position row.

The package: ``protocol`` (run settings, message types, what may travel), ``client``, ``server``, ``audit`` (the
log and its leak check) and ``launch`` (simulation, loopback processes, a Flower App folder for deployment);
``apps`` holds the module-level Flower apps that a deployment's ``flwr run`` loads.
"""

from xloc.learn.federated.audit import read_audit
from xloc.learn.federated.client import audit_mod, make_client_app
from xloc.learn.federated.launch import run_loopback, run_simulation_mode, write_flower_app
from xloc.learn.federated.protocol import FEDERATED_PARADIGMS, INSTALL_HINT, FederatedRun, require_flwr
from xloc.learn.federated.server import federated_fit, make_server_app

__all__ = ["FederatedRun", "FEDERATED_PARADIGMS", "require_flwr", "make_client_app", "make_server_app",
           "federated_fit", "run_simulation_mode", "run_loopback", "write_flower_app", "audit_mod", "read_audit",
           "INSTALL_HINT"]
