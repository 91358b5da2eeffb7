"""virtserve: a layer-4/7 load-balancing proxy engine with HAProxy and LVS semantics.

    async with virtserve.serve(config) as lb: ...     # config: Config, dict or path
    with virtserve.serve_blocking(config) as lb: ...
"""
from virtserve.api import Balancer, BlockingBalancer, serve, serve_blocking
from virtserve.engine.config.model import Config
from virtserve.engine.engine import Engine

__version__ = "0.1.0"
__all__ = ["Balancer", "BlockingBalancer", "Config", "Engine", "serve", "serve_blocking", "__version__"]
