pytest_plugins = ["tests.clusters", "tests.fixtures_state"]
