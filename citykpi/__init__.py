"""citykpi: coverage indicators for a province's smart-city infrastructure.

This package is the command line, `citykpi …`, which assembles every package's commands, and the service's
database as their migrations in order. The layout of the code: README.md, "How the code is laid out".
"""

__version__ = "0.1.0"
