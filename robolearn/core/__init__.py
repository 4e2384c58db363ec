"""Types, math and utilities every other package builds on.

Nothing is re-exported here on purpose: `robolearn.core.errors` must stay importable without torch
(the deployment runtime imports it on robot computers), so import from the submodules.
"""
