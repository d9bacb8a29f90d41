"""A long-lived ClientApp process for one SuperNode: the work of Flower's SuperExec and ``flwr-clientapp`` in one
process that stays up between messages.

With ``flower-supernode --isolation process`` the SuperNode launches nothing; something must claim each task from
its runtime API and run the ClientApp. Flower's own ``flower-superexec`` starts a fresh ``flwr-clientapp`` process
per message (importing torch and xloc and opening the client's file each time: seconds on a small machine). This
worker claims tasks in a loop and runs them in-process, so the imports, the client's data and its task sampler are
paid for once. The per-task steps are Flower 1.41's own (``flwr.supernode.runtime.run_clientapp``: pull the task
input, run the app, push the reply and the task output); the ``flwr`` pin in ``pyproject.toml`` keeps them valid.

    python -m xloc.learn.federated.worker --runtime-api-address 127.0.0.1:9094 --insecure
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from typing import Any

__all__ = ["serve_client_tasks", "run_one_task", "main"]

_log = logging.getLogger(__name__)


def _client(address: str, insecure: bool, root_certificates: bytes | None, component: str,
            token: str | None = None) -> Any:
    from flwr.supercore.interceptors import RuntimeTokenHttpInterceptor, RuntimeVersionHttpInterceptor
    from flwr.supercore.retry import make_simple_http_retry_invoker
    from flwr.supercore.runtime import RuntimeHttpClient

    interceptors: list[Any] = [RuntimeVersionHttpInterceptor(component_name=component)]
    if token is not None:
        interceptors.append(RuntimeTokenHttpInterceptor(token))
    return RuntimeHttpClient.from_server_address(server_address=address, insecure=insecure,
                                                 root_certificates=root_certificates, interceptors=interceptors,
                                                 retry_invoker=make_simple_http_retry_invoker())


def run_one_task(address: str, token: str, *, insecure: bool = True, root_certificates: bytes | None = None,
                 apps: dict[str, Any] | None = None) -> bool:
    """Run the ClientApp task behind ``token`` in this process; ``apps`` caches loaded ClientApps by FAB hash.
    True when the app answered, False when it raised (the error goes back to the server as Flower's would)."""
    from flwr.app import Message
    from flwr.app.error import Error
    from flwr.cli.install import install_from_fab
    from flwr.clientapp.utils import get_load_client_app_fn
    from flwr.common.constant import ErrorCode, SubStatus
    from flwr.supercore.heartbeat import HeartbeatSender, make_task_heartbeat_fn_http
    from flwr.supernode.runtime.run_clientapp import pull_task_input, push_message, push_task_output

    apps = {} if apps is None else apps
    client = _client(address, insecure, root_certificates, "flwr-clientapp", token)
    heartbeat = HeartbeatSender(make_task_heartbeat_fn_http(client))
    heartbeat.start()
    context = None
    status, details, ok = SubStatus.FAILED, "ClientApp task failed", False
    try:
        message, context, run, fab = pull_task_input(client)
        try:
            if fab.hash_str not in apps:
                install_from_fab(fab.content, skip_prompt=True)
                load = get_load_client_app_fn(default_app_ref="", app_path=None, multi_app=True)
                apps[fab.hash_str] = load(run.fab_id, run.fab_version, fab.hash_str)
            reply = apps[fab.hash_str](message=message, context=context)
            status, details, ok = SubStatus.COMPLETED, "", True
        except Exception as exc:  # the app's error goes to the server as a Flower error reply, as flwr-clientapp does
            _log.exception("the ClientApp raised")
            details = f"{type(exc).__name__}: {exc}"
            reply = Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=details), reply_to=message)
        push_message(client, reply, context)
    finally:
        push_task_output(client=client, context=context, sub_status=status, details=details)
        heartbeat.stop()
        client.close()
    return ok


def serve_client_tasks(address: str, *, insecure: bool = True, root_certificates: bytes | None = None,
                       poll_s: float = 0.1, stop: Callable[[], bool] | None = None) -> int:
    """Claim ClientApp tasks from the SuperNode's runtime API at ``address`` and run them here until ``stop()``
    (or forever); returns the number of tasks run. Idle polls back off from 1 ms to ``poll_s`` seconds."""
    from flwr.proto.runtime_pb2 import AcquireTaskRequest
    from flwr.supercore.constant import TaskType

    from xloc.learn.federated.waits import Backoff, shorten_object_pulls

    shorten_object_pulls()

    superexec = _client(address, insecure, root_certificates, "SuperExec")
    apps: dict[str, Any] = {}
    done = 0
    idle = Backoff(poll_s)
    try:
        while stop is None or not stop():
            res = superexec.AcquireTask(AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP.value],
                                                           agentapp_fab_hashes=[]))
            if res.HasField("task") and res.token:
                run_one_task(address, res.token, insecure=insecure, root_certificates=root_certificates, apps=apps)
                done += 1
                idle.reset()
            else:
                idle.wait()
    finally:
        superexec.close()
    return done


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run one SuperNode's ClientApp tasks in this long-lived process")
    parser.add_argument("--runtime-api-address", required=True, help="the SuperNode's runtime API (host:port)")
    parser.add_argument("--insecure", action="store_true", help="plain HTTP to the runtime API")
    parser.add_argument("--root-certificates", help="CA certificate (PEM) of the runtime API's TLS")
    parser.add_argument("--poll-s", type=float, default=0.1,
                        help="longest wait [s] between task polls when idle")
    args = parser.parse_args(argv)
    if not args.insecure and not args.root_certificates:
        parser.error("give --root-certificates, or --insecure for plain HTTP")
    certificates = None if args.insecure else open(args.root_certificates, "rb").read()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll otherwise
    serve_client_tasks(args.runtime_api_address, insecure=args.insecure, root_certificates=certificates,
                       poll_s=args.poll_s)


if __name__ == "__main__":
    main()
