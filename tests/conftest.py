import os

# The suite tests drivers and transports in-process; tests/test_agent.py turns the
# kong agent on for its own KONG_HOMEs (an agent per test home would outlive the test).
os.environ.setdefault("KONG_AGENT", "0")

pytest_plugins = ["tests.clusters", "tests.fixtures_state", "tests.faultsched"]
