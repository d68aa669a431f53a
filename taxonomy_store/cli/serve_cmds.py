"""`tstore serve`: the guard as an HTTP service (FastAPI + uvicorn); the app lives in `taxonomy_store.serve`."""

from __future__ import annotations

import os
import socket

import click

from taxonomy_store.errors import InvalidValue
from taxonomy_store.cli.app import Context, cli, pass_ctx
from taxonomy_store.cli.options import encoder_option

LOG_LEVELS = ("debug", "info", "warning", "error")


def _check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host.strip("[]"), port))
        except OSError as exc:
            raise InvalidValue(f"cannot listen on {host}:{port}: {exc.strerror or exc}", "pick another --port or --host") from exc


@cli.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on; beyond loopback a token is required.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="Port to listen on.")
@encoder_option("Encoder that answers [env TSTORE_ENCODER; default minilm].")
@click.option("--token", envvar="TSTORE_SERVE_TOKEN", default=None, metavar="T", show_envvar=False,
              help="Clients must send `Authorization: Bearer T` [env TSTORE_SERVE_TOKEN].")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Server processes; each loads the encoder and the vectors (memory x N).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch and BLAS threads per worker [default: theirs].")
@click.option("--max-text-chars", type=click.IntRange(min=1), default=None, help="Longest text accepted (413 beyond) [default: 100,000].")
@click.option("--max-batch", type=click.IntRange(min=1), default=256, show_default=True, help="Most texts in one request (413 beyond).")
@click.option("--batch-texts", type=click.IntRange(min=1), default=64, show_default=True,
              help="Most texts the encoder takes in one call when requests are batched together.")
@click.option("--batch-wait-ms", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="Under load, how long a batch waits for more requests (an idle server never waits).")
@click.option("--encode-batch", type=click.IntRange(min=1), default=None,
              help="Texts per forward pass within a batch [default: 8 on a CPU, the encoder's batch size on a GPU].")
@click.option("--poll", "poll_s", type=click.FloatRange(min=0.1), default=1.0, show_default=True,
              help="Seconds between looks for new data, labels, vectors or a new calibration.")
@click.option("--flag-uncertain", is_flag=True, default=False, help="Let an `uncertain` verdict set `flagged` in /v1/moderations.")
@click.option("--log-level", type=click.Choice(LOG_LEVELS), default="info", show_default=True, help="Server log level.")
@pass_ctx
def serve_cmd(ctx: Context, host, port, encoder, token, workers, threads, max_text_chars, max_batch, batch_texts,
              batch_wait_ms, encode_batch, poll_s, flag_uncertain, log_level) -> None:
    """Serve the guard over HTTP: POST /v1/moderations (OpenAI-compatible), POST /v1/query.

    Also GET /healthz, /readyz, /v1/info, /metrics (Prometheus) and /docs. The server opens the
    store read-only and picks up edits, imports, embeds and calibrations made by other processes
    within seconds, without a restart. Prompt text is never logged.
    """
    from taxonomy_store.serve.config import ServeConfig, StoreLocation

    extra = {"max_text_chars": max_text_chars} if max_text_chars else {}
    config = ServeConfig(
        location=StoreLocation(ctx.store_arg, ctx.db_url, ctx.chroma_url, ctx.chroma_token), encoder=encoder, token=token,
        host=host, port=port, workers=workers, threads=threads, max_batch=max_batch, batch_texts=batch_texts,
        batch_wait_ms=batch_wait_ms, encode_batch=encode_batch, poll_s=poll_s, flag_uncertain=flag_uncertain, **extra,
    )
    config.check_exposure()
    _run(config, log_level)


def _run(config, log_level: str) -> None:
    import uvicorn

    from taxonomy_store.serve.app import create_app, open_read_only
    from taxonomy_store.serve.config import CONFIG_ENV
    from taxonomy_store.serve.logs import configure

    store = open_read_only(config)  # a bad store, schema or encoder name fails here, before listening
    try:
        store.encoders.get(config.encoder or store.encoders.default_name())
    except Exception:
        store.close()
        raise
    _check_port_free(config.host, config.port)
    configure(log_level)
    where = f"http://{config.host}:{config.port}"
    click.echo(f"tstore serve: {where} (docs at {where}/docs){'' if config.token else ', no token'}; Ctrl-C stops", err=True)
    common = dict(host=config.host, port=config.port, log_level=log_level, access_log=False, timeout_graceful_shutdown=5)
    if config.workers == 1:
        uvicorn.run(create_app(config, store, close_store=True), **common)
        return
    store.close()
    os.environ[CONFIG_ENV] = config.to_env()
    # a worker loading torch on a busy machine answers the supervisor's health check late: give it time
    uvicorn.run("taxonomy_store.serve.app:app_from_env", factory=True, workers=config.workers, timeout_worker_healthcheck=120,
                **common)

