"""The service command."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from xloc.cli.common import app, console, friendly

#: The standard library's event loop, not uvloop: at saturation (64 connections on 2 cores) uvloop left some
#: connections waiting over a second (p99 1.3 s against 64 ms with asyncio, same throughput; docs/service.md).
LOOP = "asyncio"
#: uvicorn's httptools protocol with Nagle's algorithm off on every connection, also in worker processes.
HTTP = "xloc.serve.http:NoDelayHttpToolsProtocol"
#: BLAS/OpenMP threads per process when several share the cores: more than one makes them spin against each other
#: (2 processes x 2 OpenBLAS threads ran batches of 100 fingerprints 13x slower). Set by the user, they are kept.
_ONE_THREAD = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@app.command()
@friendly
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    db: Annotated[str, typer.Option(help="Reference store: a SQLite file path (default) or a postgresql:// URL")]
    = "xloc-store/store.db",
    models_dir: Annotated[Path, typer.Option(help="Folder for calibrated model versions")] = Path("xloc-store/models"),
    model: Annotated[list[str] | None, typer.Option(help="Register a trained base model as NAME=PATH (repeat): "
                                                         "a MetaLoc meta-model or an ALLoc model")] = None,
    max_request_mb: Annotated[float, typer.Option(help="Largest request body accepted [MiB]")] = 16.0,
    workers: Annotated[int, typer.Option(help="Server processes sharing the port, the store and the models folder")]
    = 1,
    job_lease_s: Annotated[float, typer.Option(help="A calibration job whose process stops renewing its lease for "
                                                    "this long [s] is marked failed")] = 30.0,
    keep_versions: Annotated[int, typer.Option(help="Model versions kept per environment (the pinned one is kept "
                                                    "besides)")] = 5,
) -> None:
    """Start the localization service (FastAPI + uvicorn). The admin key comes from XLOC_ADMIN_KEY.

    Example: XLOC_ADMIN_KEY=... xloc serve --db postgresql://user:pw@host/xloc --workers 2 --model maml=metaloc/"""

    import json

    import uvicorn

    from xloc.serve.app import CONFIG_ENV, create_app

    base = {}
    for item in model or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise typer.BadParameter(f"--model wants NAME=PATH, got {item!r}")
        base[name] = Path(path)
    admin_key = os.environ.get("XLOC_ADMIN_KEY")
    if not admin_key:
        console.print("[yellow]XLOC_ADMIN_KEY is not set: nobody can create environments[/]")
    if workers < 1:
        raise typer.BadParameter(f"--workers must be >= 1, got {workers}")
    settings = {"db_url": db, "models_dir": str(models_dir), "base_models": {k: str(v) for k, v in base.items()},
                "max_request_bytes": int(max_request_mb * 2**20), "job_lease_s": job_lease_s,
                "keep_versions": keep_versions}
    # built here once even with workers: a bad store, model or setting is reported before any process starts
    api = create_app(**{**settings, "base_models": base}, admin_key=admin_key)  # type: ignore[arg-type]
    dialect = api.state.service.db.dialect
    console.print(f"xloc service on http://{host}:{port} (store {dialect}, {workers} process(es), docs at /docs)")
    if workers == 1:
        uvicorn.run(api, host=host, port=port, log_level="warning", loop=LOOP, http=HTTP)
        return
    api.state.service.close()
    os.environ[CONFIG_ENV] = json.dumps(settings)
    for name in _ONE_THREAD:  # read by numpy and torch when the worker processes import them
        os.environ.setdefault(name, "1")
    uvicorn.run("xloc.serve.app:app_from_env", factory=True, workers=workers, host=host, port=port, loop=LOOP,
                http=HTTP, log_level="warning")
