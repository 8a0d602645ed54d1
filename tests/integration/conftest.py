from tests.integration.local_fixtures import local_server  # noqa: F401
from tests.moto_server import moto, moto_server  # noqa: F401
