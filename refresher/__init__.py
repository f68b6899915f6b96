"""Refresher: mints short-lived Git tokens and keeps them in basic-auth Secrets."""

from common import kubeimports

kubeimports.install()  # before any of our modules imports kubernetes-asyncio: only what is used is loaded
