"""Mutating admission webhook: GitRepository policy and provider translation; Pod identity injection."""

from common import kubeimports

kubeimports.install()  # before any of our modules imports kubernetes-asyncio: only what is used is loaded
