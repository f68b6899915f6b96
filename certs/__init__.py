"""TLS for the webhook: a CA and serving certificate, stored as files or a Secret, caBundle injection."""

from common import kubeimports

kubeimports.install()  # before any of our modules imports kubernetes-asyncio: only what is used is loaded
