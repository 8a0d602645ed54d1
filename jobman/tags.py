"""The tags jobman puts on everything it creates; gc finds and reaps orphans by them."""

TAG_MANAGED = "jobman:managed"  # "true" on every resource jobman creates; nothing else is ever touched
TAG_EXPERIMENT = "jobman:experiment"
TAG_RUN = "jobman:run"
TAG_CONFIG = "jobman:config"  # the experiment file's digest: a resumed run adopts only its own resources
TAG_EXPIRES = "jobman:expires-at"  # ISO 8601 UTC; on the endpoint, its config and its model
