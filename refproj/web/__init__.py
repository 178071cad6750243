"""The console's HTTP service (``refproj serve``): ``create_app(projection, token=...)``.

Needs the ``web`` extra: ``pip install 'refproj[web]'``.
"""

from refproj.web.app import create_app

__all__ = ["create_app"]
