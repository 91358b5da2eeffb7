"""Shared test setup: every asyncio test runs on uvloop, the loop the CLI uses."""
import uvloop


def pytest_asyncio_loop_factories(config, item):
    return {"uvloop": uvloop.new_event_loop}
pytest_plugins = ["pytester"]
