"""The command palette: every screen, every encoder, and every binding of the current screen."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Iterator

from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider

from taxonomy_store.tui.tasks import palette_tasks

if TYPE_CHECKING:
    from taxonomy_store.tui.host import StoreHost


class TStoreCommands(Provider):
    """Screens to go to, encoders to use, and the actions bound on the current screen."""

    def _commands(self) -> Iterator[tuple[str, str, Callable[[], Any]]]:
        app: "StoreHost" = self.app  # type: ignore[assignment]  # TStoreApp is the host
        textual_app = self.app
        for mode, title in app.SCREEN_TITLES.items():
            yield f"Go to {title}", f"Switch to the {title} screen", partial(app.switch_mode, mode)
        for name in app.encoder_names:
            yield f"Use encoder {name}", "Show scores and neighbours under this encoder", partial(app.use_encoder, name)
        yield from palette_tasks(app)
        screen = self.screen
        seen: set[str] = set()
        for node, bindings in ((screen, getattr(screen, "BINDINGS", [])), (textual_app, textual_app.BINDINGS)):
            for b in bindings:
                if not isinstance(b, Binding) or not b.description or b.action in seen:
                    continue
                if b.action.startswith("switch_mode") or b.action in ("command_palette", "quit"):
                    continue
                seen.add(b.action)
                yield (f"{getattr(screen, 'PALETTE_PREFIX', '')}{b.description}", f"key: {b.key}",
                       partial(textual_app.run_action, b.action, node))

    async def discover(self) -> Hits:
        for title, help_text, command in self._commands():
            yield DiscoveryHit(title, command, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, command in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), command, text=title, help=help_text)
