"""The service command."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from xloc.cli.common import app, console, friendly


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
) -> None:
    """Start the localization service (FastAPI + uvicorn). The admin key comes from XLOC_ADMIN_KEY."""

    import uvicorn

    from xloc.serve.app import create_app

    base = {}
    for item in model or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise typer.BadParameter(f"--model wants NAME=PATH, got {item!r}")
        base[name] = Path(path)
    admin_key = os.environ.get("XLOC_ADMIN_KEY")
    if not admin_key:
        console.print("[yellow]XLOC_ADMIN_KEY is not set: nobody can create environments[/]")
    api = create_app(db, models_dir, base_models=base, admin_key=admin_key,
                     max_request_bytes=int(max_request_mb * 2**20))
    console.print(f"xloc service on http://{host}:{port} (store {api.state.service.db.dialect}, docs at /docs)")
    uvicorn.run(api, host=host, port=port, log_level="warning")
