"""Refresher: mints short-lived Git tokens and keeps them in basic-auth Secrets."""
