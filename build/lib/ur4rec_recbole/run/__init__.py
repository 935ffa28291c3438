"""Run modes: one run, ``--compare``, ``--hyper``, multi-GPU; all start from :func:`prepare.prepare_run`."""
