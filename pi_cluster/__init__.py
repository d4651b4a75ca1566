"""pi-cluster: flash Raspberry Pis, provision k3s on them, and prove the cluster's Service networking works."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pi-cluster")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"
