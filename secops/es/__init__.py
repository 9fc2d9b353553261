"""Elasticsearch layer: client factory, index templates, durable bulk writer, retention."""
