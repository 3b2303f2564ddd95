"""Helpers shared by tests (not fixtures)."""

import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_example(path, *argv: str) -> int:
    """Run an example script's ``main()`` in this process, as ``python path argv...`` would,
    and return its exit status (argparse's errors included); no interpreter start-up."""
    import importlib.util
    import sys
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(f"example_{Path(path).stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    saved, sys.argv = sys.argv, [str(path), *map(str, argv)]
    try:
        return module.main()
    except SystemExit as stop:
        return stop.code
    finally:
        sys.argv = saved
