"""The hub as a Jupyter server extension, for researchers in their own token-protected JupyterLab.

Enable with ``jupyter server --ServerApp.jpserver_extensions="{'smartsession.hub.extension': True}"``;
settings come from ``c.HubConfig`` in the server's config; routes live under the server's base URL.
"""

from __future__ import annotations

from smartsession.hub.server import Hub, HubConfig, hub_handlers


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "smartsession.hub.extension"}]


def _load_jupyter_server_extension(serverapp) -> None:
    hub = Hub(HubConfig(parent=serverapp))
    web_app = serverapp.web_app
    web_app.add_handlers(".*$", hub_handlers(hub, web_app.settings.get("base_url", "/")))
    web_app.settings["smartsession_hub"] = hub
    serverapp.log.info("smartsession hub at %ssmartsession/ (data in %s)", web_app.settings.get("base_url", "/"),
                       hub.config.data_dir)


async def _start_jupyter_server_extension(serverapp) -> None:
    await serverapp.web_app.settings["smartsession_hub"].start()
