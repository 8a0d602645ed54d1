from tests.moto_server import moto, moto_server  # noqa: F401
