"""The Jupyter kernels the runner starts: the project's kernel name (``KERNEL``), which
kernel to use when none is given (``default_kernel``), a ``--kernel`` checked before anything
runs (``check_kernel``), and a kernel manager that talks to its kernel through Unix sockets.
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from traitlets import CaselessStrEnum, default

from .profiles import ReproduceError

__all__ = ["KERNEL", "KERNEL_MANAGER", "QUIET_KERNEL", "default_kernel", "check_kernel"]


# The Jupyter kernel every notebook names in its metadata; `make install` registers it for the
# project's .venv, so papermill or `jupyter nbconvert --execute` started from any Jupyter
# runs the notebooks where casn_lite is installed.
KERNEL = "casn-lite"


def default_kernel() -> str:
    """The project's kernel when it is registered for the environment this runs in, else
    ``python3``, this interpreter's own (a machine set up without `make install`, such as a
    lent GPU, or a kernel registered by another clone)."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        argv = KernelSpecManager().get_kernel_spec(KERNEL).argv
    except NoSuchKernel:
        print(f"note: no Jupyter kernel named {KERNEL!r} (`make install` registers it); using python3")
        return "python3"
    if Path(argv[0]).absolute().parent != Path(sys.executable).absolute().parent:
        print(f"note: the {KERNEL!r} kernel runs {argv[0]}, not this environment; using python3 "
              "(`make kernel` points it here)")
        return "python3"
    return KERNEL


def check_kernel(kernel: str) -> None:
    """Refuse an unknown ``--kernel`` before any notebook starts, naming the installed ones."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    manager = KernelSpecManager()
    try:
        manager.get_kernel_spec(kernel)
    except NoSuchKernel:
        raise ReproduceError(f"--kernel: no Jupyter kernel named {kernel!r}; installed: "
                             f"{', '.join(sorted(manager.find_kernel_specs()))}") from None


class _LocalKernelManager(AsyncKernelManager):
    """A kernel reached through Unix sockets (files in Jupyter's runtime folder) rather than
    TCP ports: choosing a free port and the kernel binding it are two steps, and under load
    another process (another notebook's kernel) can take the port in between ("Address already
    in use"; the kernel dies before it starts)."""

    transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)

    @default("ip")
    def _ip_default(self) -> str:
        # the sockets' path, absolute and this kernel's own (the client and the kernel run in
        # different folders; jupyter_client's default, "kernel-ipc", is relative and shared)
        return os.path.join(tempfile.gettempdir(), f"casn-lite-kernel-{secrets.token_hex(8)}")


KERNEL_MANAGER = {"kernel_manager_class": _LocalKernelManager} if os.name == "posix" else {}

QUIET_KERNEL = ["--IPKernelApp.log_level=CRITICAL"]  # no TCP warning per notebook, no ZMQError as a stopped one ends
