"""loglake: raw AWS audit logs -> a read-ready ORC data lake. See README.md."""

__version__ = "0.1.0"
