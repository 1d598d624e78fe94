"""corral.asgi: the ASGI 3 interface, pure: detecting an ASGI app, building scopes, lifespan.

The I/O is the ASGI worker's (``corral.worker.aio``): it drives the same sans-IO HTTP/1.1 core
(``corral.http``) as the WSGI worker and calls the app through what is defined here.
"""

from corral.asgi.detect import AsgiApp, choose_interface, interface_for, is_asgi

__all__ = ["AsgiApp", "choose_interface", "interface_for", "is_asgi"]
