"""The only package that calls the Kubernetes API: server-side apply, reads, status patches and Events."""
