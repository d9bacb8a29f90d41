"""Module-level Flower apps for deployment (``flwr run`` on a SuperLink): the components named in the Flower App
that :func:`xloc.learn.federated.launch.write_flower_app` writes. Importing this module needs ``xloc[federated]``."""

from xloc.learn.federated.client import make_client_app
from xloc.learn.federated.server import make_server_app

client_app = make_client_app()
server_app = make_server_app()
