"""TLS for the webhook: a CA and serving certificate, stored as files or a Secret, caBundle injection."""
