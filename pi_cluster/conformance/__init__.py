"""The conformance checks (``pi-cluster check``): testinfra tests, one module per scenario.

Flow: inventory -> :mod:`.run` (plan) -> :mod:`.batch` / :mod:`pi_cluster.remote` (one SSH batch per node
running :mod:`.probe`) -> ``test_<scenario>.evaluate`` (results) -> :mod:`.report` (table, JUnit, JSON).

Plain pytest works too::

    pytest -p pi_cluster.conformance.plugin --pyargs pi_cluster.conformance --inventory inventory/mycluster
"""
