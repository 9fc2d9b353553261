"""secops platform kernel: configuration, Elasticsearch layer, ECS helpers, Celery app and CLI."""

__version__ = "0.1.0"
