"""``sharewise feed-server`` and ``sharewise token create|revoke``: the traders' websocket feed and its tokens."""

from __future__ import annotations

from datetime import datetime, timezone
import asyncio
import sys
from typing import Any

import typer

from engine.cli.console import clean_errors, err, fail, out
from engine.cli.environment import load_settings
from engine.cli.logs import setup_logging
from engine.cli.runtime import services, with_database
from engine.errors import ConfigError
from engine.settings import Settings
from engine.tokens import FEED_CHANNELS, TokenIssuer, TokenRejected, check_channels, parse_ttl
from sinks.feed.secret import load_secret

token_app = typer.Typer(help="Create and revoke websocket feed tokens.", no_args_is_help=True)


@clean_errors
def feed_server(
    host: str = typer.Option(None, help="Listen address (default: SHAREWISE_WS_HOST, else 127.0.0.1)."),
    port: int = typer.Option(None, min=0, help="Port, 0 for any free one (default: SHAREWISE_WS_PORT, else 8765)."),
    bar_history: int = typer.Option(200_000, min=1, help="Bars kept for resume (since_seq), newest first."),
    history_days: float = typer.Option(30.0, min=0.01, help="Days signals, orders and notifications are kept."),
) -> None:
    """Serve the websocket signal feed and the live page until Ctrl-C; prints its address on start."""
    from datetime import timedelta

    from engine.cli.assemble import prepare
    from sinks.feed.config import FeedConfig
    from sinks.feed.server import FeedServer, serve_feed

    settings = load_settings()
    config = FeedConfig(bars_kept=bar_history, personal_kept=timedelta(days=history_days))
    setup_logging(settings, "feed-server")

    def announce(server: FeedServer) -> None:
        out.print(f"feed server on {server.address}  (page: http{server.address[2:]}, Ctrl-C to stop)", soft_wrap=True)

    async def run() -> None:
        from engine.cli.pipeline_cmd import stop_event

        with services(settings) as rt:
            assert rt.dsn and rt.bootstrap
            await prepare(settings, rt.dsn, rt.bootstrap)
            from streams import metrics

            metrics_port = metrics.serve(settings)
            if metrics_port is not None:
                out.print(f"metrics on http://{settings.metrics_host}:{metrics_port}/metrics")
            try:
                await serve_feed(settings, rt.dsn, rt.bootstrap, host=host, port=port, stop=stop_event(),
                                 config=config, on_ready=announce)
            finally:
                metrics.release(settings)
        out.print("feed server stopped")

    asyncio.run(run())


@token_app.command("create")
@clean_errors
def token_create(
    user: str = typer.Option(..., "--user", help="Email of the user the token speaks for."),
    ttl: str = typer.Option("1d", "--ttl", help="Lifetime: 90s, 30m, 12h, 1d, 2w."),
    channels: str = typer.Option(",".join(FEED_CHANNELS), "--channels",
                                 help="Comma-separated channels the token may read."),
) -> None:
    """Print a new signed token (stdout, alone on its line); its id and expiry go to stderr."""
    from sinks.feed.accounts import record_token, user_id_for

    settings = load_settings()
    lifetime = parse_ttl(ttl)
    wanted = check_channels(tuple(c.strip() for c in channels.split(",") if c.strip()))
    issuer = TokenIssuer(load_secret(settings))

    async def create(conn: Any) -> tuple[str, Any]:
        token, claims = issuer.issue(await user_id_for(conn, user), lifetime, wanted, now=datetime.now(timezone.utc))
        await record_token(conn, claims)
        return token, claims

    token, claims = with_database(settings, create)
    sys.stdout.write(token + "\n")
    err.print(f"token {claims.jti} for {user}, channels {', '.join(claims.channels)}, "
              f"expires {claims.expires_at.isoformat()}", soft_wrap=True)


@token_app.command("revoke")
@clean_errors
def token_revoke(
    token: str = typer.Argument(None, help="The token to revoke ('-' reads it from stdin)."),
    jti: str = typer.Option(None, "--jti", help="Revoke by token id instead (printed by token create)."),
) -> None:
    """Revoke a token: new sessions are refused and open ones close with 4401 within seconds."""
    from sinks.feed.accounts import revoke_token

    settings = load_settings()
    token_id = _token_id(settings, token, jti)

    async def revoke(conn: Any) -> Any:
        return await revoke_token(conn, token_id)

    record, changed = with_database(settings, revoke)
    state = "revoked" if changed else "was already revoked"
    out.print(f"token {record.jti} of {record.email} {state}", soft_wrap=True)


def _token_id(settings: Settings, token: str | None, jti: str | None) -> str:
    if (token is None) == (jti is None):
        raise fail("give either a TOKEN or --jti JTI")
    if jti is not None:
        return _uuid(jti)
    text = sys.stdin.readline().strip() if token == "-" else token
    try:
        return TokenIssuer(load_secret(settings)).verify(text, now=None).jti
    except TokenRejected:
        raise ConfigError("that token was not signed with this engine's secret (or is malformed)") from None


def _uuid(text: str) -> str:
    import uuid

    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise ConfigError(f"--jti must be a token id (a UUID), got {text[:60]!r}") from None



def register(app: typer.Typer) -> None:
    app.command("feed-server")(feed_server)
    app.add_typer(token_app, name="token")
