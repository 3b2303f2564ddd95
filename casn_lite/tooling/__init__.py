"""The machinery that runs the method, apart from it: the ``python -m casn_lite`` command line
(``cli``) and its ``train`` command (``train_command``), profiles (``profiles``), the papermill
runner (``runner``) with its kernels, workers and folder lock (``kernels``, ``signals``,
``locks``), the notebooks' files (``notebooks``, ``pairs``, ``tidy``), student hand-outs
(``handouts``), smoke runs (``smoke``) and the GPU budget (``budget``).

The method (data, models, attention, losses, engine, evaluation, ...) never imports from here
(``tests/test_architecture.py``). Nothing is imported here, so importing one tool costs only
what that tool needs.
"""
