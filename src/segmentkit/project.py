"""The project a notebook or script works in, and its paths resolved from it.

A project is the directory holding ``params.yaml``: the CLI runs there, and the
paths in ``params.yaml`` (the event log, the demo log, ``models_dir``, an sqlite
tracking store) are relative to it. A notebook's kernel may start anywhere (in
``notebooks/``, at the root, in a temporary directory), so the notebooks find the
project with :func:`find_project` and resolve every default from it, never from the
kernel's working directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from segmentkit.config import Config, load_config
from segmentkit.errors import ConfigError
from segmentkit.text import is_mlflow_uri

__all__ = ["PROJECT_ENV", "Project", "find_project"]

PROJECT_ENV = "SEGMENTKIT_PROJECT"
_MARKER = "params.yaml"


@dataclass(frozen=True)
class Project:
    """A project directory and its ``params.yaml``.

    Attributes
    ----------
    root : Path
        Absolute directory holding ``params.yaml``.
    config : Config
        Its parameters.
    """

    root: Path
    config: Config

    def path(self, value: str | Path) -> Path:
        """``value`` as an absolute path: relative paths are taken from :attr:`root`."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.root / path

    @property
    def events(self) -> str:
        """The event log: ``data.events``, else the demo log path (may contain a glob).

        A URI (``s3://bucket/events/*.parquet``) is returned as it is: as a path it
        would lose a slash and be taken from :attr:`root`.
        """
        events = self.config.data.events or self.config.data.demo.path
        return str(events) if "://" in str(events) else str(self.path(events))

    @property
    def model_path(self) -> Path:
        """The bundle ``segmentkit train`` saves: ``<models_dir>/<registered_model>``."""
        tracking = self.config.tracking
        return self.path(tracking.models_dir) / tracking.registered_model

    @property
    def reports_dir(self) -> Path:
        """Where ``segmentkit refresh`` writes ``refresh-<as_of>/drift.{json,md}`` by default."""
        return self.root / "reports"

    @property
    def tracking_uri(self) -> str:
        """Tracking URI: params, else ``MLFLOW_TRACKING_URI``, else ``<root>/mlflow.db``.

        A relative sqlite file is taken from the project root (the CLI's working
        directory), not from wherever the kernel runs.
        """
        uri = (
            self.config.tracking.tracking_uri
            or os.environ.get("MLFLOW_TRACKING_URI")
            or "sqlite:///mlflow.db"
        )
        prefix = "sqlite:///"
        if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
            return prefix + str(self.root / uri[len(prefix) :])
        return uri

    def model_uri(self, uri: str | Path | None = None) -> str:
        """Return a model reference for :func:`segmentkit.load` (the project bundle by default).

        MLflow URIs (``models:/NAME@champion``) are returned as they are; relative
        bundle paths are taken from :attr:`root`.
        """
        if uri is None:
            return str(self.model_path)
        return str(uri) if is_mlflow_uri(str(uri)) else str(self.path(uri))


def _holding_marker(start: Path) -> Path | None:
    for directory in (start, *start.parents):
        if (directory / _MARKER).is_file():
            return directory
    return None


def find_project(start: str | Path | None = None) -> Project:
    """Find the project directory (the one holding ``params.yaml``) and read its params.

    Parameters
    ----------
    start : str or Path, optional
        A directory in the project (it or a parent holds ``params.yaml``). Without
        it, in order: the ``SEGMENTKIT_PROJECT`` environment variable; the working
        directory or one of its parents (Jupyter starts kernels in the notebook's
        directory, e.g. ``notebooks/``); the source checkout segmentkit is
        installed from (``pip install -e .``).

    Returns
    -------
    Project

    Raises
    ------
    ConfigError
        No ``params.yaml`` was found, or it is invalid.
    """
    if start is not None:
        candidates = [Path(start)]
    else:
        env = os.environ.get(PROJECT_ENV)
        candidates = [Path(env)] if env else []
        candidates += [Path.cwd(), Path(__file__).resolve().parent]
    for candidate in candidates:
        root = _holding_marker(candidate.expanduser().resolve())
        if root is not None:
            return Project(root=root, config=load_config(root / _MARKER))
    where = ", ".join(str(c) for c in candidates)
    raise ConfigError(
        f"no {_MARKER} found in {where} or their parents: pass the project directory "
        f"(find_project(path) / the notebook's `project` parameter) or set {PROJECT_ENV}"
    )
