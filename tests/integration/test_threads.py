"""The OpenMP waiting defaults the package sets when it is imported (docs/results/speed.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def environment_after_import(**given: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(given)
    code = "import os, json, ur4rec_recbole; print(json.dumps({k: os.environ.get(k) for k in " \
           "('OMP_WAIT_POLICY', 'GOMP_SPINCOUNT')}))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("given, expected", [
    ({}, {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "1000"}),  # the shipped default
    ({"GOMP_SPINCOUNT": "5"}, {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "5"}),  # the user's spin count kept
    ({"OMP_WAIT_POLICY": "ACTIVE"}, {"OMP_WAIT_POLICY": "ACTIVE", "GOMP_SPINCOUNT": None}),  # the user's policy rules
    ({"OMP_WAIT_POLICY": ""}, {"OMP_WAIT_POLICY": "", "GOMP_SPINCOUNT": None}),  # empty: the runtime's default
])
def test_openmp_waiting_defaults_never_override_the_users(given, expected):
    assert environment_after_import(**given) == expected
