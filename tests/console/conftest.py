from tests.api.conftest import api, pytest_asyncio_loop_factories

__all__ = ["api", "pytest_asyncio_loop_factories"]
