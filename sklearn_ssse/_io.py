"""Crash-safe saving and loading of fitted models."""

from __future__ import annotations

import os
import tempfile

import joblib

__all__ = ["load", "save"]


def save(model, path, *, compress=0) -> None:
    """Save ``model`` to ``path`` atomically: a crash never leaves a truncated file.

    The model is written with :func:`joblib.dump` to a temporary file in the same directory,
    flushed and ``fsync``-ed, then moved over ``path`` with :func:`os.replace` (atomic on POSIX
    and Windows) and the directory entry is synced.  If the process dies at any point, ``path``
    holds either the previous save, intact, or the new one; at worst a stray hidden
    ``.<name>.*.tmp`` file is left next to it.

    Parameters
    ----------
    model : object
        Typically a fitted :class:`~sklearn_ssse.UnlearnableClassifier` (its state is sealed;
        the seal is verified when it is loaded).
    path : str or os.PathLike
        Destination file; its directory must exist.
    compress : int or bool or str or tuple, default=0
        Passed to :func:`joblib.dump`.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            joblib.dump(model, f, compress=compress)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if hasattr(os, "O_DIRECTORY"):  # persist the rename itself (POSIX)
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def load(path, *, mmap_mode=None):
    """Load a model saved with :func:`save` (or :func:`joblib.dump`).

    Loading an :class:`~sklearn_ssse.UnlearnableClassifier` verifies its seal: a model whose
    saved state was modified or corrupted raises :class:`~sklearn_ssse.SealError`.

    Parameters
    ----------
    path : str or os.PathLike
        The saved file.
    mmap_mode : {None, "r", "c"}, default=None
        Passed to :func:`joblib.load`. ``"r"`` maps arrays read-only: such a model predicts
        but cannot ``forget`` (it writes its parameters); ``"c"`` (copy-on-write) can.

    Returns
    -------
    model : object
        The loaded object.
    """
    return joblib.load(os.fspath(path), mmap_mode=mmap_mode)
