"""Channel providers: one module per provider, all behind :class:`providers.base.Provider`.

``REGISTRY`` is the explicit, readable list of real providers (name -> class).
Each class declares ``name``, ``channel`` and ``config_model`` and is built as
``cls(config, client)``. The sandbox provider is separate: it serves any channel.
"""

from __future__ import annotations

from typing import Any

REGISTRY: dict[str, Any] = {}

__all__ = ["REGISTRY"]
