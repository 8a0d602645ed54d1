"""The `local` backend: a server on 127.0.0.1 that speaks the AWS wire protocols jobman uses.

jobman's aioboto3 code (and any plain boto3 program) talks to it through `endpoint_url`. Underneath it
is real: S3 is a directory tree, training and transform jobs are detached XGBoost processes, endpoints are
detached HTTP servers. `daemon.ensure_running(home)` starts it on demand and returns its URL.
"""
