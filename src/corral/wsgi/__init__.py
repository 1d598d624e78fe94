"""corral.wsgi: the PEP 3333 adapter, pure (no sockets).

``environ`` builds the environ, ``input`` is ``wsgi.input`` over a body source callback,
``response`` holds ``start_response``/``write`` bookkeeping and ``wsgi.file_wrapper``.
"""

from corral.wsgi.environ import build_environ, connection_environ, decode_path, split_host
from corral.wsgi.input import BodyError, BodySource, ChunksSource, InputStream, empty_source
from corral.wsgi.response import FileWrapper, StartResponse, encode_headers, parse_status
from corral.wsgi.types import WSGIApp

__all__ = [
    "BodyError",
    "BodySource",
    "ChunksSource",
    "FileWrapper",
    "InputStream",
    "StartResponse",
    "WSGIApp",
    "build_environ",
    "connection_environ",
    "decode_path",
    "empty_source",
    "encode_headers",
    "parse_status",
    "split_host",
]
