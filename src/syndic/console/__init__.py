"""The web console at ``/ui`` on a member's admin port: hand-written static
assets (no build step, no third-party URL) and the JSON endpoints they call."""

from syndic.console.routes import add_console_routes

__all__ = ["add_console_routes"]
