"""The hub as a Jupyter server extension, for researchers in their own token-protected JupyterLab.

Enable with ``jupyter server --ServerApp.jpserver_extensions="{'smartsession.hub.extension': True}"``;
settings come from ``c.HubConfig`` in the server's config; routes live under the server's base URL.
"""

from __future__ import annotations

from smartsession.hub.config import HubConfig
from smartsession.hub.core import Hub
from smartsession.hub.server import hub_handlers
from smartsession.seams import check
from smartsession.seams.jupyter import EXTENSION_SEAMS, ServerStartedExtension


class HubExtension(ServerStartedExtension):
    """Starts the hub with the server and stops it at shutdown, so the store commits what it holds."""

    name = "smartsession.hub.extension"
    load_other_extensions = True

    def initialize_settings(self) -> None:
        check(EXTENSION_SEAMS)
        self.hub = Hub(HubConfig(parent=self.serverapp))

    def initialize_handlers(self) -> None:
        # ExtensionApp puts the server's base URL in front of every pattern.
        self.handlers.extend(hub_handlers(self.hub))
        self.log.info("smartsession hub at %ssmartsession/ (data in %s)",
                      self.serverapp.web_app.settings.get("base_url", "/"), self.hub.config.data_dir)

    async def started(self) -> None:
        await self.hub.start()

    async def stop_extension(self) -> None:
        await self.hub.stop()
        self.log.info("smartsession hub stopped; its store is committed")


def _jupyter_server_extension_points() -> list[dict]:
    return [{"module": "smartsession.hub.extension", "app": HubExtension}]
