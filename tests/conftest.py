"""Shared test setup: every asyncio test runs on uvloop, the loop the CLI uses."""
import uvloop
from hypothesis import settings

# Property tests bound their examples, not their time: a per-example deadline only measures how
# loaded the machine is (CI shares two cores with the backends each test starts).
settings.register_profile("virtserve", deadline=None)
settings.load_profile("virtserve")


def pytest_asyncio_loop_factories(config, item):
    return {"uvloop": uvloop.new_event_loop}


pytest_plugins = ["pytester"]
